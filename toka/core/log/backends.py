"""Opening a log on the backend its location names: the embedded SQLite file, or a
PostgreSQL schema shared by many hosts (psycopg is loaded only for that)."""

from __future__ import annotations

from pathlib import Path

from toka.core.log.store import DURABILITY, Store, StoreSpec


def open_store(
    spec: StoreSpec,
    default_path: Path | None = None,
    durability: str = "full",
    *,
    readonly: bool = False,
    listen: bool = False,
    timeouts: tuple[int, int] | None = None,
) -> Store:
    """Open the store ``spec`` names (``default_path`` for a home's own SQLite file).

    ``listen`` (PostgreSQL) subscribes to commit notifications for a follower;
    ``timeouts`` are (lock wait, idle in transaction) seconds for a writer."""
    if durability not in DURABILITY:
        raise ValueError(f"durability must be one of {', '.join(DURABILITY)}")
    if spec.is_postgres:
        from toka.core.log.postgres import PostgresStore

        lock_s, idle_s = timeouts or (30, 60)
        return PostgresStore(
            spec.url,
            spec.schema,
            durability,
            readonly=readonly,
            listen=listen,
            lock_timeout_s=lock_s,
            idle_timeout_s=idle_s,
        )
    from toka.core.log.sqlite import SqliteStore

    if spec.url:
        path = Path(spec.url.removeprefix("sqlite://"))
    elif default_path is not None:
        path = default_path
    else:
        raise ValueError("a SQLite store needs a path")
    return SqliteStore(path, durability, readonly=readonly)
