"""``toka mcp serve``: any MCP host acts as one principal, through the kernel.

The real command in a subprocess, driven by the SDK's own ``Client`` (stdio, and
streamable HTTP); tests/test_mcp_gateway.py pins the pieces in-process.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp.types
import pytest
from effects_support import Toka, leaks
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from toka.cli.main import main
from toka.core.errors import ExitCode

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 60


def child_env(home: Path) -> dict[str, str]:
    """What the server needs: the SDK passes a child only an allow-list of variables."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {"TOKA_HOME": str(home), "PYTHONPATH": path}


def serve_params(home: Path, principal: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "toka", "mcp", "serve", "--as", principal],
        env=child_env(home),
    )


def initialize(client: str) -> dict[str, Any]:
    """A 2025-era ``initialize`` request, as a host that knows no newer protocol sends it."""
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": client, "version": "0"},
        },
    }


def texts(result: mcp.types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, mcp.types.TextContent))


def by_seq(toka: Toka) -> dict[int, dict]:
    return {e["seq"]: e for e in toka.events()}


@pytest.fixture
def toka(tmp_path: Path) -> Toka:
    return Toka(tmp_path / "home")


@pytest.fixture
def scout(toka: Toka) -> str:
    """An agent that may call wordcount, and upper only with an approver's release."""
    agent = toka.agent("scout", "tool.invoke:tool/wordcount")
    toka.js("grant", "issue", agent, "tool.invoke:tool/upper", "--approve")
    return agent


# -- stdio, end to end -----------------------------------------------------------------


def test_a_stdio_session_acts_as_the_principal_under_its_grants(toka: Toka, scout: str):
    faults: list[Exception] = []

    async def record(message: Any) -> None:
        if isinstance(message, Exception):
            faults.append(message)

    async def session() -> dict[str, Any]:
        params = serve_params(toka.home, scout)
        async with Client(params, read_timeout_seconds=TIMEOUT_S, message_handler=record) as c:
            listed = (await c.list_tools()).tools
            return {
                "tools": listed,
                "ok": await c.call_tool("wordcount", {"text": "a b c"}),
                "refused": await c.call_tool("echo", {"text": "hi"}),
                "held": await c.call_tool("upper", {"text": "quiet"}),
                "invalid": await c.call_tool("wordcount", {"nope": 1}),
                "unknown": await c.call_tool("no-such-tool", {}),
                "after": [t.name for t in (await c.list_tools()).tools],
            }

    got = anyio.run(session)
    assert faults == []  # every line on stdout was an MCP frame

    # tools/list: only what the grants cover, with the registered schemas.
    assert [t.name for t in got["tools"]] == ["upper", "wordcount"]
    for t in got["tools"]:
        shown = toka.js("tool", "show", t.name)["versions"][-1]
        assert t.input_schema == shown["input_schema"]
        assert t.output_schema is None

    ok = got["ok"]
    assert ok.is_error is False
    assert ok.structured_content == {"bytes": 5, "chars": 5, "lines": 0, "words": 3}
    assert json.loads(texts(ok)) == ok.structured_content
    ok_seq = ok.meta["toka/seq"]

    refused = got["refused"]
    assert refused.is_error is True
    assert texts(refused).startswith("refused: ")
    assert "does not cover tool.invoke:tool/echo" in texts(refused)

    held = got["held"]
    approval = held.meta["toka/approval"]
    assert held.is_error is True
    assert texts(held).startswith(f"waiting for approval {approval}: this call has not run")
    assert f"toka approvals approve {approval}" in texts(held)

    assert got["invalid"].is_error is True
    assert "do not match the input schema of wordcount" in texts(got["invalid"])
    assert got["unknown"].is_error is True
    assert "no-such-tool" in texts(got["unknown"])
    assert got["after"] == ["upper", "wordcount"]  # the refusals crashed nothing

    # The log names the principal for every call: ran, refused, held.
    events = by_seq(toka)
    assert (events[ok_seq]["kind"], events[ok_seq]["principal"]) == ("tool.succeeded", scout)
    rejected = [e for e in events.values() if e["kind"] == "operation.rejected"]
    assert {e["principal"] for e in rejected} == {scout}
    assert any("tool.invoke:tool/echo" in e["payload"]["reason"] for e in rejected)
    pending = events[held.meta["toka/seq"]]
    assert (pending["kind"], pending["principal"]) == ("operation.pending", scout)
    assert pending["payload"]["approval"] == approval
    # Nothing ran for the held call; releasing it runs it once, as its author.
    assert [e for e in events.values() if e["payload"].get("tool") == "upper"] == []

    toka.ok("approvals", "approve", approval)
    ran = [e for e in toka.events("tool.succeeded") if e["payload"]["tool"] == "upper"]
    assert [(e["principal"], e["payload"]["output"]) for e in ran] == [(scout, {"text": "QUIET"})]

    assert toka.js("verify")["ok"] is True
    assert toka.js("replay", "--check")["ok"] is True


def test_stdout_carries_nothing_but_mcp_frames(toka: Toka, scout: str):
    """A 2025-era host (initialize handshake), byte by byte: every stdout line from the
    first to the last after exit is a JSON-RPC message; the notices are on stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "toka", "mcp", "serve", "--as", scout],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **child_env(toka.home)},
    )
    lines: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(b) for b in proc.stdout], daemon=True).start()
    seen: list[bytes] = []

    def ask(message: dict) -> dict:
        proc.stdin.write(json.dumps(message).encode() + b"\n")
        proc.stdin.flush()
        while True:
            line = lines.get(timeout=TIMEOUT_S)
            seen.append(line)
            answer = json.loads(line)
            if answer.get("id") == message["id"]:
                return answer

    try:
        hello = ask(initialize("test"))
        assert hello["result"]["serverInfo"]["name"] == "toka"
        proc.stdin.write(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
        listed = ask({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        assert [t["name"] for t in listed["result"]["tools"]] == ["upper", "wordcount"]
        called = ask(
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tools/call",
                "params": {"name": "wordcount", "arguments": {"text": "two words"}},
            }
        )
        assert called["result"]["structuredContent"]["words"] == 2
        proc.stdin.close()
        assert proc.wait(timeout=TIMEOUT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    while not lines.empty():
        seen.append(lines.get())
    assert seen, stderr
    for line in seen:
        mcp.types.jsonrpc_message_adapter.validate_json(line)
    assert f"serving the tools {scout} may call, over stdio" in stderr


# -- HTTP, end to end ------------------------------------------------------------------


class HttpServer:
    """``toka mcp serve --http`` in a subprocess; its URL and token read from stderr."""

    def __init__(self, home: Path, principal: str, *extra: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "toka", "mcp", "serve", "--as", principal, *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **child_env(home)},
        )
        self.stderr: list[str] = []
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            for line in self.proc.stderr:
                self.stderr.append(line)
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        self.url = self.token = ""
        while not (self.url and self.token):
            line = lines.get(timeout=TIMEOUT_S)
            if " at http://" in line:
                self.url = line.rsplit(" at ", 1)[1].strip()
            if "bearer token (this start only): " in line:
                self.token = line.rsplit(": ", 1)[1].strip()

    def post(self, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        """POST a valid ``initialize`` with ``headers``; the status and response headers."""
        body = json.dumps(initialize("probe")).encode()
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
                **headers,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return response.status, dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=TIMEOUT_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()


def test_http_needs_the_bearer_token_and_a_local_host_and_origin(toka: Toka, scout: str):
    server = HttpServer(toka.home, scout, "--http", "127.0.0.1:0")
    try:
        assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/mcp")
        port = server.url.rsplit(":", 1)[1].removesuffix("/mcp")
        auth = {"Authorization": f"Bearer {server.token}"}

        status, headers = server.post({})
        assert status == 401
        assert headers["www-authenticate"].startswith("Bearer")
        assert server.post({"Authorization": f"Bearer {server.token}x"})[0] == 401
        assert server.post({"Authorization": f"Bearer {server.token[:-1]}"})[0] == 401
        assert server.post({"Authorization": server.token})[0] == 401

        assert server.post(auth)[0] == 200  # the same request, properly sent
        assert server.post({**auth, "Host": f"evil.example:{port}"})[0] == 421
        assert server.post({**auth, "Origin": "http://evil.example"})[0] == 403
        assert server.post({**auth, "Origin": f"http://localhost:{port}"})[0] == 200

        async def session() -> tuple[list[str], mcp.types.CallToolResult]:
            async with (
                httpx2.AsyncClient(headers=auth, timeout=TIMEOUT_S) as http,
                Client(
                    streamable_http_client(server.url, http_client=http),
                    read_timeout_seconds=TIMEOUT_S,
                ) as c,
            ):
                names = [t.name for t in (await c.list_tools()).tools]
                return names, await c.call_tool("wordcount", {"text": "over http"})

        names, called = anyio.run(session)
        assert names == ["upper", "wordcount"]
        assert called.is_error is False
        assert called.structured_content["words"] == 2
    finally:
        code = server.stop()
    assert code == 0, "".join(server.stderr)
    assert server.proc.stdout.closed

    ran = by_seq(toka)[called.meta["toka/seq"]]
    assert (ran["kind"], ran["principal"]) == ("tool.succeeded", scout)
    assert leaks(toka.home, server.token.encode()) == []  # shown once on stderr, kept nowhere
    assert toka.js("verify")["ok"] is True
    assert toka.js("replay", "--check")["ok"] is True


def test_without_the_sdk_the_command_says_what_to_install(
    toka: Toka, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setitem(sys.modules, "mcp", None)  # `import mcp` now raises ImportError
    monkeypatch.setitem(sys.modules, "mcp.server", None)
    monkeypatch.setenv("TOKA_HOME", str(toka.home))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as out:
        code = main(["mcp", "serve"])
    assert code == ExitCode.FAILED
    assert "pip install 'toka[mcp]'" in err.getvalue()
    assert out.getvalue() == ""


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--json"], "--json does not apply"),
        (["--token-file", "t"], "--token-file applies only with --http"),
        (["--http", "localhost:http"], "expected [HOST:]PORT"),
    ],
)
def test_serve_refuses_options_that_do_not_apply(toka: Toka, args: list[str], complaint: str):
    done = toka("mcp", "serve", *args)
    assert done.returncode == ExitCode.INVALID
    assert complaint in done.stderr
    assert done.stdout == ""


def test_the_headless_cli_does_not_import_the_sdk(toka: Toka):
    probe = (
        "import sys; from toka.cli.main import main; rc = main(['agent', 'list', '--json']); "
        "print(sorted(m for m in sys.modules if m == 'mcp' or m.startswith('mcp.')), "
        "file=sys.stderr); raise SystemExit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env={**os.environ, **child_env(toka.home)},
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith("[]")
