"""The WASM sandbox: one fresh, limited store per tool call (see ``_sandbox``).

Its parts: ``_sandbox`` (engine, compilation, running a call, classifying its end),
``_types`` (limits, failures, results), ``_guest_io`` (the guest's stdin and capped
stdout/stderr), ``_watchdog`` (the epoch ticks behind timeouts), ``_disk_cache``
(compiled modules on disk, HMAC'd). It imports nothing else from Toka, and wasmtime
only when a module is compiled.
"""

from toka.core.tools.sandbox._disk_cache import compiled_key
from toka.core.tools.sandbox._sandbox import (
    FAILURE_KINDS,
    InvalidModule,
    Limits,
    SandboxResult,
    ToolFailure,
    WasmSandbox,
    cache_key,
)

__all__ = [
    "FAILURE_KINDS",
    "InvalidModule",
    "Limits",
    "SandboxResult",
    "ToolFailure",
    "WasmSandbox",
    "cache_key",
    "compiled_key",
]
