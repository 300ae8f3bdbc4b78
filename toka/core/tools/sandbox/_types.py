"""The sandbox's vocabulary: limits, failures, results (no wasmtime here)."""

from __future__ import annotations

import msgspec

FAILURE_KINDS = frozenset(
    {"timeout", "out_of_fuel", "memory", "trap", "exit", "bad_output", "output_too_large"}
)


class Limits(msgspec.Struct, frozen=True):
    fuel: int = 100_000_000
    memory_mb: int = 16
    timeout_ms: int = 1000
    max_output_bytes: int = 65536
    max_stderr_bytes: int = 4096  # stderr captured and truncated to this


class ToolFailure(msgspec.Struct, frozen=True):
    # one of FAILURE_KINDS
    kind: str
    message: str
    exit_code: int | None = None


class SandboxResult(msgspec.Struct, frozen=True):
    """Outcome of one call.

    ``fuel_used`` is exact for successful calls, exits and ``out_of_fuel``. When
    the guest traps for another reason (timeout, trap, memory) wasmtime may not
    have written back the fuel consumed since the guest's last call out of wasm,
    so it is then only a lower bound (often 0 for a tight loop that timed out).
    ``wall_ms`` covers the whole ``run`` call, including a first compilation.
    """

    ok: bool
    output: object | None  # the decoded JSON the module wrote to stdout, when ok
    failure: ToolFailure | None
    fuel_used: int
    wall_ms: float
    stderr: str  # truncated to max_stderr_bytes, decoded with errors="replace"


class InvalidModule(ValueError):
    """The bytes are not a valid WebAssembly module for this engine."""


def check_limits(limits: Limits) -> None:
    if not isinstance(limits, Limits):
        raise TypeError("limits must be a toka.core.tools.sandbox.Limits")
    if limits.fuel < 0 or limits.fuel >= 2**64:
        raise ValueError("limits.fuel must be in [0, 2**64)")
    if limits.memory_mb <= 0:
        raise ValueError("limits.memory_mb must be positive")
    if limits.timeout_ms <= 0:
        raise ValueError("limits.timeout_ms must be positive")
    if limits.max_output_bytes < 0 or limits.max_stderr_bytes < 0:
        raise ValueError("output limits must be non-negative")
