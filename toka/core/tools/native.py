"""The native built-in tools: code in this package, run in-process under an output cap."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec

from toka.core.kernel.tools import ToolRun
from toka.core.model.state import Tool

_json = msgspec.json.Encoder(order="sorted")


def echo(args: Any) -> Any:
    return args


NATIVE_TOOLS: dict[str, Callable[[Any], Any]] = {"echo": echo}
# The kernel accepts registrations for exactly these names (a test keeps the two equal).


def run_native(tool: Tool, args: Any) -> ToolRun:
    t0 = time.perf_counter()
    fn = NATIVE_TOOLS.get(tool.name)
    kind: str | None = None
    message = ""
    output = None
    if fn is None:
        kind, message = "trap", f"this build has no native tool {tool.name!r}"
    else:
        try:
            output = fn(args)
            size = len(_json.encode(output))
            limit = tool.limits["max_output_bytes"]
            if size > limit:
                kind, message, output = "output_too_large", f"output exceeded {limit} bytes", None
        except Exception as exc:
            kind, message, output = "trap", f"{type(exc).__name__}: {exc}", None
    wall_ms = (time.perf_counter() - t0) * 1000.0
    return ToolRun(tool.name, tool.version, kind is None, output, kind, message, None, 0, wall_ms)
