"""The event log's storage: one ``Store`` protocol, two backends.

The chain, the event encoding, checkpoints and snapshots are computed here, in Python,
so a log is byte-identical on either backend: ``SqliteStore`` (``log/sqlite.py``, the
embedded default, one file in the home) and ``PostgresStore`` (``log/postgres/``, one
log shared by runtimes on many hosts). ``backends.open_store`` picks one by location.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import msgspec

from toka.core.errors import InvalidInput
from toka.core.log.checkpoints import Checkpoint
from toka.core.model.events import EventRecord

GENESIS_PREV = "0" * 64
DURABILITY = ("full", "normal")
DEFAULT_SCHEMA = "toka"
SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}\Z")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

_hash_encoder = msgspec.msgpack.Encoder()


def chain_hash(
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
    """sha256 over the previous hash and every column of the row."""
    body = _hash_encoder.encode((seq, ts, kind, principal, grant, op_digest, part, payload))
    return hashlib.sha256(bytes.fromhex(prev_hash) + body).hexdigest()


def event_row(
    prev_hash: str,
    seq: int,
    ts: int,
    kind: str,
    principal: str,
    grant: str | None,
    op_digest: str,
    part: int,
    payload: bytes,
) -> tuple:
    """The events table's row for these columns, its chain hash last."""
    digest = chain_hash(prev_hash, seq, ts, kind, principal, grant, op_digest, part, payload)
    return (seq, ts, kind, principal, grant, op_digest, part, payload, prev_hash, digest)


def event_filter(
    *,
    kinds: list[str] | None,
    principal: str | None,
    after: int,
    before: int | None,
    mark: str,
) -> tuple[list[str], list]:
    """WHERE clauses (joined by AND) and their arguments for ``Store.query``'s filters
    other than text; ``mark`` is the backend's placeholder. ``kinds`` holds exact kinds
    or prefixes (``task.*``)."""
    clauses = [f"seq > {mark}"]
    args: list = [after]
    if before is not None:
        clauses.append(f"seq < {mark}")
        args.append(before)
    if kinds:
        ors = []
        for k in kinds:
            if k.endswith("*") or k.endswith("."):
                ors.append(f"kind LIKE {mark}")
                args.append(k.rstrip("*").rstrip(".") + ".%")
            else:
                ors.append(f"kind = {mark}")
                args.append(k)
        clauses.append("(" + " OR ".join(ors) + ")")
    if principal:
        clauses.append(f"principal = {mark}")
        args.append(principal)
    return clauses, args


class OperationRow(msgspec.Struct, frozen=True):
    nonce: str
    digest: str
    principal: str
    kind: str
    signed: bytes
    status: str
    first_seq: int | None
    last_seq: int | None
    error_code: str | None
    error: str | None


class RowBuffer:
    """What both backends share for writing: the rows appended inside a write
    transaction wait here, to go to the database in a few statements (before the
    writer's own reads, and at COMMIT). ``_last_seq`` is the last seq appended."""

    _events: list[tuple]
    _operations: list[tuple]
    _last_seq: int

    def _clear_rows(self) -> None:
        self._events, self._operations, self._last_seq = [], [], 0

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
        """Append the event row; returns its chain hash."""
        row = event_row(prev_hash, seq, ts, kind, principal, grant, op_digest, part, payload)
        self._events.append(row)
        self._last_seq = seq
        return row[-1]

    def append_record(self, record: EventRecord) -> None:
        """Append a row as it is, hash included (copying a log verbatim)."""
        self._events.append(msgspec.structs.astuple(record))
        self._last_seq = record.seq

    def record_operation(self, row: OperationRow) -> None:
        self._operations.append(msgspec.structs.astuple(row))


class Store(Protocol):
    """What the runtime, followers, audit, replay, snapshots and checkpoints use.

    One writer at a time across every process (and, on PostgreSQL, every host): inside
    ``write()`` the caller reads the head, appends ``head + 1`` onwards and records
    operations; everything commits together, durably, on exit, or not at all.
    """

    location: str  # where the log is, for messages (never with a password)
    durability: str
    shares_blobs: bool  # whether the store keeps blobs for other hosts

    # -- writing ----------------------------------------------------------------------
    def write(self) -> AbstractContextManager[None]: ...
    def flush(self) -> None: ...
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
    ) -> str: ...
    def append_record(self, record: EventRecord) -> None: ...
    def record_operation(self, row: OperationRow) -> None: ...
    def record_checkpoint(self, cp: Checkpoint) -> None: ...
    def save_snapshot(self, seq: int, state: bytes, keep: int) -> None: ...
    def set_meta(self, key: str, value: str) -> None: ...
    def put_blob(self, sha256: str, data: bytes) -> None: ...

    # -- reading ----------------------------------------------------------------------
    def read(self) -> AbstractContextManager[None]: ...
    def meta(self, key: str) -> str | None: ...
    def meta_items(self) -> list[tuple[str, str]]: ...
    def head(self) -> tuple[int, str, int]: ...
    def data_version(self) -> object: ...
    def records(
        self, after: int = 0, until: int | None = None, limit: int | None = None
    ) -> Iterator[EventRecord]: ...
    def row_pages(self, after: int = 0, until: int | None = None) -> Iterator[list[tuple]]: ...
    def record(self, seq: int) -> EventRecord | None: ...
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
    ) -> list[EventRecord]: ...
    def operation(self, principal: str, nonce: str) -> OperationRow | None: ...
    def operation_at(self, first_seq: int) -> OperationRow | None: ...
    def operations_by_nonce(
        self, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], OperationRow]: ...
    def operations(self) -> Iterator[OperationRow]: ...
    def recent_rejections(self, principal: str | None, since_ts: int) -> int: ...
    def count(self) -> int: ...
    def checkpoints(self, after: int = 0, until: int | None = None) -> list[Checkpoint]: ...
    def latest_checkpoint(self) -> Checkpoint | None: ...
    def last_checkpoint_seq(self) -> int: ...
    def snapshot_seqs(self, until: int | None = None) -> list[int]: ...
    def snapshot(self, seq: int) -> bytes | None: ...
    def get_blob(self, sha256: str) -> bytes | None: ...
    def blob_names(self) -> list[str]: ...
    def server_report(self) -> dict[str, Any]: ...
    def raw_scan(self) -> int: ...
    def close(self) -> None: ...


class StoreSpec(msgspec.Struct, frozen=True):
    """Where a home's log lives: its SQLite file, or a PostgreSQL database and schema."""

    url: str  # "" for the home's own SQLite file
    schema: str = DEFAULT_SCHEMA

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith(POSTGRES_SCHEMES)


def parse_location(value: str, schema: str | None = None) -> StoreSpec:
    """A store given on the command line: a ``postgresql://`` URL, ``sqlite:///PATH``,
    or the path of a SQLite file."""
    if value.startswith(POSTGRES_SCHEMES):
        return StoreSpec(value, check_schema(schema or DEFAULT_SCHEMA))
    if "://" in value and not value.startswith("sqlite://"):
        raise InvalidInput(
            f"unsupported store {value.split('://')[0]}://...: "
            "use postgresql://... or the path of a SQLite log"
        )
    if schema is not None:
        raise InvalidInput("a schema applies to a PostgreSQL store only")
    path = value.removeprefix("sqlite://") if value.startswith("sqlite://") else value
    if not path:
        raise InvalidInput("sqlite:// needs a path: sqlite:///path/to/toka.db")
    return StoreSpec(f"sqlite://{Path(path).expanduser().absolute()}")


def check_schema(schema: str) -> str:
    if not isinstance(schema, str) or not SCHEMA_RE.match(schema):
        raise InvalidInput(
            f"invalid store schema {schema!r}: a lower-case letter or _, then up to 62 of "
            "lower-case letters, digits and _"
        )
    return schema
