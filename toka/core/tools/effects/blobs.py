"""Content-addressed blobs: the bytes a call read, wrote or fetched, named by sha256.

``HOME/blobs/<sha256>`` (0600, in the owner-only blobs directory) holds what an effect
record names by hash, so the hash chain covers the bytes: ``toka verify --blobs``
hashes each one again. A blob is written (and synced) before the event naming it is
committed; an existing good copy is left alone. WASM modules share the directory as
``<sha256>.wasm``.

A recorded output names its content as ``{"$blob": SHA256, "encoding": "utf-8" |
"base64"}`` instead of holding it: ``present`` puts the content back for callers, so
the log keeps hashes and the blob store keeps bytes, once.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from toka.core.errors import IntegrityFailure
from toka.core.log import shared_blobs
from toka.core.tools.modules import blobs_lock, write_synced

SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")


def blob_path(blobs: Path, sha256: str) -> Path:
    if not SHA256_RE.match(sha256):
        raise ValueError(f"not a sha256: {sha256!r}")
    return blobs / sha256


class _Recent:
    """Blobs this process stored or checked lately, by (directory, sha256): a call's
    outcome is put back for its caller from here, without reading and hashing the
    bytes again. Bounded in bytes."""

    def __init__(self, budget: int = 16 * 1024 * 1024):
        self.budget = budget
        self._items: OrderedDict[tuple[Path, str], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, blobs: Path, sha256: str) -> bytes | None:
        with self._lock:
            data = self._items.get((blobs, sha256))
            if data is not None:
                self._items.move_to_end((blobs, sha256))
            return data

    def put(self, blobs: Path, sha256: str, data: bytes) -> None:
        if len(data) > self.budget // 4:
            return
        with self._lock:
            if (blobs, sha256) in self._items:
                return
            self._items[(blobs, sha256)] = data
            self._size += len(data)
            while self._size > self.budget:
                _, old = self._items.popitem(last=False)
                self._size -= len(old)


_recent = _Recent()


def store_blob(blobs: Path, data: bytes, sha256: str | None = None) -> str:
    """Write ``data`` as a blob (atomically, 0600, synced) before anything names it;
    returns its sha256 (``sha256``, when the caller hashed ``data`` already)."""
    sha256 = sha256 or hashlib.sha256(data).hexdigest()
    if _recent.get(blobs, sha256) is not None:
        return sha256
    path = blob_path(blobs, sha256)
    with contextlib.suppress(FileNotFoundError):
        if hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
            _recent.put(blobs, sha256, data)
            return sha256
    # Shared with other stores, exclusive of `toka gc`, which takes .tmp- files for
    # leftovers of interrupted writes.
    with blobs_lock(blobs, exclusive=False):
        write_synced(path, data)
    shared_blobs.put(blobs, sha256, data)
    _recent.put(blobs, sha256, data)
    return sha256


def read_blob(blobs: Path, sha256: str) -> bytes:
    """The blob's bytes, checked against its name; a missing or altered blob is an
    integrity failure (the log names bytes the home no longer has)."""
    recent = _recent.get(blobs, sha256)
    if recent is not None:
        return recent
    path = blob_path(blobs, sha256)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        shared = shared_blobs.fetch(blobs, sha256)  # checked against its name
        if shared is None:
            raise IntegrityFailure(f"blob {sha256} is missing from {blobs}") from None
        with blobs_lock(blobs, exclusive=False):
            write_synced(path, shared)  # cached in the home
        _recent.put(blobs, sha256, shared)
        return shared
    if hashlib.sha256(data).hexdigest() != sha256:
        raise IntegrityFailure(f"blob {sha256} does not match its sha256: it was altered")
    return data


def blob_ref(sha256: str, data: bytes) -> dict[str, str]:
    """How a recorded output names content: its blob and how to show it as text."""
    try:
        data.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        encoding = "base64"
    return {"$blob": sha256, "encoding": encoding}


def _is_ref(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"$blob", "encoding"}
        and isinstance(value["$blob"], str)
        and value["encoding"] in ("utf-8", "base64")
    )


def present(output: Any, blobs: Path) -> Any:
    """``output`` with each top-level blob reference replaced by its content (text, or
    base64 for bytes that are not UTF-8), read from the blob store and checked."""
    if not isinstance(output, dict) or not any(_is_ref(v) for v in output.values()):
        return output
    shown = dict(output)
    for key, value in output.items():
        if _is_ref(value):
            data = read_blob(blobs, value["$blob"])
            shown[key] = (
                data.decode("utf-8")
                if value["encoding"] == "utf-8"
                else base64.b64encode(data).decode("ascii")
            )
    return shown
