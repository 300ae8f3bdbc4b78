"""``toka bench tool``: what one tool call costs, in the sandbox and through the log."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from toka.core import tools
from toka.core.bench.stats import measure
from toka.core.errors import InvalidInput
from toka.core.model import ops
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.runtime.home import Home
from toka.core.tools.sandbox import Limits

# A WASI command that writes `{}`: all that is measured is the sandbox and the log.
NOOP_WAT = """
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "{}")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 2))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""

NOOP_MANIFEST = """\
name = "noop"
version = "1.0.0"
description = "Writes {} and exits (benchmark)"
kind = "wasm"
module = "noop.wasm"
"""


def bench_tool(calls: int, warmup: int, durability: str | None = None) -> dict[str, Any]:
    """Time a raw sandbox call and a full signed, checked, logged invocation of a no-op tool."""
    import wasmtime

    if calls < 1 or warmup < 0:
        raise InvalidInput("--calls must be at least 1 and --warmup at least 0")
    with tempfile.TemporaryDirectory(prefix="toka-bench-") as scratch:
        root = Path(scratch)
        wasm = bytes(wasmtime.wat2wasm(NOOP_WAT))
        (root / "noop.wasm").write_bytes(wasm)
        (root / "noop.toml").write_text(NOOP_MANIFEST)
        home = Home(root / "home")
        home.init()
        with Runtime(home, durability=durability) as rt:
            operator = Client(rt)
            tools.register(operator, root / "noop.toml")
            runner = tools.runner_for(rt)
            sha = hashlib.sha256(wasm).hexdigest()
            limits = Limits()
            sandbox = measure(
                lambda: runner.sandbox.run(wasm, sha, b"{}", limits, name="noop"),
                calls,
                warmup,
            )
            client = Client(rt, token=rt.token_for("operator", ["tool.invoke:tool/noop"]))

            def invoke() -> None:
                result = runner.invoke(client.sign(ops.InvokeTool("noop", {})))
                assert result.ok, result.error

            invocation = measure(invoke, calls, warmup)
            used = rt.durability
    return {
        "tool": "noop",
        **sandbox,
        "invocation": {**invocation, "durability": used},
    }
