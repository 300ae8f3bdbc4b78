"""WASM sandbox for Toka tools (wasmtime-py, WASI preview1 command ABI).

A tool is a WASI preview1 *command* module: it exports ``_start`` (and its
``memory``), reads its JSON arguments from stdin and writes one JSON value to
stdout. Exit status 0 (or returning from ``_start``) is success.

Isolation, per call:

* a fresh ``Store`` (no state survives between calls);
* fuel (``Limits.fuel``) for a deterministic compute budget, and an epoch
  deadline driven by a watchdog thread for the wall-clock ``timeout_ms``;
* ``Store.set_limits``: linear memory capped at ``memory_mb``, one instance,
  one memory, a few small tables;
* WASI with no environment, ``argv == [name]``, stdin fed from memory,
  stdout/stderr captured in memory with hard caps, no inherited host stdio, and
  no preopened directory unless the caller stages some (``preopens``: each
  read-only unless asked, since wasmtime-py 50 defaults to writable);
* only ``wasi_snapshot_preview1`` imports link; ``poll_oneoff`` is replaced
  by a stub returning ``ENOSYS`` so a guest cannot block the host thread in
  a sleep the epoch deadline cannot interrupt.

wasmtime is imported lazily: importing this module is cheap.
"""

from __future__ import annotations

import atexit
import collections
import hashlib
import hmac
import math
import pathlib
import threading
import time
import weakref
from typing import Any

import msgspec

from toka.core.tools.sandbox._disk_cache import CompiledModuleCache
from toka.core.tools.sandbox._guest_io import (
    SINKS,
    Capture,
    attach_sink,
    poll_oneoff_enosys,
    set_stdin,
)
from toka.core.tools.sandbox._types import (
    FAILURE_KINDS,
    InvalidModule,
    Limits,
    SandboxResult,
    ToolFailure,
    check_limits,
)
from toka.core.tools.sandbox._watchdog import Watchdog

__all__ = ["FAILURE_KINDS", "InvalidModule", "Limits", "SandboxResult", "ToolFailure"]

_WASI_MODULE = "wasi_snapshot_preview1"
_WASM_MAGIC = b"\x00asm"
_PAGE = 65536
_MIB = 1024 * 1024
_TICK_S = 0.010  # watchdog period: one epoch tick every 10 ms
_MAX_WASM_STACK = 512 * 1024
_TABLE_ELEMENTS = 100_000
_MAX_TABLES = 8
_MEMORY_CACHE_ENTRIES = 256
_MAX_MESSAGE = 1000

# Everything that changes the native code wasmtime produces (or how it is run)
# belongs in the config string: it keys both the in-memory and the on-disk cache.
_ENGINE_CONFIG = (
    f"toka-sandbox/1;consume_fuel=1;epoch_interruption=1;"
    f"max_wasm_stack={_MAX_WASM_STACK};shared_memory=0;poll_oneoff=enosys"
)

# Compiled modules left alive until interpreter teardown are finalized after
# wasmtime's bindings are gone (a noisy TypeError on exit); release them first.
_LIVE_SANDBOXES: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _release_live_sandboxes() -> None:
    for sandbox in list(_LIVE_SANDBOXES):
        sandbox.release()


_wasmtime_version_cache: str | None = None


_config_string_cache: str | None = None


def cache_key(sha256: str) -> tuple[str, str, str]:
    """The key module ``sha256`` is cached under by this wasmtime and engine config."""
    return (sha256, _wasmtime_version(), _config_string())


def _config_string() -> str:
    global _config_string_cache
    if _config_string_cache is None:
        import platform

        _config_string_cache = (
            f"{_ENGINE_CONFIG};machine={platform.machine()};system={platform.system()}"
        )
    return _config_string_cache


def _wasmtime_version() -> str:
    global _wasmtime_version_cache
    if _wasmtime_version_cache is None:
        from importlib import metadata

        try:
            _wasmtime_version_cache = metadata.version("wasmtime")
        except metadata.PackageNotFoundError:  # pragma: no cover - vendored copy
            _wasmtime_version_cache = "unknown"
    return _wasmtime_version_cache


def _truncate(text: str, limit: int = _MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error_reason(exc: BaseException) -> str:
    """The cause of a wasmtime error without its (possibly huge) wasm backtrace."""
    text = str(exc)
    if "Caused by:" in text:
        text = text.split("Caused by:", 1)[1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return _truncate("; ".join(lines) or type(exc).__name__)


class _Compiled:
    """A compiled module plus everything needed to instantiate it quickly."""

    __slots__ = ("has_start", "link_error", "min_memory_bytes", "module", "pre", "wasm")

    def __init__(self, module: Any, linker: Any, wasm: bytes | None) -> None:
        import wasmtime

        self.module = module
        self.wasm = wasm  # kept so identical bytes objects skip re-hashing
        self.pre = None
        self.link_error: str | None = None
        self.has_start = False
        self.min_memory_bytes = 0
        for imp in module.imports:
            if imp.module != _WASI_MODULE:
                self.link_error = f"module imports {imp.module}::{imp.name}; only {_WASI_MODULE} imports are allowed"
        for exp in module.exports:
            ty = exp.type
            if exp.name == "_start" and isinstance(ty, wasmtime.FuncType):
                self.has_start = not ty.params and not ty.results
            elif isinstance(ty, wasmtime.MemoryType):
                self.min_memory_bytes = max(self.min_memory_bytes, ty.limits.min * _PAGE)
        if self.link_error is None:
            try:
                self.pre = linker.instantiate_pre(module)
            except wasmtime.WasmtimeError as exc:
                self.link_error = f"module cannot be linked: {_error_reason(exc)}"


class WasmSandbox:
    """Runs WASI command modules under fuel, epoch, memory and output limits.

    One engine and one linker are shared by all calls; ``run`` is thread-safe.
    ``cache_dir`` enables an on-disk cache of compiled modules; entries are
    authenticated with HMAC-SHA256 under ``cache_key`` (at least 16 bytes), and
    without a key the disk cache is disabled, because a serialized module is
    native code and must never be loaded from an unauthenticated file.
    """

    def __init__(
        self, cache_dir: pathlib.Path | None = None, cache_key: bytes | None = None
    ) -> None:
        if cache_key is not None and len(cache_key) < 16:
            raise ValueError("cache_key must be at least 16 bytes")
        self.cache_dir = pathlib.Path(cache_dir) if cache_dir is not None else None
        self._lock = threading.Lock()
        self._engine: Any = None
        self._linker: Any = None
        self._watchdog: Watchdog | None = None
        self._modules: collections.OrderedDict[tuple[str, str, str], _Compiled] = (
            collections.OrderedDict()
        )
        # counters, mostly for tests and diagnostics
        self.stats = {"compiled": 0, "memory_hits": 0, "disk_hits": 0, "disk_rejected": 0}
        self._disk: CompiledModuleCache | None = None
        if self.cache_dir is not None and cache_key is not None:
            self._disk = CompiledModuleCache(self.cache_dir, bytes(cache_key), self.stats)
        _LIVE_SANDBOXES.add(self)

    def release(self) -> None:
        """Drop compiled modules and the engine now, while wasmtime's bindings are still
        loaded; a later call builds them again."""
        with self._lock:
            self._modules.clear()
            self._linker = None
            self._watchdog = None
            self._engine = None

    # -- engine ---------------------------------------------------------------

    @property
    def disk_cache_enabled(self) -> bool:
        return self._disk is not None

    def _ensure_engine(self) -> None:
        if self._engine is not None:
            return
        with self._lock:
            if self._engine is not None:
                return
            import wasmtime

            config = wasmtime.Config()
            config.consume_fuel = True
            config.epoch_interruption = True
            config.max_wasm_stack = _MAX_WASM_STACK
            # A shared memory would let `memory.atomic.wait` block the host
            # thread where no epoch check can interrupt it.
            config.shared_memory = False
            engine = wasmtime.Engine(config)

            linker = wasmtime.Linker(engine)
            linker.define_wasi()
            linker.allow_shadowing = True
            i32 = wasmtime.ValType.i32()
            linker.define_func(
                _WASI_MODULE,
                "poll_oneoff",
                wasmtime.FuncType([i32, i32, i32, i32], [i32]),
                poll_oneoff_enosys,
            )
            linker.allow_shadowing = False
            self._linker = linker
            self._watchdog = Watchdog(engine, _TICK_S)
            self._engine = engine

    # -- compilation ----------------------------------------------------------

    def _key(self, sha256: str) -> tuple[str, str, str]:
        return cache_key(sha256)

    def compile(self, wasm: bytes, sha256: str) -> Any:
        """Compile (or fetch from cache) the module; returns a ``wasmtime.Module``.

        Raises ``ValueError`` if ``sha256(wasm) != sha256`` and ``InvalidModule``
        (a ``ValueError``) if the bytes are not a valid module.
        """
        return self._compiled(wasm, sha256).module

    def _compiled(self, wasm: bytes, sha256: str) -> _Compiled:
        if not isinstance(sha256, str):
            raise TypeError("sha256 must be a hex string")
        sha256 = sha256.strip().lower()
        key = self._key(sha256)
        with self._lock:
            entry = self._modules.get(key)
            if entry is not None:
                self._modules.move_to_end(key)
        if entry is not None and entry.wasm is wasm:
            self.stats["memory_hits"] += 1
            return entry
        actual = hashlib.sha256(wasm).hexdigest()
        if not hmac.compare_digest(actual, sha256):
            raise ValueError(f"wasm sha256 mismatch: expected {sha256}, got {actual}")
        if entry is not None:
            self.stats["memory_hits"] += 1
            return entry

        if bytes(wasm[:4]) != _WASM_MAGIC:
            # wasmtime.Module() would happily parse text as WAT; only binaries are accepted.
            raise InvalidModule("not a WebAssembly binary (bad magic)")
        self._ensure_engine()
        module = self._disk.load(self._engine, key) if self._disk is not None else None
        if module is None:
            import wasmtime

            try:
                module = wasmtime.Module(self._engine, bytes(wasm))
            except wasmtime.WasmtimeError as exc:
                raise InvalidModule(f"invalid wasm module: {_error_reason(exc)}") from None
            self.stats["compiled"] += 1
            if self._disk is not None:
                self._disk.store(key, module)
        entry = _Compiled(module, self._linker, wasm if isinstance(wasm, bytes) else None)
        with self._lock:
            self._modules[key] = entry
            self._modules.move_to_end(key)
            while len(self._modules) > _MEMORY_CACHE_ENTRIES:
                self._modules.popitem(last=False)
        return entry

    # -- execution ------------------------------------------------------------

    def run(
        self,
        wasm: bytes,
        sha256: str,
        stdin: bytes,
        limits: Limits,
        *,
        name: str = "tool",
        preopens: tuple[tuple[str, str, bool], ...] = (),
    ) -> SandboxResult:
        """Run a WASI command module once in a fresh store; ``preopens`` are (host
        directory, guest path, writable) to stage, directories the caller controls.

        Raises ``ValueError`` for a sha256 mismatch or invalid limits; every
        failure of the guest itself is reported in the result.
        """
        check_limits(limits)
        t0 = time.perf_counter()
        try:
            entry = self._compiled(wasm, sha256)
        except InvalidModule as exc:
            return _failed("trap", str(exc), 0, t0)
        if entry.link_error is not None:
            return _failed("trap", entry.link_error, 0, t0)
        if not entry.has_start:
            return _failed("trap", "module does not export a `_start` function () -> ()", 0, t0)
        memory_cap = limits.memory_mb * _MIB
        if entry.min_memory_bytes > memory_cap:
            return _failed(
                "memory",
                f"initial memory of {entry.min_memory_bytes // _PAGE} pages exceeds the "
                f"{limits.memory_mb} MiB limit",
                0,
                t0,
            )
        return self._execute(entry, stdin, limits, name, memory_cap, t0, preopens)

    def _execute(
        self,
        entry: _Compiled,
        stdin: bytes,
        limits: Limits,
        name: str,
        memory_cap: int,
        t0: float,
        preopens: tuple[tuple[str, str, bool], ...],
    ) -> SandboxResult:
        import wasmtime

        store = wasmtime.Store(self._engine)
        store.set_fuel(limits.fuel)
        store.set_limits(
            memory_size=memory_cap,
            table_elements=_TABLE_ELEMENTS,
            instances=1,
            tables=_MAX_TABLES,
            memories=1,
        )
        out = Capture(limits.max_output_bytes + 1, refuse_overflow=True)
        err = Capture(limits.max_stderr_bytes, refuse_overflow=False)
        wasi = wasmtime.WasiConfig()
        wasi.argv = [name]
        for host_dir, guest_dir, writable in preopens:
            wasi.preopen_dir(host_dir, guest_dir, fs_mutable=writable)
        set_stdin(wasi, bytes(stdin))
        sink_ids = (attach_sink(wasi, 1, out), attach_sink(wasi, 2, err))
        store.set_wasi(wasi)

        ticks = max(1, math.ceil(limits.timeout_ms / (_TICK_S * 1000))) + 1
        instance = None
        exit_code: int | None = None
        trap: Exception | None = None
        watchdog = self._watchdog
        assert watchdog is not None
        watchdog.enter()
        try:
            store.set_epoch_deadline(ticks)
            instance = entry.pre.instantiate(store)
            instance.exports(store)["_start"](store)
        except wasmtime.ExitTrap as exc:
            exit_code = exc.code
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            # Drop the traceback: it references this frame, and the cycle
            # would keep the Store (and its WASI streams) alive until a GC.
            trap = exc.with_traceback(None)
        finally:
            watchdog.exit()
            for sink_id in sink_ids:
                SINKS.pop(sink_id, None)

        try:
            fuel_used = limits.fuel - store.get_fuel()
        except wasmtime.WasmtimeError:  # pragma: no cover - fuel is always enabled
            fuel_used = limits.fuel
        stderr = err.getvalue().decode("utf-8", errors="replace")

        failure = None
        if out.total > limits.max_output_bytes:
            failure = ToolFailure(
                "output_too_large",
                f"stdout exceeded {limits.max_output_bytes} bytes",
            )
        elif trap is not None:
            failure = _classify_trap(trap, store, instance, memory_cap, limits)
        elif exit_code not in (None, 0):
            failure = ToolFailure("exit", f"module exited with status {exit_code}", exit_code)
        output = None
        if failure is None:
            try:
                output = msgspec.json.decode(out.getvalue())
            except (msgspec.DecodeError, RecursionError) as exc:  # or nested thousands deep
                failure = ToolFailure("bad_output", _truncate(f"stdout is not valid JSON: {exc}"))
        wall_ms = (time.perf_counter() - t0) * 1000.0
        return SandboxResult(
            ok=failure is None,
            output=output,
            failure=failure,
            fuel_used=fuel_used,
            wall_ms=wall_ms,
            stderr=stderr,
        )


def _failed(kind: str, message: str, fuel_used: int, t0: float) -> SandboxResult:
    return SandboxResult(
        ok=False,
        output=None,
        failure=ToolFailure(kind, message),
        fuel_used=fuel_used,
        wall_ms=(time.perf_counter() - t0) * 1000.0,
        stderr="",
    )


def _classify_trap(
    exc: Exception, store: Any, instance: Any, memory_cap: int, limits: Limits
) -> ToolFailure:
    import wasmtime

    code = exc.trap_code if isinstance(exc, wasmtime.Trap) else None
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return ToolFailure("out_of_fuel", f"fuel budget of {limits.fuel} exhausted")
    if code == wasmtime.TrapCode.INTERRUPT:
        return ToolFailure("timeout", f"timed out after {limits.timeout_ms} ms")
    if code == wasmtime.TrapCode.STACK_OVERFLOW:
        return ToolFailure("trap", "wasm trap: call stack exhausted (stack overflow)")
    reason = _error_reason(exc)
    if instance is None and "exceeds memory limits" in reason:
        return ToolFailure("memory", f"memory limit of {limits.memory_mb} MiB: {reason}")
    if instance is not None and _memory_at_cap(store, instance, memory_cap):
        return ToolFailure(
            "memory",
            f"memory limit of {limits.memory_mb} MiB reached (memory.grow refused); then {reason}",
        )
    return ToolFailure("trap", reason)


def _memory_at_cap(store: Any, instance: Any, memory_cap: int) -> bool:
    """True when the guest's memory cannot grow by another page under the cap."""
    import wasmtime

    try:
        exports = instance.exports(store)
        for value in exports.values():
            if isinstance(value, wasmtime.Memory) and value.data_len(store) + _PAGE > memory_cap:
                return True
    except wasmtime.WasmtimeError:  # pragma: no cover - defensive
        return False
    return False
