"""The embedded log: an append-only, hash-chained table in one SQLite file, through APSW."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import apsw
import msgspec

from toka.core.log.checkpoints import Checkpoint
from toka.core.log.store import GENESIS_PREV, OperationRow, RowBuffer, event_filter
from toka.core.model.events import EventRecord

SCHEMA_VERSION = 3
DURABILITY = {"full": "FULL", "normal": "NORMAL"}
# Pages (4 KiB) the WAL may reach before a commit folds it into the database file.
WAL_AUTOCHECKPOINT = 4000

_OPERATIONS = """
CREATE TABLE IF NOT EXISTS {name}(
    nonce TEXT NOT NULL,
    digest TEXT NOT NULL,
    principal TEXT NOT NULL,
    kind TEXT NOT NULL,
    signed BLOB NOT NULL,
    status TEXT NOT NULL,
    first_seq INTEGER,
    last_seq INTEGER,
    error_code TEXT,
    error TEXT,
    -- A nonce is unique per principal: one principal's never blocks another's.
    PRIMARY KEY (principal, nonce)
);
"""

_SCHEMA_TEMPLATE = """
CREATE TABLE IF NOT EXISTS meta(
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events(
    seq INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    principal TEXT NOT NULL,
    grant_jti TEXT,
    op_digest TEXT NOT NULL,
    part INTEGER NOT NULL,
    payload BLOB NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_rejected ON events(principal, ts)
    WHERE kind = 'operation.rejected';
{operations}
-- The operation whose events start at a seq (what an approval holds is found this way).
-- first_seq only grows, so the index is appended to, not scattered over.
CREATE INDEX IF NOT EXISTS operations_first_seq ON operations(first_seq);
CREATE TABLE IF NOT EXISTS checkpoints(
    seq INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    head_hash TEXT NOT NULL,
    state_hash TEXT NOT NULL,
    sig TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots(
    seq INTEGER PRIMARY KEY,
    state BLOB NOT NULL
);
"""
_SCHEMA = _SCHEMA_TEMPLATE.replace("{operations}", _OPERATIONS.format(name="operations"))

_COLUMNS = "seq, ts, kind, principal, grant_jti, op_digest, part, payload, prev_hash, hash"
_OPERATION_COLUMNS = (
    "nonce, digest, principal, kind, signed, status, first_seq, last_seq, error_code, error"
)
# Rows per multi-row INSERT: a batch up to this size goes in one statement.
_MAX_ROWS_PER_INSERT = 64
# Rows per page of ``row_pages``. Measured folding 100,000 events: pages of 128 to 1024
# rows fold fastest; 16 rows cost 15% more, 4096 rows (out of the CPU's caches) 6% more.
ROW_PAGE = 256


@functools.cache
def _insert_sql(table: str, columns: str, rows: int) -> str:
    one = "(" + ",".join("?" * (columns.count(",") + 1)) + ")"
    return f"INSERT INTO {table}({columns}) VALUES " + ",".join([one] * rows)


def _insert_rows(conn: apsw.Connection, table: str, columns: str, rows: list[tuple]) -> None:
    for i in range(0, len(rows), _MAX_ROWS_PER_INSERT):
        chunk = rows[i : i + _MAX_ROWS_PER_INSERT]
        conn.execute(_insert_sql(table, columns, len(chunk)), list(itertools.chain(*chunk)))


class SqliteStore(RowBuffer):
    """One connection to a Toka log in a SQLite file. Writers go through :meth:`write`."""

    shares_blobs = False  # the home's blobs directory is the only copy

    def __init__(
        self,
        path: Path,
        durability: str = "full",
        *,
        readonly: bool = False,
        vfs: str | None = None,
    ):
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {', '.join(DURABILITY)}")
        self.path = path
        self.location = str(path)
        self.durability = durability
        if not readonly:
            # Made owner-only before SQLite opens it: SQLite gives the -wal and -shm
            # files it creates beside the database the database file's mode.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        flags = (
            apsw.SQLITE_OPEN_READONLY
            if readonly
            else (apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE)
        )
        self.conn = apsw.Connection(str(path), flags=flags, vfs=vfs)
        # Rows appended inside a write transaction wait here and go to SQLite in a few
        # multi-row INSERTs (before any read and at COMMIT): fewer calls into SQLite,
        # each of which lets go of the GIL and must win it back.
        self._clear_rows()
        self._writer: int | None = None  # the thread inside write(): only it appends
        self.conn.setbusytimeout(30_000)
        if not readonly:
            self.conn.execute("PRAGMA journal_mode=WAL")
            # FULL syncs the WAL inside every COMMIT, before other connections can see
            # the commit: what they read has reached the disk.
            self.conn.execute(f"PRAGMA synchronous={DURABILITY[durability]}")
            # Checkpoint the WAL every WAL_AUTOCHECKPOINT pages rather than SQLite's 1000:
            # the hot pages (the tables' last leaves) are rewritten by every commit, so a
            # longer WAL copies each of them once for many commits. (Checkpointing on a
            # thread of its own was measured too: its syncs of the database file slowed
            # every commit's sync of the WAL more than they saved.)
            self.conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
            self.conn.execute(_SCHEMA)
            self._migrate()

    def _migrate(self) -> None:
        """Bring a log made by an older Toka up to ``SCHEMA_VERSION``; nothing logged changes."""
        version = self.meta("schema_version")
        if version == str(SCHEMA_VERSION):
            return
        with self.write():
            version = self.meta("schema_version")
            if version is None or int(version) < 2:
                # Version 1 indexed events by operation digest: a random key, so every
                # event dirtied a page of its own. The audit now maps digests itself.
                self.conn.execute("DROP INDEX IF EXISTS events_op")
            (table,) = self.conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'operations'"
            ).fetchone()
            if "nonce TEXT PRIMARY KEY" in table:
                # Version 2 keyed operations by nonce alone, so any principal could take
                # another's nonce first. The rows are copied as they are, in their order.
                self.conn.execute(_OPERATIONS.format(name="operations_v3"))
                self.conn.execute(
                    f"INSERT INTO operations_v3({_OPERATION_COLUMNS})"
                    f" SELECT {_OPERATION_COLUMNS} FROM operations ORDER BY rowid"
                )
                self.conn.execute("DROP TABLE operations")
                self.conn.execute("ALTER TABLE operations_v3 RENAME TO operations")
                self.conn.execute(
                    "CREATE INDEX IF NOT EXISTS operations_first_seq ON operations(first_seq)"
                )
            self.set_meta("schema_version", str(SCHEMA_VERSION))

    def close(self) -> None:
        self.conn.close()

    # -- writing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        """A write transaction. ``BEGIN IMMEDIATE`` takes the write lock up front, so a
        read-then-write never hits ``SQLITE_BUSY_SNAPSHOT``."""
        self.conn.execute("BEGIN IMMEDIATE")
        self._writer = threading.get_ident()
        try:
            yield
            self.flush()
        except BaseException:
            self._clear_rows()
            self._writer = None
            self.conn.execute("ROLLBACK")
            raise
        self._writer = None
        try:
            self.conn.execute("COMMIT")
        except apsw.Error:
            # SQLite may leave the transaction open after a failed COMMIT (an I/O
            # error while syncing, say): end it, so the connection stays usable.
            if not self.conn.get_autocommit():
                self.conn.execute("ROLLBACK")
            raise

    def flush(self) -> None:
        """Insert the rows appended so far. The writer's own reads inside the transaction
        do this first; reads from other threads (sharing the connection) leave the
        writer's rows alone."""
        if self._writer != threading.get_ident():
            return
        if self._events:
            _insert_rows(self.conn, "events", _COLUMNS, self._events)
            self._events.clear()
        if self._operations:
            _insert_rows(self.conn, "operations", _OPERATION_COLUMNS, self._operations)
            self._operations.clear()

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        """A read transaction: every query inside sees one consistent snapshot of the log,
        even while other processes append."""
        self.conn.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (key, value))

    def put_blob(self, sha256: str, data: bytes) -> None:
        """Blobs stay in the home's directory: nothing to share."""

    # -- reading -------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def meta_items(self) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self.conn.execute("SELECT key, value FROM meta ORDER BY key")]

    def get_blob(self, sha256: str) -> bytes | None:
        return None

    def blob_names(self) -> list[str]:
        return []

    def head(self) -> tuple[int, str, int]:
        """(last seq, its hash, its timestamp), or (0, genesis prev, 0) when empty."""
        self.flush()
        row = self.conn.execute(
            "SELECT seq, hash, ts FROM events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return (row[0], row[1], row[2]) if row else (0, GENESIS_PREV, 0)

    def data_version(self) -> int:
        """Changes whenever another connection commits: a cheap poll for followers."""
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    def records(
        self, after: int = 0, until: int | None = None, limit: int | None = None
    ) -> Iterator[EventRecord]:
        self.flush()
        for row in self._event_rows(after, until, limit):
            yield EventRecord(*row)

    def row_pages(self, after: int = 0, until: int | None = None) -> Iterator[list[tuple]]:
        """The rows ``records`` reads, as tuples in ``EventRecord`` field order, a page of
        up to ``ROW_PAGE`` at a time: what a rebuild folds (``fold.fold_log``)."""
        self.flush()
        rows = self._event_rows(after, until, None)
        while page := list(itertools.islice(rows, ROW_PAGE)):
            yield page

    def _event_rows(self, after: int, until: int | None, limit: int | None) -> apsw.Cursor:
        sql = f"SELECT {_COLUMNS} FROM events WHERE seq > ?"
        args: list = [after]
        if until is not None:
            sql += " AND seq <= ?"
            args.append(until)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return self.conn.execute(sql, args)

    def record(self, seq: int) -> EventRecord | None:
        self.flush()
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM events WHERE seq = ?", (seq,)).fetchone()
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
            kinds=kinds, principal=principal, after=after, before=before, mark="?"
        )
        if text:
            clauses.append("instr(CAST(payload AS TEXT), ?) > 0")
            args.append(text)
        order = "DESC" if newest_first else "ASC"
        sql = (
            f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(clauses)} "
            f"ORDER BY seq {order} LIMIT ?"
        )
        args.append(limit)
        return [EventRecord(*row) for row in self.conn.execute(sql, args)]

    def operation(self, principal: str, nonce: str) -> OperationRow | None:
        """``principal``'s operation signed with ``nonce`` (nonces are unique per principal)."""
        self.flush()
        row = self.conn.execute(
            f"SELECT {_OPERATION_COLUMNS} FROM operations WHERE principal = ? AND nonce = ?",
            (principal, nonce),
        ).fetchone()
        return OperationRow(*row) if row else None

    def operation_at(self, first_seq: int) -> OperationRow | None:
        """The applied operation whose events start at ``first_seq``."""
        self.flush()
        row = self.conn.execute(
            f"SELECT {_OPERATION_COLUMNS} FROM operations WHERE first_seq = ?", (first_seq,)
        ).fetchone()
        return OperationRow(*row) if row else None

    def operations_by_nonce(
        self, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], OperationRow]:
        """The recorded operations among ``keys`` (principal, nonce), in one query."""
        self.flush()
        if len(keys) <= 1:
            found = self.operation(*keys[0]) if keys else None
            return {(found.principal, found.nonce): found} if found is not None else {}
        rows = self.conn.execute(
            f"SELECT {_OPERATION_COLUMNS} FROM operations WHERE (principal, nonce) IN"
            " (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')"
            " FROM json_each(?))",
            (msgspec.json.encode(keys).decode(),),
        )
        return {(row[2], row[0]): OperationRow(*row) for row in rows}

    def recent_rejections(self, principal: str | None, since_ts: int) -> int:
        self.flush()
        if principal is None:
            sql = "SELECT count(*) FROM events WHERE kind = 'operation.rejected' AND ts > ?"
            return self.conn.execute(sql, (since_ts,)).fetchone()[0]
        sql = (
            "SELECT count(*) FROM events WHERE kind = 'operation.rejected'"
            " AND principal = ? AND ts > ?"
        )
        return self.conn.execute(sql, (principal, since_ts)).fetchone()[0]

    def count(self) -> int:
        self.flush()
        return self.conn.execute("SELECT count(*) FROM events").fetchone()[0]

    # -- checkpoints and snapshots -------------------------------------------------------

    def record_checkpoint(self, cp: Checkpoint) -> None:
        self.conn.execute(
            "INSERT INTO checkpoints(seq, ts, head_hash, state_hash, sig) VALUES(?,?,?,?,?)",
            (cp.seq, cp.ts, cp.head_hash, cp.state_hash, cp.sig),
        )

    def checkpoints(self, after: int = 0, until: int | None = None) -> list[Checkpoint]:
        """Stored checkpoints with ``after < seq <= until``, oldest first."""
        home_id = self.meta("home_id") or ""
        sql = "SELECT seq, ts, head_hash, state_hash, sig FROM checkpoints WHERE seq > ?"
        args: list = [after]
        if until is not None:
            sql += " AND seq <= ?"
            args.append(until)
        return [Checkpoint(home_id, *row) for row in self.conn.execute(sql + " ORDER BY seq", args)]

    def latest_checkpoint(self) -> Checkpoint | None:
        row = self.conn.execute(
            "SELECT seq, ts, head_hash, state_hash, sig FROM checkpoints ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return Checkpoint(self.meta("home_id") or "", *row) if row else None

    def last_checkpoint_seq(self) -> int:
        row = self.conn.execute("SELECT max(seq) FROM checkpoints").fetchone()
        return row[0] or 0

    def save_snapshot(self, seq: int, state: bytes, keep: int) -> None:
        """Store the state at ``seq`` and drop all but the newest ``keep`` snapshots."""
        self.conn.execute("INSERT OR REPLACE INTO snapshots(seq, state) VALUES(?, ?)", (seq, state))
        self.conn.execute(
            "DELETE FROM snapshots WHERE seq NOT IN"
            " (SELECT seq FROM snapshots ORDER BY seq DESC LIMIT ?)",
            (keep,),
        )

    def snapshot_seqs(self, until: int | None = None) -> list[int]:
        """Sequence numbers of stored snapshots at or before ``until``, newest first."""
        if until is None:
            rows = self.conn.execute("SELECT seq FROM snapshots ORDER BY seq DESC")
        else:
            rows = self.conn.execute(
                "SELECT seq FROM snapshots WHERE seq <= ? ORDER BY seq DESC", (until,)
            )
        return [r[0] for r in rows]

    def snapshot(self, seq: int) -> bytes | None:
        row = self.conn.execute("SELECT state FROM snapshots WHERE seq = ?", (seq,)).fetchone()
        return row[0] if row else None

    # -- operations ----------------------------------------------------------------------

    def operations(self) -> Iterator[OperationRow]:
        """Every recorded operation: applied ones in log order, then refusals."""
        self.flush()
        yield from (
            OperationRow(*row)
            for row in self.conn.execute(
                "SELECT nonce, digest, principal, kind, signed, status, first_seq, last_seq,"
                " error_code, error FROM operations"
                " ORDER BY first_seq IS NULL, first_seq, rowid"
            )
        )

    def server_report(self) -> dict:
        """What `toka store check` shows for a SQLite log."""
        (journal,) = self.conn.execute("PRAGMA journal_mode").fetchone()
        (sync,) = self.conn.execute("PRAGMA synchronous").fetchone()
        return {
            "backend": "sqlite",
            "location": self.location,
            "server_version": f"SQLite {apsw.sqlite_lib_version()}",
            "settings": {
                "journal_mode": journal,
                "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(sync, sync),
                "bytes": self.path.stat().st_size,
            },
            "writer_lock": [],
        }

    def raw_scan(self) -> int:
        """Rows of a plain ``SELECT *`` over the events, in order (the bench's yardstick)."""
        rows = 0
        for _ in self.conn.execute("SELECT * FROM events ORDER BY seq"):
            rows += 1
        return rows
