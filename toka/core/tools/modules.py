"""WASM modules stored content-addressed under the home (``HOME/blobs/<sha256>.wasm``)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from toka.core.log import shared_blobs


def module_path(home_blobs: Path, sha256: str) -> Path:
    return home_blobs / f"{sha256}.wasm"


def store_module(blobs: Path, wasm: bytes, sha256: str) -> Path:
    """Write the module content-addressed (atomically, 0600); a good copy is left alone."""
    path = module_path(blobs, sha256)
    try:
        if hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
            return path
    except FileNotFoundError:
        pass
    blobs.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_synced(path, wasm)
    shared_blobs.put(blobs, sha256, wasm)
    return path


def read_module(blobs: Path, sha256: str) -> bytes:
    """The module's bytes from the home, else (a shared log) from the log's database,
    then cached in the home. Raises FileNotFoundError if neither has it; the caller
    checks the hash of what the home had."""
    path = module_path(blobs, sha256)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        wasm = shared_blobs.fetch(blobs, sha256)
        if wasm is None:
            raise
        blobs.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_synced(path, wasm)
        return wasm


def write_synced(path: Path, data: bytes) -> None:
    """Write ``path`` (0600) through a temporary file beside it (``.tmp-*``, which `toka
    gc` takes for a leftover of an interrupted write), synced before it is renamed."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def blobs_lock(blobs: Path, *, exclusive: bool) -> Iterator[None]:
    """The lock between storing modules (shared) and collecting them (exclusive)."""
    blobs.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(blobs / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
