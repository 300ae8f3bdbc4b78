"""Helpers shared by the event-log tests (tests/test_log_*.py)."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import apsw
from toka_cli import run_toka

from toka.core.model import events as ev
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.runtime.home import Home


def make_home(root: Path, checkpoint_interval: int = 10, snapshot_every: int = 1) -> Home:
    home = Home(root)
    home.init()
    home.config_path.write_text(
        f"checkpoint_interval = {checkpoint_interval}\nsnapshot_every = {snapshot_every}\n"
    )
    return home


def populate(home: Home, tasks: int = 20) -> dict[str, str]:
    """Some realistic history: two agents, tasks scheduled and completed, observations,
    a revoked grant. Returns the agent ids."""
    with Runtime(home) as rt:
        operator = Client(rt)
        worker, _ = operator.spawn_agent("worker", "echo")
        helper, _ = operator.spawn_agent("helper", "manual")
        as_worker = Client(rt, worker)
        for i in range(tasks):
            task = operator.schedule(worker, f"task {i}", {"i": i}).first(ev.TaskScheduled)
            if i % 2 == 0:
                as_worker.complete(task.task, {"done": i})
            as_worker.observe(worker, {"step": i, "note": "working"})
        grant = operator.grant(helper, [f"observation.emit:agent/{worker}"], 3600)
        operator.revoke(grant.first(ev.CapabilityGranted).jti, "no longer needed")
    return {"worker": worker, "helper": helper}


def toka_json(*args: str, home: Path, expect: int = 0) -> dict:
    result = run_toka(*args, "--json", home=home)
    assert result.returncode == expect, result.stderr
    return json.loads(result.stdout)


class _PostgresLog:
    """Raw SQL on a home's PostgreSQL log, as the database's superuser: triggers and
    foreign keys are off (``session_replication_role = replica``), as for an attacker
    who owns the database. ``?`` placeholders are accepted, as with SQLite."""

    def __init__(self, spec):
        import psycopg

        self.conn = psycopg.connect(spec.url, autocommit=True)
        self.conn.execute(
            "SELECT set_config('search_path', %s, false),"
            " set_config('session_replication_role', 'replica', false)",
            (spec.schema,),
        )

    def execute(self, sql: str, args: tuple | list = ()):
        if re.search(r"\?\d", sql):
            raise ValueError("numbered ? placeholders are SQLite's: use plain ?")
        return self.conn.execute(sql.replace("%", "%%").replace("?", "%s"), args)

    def close(self) -> None:
        self.conn.close()


@contextlib.contextmanager
def raw_log(home: Home) -> Iterator:
    """A raw connection to ``home``'s log, whichever the backend (SQLite's is apsw's)."""
    spec = home.store_spec()
    conn = _PostgresLog(spec) if spec.is_postgres else apsw.Connection(str(home.db_path))
    try:
        yield conn
    finally:
        conn.close()


def tamper(home: Home, sql: str, args: tuple = ()) -> None:
    """Change the database behind the runtime's back, as an attacker with file access."""
    with raw_log(home) as conn:
        conn.execute(sql, args)


def scalar(home: Home, sql: str, args: tuple = ()):
    with raw_log(home) as conn:
        return conn.execute(sql, args).fetchone()[0]


def snapshot_seqs(home: Home) -> list[int]:
    """The stored snapshots' seqs, newest first, read as any reader of the log would."""
    log = home.open_store(readonly=True)
    try:
        return log.snapshot_seqs()
    finally:
        log.close()
