"""``toka bench tool``: what one tool call costs, in the sandbox and through the log.

Besides a no-op WASM tool, three calls with an effect, each the full path (signed,
checked, intent logged, performed, blobs stored, outcome logged): ``fs-read`` of a
1 MiB file on a mount, ``http-fetch`` of a small body from a local server, and an
imported MCP tool (``mcp_echo``, over stdio; its definition checked against the pin
before every call) next to the same call made with the SDK's own client, raw.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
            tools.register_builtins(operator)
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
            fs_read = _bench_fs_read(rt, root, calls, warmup)
            http_fetch = _bench_http_fetch(rt, calls, warmup)
            mcp = _bench_mcp(rt, calls, warmup)
    return {
        "tool": "noop",
        **sandbox,
        "invocation": {**invocation, "durability": used},
        "fs_read_1mib": {**fs_read, "durability": used},
        "http_fetch": {**http_fetch, "durability": used},
        "mcp": mcp if "skipped" in mcp else {**mcp, "durability": used},
    }


def _invoker(rt: Runtime, tool: str, args: Any) -> Any:
    runner = tools.runner_for(rt)
    client = Client(rt)

    def invoke() -> None:
        result = runner.invoke(client.sign(ops.InvokeTool(tool, args)))
        assert result.ok, result.error

    return invoke


def _bench_fs_read(rt: Runtime, root: Path, calls: int, warmup: int) -> dict[str, Any]:
    mount = root / "mount"
    mount.mkdir()
    (mount / "one-mib.bin").write_bytes(os.urandom(1024 * 1024))
    Client(rt).submit(ops.AddMount("bench", str(mount.resolve()), "ro"))
    args = {"mount": "bench", "path": "one-mib.bin"}
    return measure(_invoker(rt, "fs-read", args), calls, warmup)


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = b'{"status": "green"}'

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def _local_server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def _bench_http_fetch(rt: Runtime, calls: int, warmup: int) -> dict[str, Any]:
    with _local_server() as port:
        Client(rt).submit(ops.AllowHost("127.0.0.1", port))
        args = {"url": f"http://127.0.0.1:{port}/status"}
        return measure(_invoker(rt, "http-fetch", args), calls, warmup)


def _bench_mcp(rt: Runtime, calls: int, warmup: int) -> dict[str, Any]:
    """An imported MCP tool through Toka, and the raw SDK call to the same server."""
    import sys

    from toka.core.errors import MissingExtra
    from toka.core.tools.mcp import sdk
    from toka.core.tools.mcp.importing import import_tools

    try:
        sdk.require()
    except MissingExtra as exc:
        return {"skipped": exc.message}
    command = [sys.executable, "-m", "toka.core.bench.mcp_echo"]
    operator = Client(rt)
    operator.submit(ops.RegisterMcpServer("bench", "stdio", command=command))
    import_tools(operator, "bench", ["echo"], side_effect="read_only")
    args = {"text": "ping"}
    through_toka = measure(_invoker(rt, "bench.echo", args), calls, warmup)
    return {"toka": through_toka, "raw_sdk": _raw_sdk(command, args, calls, warmup)}


def _raw_sdk(command: list[str], args: dict[str, Any], calls: int, warmup: int) -> dict[str, Any]:
    from anyio.from_thread import start_blocking_portal
    from mcp import Client as McpClient
    from mcp import StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=command[0], args=command[1:])
    with open(os.devnull, "w") as quiet, start_blocking_portal() as portal:
        transport = stdio_client(params, errlog=quiet)
        with portal.wrap_async_context_manager(McpClient(transport, cache=None)) as client:

            def call() -> None:
                result = portal.call(client.call_tool, "echo", args)
                assert not result.is_error

            return measure(call, calls, warmup)
