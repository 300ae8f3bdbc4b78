"""Compiled modules on disk, authenticated with HMAC-SHA256.

file = MAGIC | u32 meta length | meta | HMAC-SHA256(key, MAGIC|len|meta|payload) | payload
meta = "sha256\nwasmtime version\nconfig string"; the file name is sha256(meta).
A serialized module is native code: a file whose header, meta or MAC does not match
is ignored (and overwritten with a freshly compiled module), never loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import pathlib
import struct
import tempfile
from typing import Any

_CACHE_MAGIC = b"TOKA-CWASM\x00\x01"
_MAC_LEN = 32
_MAX_CACHE_FILE = 512 * 1024 * 1024

CacheKey = tuple[str, str, str]  # (module sha256, wasmtime version, engine config)


def compiled_key(path: pathlib.Path) -> CacheKey | None:
    """The key a cache file claims in its header (unauthenticated), or None if it has none.

    For housekeeping only (``toka gc``): loading checks the MAC, this does not."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_CACHE_MAGIC) + 4)
            if len(head) < len(_CACHE_MAGIC) + 4 or not head.startswith(_CACHE_MAGIC):
                return None
            (length,) = struct.unpack(">I", head[len(_CACHE_MAGIC) :])
            meta = fh.read(min(length, 4096)).decode("utf-8", "replace").split("\n")
    except OSError:
        return None
    if len(meta) != 3:
        return None
    return (meta[0], meta[1], meta[2])


class CompiledModuleCache:
    """Serialized modules under ``directory``, each MAC'd with ``key``.

    ``stats`` (shared with the sandbox) counts ``disk_hits`` and ``disk_rejected``."""

    def __init__(self, directory: pathlib.Path, key: bytes, stats: dict[str, int]) -> None:
        self.directory = directory
        self._key = key
        self.stats = stats

    @staticmethod
    def _meta(key: CacheKey) -> bytes:
        return "\n".join(key).encode()

    def path(self, key: CacheKey) -> pathlib.Path:
        return self.directory / (hashlib.sha256(self._meta(key)).hexdigest() + ".cwasm")

    def _mac(self, head: bytes, payload: bytes) -> bytes:
        mac = hmac.new(self._key, head, hashlib.sha256)
        mac.update(payload)
        return mac.digest()

    def _head(self, key: CacheKey) -> bytes:
        meta = self._meta(key)
        return _CACHE_MAGIC + struct.pack(">I", len(meta)) + meta

    def load(self, engine: Any, key: CacheKey) -> Any:
        """The cached ``wasmtime.Module``, or None when absent or not authentic."""
        try:
            with open(self.path(key), "rb") as fh:
                blob = fh.read(_MAX_CACHE_FILE + 1)
        except OSError:
            return None
        head = self._head(key)
        if (
            len(blob) > _MAX_CACHE_FILE
            or len(blob) < len(head) + _MAC_LEN
            or not blob.startswith(head)
        ):
            self.stats["disk_rejected"] += 1
            return None
        mac = blob[len(head) : len(head) + _MAC_LEN]
        payload = blob[len(head) + _MAC_LEN :]
        if not hmac.compare_digest(mac, self._mac(head, payload)):
            self.stats["disk_rejected"] += 1
            return None
        import wasmtime

        try:
            # Deserialize the very bytes whose MAC was checked (never re-read the file).
            module = wasmtime.Module.deserialize(engine, payload)
        except wasmtime.WasmtimeError:
            self.stats["disk_rejected"] += 1
            return None
        self.stats["disk_hits"] += 1
        return module

    def store(self, key: CacheKey, module: Any) -> None:
        """Write ``module`` atomically; a failure is ignored (the cache is an optimisation)."""
        try:
            payload = bytes(module.serialize())
            head = self._head(key)
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".cwasm")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(head)
                    fh.write(self._mac(head, payload))
                    fh.write(payload)
                os.replace(tmp, self.path(key))
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError:
            pass
