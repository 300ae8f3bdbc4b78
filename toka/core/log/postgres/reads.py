"""Reading a shared log: what every ``PostgresStore`` answers, on its reading connection
(or, inside a write, on the writer's own)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from toka.core.errors import StoreUnavailable
from toka.core.log.checkpoints import Checkpoint
from toka.core.log.postgres.driver import LOCK_CLASS, first_line
from toka.core.log.store import GENESIS_PREV, OperationRow, event_filter
from toka.core.model.events import EventRecord

HEAD_CHECK_S = 1.0  # a follower reads the head at least this often, notified or not
PAGE = 2000  # rows per read: a long log is read in pages, never all at once

COLUMNS = "seq, ts, kind, principal, grant_jti, op_digest, part, payload, prev_hash, hash"
OPERATION_COLUMNS = (
    "nonce, digest, principal, kind, signed, status, first_seq, last_seq, error_code, error"
)


class PostgresReads:
    """The read half of ``PostgresStore`` (``store.py``)."""

    _psycopg: Any
    location: str
    listen: bool
    _rconn: Any
    _wconn: Any
    _writer: int | None
    _epoch: int
    _notified: int
    _head_checked: tuple[float, int]
    _lock_key: int
    url: str
    # Defined by PostgresStore: opening a connection, and sending the writer's rows.
    _connect: Callable[..., Any]
    flush: Callable[[], None]

    def _usable(self, conn: Any) -> bool:
        return conn is not None and not conn.closed and not conn.broken

    def _reader(self) -> Any:
        """The connection for a read from this thread: inside a write, the writer's own."""
        if self._writer == threading.get_ident():
            return self._wconn
        if not self._usable(self._rconn):
            if self._rconn is not None:
                with contextlib.suppress(Exception):
                    self._rconn.close()
                self._epoch += 1
            self._rconn = None
            self._rconn = self._connect(writer=False)
        return self._rconn

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """A lost connection is ``StoreUnavailable``; the next use reconnects."""
        psycopg = self._psycopg
        try:
            yield
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(
                f"lost the connection to the log at {self.location}: {first_line(exc)}"
            ) from None

    def _all(self, sql: str, args: Any = ()) -> list[tuple]:
        with self._errors():
            return self._reader().execute(sql, args).fetchall()

    def _one(self, conn: Any, sql: str, args: Any = ()) -> tuple:
        with self._errors():
            return conn.execute(sql, args).fetchone()

    def _first(self, sql: str, args: Any = ()) -> tuple | None:
        with self._errors():
            return self._reader().execute(sql, args).fetchone()

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        """One consistent view of the log for every query inside."""
        conn = self._reader()
        if self._writer == threading.get_ident():
            yield  # the write transaction is that view already
            return
        with self._errors():
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield
        finally:
            with contextlib.suppress(self._psycopg.Error):
                conn.execute("COMMIT")

    def meta(self, key: str) -> str | None:
        self.flush()
        row = self._first("SELECT value FROM meta WHERE key = %s", (key,))
        return row[0] if row else None

    def meta_items(self) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self._all("SELECT key, value FROM meta ORDER BY key")]

    def head(self) -> tuple[int, str, int]:
        """(last seq, its hash, its timestamp), or (0, genesis prev, 0) when empty."""
        self.flush()
        row = self._first("SELECT seq, hash, ts FROM events ORDER BY seq DESC LIMIT 1")
        return (row[0], row[1], row[2]) if row else (0, GENESIS_PREV, 0)

    def data_version(self) -> object:
        """Changes when anyone commits: a notification, a reconnect, or (checked once a
        second, for a lost notification) a new head."""
        psycopg = self._psycopg
        try:
            conn = self._reader()
            if self.listen:
                for _ in conn.notifies(timeout=0):
                    self._notified += 1
            checked_at, head = self._head_checked
            now = time.monotonic()
            if not self.listen or now - checked_at >= HEAD_CHECK_S:
                head = self.head()[0]
                self._head_checked = (now, head)
        except (psycopg.Error, StoreUnavailable):
            self._rconn = None
            self._epoch += 1
            return ("unreachable", self._epoch)
        return (self._epoch, self._notified, head)

    def records(
        self, after: int = 0, until: int | None = None, limit: int | None = None
    ) -> Iterator[EventRecord]:
        for page in self._pages(after, until, limit):
            for row in page:
                yield EventRecord(*row)

    def row_pages(self, after: int = 0, until: int | None = None) -> Iterator[list[tuple]]:
        """The rows ``records`` reads, as tuples in ``EventRecord`` field order, a page
        (one query) at a time: what a rebuild folds (``fold.fold_log``)."""
        return self._pages(after, until, None)

    def _pages(self, after: int, until: int | None, limit: int | None) -> Iterator[list[tuple]]:
        self.flush()
        left = limit
        while left is None or left > 0:
            page = PAGE if left is None else min(PAGE, left)
            sql = f"SELECT {COLUMNS} FROM events WHERE seq > %s"
            args: list = [after]
            if until is not None:
                sql += " AND seq <= %s"
                args.append(until)
            rows = self._all(sql + " ORDER BY seq LIMIT %s", [*args, page])
            if rows:
                yield rows
            if len(rows) < page:
                return
            after = rows[-1][0]
            if left is not None:
                left -= len(rows)

    def record(self, seq: int) -> EventRecord | None:
        self.flush()
        row = self._first(f"SELECT {COLUMNS} FROM events WHERE seq = %s", (seq,))
        return EventRecord(*row) if row else None

    def query(
        self,
        *,
        kinds: list[str] | None = None,
        principal: str | None = None,
        text: str | None = None,
        after: int = 0,
        before: int | None = None,
        limit: int = 100,
        newest_first: bool = False,
    ) -> list[EventRecord]:
        self.flush()
        clauses, args = event_filter(
            kinds=kinds, principal=principal, after=after, before=before, mark="%s"
        )
        if text:
            clauses.append("position(%s::bytea in payload) > 0")
            args.append(text.encode())
        order = "DESC" if newest_first else "ASC"
        sql = (
            f"SELECT {COLUMNS} FROM events WHERE {' AND '.join(clauses)} "
            f"ORDER BY seq {order} LIMIT %s"
        )
        return [EventRecord(*row) for row in self._all(sql, [*args, limit])]

    def operation(self, principal: str, nonce: str) -> OperationRow | None:
        self.flush()
        row = self._first(
            f"SELECT {OPERATION_COLUMNS} FROM operations WHERE principal = %s AND nonce = %s",
            (principal, nonce),
        )
        return OperationRow(*row) if row else None

    def operation_at(self, first_seq: int) -> OperationRow | None:
        self.flush()
        row = self._first(
            f"SELECT {OPERATION_COLUMNS} FROM operations WHERE first_seq = %s", (first_seq,)
        )
        return OperationRow(*row) if row else None

    def operations_by_nonce(
        self, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], OperationRow]:
        """The recorded operations among ``keys`` (principal, nonce), in one query."""
        self.flush()
        if not keys:
            return {}
        rows = self._all(
            f"SELECT {OPERATION_COLUMNS} FROM operations WHERE (principal, nonce) IN"
            " (SELECT * FROM unnest(%s::text[], %s::text[]))",
            ([k[0] for k in keys], [k[1] for k in keys]),
        )
        return {(row[2], row[0]): OperationRow(*row) for row in rows}

    def operations(self) -> Iterator[OperationRow]:
        """Every recorded operation: applied ones in log order, then refusals."""
        self.flush()
        rows = self._all(
            f"SELECT {OPERATION_COLUMNS} FROM operations ORDER BY first_seq NULLS LAST, recorded"
        )
        yield from (OperationRow(*row) for row in rows)

    def recent_rejections(self, principal: str | None, since_ts: int) -> int:
        self.flush()
        if principal is None:
            sql = "SELECT count(*) FROM events WHERE kind = 'operation.rejected' AND ts > %s"
            return self._first(sql, (since_ts,))[0]  # type: ignore[index]
        sql = (
            "SELECT count(*) FROM events WHERE kind = 'operation.rejected'"
            " AND principal = %s AND ts > %s"
        )
        return self._first(sql, (principal, since_ts))[0]  # type: ignore[index]

    def count(self) -> int:
        """The number of events: the head's seq (the constraints keep the log gap-free)."""
        return self.head()[0]

    def checkpoints(self, after: int = 0, until: int | None = None) -> list[Checkpoint]:
        home_id = self.meta("home_id") or ""
        sql = "SELECT seq, ts, head_hash, state_hash, sig FROM checkpoints WHERE seq > %s"
        args: list = [after]
        if until is not None:
            sql += " AND seq <= %s"
            args.append(until)
        return [Checkpoint(home_id, *row) for row in self._all(sql + " ORDER BY seq", args)]

    def latest_checkpoint(self) -> Checkpoint | None:
        row = self._first(
            "SELECT seq, ts, head_hash, state_hash, sig FROM checkpoints ORDER BY seq DESC LIMIT 1"
        )
        return Checkpoint(self.meta("home_id") or "", *row) if row else None

    def last_checkpoint_seq(self) -> int:
        row = self._first("SELECT max(seq) FROM checkpoints")
        return (row[0] if row else None) or 0

    def snapshot_seqs(self, until: int | None = None) -> list[int]:
        if until is None:
            rows = self._all("SELECT seq FROM snapshots ORDER BY seq DESC")
        else:
            rows = self._all(
                "SELECT seq FROM snapshots WHERE seq <= %s ORDER BY seq DESC", (until,)
            )
        return [r[0] for r in rows]

    def snapshot(self, seq: int) -> bytes | None:
        row = self._first("SELECT state FROM snapshots WHERE seq = %s", (seq,))
        return row[0] if row else None

    def get_blob(self, sha256: str) -> bytes | None:
        row = self._first("SELECT data FROM blobs WHERE sha256 = %s", (sha256,))
        return row[0] if row else None

    def blob_names(self) -> list[str]:
        return [r[0] for r in self._all("SELECT sha256 FROM blobs ORDER BY sha256")]

    def server_report(self) -> dict[str, Any]:
        """Version, durability settings and who holds the writer lock (`toka store check`)."""
        names = ("fsync", "full_page_writes", "synchronous_commit", "synchronous_standby_names")
        settings = (
            self._first("SELECT " + ", ".join(f"current_setting('{n}')" for n in names)) or ()
        )
        holders = self._all(
            "SELECT a.pid, a.application_name, coalesce(host(a.client_addr), 'local'),"
            " extract(epoch FROM now() - a.xact_start)::float8"
            " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.classid::bigint = %s"
            " AND l.objid::bigint = %s AND l.granted",
            (LOCK_CLASS, self._lock_key),
        )
        return {
            "backend": "postgresql",
            "location": self.location,
            "server_version": self._first("SHOW server_version")[0],  # type: ignore[index]
            "settings": dict(zip(names, settings, strict=True)),
            "writer_lock": [
                {"pid": p, "application": a, "client": c, "held_s": round(s or 0.0, 3)}
                for p, a, c, s in holders
            ],
        }

    def probe(self) -> dict[str, float]:
        """How far this host is from the log: a query's round trip, the clock offset
        (server minus this host) and how long a commit notification takes to arrive
        (what a follower here waits beyond the commit)."""
        psycopg = self._psycopg
        conn = self._reader()
        t0 = time.time()
        with self._errors():
            (server_s,) = conn.execute(
                "SELECT extract(epoch FROM clock_timestamp())::float8"
            ).fetchone()
        t1 = time.time()
        channel = f"toka_probe_{os.getpid()}"
        with self._errors(), psycopg.connect(self.url, autocommit=True) as listener:
            listener.execute(f"LISTEN {channel}")
            sent = time.perf_counter()
            conn.execute("SELECT pg_notify(%s, '')", (channel,))
            got = next(iter(listener.notifies(timeout=5, stop_after=1)), None)
            notify_ms = (time.perf_counter() - sent) * 1000 if got is not None else float("nan")
        return {
            "round_trip_ms": round((t1 - t0) * 1000, 3),
            "clock_offset_ms": round((server_s - (t0 + t1) / 2) * 1000, 1),
            "notify_ms": round(notify_ms, 3),
        }

    def raw_scan(self) -> int:
        """Rows of a plain ``SELECT *`` over the events, in order (the bench's yardstick)."""
        rows = 0
        with self._errors(), self._reader().cursor() as cur:
            cur.execute("SELECT * FROM events ORDER BY seq")
            while batch := cur.fetchmany(PAGE):
                rows += len(batch)
        return rows
