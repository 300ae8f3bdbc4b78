"""psycopg, loaded on first use, and what every connection to a shared log needs."""

from __future__ import annotations

import os
import socket
from typing import Any

from toka.core.errors import MissingExtra, StoreUnavailable

# The advisory lock's first key ("toka"); the second is the events table's oid, so two
# logs in two schemas never share a lock and pg_locks shows which table it guards.
LOCK_CLASS = 0x746F6B61


def psycopg_module() -> Any:
    try:
        import psycopg
    except ImportError:
        raise MissingExtra("a PostgreSQL log needs psycopg: pip install 'toka[postgres]'") from None
    return psycopg


def redact(url: str) -> str:
    """``url`` without a password, for messages and `toka store check`."""
    psycopg = psycopg_module()
    try:
        parts = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable)"
    if "password" not in parts:
        return url
    parts["password"] = "***"
    return psycopg.conninfo.make_conninfo("", **parts)


def has_password(url: str) -> bool:
    psycopg = psycopg_module()
    try:
        return "password" in psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise StoreUnavailable(f"invalid PostgreSQL URL: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def application_name() -> str:
    return f"toka/{socket.gethostname()[:40]}/{os.getpid()}"


def drop_log(url: str, schema: str) -> None:
    """Remove a whole log: its schema and everything in it (scratch logs of benches)."""
    psycopg = psycopg_module()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
