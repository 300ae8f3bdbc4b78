"""Blobs a shared log keeps for every host.

A home keeps blobs (WASM modules, the bytes effect records name) in ``HOME/blobs``.
When its log is shared (PostgreSQL), each blob stored here is also put into the log's
database, and one missing here is fetched from it, checked against its sha256 and
cached: a tool registered on one host runs on another, and ``effects show`` there
shows what a call read or wrote. The runtime registers its store for its home's
blob directory while it is open.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from toka.core.errors import IntegrityFailure
from toka.core.log.store import Store

_shared: dict[Path, list[Store]] = {}
_lock = threading.Lock()


def share(blobs: Path, store: Store) -> None:
    if not store.shares_blobs:
        return
    with _lock:
        _shared.setdefault(blobs, []).append(store)


def unshare(blobs: Path, store: Store) -> None:
    with _lock:
        stores = _shared.get(blobs, [])
        if store in stores:
            stores.remove(store)
        if not stores:
            _shared.pop(blobs, None)


def _store_for(blobs: Path) -> Store | None:
    with _lock:
        stores = _shared.get(blobs)
        return stores[-1] if stores else None


def put(blobs: Path, sha256: str, data: bytes) -> None:
    """Keep ``data`` in the shared log too, if ``blobs`` belongs to one."""
    store = _store_for(blobs)
    if store is not None:
        store.put_blob(sha256, data)


def fetch(blobs: Path, sha256: str) -> bytes | None:
    """The blob from the shared log (None if there is none, or it lacks it); checked."""
    store = _store_for(blobs)
    if store is None:
        return None
    data = store.get_blob(sha256)
    if data is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise IntegrityFailure(
            f"blob {sha256} in the log's database does not match its sha256: it was altered"
        )
    return data
