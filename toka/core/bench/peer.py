"""``toka bench kernel --vs-eventsourcing``: a peer to measure Toka's kernel against,
in the same run on the same machine, and the machine's Ed25519 verification rate.

The peer is the Python ``eventsourcing`` library with its SQLite recorder (a file
database in a temporary directory, WAL as the library sets it) and an aggregate
cache: ``spawn`` creates an agent aggregate, ``schedule`` adds a task event to one,
each command one commit (``Application.save``), with no signatures, no tokens and no
capability check. Each worker spawns an agent, then schedules tasks on it, spawning
a fresh agent every ``SPAWN_EVERY`` commands. It runs with ``submitters`` threads,
each waiting for its commit (the library's API is synchronous), then with one
client alone. The SQLite ``journal_mode`` and ``synchronous`` it commits with are
read from one of its own connections and reported, next to Toka's.

``commits``: the disk's ceiling for one waiting client: raw single-row APSW
transactions, WAL with ``synchronous=FULL`` (what ``full`` durability syncs), one
after the other. Neither Toka's waiting client nor the peer's can commit more often.

``ed25519``: signatures verified per second by two threads through PyNaCl's
``crypto_sign_open`` (libsodium), as ``toka.core.model.keys.verify_signature`` does
for every submitted operation, on a message of an operation's typical size.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from toka.core.bench.stats import run_together
from toka.core.errors import InvalidInput, MissingExtra

SPAWN_EVERY = 10
SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def _peer_model():
    try:
        import eventsourcing  # noqa: F401
    except ImportError:
        raise MissingExtra(
            "--vs-eventsourcing needs the eventsourcing library: pip install 'toka[bench]'"
        ) from None
    from toka.core.bench import peer_model

    return peer_model


def _sqlite_settings(app) -> dict[str, Any]:
    """journal_mode and synchronous of one of the peer's own pooled connections."""
    import sqlite3

    pool = app.factory.datastore.pool
    conn = pool.get_connection(is_writer=False)
    try:
        raw = conn._sqlite_conn
        (journal,) = raw.execute("PRAGMA journal_mode").fetchone()
        (sync,) = raw.execute("PRAGMA synchronous").fetchone()
    finally:
        pool.put_connection(conn)
    return {
        "journal_mode": str(journal).upper(),
        "synchronous": SYNCHRONOUS.get(int(sync), str(sync)),
        "sqlite_version": sqlite3.sqlite_version,
        "source": "read from the library's own connection (it sets only journal_mode=WAL)",
    }


def _peer_phase(model, threads: int, n_ops: int, cache: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="toka-bench-peer-") as tmp:
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(Path(tmp) / "peer.sqlite"),
            "AGGREGATE_CACHE_MAXSIZE": str(cache),
        }
        app = model.BenchApp(env=env)
        try:
            settings = _sqlite_settings(app)
            per = max(1, n_ops // threads)
            done = [0] * threads
            spawned = [0] * threads
            errors: list[BaseException] = []
            barrier = threading.Barrier(threads + 1)

            def work(k: int) -> None:
                barrier.wait()
                try:
                    agent = None
                    for i in range(per):
                        if i % SPAWN_EVERY == 0:
                            agent = app.spawn(f"bench-{k}-{i}")
                            spawned[k] += 1
                        else:
                            app.schedule(agent, f"task {i}")
                        done[k] += 1
                except BaseException as exc:  # reported below, not lost in the thread
                    errors.append(exc)

            workers = [
                threading.Thread(target=work, args=(k,), name=f"peer-{k}") for k in range(threads)
            ]
            elapsed = run_together(workers, barrier)
            if errors:
                raise errors[0]
            notifications = app.recorder.max_notification_id() or 0
        finally:
            app.close()
    ops_done = sum(done)
    return {
        "ops": ops_done,
        "spawns": sum(spawned),
        "schedules": ops_done - sum(spawned),
        "events_stored": notifications,
        "ops_per_s": round(ops_done / elapsed, 1),
        "seconds": round(elapsed, 3),
        "sqlite": settings,
    }


def bench_peer(ops_count: int, submitters: int = 4, cache: int = 1000) -> dict[str, Any]:
    """The eventsourcing peer: ``submitters`` threads, then one waiting client."""
    if ops_count < submitters or submitters < 1:
        raise InvalidInput("--ops must be at least --submitters, and --submitters at least 1")
    model = _peer_model()
    from importlib.metadata import PackageNotFoundError, version

    try:
        lib_version = version("eventsourcing")
    except PackageNotFoundError:
        lib_version = "unknown"
    multi = _peer_phase(model, submitters, ops_count, cache)
    single = _peer_phase(model, 1, ops_count, cache)
    return {
        "library": "eventsourcing",
        "version": lib_version,
        "recorder": "eventsourcing.sqlite",
        "aggregate_cache_maxsize": cache,
        "submitters": submitters,
        "spawn_every": SPAWN_EVERY,
        "sqlite": multi.pop("sqlite"),
        "multi": multi,
        "single": {k: v for k, v in single.items() if k != "sqlite"},
    }


def bench_ed25519(count: int = 20_000, threads: int = 2, size: int = 400) -> dict[str, Any]:
    """Ed25519 verifications/s by ``threads`` threads (PyNaCl releases the GIL)."""
    import nacl.bindings

    public, secret = nacl.bindings.crypto_sign_keypair()
    signed = nacl.bindings.crypto_sign(b"x" * size, secret)
    per = max(1, count // threads)
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        barrier.wait()
        for _ in range(per):
            nacl.bindings.crypto_sign_open(signed, public)

    workers = [threading.Thread(target=work, name=f"ed25519-{k}") for k in range(threads)]
    elapsed = run_together(workers, barrier)
    return {
        "threads": threads,
        "verifications": per * threads,
        "message_bytes": size,
        "verify_per_s": round(per * threads / elapsed, 1),
    }


def bench_commits(count: int = 3000, size: int = 300) -> dict[str, Any]:
    """Durable single-row commits/s on this disk: SQLite WAL, ``synchronous=FULL``."""
    import apsw

    with tempfile.TemporaryDirectory(prefix="toka-bench-commits-") as scratch:
        conn = apsw.Connection(str(Path(scratch) / "commits.db"))
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("CREATE TABLE t(seq INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
            row = b"x" * size
            t0 = time.perf_counter()
            for _ in range(count):
                conn.execute("BEGIN IMMEDIATE; INSERT INTO t(payload) VALUES (?); COMMIT", (row,))
            elapsed = time.perf_counter() - t0
        finally:
            conn.close()
    return {"commits": count, "row_bytes": size, "commits_per_s": round(count / elapsed, 1)}


def vs_eventsourcing(toka: dict[str, Any], ops_count: int, submitters: int) -> dict[str, Any]:
    """The peer, the disk's commit rate, the verification rate and the ratios, added to
    ``bench_kernel``'s data."""
    peer = bench_peer(ops_count, submitters)
    commits = bench_commits()
    ed = bench_ed25519()
    if toka["store"] == "sqlite":
        sync = {"full": "FULL", "normal": "NORMAL"}[toka["durability"]]
        toka_sqlite = {"journal_mode": "WAL", "synchronous": sync}
        comparable = (
            peer["sqlite"]["journal_mode"] == "WAL" and peer["sqlite"]["synchronous"] == sync
        )
    else:
        toka_sqlite, comparable = None, False
    return {
        "eventsourcing": peer,
        "toka_sqlite": toka_sqlite,
        "durability_comparable": comparable,
        "commits": commits,
        "ed25519": ed,
        "ratios": compare(toka, peer, ed, commits),
    }


def compare(
    toka: dict[str, Any], peer: dict[str, Any], ed: dict[str, Any], commits: dict[str, Any]
) -> dict[str, Any]:
    """Toka's rates over the peer's, over the verification rate, and the waiting
    clients' over the disk's commit rate."""

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 3) if b else None

    return {
        # Toka streaming (window in flight) and Toka with each submitter waiting, both
        # over the peer's threads (each of which waits: its API is synchronous).
        "toka_vs_peer_submitters": ratio(toka["ops_per_s"], peer["multi"]["ops_per_s"]),
        "toka_sync_vs_peer_submitters": ratio(toka["sync_ops_per_s"], peer["multi"]["ops_per_s"]),
        "toka_vs_peer_single": ratio(toka["single_ops_per_s"], peer["single"]["ops_per_s"]),
        "toka_of_ed25519": ratio(toka["ops_per_s"], ed["verify_per_s"]),
        "toka_single_of_commits": ratio(toka["single_ops_per_s"], commits["commits_per_s"]),
        "peer_single_of_commits": ratio(peer["single"]["ops_per_s"], commits["commits_per_s"]),
    }
