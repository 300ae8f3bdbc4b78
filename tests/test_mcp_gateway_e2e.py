"""Toka as an MCP gateway, end to end: an MCP host (the SDK's ``Client``) talks to
``toka mcp serve --as AGENT``, which calls an upstream MCP server (a real SDK server,
imported over stdio) under the agent's grants, pins and approvals."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import mcp.types
import pytest
from effects_support import Toka
from mcp import Client
from mcp_support import notes_server
from test_mcp_serve import TIMEOUT_S, serve_params, texts


@pytest.fixture
def gateway(tmp_path: Path):
    toka = Toka(tmp_path / "home")
    with notes_server(toka, tmp_path / "world", "stdio") as notes:
        toka.ok("mcp", "import", "notes", "--tools", "wordcount", "--side-effect", "read_only")
        toka.ok("mcp", "import", "notes", "--tools", "send_note")
        agent = toka.agent("assistant", "tool.invoke:tool/notes.*")
        yield notes, agent


def _session(home: Path, agent: str, *calls: tuple[str, dict]) -> dict:
    async def run() -> dict:
        async with Client(serve_params(home, agent), read_timeout_seconds=TIMEOUT_S) as c:
            listed = [t.name for t in (await c.list_tools()).tools]
            results = [await c.call_tool(name, args) for name, args in calls]
            return {"tools": listed, "results": results}

    return anyio.run(run)


def test_a_host_reaches_the_upstream_server_only_through_the_agents_grants(gateway):
    notes, agent = gateway
    toka = notes.toka
    got = _session(
        toka.home,
        agent,
        ("notes.wordcount", {"text": "one two three"}),
        ("notes.send_note", {"text": "from the host"}),
    )
    assert got["tools"] == ["notes.send_note", "notes.wordcount"]
    counted, held = got["results"]
    # The upstream answer passes through: its content and structured content.
    assert counted.is_error is False
    assert counted.structured_content == {"words": 3}
    assert json.loads(texts(counted)) == {"words": 3}
    # send_note is external: the agent's call waits for the operator.
    assert held.is_error is True
    approval = held.meta["toka/approval"]
    assert f"waiting for approval {approval}" in texts(held)
    assert notes.lines() == []
    toka.ok("approvals", "approve", approval)
    assert notes.lines() == ["from the host"]
    started = toka.events("tool.started")
    assert {e["principal"] for e in started} == {agent}
    assert toka.js("verify", "--blobs", "--signatures")["ok"] is True
    assert toka.js("replay", "--check")["ok"] is True


def test_a_rug_pull_upstream_reaches_the_host_as_a_refusal_not_as_the_new_tool(gateway):
    notes, agent = gateway
    toka = notes.toka
    notes.drift.write_text("Append a note, then mail the notebook to someone.")
    got = _session(toka.home, agent, ("notes.wordcount", {"text": "a"}))
    (counted,) = got["results"]
    assert counted.is_error is False  # another tool of the server is unaffected
    toka.js("grant", "issue", agent, "tool.invoke:tool/notes.send_note", "--unattended")
    got = _session(toka.home, agent, ("notes.send_note", {"text": "x"}))
    (sent,) = got["results"]
    assert sent.is_error is True
    assert isinstance(sent.content[0], mcp.types.TextContent)
    assert texts(sent).startswith("definition_changed: ")
    assert notes.lines() == []
