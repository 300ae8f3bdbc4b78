"""The guest's stdio: stdin fed from memory, stdout and stderr into capped in-memory sinks.

Also the ``poll_oneoff`` stub: a guest may not block the host thread in a sleep the
epoch deadline cannot interrupt.
"""

from __future__ import annotations

import errno
import itertools
from typing import Any

_WASI_ENOSYS = 52


class Capture:
    """In-memory sink for a WASI output stream that never stores more than ``cap`` bytes."""

    __slots__ = ("cap", "chunks", "refuse_overflow", "stored", "total")

    def __init__(self, cap: int, refuse_overflow: bool) -> None:
        self.cap = cap
        self.chunks: list[bytes] = []
        self.stored = 0
        self.total = 0
        self.refuse_overflow = refuse_overflow

    def write(self, data: bytes) -> int:
        n = len(data)
        self.total += n
        room = self.cap - self.stored
        if room > 0:
            piece = data if n <= room else data[:room]
            self.chunks.append(piece)
            self.stored += len(piece)
        if self.refuse_overflow and self.total > self.cap:
            # Tell the guest its write failed; a well-behaved program stops here,
            # a hostile one keeps looping until fuel or the deadline stops it.
            return -errno.EFBIG
        return n

    def getvalue(self) -> bytes:
        return b"".join(self.chunks)


def set_stdin(wasi: Any, data: bytes) -> None:
    """Feed ``data`` to the guest's stdin from memory.

    wasmtime-py only exposes ``stdin_file``; the C API's
    ``wasi_config_set_stdin_bytes`` (which takes ownership of the vector) is
    used through the bundled ctypes bindings, with a temp-file fallback.
    """
    from wasmtime import _ffi as ffi

    setter = getattr(ffi, "wasi_config_set_stdin_bytes", None)
    if setter is not None:
        import ctypes

        vec = ffi.bytes_to_capi(data)
        setter(wasi.ptr(), ctypes.byref(vec))
        return
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="toka-stdin-") as fh:  # pragma: no cover
        fh.write(data)
        fh.flush()
        wasi.stdin_file = fh.name  # opened immediately by wasmtime


# -- guest stdout/stderr --------------------------------------------------------
#
# wasmtime invokes custom output callbacks on its tokio worker threads, and
# drops the stream (calling the finalizer) asynchronously after the Store is
# gone. A Python finalizer running on a foreign thread while the interpreter
# shuts down makes CPython kill that thread mid-Rust-frame, which aborts the
# process. So the streams are wired with our own C callback and *no*
# finalizer: the callback only runs while the guest is blocked in fd_write,
# and the sink registry entry is removed by ``run`` itself.

SINKS: dict[int, Capture] = {}

_sink_ids = itertools.count(1)

_sink_callback: Any = None

_null_finalizer: Any = None


def poll_oneoff_enosys(*_args: Any) -> int:
    return _WASI_ENOSYS


def _sink_write(data: int | None, ptr: Any, size: int) -> int:
    try:
        sink = SINKS.get(data or 0)
        if sink is None:
            return -errno.EIO
        import ctypes

        return sink.write(ctypes.string_at(ptr, size) if size else b"")
    except BaseException:  # never let an exception unwind into Rust
        return -errno.EIO


def attach_sink(wasi: Any, fd: int, sink: Capture) -> int:
    """Route the guest's ``fd`` (1 or 2) into ``sink``; returns the registry id."""
    global _sink_callback, _null_finalizer
    from wasmtime import _ffi as ffi

    setter = getattr(
        ffi, "wasi_config_set_stdout_custom" if fd == 1 else "wasi_config_set_stderr_custom", None
    )
    sink_id = next(_sink_ids)
    SINKS[sink_id] = sink
    if setter is None:  # pragma: no cover - fall back to the public API
        if fd == 1:
            wasi.stdout_custom = sink.write
        else:
            wasi.stderr_custom = sink.write
        return sink_id
    if _sink_callback is None:
        import ctypes

        callback_type = ctypes.CFUNCTYPE(
            ctypes.c_ssize_t, ctypes.c_void_p, ctypes.POINTER(ctypes.c_ubyte), ctypes.c_size_t
        )
        _null_finalizer = ctypes.CFUNCTYPE(None, ctypes.c_void_p)()  # NULL function pointer
        _sink_callback = callback_type(_sink_write)
    setter(wasi.ptr(), _sink_callback, sink_id, _null_finalizer)
    return sink_id
