"""The write half of a shared log's store, and its connections."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from toka.core.errors import CommitUnknown, HomeError, StoreUnavailable
from toka.core.log.checkpoints import Checkpoint
from toka.core.log.postgres import schema as tables
from toka.core.log.postgres.driver import (
    LOCK_CLASS,
    application_name,
    first_line,
    psycopg_module,
    redact,
)
from toka.core.log.postgres.reads import COLUMNS, OPERATION_COLUMNS, PostgresReads
from toka.core.log.store import RowBuffer

_BACKOFF_S = (0.05, 2.0)


class PostgresStore(PostgresReads, RowBuffer):
    """One log in one PostgreSQL schema: a connection for reads (it also listens, for a
    follower) and, unless read-only, one for the write transaction."""

    shares_blobs = True

    def __init__(
        self,
        url: str,
        schema: str,
        durability: str = "full",
        *,
        readonly: bool = False,
        listen: bool = False,
        lock_timeout_s: int = 30,
        idle_timeout_s: int = 60,
    ):
        self._psycopg = psycopg_module()
        self.url = url
        self.schema = schema
        self.location = f"{redact(url)} (schema {schema})"
        self.durability = durability
        self.readonly = readonly
        self.listen = listen
        self.lock_timeout_s = lock_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.channel = f"toka_{schema}"
        self._rconn: Any = None
        self._wconn: Any = None
        self._writer: int | None = None  # the thread inside write()
        self._clear_rows()
        self._retry_at = 0.0
        self._backoff = _BACKOFF_S[0]
        self._epoch = 0  # bumped on each reconnect: a follower reads again after one
        self._notified = 0
        self._head_checked = (0.0, 0)
        self.server_version = ""
        conn = self._reader()
        if not readonly:
            try:
                tables.check_durability(conn, self.location, durability)  # before any write
                tables.create(conn, self.schema)
            except self._psycopg.Error as exc:
                raise StoreUnavailable(
                    f"cannot set up the log at {self.location}: {first_line(exc)}"
                ) from None
        elif self._one(conn, "SELECT to_regclass(%s) IS NULL", (f"{self.schema}.events",))[0]:
            raise HomeError(f"no Toka log at {self.location}: run `toka init --store` first")
        self._lock_key = self._one(
            conn,
            "SELECT (oid::bigint %% 2147483647)::int FROM pg_class WHERE oid = %s::regclass",
            (f"{schema}.events",),
        )[0]

    def _connect(self, *, writer: bool) -> Any:
        psycopg = self._psycopg
        now = time.monotonic()
        if now < self._retry_at:
            raise StoreUnavailable(f"the log at {self.location} is unreachable; retrying")
        try:
            conn = psycopg.connect(
                self.url, autocommit=True, application_name=application_name(), connect_timeout=10
            )
            settings = [("search_path", self.schema)]
            if writer:
                settings += [
                    ("lock_timeout", f"{self.lock_timeout_s}s"),
                    ("idle_in_transaction_session_timeout", f"{self.idle_timeout_s}s"),
                ]
                if self.durability == "normal":
                    # A crash of the database server may lose the last commits, never
                    # corrupt: the promise of SQLite's NORMAL.
                    settings.append(("synchronous_commit", "off"))
            conn.execute(
                "SELECT " + ", ".join("set_config(%s, %s, false)" for _ in settings),
                [v for pair in settings for v in pair],
            )
            if self.listen and not writer:
                conn.execute(f"LISTEN {self.channel}")  # before the first read
        except psycopg.Error as exc:
            self._retry_at = now + self._backoff
            self._backoff = min(self._backoff * 2, _BACKOFF_S[1])
            raise StoreUnavailable(
                f"cannot reach the log at {self.location}: {first_line(exc)}"
            ) from None
        self._backoff = _BACKOFF_S[0]
        self.server_version = conn.info.parameter_status("server_version") or ""
        return conn

    def close(self) -> None:
        for conn in (self._rconn, self._wconn):
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
        self._rconn = self._wconn = None

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        """A write transaction holding the log's writer lock until it commits."""
        psycopg = self._psycopg
        if self.readonly:
            raise StoreUnavailable(f"the log at {self.location} was opened read-only")
        if not self._usable(self._wconn):
            self._wconn = None
            self._wconn = self._connect(writer=True)
        conn = self._wconn
        try:
            # One round trip, as one simple query: after a pipeline, the server would not
            # arm idle_in_transaction_session_timeout, and a writer hung right here would
            # hold the lock forever (both keys are integers of ours).
            conn.execute(
                f"BEGIN; SELECT pg_advisory_xact_lock({LOCK_CLASS}, {int(self._lock_key)})"
            )
        except psycopg.errors.LockNotAvailable:
            self._rollback(conn)
            raise StoreUnavailable(
                f"another writer held the log's lock for over {self.lock_timeout_s} s "
                "(`toka store check` shows who); nothing was written"
            ) from None
        except psycopg.Error as exc:
            self._rollback(conn)
            raise StoreUnavailable(
                f"cannot write to the log at {self.location}: {first_line(exc)}; "
                "nothing was written"
            ) from None
        self._writer = threading.get_ident()
        self._clear_rows()
        try:
            yield
        except BaseException:
            self._clear_rows()
            self._writer = None
            self._rollback(conn)
            raise
        try:
            # The rows, the followers' wake-up and COMMIT in one round trip.
            with conn.pipeline():
                self.flush()
                if self._last_seq:
                    conn.execute("SELECT pg_notify(%s, %s)", (self.channel, str(self._last_seq)))
                conn.execute("COMMIT")
        except (psycopg.Error, StoreUnavailable) as exc:
            self._clear_rows()
            if conn.broken or conn.closed:
                self._wconn = None
                raise CommitUnknown(
                    f"lost the connection to the log at {self.location} while committing: "
                    f"{first_line(exc)}"
                ) from None  # the server may have committed: look the batch up by nonce
            self._rollback(conn)
            raise StoreUnavailable(
                f"the log refused the commit: {first_line(exc)}; nothing was written"
            ) from None
        finally:
            self._writer = None

    def _rollback(self, conn: Any) -> None:
        try:
            conn.execute("ROLLBACK")
        except self._psycopg.Error:
            self._wconn = None  # gone: the server rolls back what it held

    def flush(self) -> None:
        """Send the rows appended so far (the writer's own reads see them)."""
        if self._writer != threading.get_ident():
            return
        conn = self._wconn
        with self._errors(), conn.cursor() as cur:
            if self._events:
                cur.executemany(
                    f"INSERT INTO events({COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    self._events,
                )
                self._events.clear()
            if self._operations:
                cur.executemany(
                    f"INSERT INTO operations({OPERATION_COLUMNS})"
                    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    self._operations,
                )
                self._operations.clear()

    def _execute(self, sql: str, args: Any = ()) -> None:
        self.flush()
        with self._errors():
            self._reader().execute(sql, args)

    def set_meta(self, key: str, value: str) -> None:
        self._execute(
            "INSERT INTO meta(key, value) VALUES (%s, %s)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (key, value),
        )

    def record_checkpoint(self, cp: Checkpoint) -> None:
        self._execute(
            "INSERT INTO checkpoints(seq, ts, head_hash, state_hash, sig)"
            " VALUES (%s, %s, %s, %s, %s)",
            (cp.seq, cp.ts, cp.head_hash, cp.state_hash, cp.sig),
        )

    def save_snapshot(self, seq: int, state: bytes, keep: int) -> None:
        self._execute(
            "INSERT INTO snapshots(seq, state) VALUES (%s, %s)"
            " ON CONFLICT (seq) DO UPDATE SET state = EXCLUDED.state",
            (seq, state),
        )
        self._execute(
            "DELETE FROM snapshots WHERE seq NOT IN"
            " (SELECT seq FROM snapshots ORDER BY seq DESC LIMIT %s)",
            (keep,),
        )

    def put_blob(self, sha256: str, data: bytes) -> None:
        """Keep a blob for every host (committed, so durable, when this returns)."""
        self._execute(
            "INSERT INTO blobs(sha256, data) VALUES (%s, %s) ON CONFLICT (sha256) DO NOTHING",
            (sha256, data),
        )
