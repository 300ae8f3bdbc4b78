"""The shared log: the same hash-chained rows in a PostgreSQL schema, through psycopg 3.

Runtimes on many hosts append to one linear history. One writer at a time: every
write transaction first takes a transaction-scoped advisory lock (it conflicts with
nothing else, not even autovacuum, and a writer that dies frees it), then reads the
head and appends ``head + 1`` onwards. Commit order is therefore seq order, and a
reader at ``seq > position`` never passes over a row that commits later. The
constraints hold even for a client that skips the lock: ``seq`` is the primary key,
``(seq, hash)`` is unique and every row references its predecessor's ``(seq, hash)``,
so a fork or a gap cannot commit; the tables that make history refuse UPDATE, DELETE
and TRUNCATE.

A lost connection while COMMIT was under way is an unknown outcome
(``CommitUnknown``): the caller looks the batch's operations up by nonce. Followers
``LISTEN`` before their first read and check the head every second besides, so a
missed notification or a reconnect never loses an event.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from toka.core.errors import CommitUnknown, HomeError, MissingExtra, StoreUnavailable
from toka.core.log.checkpoints import Checkpoint
from toka.core.log.store import GENESIS_PREV, OperationRow, chain_hash
from toka.core.model.events import EventRecord

# The advisory lock's first key ("toka"); the second is the events table's oid, so two
# logs in two schemas never share a lock and pg_locks shows which table it guards.
LOCK_CLASS = 0x746F6B61
PG_SCHEMA_VERSION = "1"
HEAD_CHECK_S = 1.0  # a follower reads the head at least this often, notified or not
_PAGE = 2000  # rows per read: a long log is read in pages, never all at once
_BACKOFF_S = (0.05, 2.0)

_COLUMNS = "seq, ts, kind, principal, grant_jti, op_digest, part, payload, prev_hash, hash"
_OPERATION_COLUMNS = (
    "nonce, digest, principal, kind, signed, status, first_seq, last_seq, error_code, error"
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta(
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS events(
    seq bigint PRIMARY KEY CHECK (seq > 0),
    ts bigint NOT NULL,
    kind text NOT NULL,
    principal text NOT NULL,
    grant_jti text,
    op_digest text NOT NULL,
    part integer NOT NULL,
    payload bytea NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL,
    prev_seq bigint GENERATED ALWAYS AS (NULLIF(seq - 1, 0)) STORED,
    UNIQUE (seq, hash),
    -- No fork, no gap: a row can only follow the committed row it names.
    FOREIGN KEY (prev_seq, prev_hash) REFERENCES events(seq, hash),
    -- One genesis.
    CHECK ((seq = 1) = (prev_hash = '{GENESIS_PREV}'))
);
CREATE INDEX IF NOT EXISTS events_rejected ON events(principal, ts)
    WHERE kind = 'operation.rejected';
CREATE TABLE IF NOT EXISTS operations(
    nonce text NOT NULL,
    digest text NOT NULL,
    principal text NOT NULL,
    kind text NOT NULL,
    signed bytea NOT NULL,
    status text NOT NULL,
    first_seq bigint,
    last_seq bigint,
    error_code text,
    error text,
    recorded bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (principal, nonce)
);
CREATE INDEX IF NOT EXISTS operations_first_seq ON operations(first_seq);
CREATE TABLE IF NOT EXISTS checkpoints(
    seq bigint PRIMARY KEY REFERENCES events(seq),
    ts bigint NOT NULL,
    head_hash text NOT NULL,
    state_hash text NOT NULL,
    sig text NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots(
    seq bigint PRIMARY KEY,
    state bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS blobs(
    sha256 text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{{64}}$'),
    data bytea NOT NULL
);
CREATE OR REPLACE FUNCTION refuse_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the Toka log is append-only: % on % refused', TG_OP, TG_TABLE_NAME;
END $$;
CREATE OR REPLACE TRIGGER events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_rewrite();
CREATE OR REPLACE TRIGGER operations_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON operations FOR EACH STATEMENT EXECUTE FUNCTION refuse_rewrite();
CREATE OR REPLACE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON checkpoints FOR EACH STATEMENT EXECUTE FUNCTION refuse_rewrite();
"""


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise MissingExtra("a PostgreSQL log needs psycopg: pip install 'toka[postgres]'") from None
    return psycopg


def redact(url: str) -> str:
    """``url`` without a password, for messages and `toka store check`."""
    psycopg = _psycopg()
    try:
        parts = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable)"
    if "password" not in parts:
        return url
    parts["password"] = "***"
    return psycopg.conninfo.make_conninfo("", **parts)


def has_password(url: str) -> bool:
    psycopg = _psycopg()
    try:
        return "password" in psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise StoreUnavailable(f"invalid PostgreSQL URL: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def application_name() -> str:
    return f"toka/{socket.gethostname()[:40]}/{os.getpid()}"


class PostgresStore:
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
        self._psycopg = _psycopg()
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
        self._events: list[tuple] = []
        self._operations: list[tuple] = []
        self._head_seq = 0  # the last seq appended in the open write
        self._retry_at = 0.0
        self._backoff = _BACKOFF_S[0]
        self._epoch = 0  # bumped on each reconnect: a follower reads again after one
        self._notified = 0
        self._head_checked = (0.0, 0)
        self.server_version = ""
        conn = self._reader()
        if not readonly:
            self._check_durability(conn)  # before anything is written to it
            self._create_schema(conn)
        elif self._table_missing(conn):
            raise HomeError(f"no Toka log at {self.location}: run `toka init --store` first")
        self._lock_key = self._one(
            conn,
            "SELECT (oid::bigint %% 2147483647)::int FROM pg_class WHERE oid = %s::regclass",
            (f"{schema}.events",),
        )[0]

    # -- connections ------------------------------------------------------------------

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
                f"cannot reach the log at {self.location}: {_first_line(exc)}"
            ) from None
        self._backoff = _BACKOFF_S[0]
        self.server_version = conn.info.parameter_status("server_version") or ""
        return conn

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
                f"lost the connection to the log at {self.location}: {_first_line(exc)}"
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

    def _table_missing(self, conn: Any) -> bool:
        row = self._one(conn, "SELECT to_regclass(%s)", (f"{self.schema}.events",))
        return row[0] is None

    def _create_schema(self, conn: Any) -> None:
        if not self._table_missing(conn):
            row = self._one(conn, "SELECT value FROM meta WHERE key = 'pg_schema_version'")
            if row is not None and row[0] == PG_SCHEMA_VERSION:
                return
        with self._errors(), conn.transaction():
            # Two hosts initialising at once: one creates, the other finds it done.
            conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_CLASS,))
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
            conn.execute(_SCHEMA)
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('pg_schema_version', %s)"
                " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (PG_SCHEMA_VERSION,),
            )

    def _check_durability(self, conn: Any) -> None:
        """Refuse a server that cannot keep what it acknowledges."""
        fsync, fpw, sync = self._one(
            conn,
            "SELECT current_setting('fsync'), current_setting('full_page_writes'),"
            " current_setting('synchronous_commit')",
        )
        for name, value in (("fsync", fsync), ("full_page_writes", fpw)):
            if value == "off":
                raise StoreUnavailable(
                    f"the PostgreSQL server at {self.location} runs with {name}=off: a crash "
                    "could lose or corrupt acknowledged operations; Toka will not write to it"
                )
        if sync == "off" and self.durability == "full":
            raise StoreUnavailable(
                f"the PostgreSQL server at {self.location} runs with synchronous_commit=off: "
                "an acknowledged operation could be lost in a crash; set it to on "
                "(or run with durability normal, which accepts that)"
            )

    def close(self) -> None:
        for conn in (self._rconn, self._wconn):
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
        self._rconn = self._wconn = None

    # -- writing ----------------------------------------------------------------------

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
            conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({LOCK_CLASS}, {int(self._lock_key)})")
        except psycopg.errors.LockNotAvailable:
            self._rollback(conn)
            raise StoreUnavailable(
                f"another writer held the log's lock for over {self.lock_timeout_s} s "
                "(`toka store check` shows who); nothing was written"
            ) from None
        except psycopg.Error as exc:
            self._rollback(conn)
            raise StoreUnavailable(
                f"cannot write to the log at {self.location}: {_first_line(exc)}; "
                "nothing was written"
            ) from None
        self._writer = threading.get_ident()
        self._head_seq = 0
        try:
            yield
        except BaseException:
            self._events.clear()
            self._operations.clear()
            self._writer = None
            self._rollback(conn)
            raise
        try:
            # The rows, the followers' wake-up and COMMIT in one round trip.
            with conn.pipeline():
                self.flush()
                if self._head_seq:
                    conn.execute("SELECT pg_notify(%s, %s)", (self.channel, str(self._head_seq)))
                conn.execute("COMMIT")
        except (psycopg.Error, StoreUnavailable) as exc:
            self._events.clear()
            self._operations.clear()
            if conn.broken or conn.closed:
                self._wconn = None
                raise CommitUnknown(
                    f"lost the connection to the log at {self.location} while committing: "
                    f"{_first_line(exc)}"
                ) from None  # the server may have committed: look the batch up by nonce
            self._rollback(conn)
            raise StoreUnavailable(
                f"the log refused the commit: {_first_line(exc)}; nothing was written"
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
                    f"INSERT INTO events({_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    self._events,
                )
                self._events.clear()
            if self._operations:
                cur.executemany(
                    f"INSERT INTO operations({_OPERATION_COLUMNS})"
                    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    self._operations,
                )
                self._operations.clear()

    def append(
        self,
        prev_hash: str,
        seq: int,
        ts: int,
        kind: str,
        principal: str,
        grant: str | None,
        op_digest: str,
        part: int,
        payload: bytes,
    ) -> str:
        digest = chain_hash(prev_hash, seq, ts, kind, principal, grant, op_digest, part, payload)
        self._events.append(
            (seq, ts, kind, principal, grant, op_digest, part, payload, prev_hash, digest)
        )
        self._head_seq = seq
        return digest

    def append_record(self, record: EventRecord) -> None:
        r = record
        self._events.append(
            (r.seq, r.ts, r.kind, r.principal, r.grant, r.op_digest, r.part, r.payload,
             r.prev_hash, r.hash)
        )  # fmt: skip
        self._head_seq = r.seq

    def record_operation(self, row: OperationRow) -> None:
        self._operations.append(
            (
                row.nonce,
                row.digest,
                row.principal,
                row.kind,
                row.signed,
                row.status,
                row.first_seq,
                row.last_seq,
                row.error_code,
                row.error,
            )
        )

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

    # -- reading ----------------------------------------------------------------------

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
        self.flush()
        left = limit
        while left is None or left > 0:
            page = _PAGE if left is None else min(_PAGE, left)
            sql = f"SELECT {_COLUMNS} FROM events WHERE seq > %s"
            args: list = [after]
            if until is not None:
                sql += " AND seq <= %s"
                args.append(until)
            rows = self._all(sql + " ORDER BY seq LIMIT %s", [*args, page])
            for row in rows:
                yield EventRecord(*row)
            if len(rows) < page:
                return
            after = rows[-1][0]
            if left is not None:
                left -= len(rows)

    def record(self, seq: int) -> EventRecord | None:
        self.flush()
        row = self._first(f"SELECT {_COLUMNS} FROM events WHERE seq = %s", (seq,))
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
        clauses = ["seq > %s"]
        args: list = [after]
        if before is not None:
            clauses.append("seq < %s")
            args.append(before)
        if kinds:
            ors = []
            for k in kinds:
                if k.endswith("*") or k.endswith("."):
                    ors.append("kind LIKE %s")
                    args.append(k.rstrip("*").rstrip(".") + ".%")
                else:
                    ors.append("kind = %s")
                    args.append(k)
            clauses.append("(" + " OR ".join(ors) + ")")
        if principal:
            clauses.append("principal = %s")
            args.append(principal)
        if text:
            clauses.append("position(%s::bytea in payload) > 0")
            args.append(text.encode())
        order = "DESC" if newest_first else "ASC"
        sql = (
            f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(clauses)} "
            f"ORDER BY seq {order} LIMIT %s"
        )
        return [EventRecord(*row) for row in self._all(sql, [*args, limit])]

    def operation(self, principal: str, nonce: str) -> OperationRow | None:
        self.flush()
        row = self._first(
            f"SELECT {_OPERATION_COLUMNS} FROM operations WHERE principal = %s AND nonce = %s",
            (principal, nonce),
        )
        return OperationRow(*row) if row else None

    def operation_at(self, first_seq: int) -> OperationRow | None:
        self.flush()
        row = self._first(
            f"SELECT {_OPERATION_COLUMNS} FROM operations WHERE first_seq = %s", (first_seq,)
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
            f"SELECT {_OPERATION_COLUMNS} FROM operations WHERE (principal, nonce) IN"
            " (SELECT * FROM unnest(%s::text[], %s::text[]))",
            ([k[0] for k in keys], [k[1] for k in keys]),
        )
        return {(row[2], row[0]): OperationRow(*row) for row in rows}

    def operations(self) -> Iterator[OperationRow]:
        """Every recorded operation: applied ones in log order, then refusals."""
        self.flush()
        rows = self._all(
            f"SELECT {_OPERATION_COLUMNS} FROM operations ORDER BY first_seq NULLS LAST, recorded"
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

    # -- the server -------------------------------------------------------------------

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
            while batch := cur.fetchmany(_PAGE):
                rows += len(batch)
        return rows


def drop_log(url: str, schema: str) -> None:
    """Remove a whole log: its schema and everything in it (scratch logs of benches)."""
    psycopg = _psycopg()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
