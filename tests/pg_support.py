"""A throwaway PostgreSQL server for the suite, and one schema per test.

The server binaries come from the machine image (``/usr/lib/postgresql/*/bin``, or
``TOKA_PG_BINDIR``). Run as root, initdb and the server run as the ``postgres`` OS user
(PostgreSQL refuses root). The socket is in a temporary directory and there is no TCP
port, so parallel runs cannot collide; the server is stopped by its pid.
``TOKA_TEST_PG_DSN`` uses an existing server instead. ``TOKA_TEST_PG``: ``auto``
(default: run the PostgreSQL tests if a server can be had, else skip them),
``require`` (fail instead of skipping: CI) or ``off``.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def mode() -> str:
    value = os.environ.get("TOKA_TEST_PG", "auto")
    if value not in ("auto", "require", "off"):
        raise RuntimeError(f"TOKA_TEST_PG must be auto, require or off, not {value!r}")
    return value


def bindir() -> str | None:
    if os.environ.get("TOKA_PG_BINDIR"):
        return os.environ["TOKA_PG_BINDIR"]
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4])
    )
    if found:
        return os.path.dirname(found[-1])
    which = shutil.which("postgres")
    return os.path.dirname(which) if which else None


def existing_dsn() -> str | None:
    return os.environ.get("TOKA_TEST_PG_DSN") or None


def unavailable_reason() -> str | None:
    """Why no PostgreSQL tests can run here, or None if they can."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]')"
    if existing_dsn():
        return None
    if bindir() is None:
        return "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` OS user to run the server"
    return None


class Server:
    """A running throwaway server: ``dsn`` connects as the superuser ``postgres``."""

    def __init__(self, dsn: str, proc: subprocess.Popen | None = None, root: str | None = None):
        self.dsn = dsn
        self.proc = proc
        self.root = root

    def execute(self, sql: str, args: tuple = ()) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(sql, args)
            return cur.fetchall() if cur.description else []

    def new_schema(self) -> str:
        return f"t_{secrets.token_hex(6)}"

    def drop_schema(self, schema: str) -> None:
        import psycopg

        try:
            self.execute(f"SET lock_timeout = '5s'; DROP SCHEMA IF EXISTS {schema} CASCADE")
        except psycopg.errors.LockNotAvailable:
            # A connection the test left open holds it: end Toka's connections, then drop.
            self.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name LIKE 'toka/%%' AND pid <> pg_backend_pid()"
            )
            self.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@contextmanager
def throwaway_server(*settings: str) -> Iterator[Server]:
    """Start a server (``settings`` as ``name=value``) and stop it by its pid afterwards."""
    import psycopg

    directory = bindir()
    if directory is None:
        import pytest

        pytest.skip("this test starts a server of its own: no PostgreSQL server binaries here")
    run_as: dict = {}
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        run_as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    root = tempfile.mkdtemp(prefix="toka-pg-")
    if run_as:
        os.chown(root, run_as["user"], run_as["group"])
    proc = None
    log = None
    try:
        subprocess.run(
            [f"{directory}/initdb", "-D", f"{root}/data", "-U", "postgres", "-A", "trust",
             "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            check=True, capture_output=True, cwd=root, **run_as,
        )  # fmt: skip
        log = open(f"{root}/server.log", "wb")  # noqa: SIM115
        options = ["-c", "listen_addresses=", "-c", "max_connections=200", "-c", "fsync=on"]
        for setting in settings:
            options += ["-c", setting]
        proc = subprocess.Popen(
            [f"{directory}/postgres", "-D", f"{root}/data", "-k", root, *options],
            stdout=log, stderr=subprocess.STDOUT, cwd=root, **run_as,
        )  # fmt: skip
        dsn = f"host={root} user=postgres dbname=postgres"
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(dsn, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(Path(f"{root}/server.log").read_text()) from None
                time.sleep(0.02)
        yield Server(dsn, proc, root)
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown, by our own pid
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if log is not None:
            log.close()
        shutil.rmtree(root, ignore_errors=True)


def url(server: Server) -> str:
    """The server's conninfo as a ``postgresql://`` URL (what `toka --store` takes)."""
    from urllib.parse import quote

    import psycopg

    parts = psycopg.conninfo.conninfo_to_dict(server.dsn)
    query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in parts.items() if k != "dbname")
    return f"postgresql:///{parts.get('dbname', 'postgres')}?{query}"
