"""Copying a log verbatim from one store to another (SQLite to PostgreSQL or back).

Rows are copied as they are, hashes included: nothing is recomputed, so the copy
verifies only if the original did, and a checkpoint exported before the copy still
vouches for it (``toka verify --against``). The destination must be empty; everything
is written in one transaction, so a failed copy leaves it empty.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

from toka.core.errors import InvalidInput
from toka.core.log.store import Store

# Meta rows each backend keeps for itself: its own schema version.
_OWN_META = ("schema_version", "pg_schema_version")
_FLUSH_EVERY = 5000
_SHA256_FILE = re.compile(r"^([0-9a-f]{64})(\.wasm)?\Z")
_WASM_MAGIC = b"\0asm"


def local_blobs(db_path: Path) -> Path:
    """A SQLite log's blob directory: ``blobs/`` beside it, as in a home."""
    return db_path.parent / "blobs"


def copy_log(
    src: Store,
    dst: Store,
    *,
    src_blobs: Path | None = None,
    dst_blobs: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Copy every event, operation, checkpoint, snapshot, meta row and blob of ``src``
    into the empty ``dst``. ``src_blobs``/``dst_blobs``: the blob directories of SQLite
    logs (blobs of a PostgreSQL log are in its database)."""
    if dst.head()[0] != 0:
        raise InvalidInput(
            f"the destination {dst.location} already holds a log: a copy goes into an empty one"
        )
    counts = {"events": 0, "operations": 0, "checkpoints": 0, "snapshots": 0, "blobs": 0}
    with src.read():
        total = src.head()[0]
        with dst.write():
            for record in src.records():
                dst.append_record(record)
                counts["events"] += 1
                if counts["events"] % _FLUSH_EVERY == 0:
                    dst.flush()
                    if progress is not None:
                        progress(counts["events"], total)
            for row in src.operations():
                dst.record_operation(row)
                counts["operations"] += 1
            dst.flush()
            for cp in src.checkpoints():
                dst.record_checkpoint(cp)
                counts["checkpoints"] += 1
            seqs = src.snapshot_seqs()
            for seq in reversed(seqs):
                state = src.snapshot(seq)
                if state is not None:
                    dst.save_snapshot(seq, state, keep=len(seqs))
                    counts["snapshots"] += 1
            for key, value in src.meta_items():
                if key not in _OWN_META:
                    dst.set_meta(key, value)
    counts["blobs"] = _copy_blobs(src, dst, src_blobs, dst_blobs)
    return counts


def _copy_blobs(src: Store, dst: Store, src_dir: Path | None, dst_dir: Path | None) -> int:
    """Blobs go where the destination keeps them; each is checked against its name."""
    found: dict[str, Path | None] = {}
    if src_dir is not None and src_dir.is_dir():
        for path in sorted(src_dir.iterdir()):
            match = _SHA256_FILE.match(path.name)
            if match:
                found[match.group(1)] = path
    for sha256 in src.blob_names():
        found.setdefault(sha256, None)
    copied = 0
    for sha256, path in found.items():
        data = path.read_bytes() if path is not None else src.get_blob(sha256)
        if data is None or hashlib.sha256(data).hexdigest() != sha256:
            continue  # an altered or vanished blob is `verify --blobs`'s to report, not copied
        if dst.shares_blobs:
            dst.put_blob(sha256, data)
        elif dst_dir is not None:
            _write_blob(dst_dir, sha256 + (".wasm" if data.startswith(_WASM_MAGIC) else ""), data)
        else:
            continue
        copied += 1
    return copied


def _write_blob(directory: Path, name: str, data: bytes) -> None:
    """A blob file as a home keeps it (0600 in a 0700 directory, synced); an existing one
    is left alone."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
