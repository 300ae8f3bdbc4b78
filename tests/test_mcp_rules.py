"""The kernel's rules for MCP servers and the tools imported from them, driven through
the runtime (no server is reached: these are the checks before anything is sent)."""

from __future__ import annotations

import re

import msgspec
import pytest

from toka.core.errors import InvalidOperation, NotCovered, NotFound
from toka.core.kernel import effects
from toka.core.model import events as ev
from toka.core.model import mcp, ops
from toka.core.model.state import McpBinding
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.tools import calls

SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
DEFINITION = {"name": "send", "description": "Send a note.", "inputSchema": SCHEMA}


def server(name: str = "notes", **fields) -> ops.RegisterMcpServer:
    return ops.RegisterMcpServer(name, **({"transport": "stdio", "command": ["notes"]} | fields))


def imported(
    definition: dict = DEFINITION, *, name: str = "notes.send", side_effect: str = "external", **kw
) -> ops.RegisterTool:
    binding = kw.pop("binding", None) or McpBinding(
        "notes", definition["name"], mcp.definition_pin(definition), definition
    )
    fields = {
        "description": "Send a note.",
        "kind": "mcp",
        "module_sha256": None,
        "capabilities": [],
        "limits": {"timeout_ms": 1000, "max_output_bytes": 1000},
        "input_schema": definition.get("inputSchema"),
        "side_effect": side_effect,
        "mcp": binding,
    } | kw
    return ops.RegisterTool(name, "1.0.0", **fields)


@pytest.fixture
def rt(runtime: Runtime, operator: Client) -> Runtime:
    operator.submit(server())
    return runtime


def agent_with(rt: Runtime, *caps: str, unattended: bool = False) -> Client:
    agent, _ = Client(rt).spawn_agent("worker")
    Client(rt).grant(agent, list(caps), 3600, unattended=unattended)
    return Client(rt, agent)


def test_the_pin_is_the_sha256_of_the_pinned_fields_only():
    with_extra = DEFINITION | {"_meta": {"x": 1}, "execution": None}
    assert mcp.definition_pin(with_extra) == mcp.definition_pin(DEFINITION)
    assert mcp.definition_pin(DEFINITION | {"description": "Send a note!"}) != mcp.definition_pin(
        DEFINITION
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"transport": "ssh"}, "not one of stdio, http"),
        ({"command": []}, "needs 1 to 256 words"),
        ({"url": "http://x/mcp"}, "a command, not a URL"),
        ({"env": {"1BAD": "x"}}, "not a valid name"),
        ({"env_secrets": {"TOKEN": "../etc"}}, "not a secret name"),
        ({"env": {"T": "a"}, "env_secrets": {"T": "s"}}, "set both plainly and secretly"),
        ({"transport": "http", "command": None, "url": "ftp://x/"}, "url:"),
        (
            {"transport": "http", "command": None, "url": "https://u:p@x.example/mcp"},
            "no credentials in the URL",
        ),
        (
            {
                "transport": "http",
                "command": None,
                "url": "https://x/",
                "header_secrets": {"Host": "s"},
            },
            "is the transport's",
        ),
    ],
)
def test_a_server_registration_is_checked(runtime, operator, fields, message):
    with pytest.raises(InvalidOperation, match=message):
        operator.submit(server("other", **fields))
    assert "other" not in runtime.state.mcp_table()


def test_only_a_holder_of_mcp_register_adds_or_removes_a_server(rt):
    worker = agent_with(rt, "tool.invoke:tool/*")
    with pytest.raises(NotCovered, match=re.escape("mcp.register:mcp/evil")):
        worker.submit(server("evil"))
    with pytest.raises(NotCovered, match=re.escape("mcp.register:mcp/notes")):
        worker.submit(ops.RemoveMcpServer("notes"))
    with pytest.raises(InvalidOperation, match="exists; remove it first"):
        Client(rt).submit(server())


def test_an_imported_tool_must_carry_its_own_definition_and_pin(rt, operator):
    with pytest.raises(NotFound, match="unknown MCP server 'gone'"):
        operator.submit(imported(binding=McpBinding("gone", "send", "0" * 64, DEFINITION)))
    with pytest.raises(InvalidOperation, match=re.escape("notes.send")):
        operator.submit(imported(name="notes.other"))
    forged = McpBinding(
        "notes", "send", mcp.definition_pin(DEFINITION | {"title": "t"}), DEFINITION
    )
    with pytest.raises(InvalidOperation, match="not the sha256 of the definition"):
        operator.submit(imported(binding=forged))
    with pytest.raises(InvalidOperation, match="must be the definition's inputSchema"):
        operator.submit(imported(input_schema={"type": "object"}))
    with pytest.raises(InvalidOperation, match="at least read_only"):
        operator.submit(imported(side_effect="none"))
    with pytest.raises(InvalidOperation, match="for tools imported from MCP servers"):
        limits = {"fuel": 1, "memory_mb": 1, "timeout_ms": 1, "max_output_bytes": 1}
        operator.submit(ops.RegisterTool("notes.x", "1.0.0", "x", "wasm", "0" * 64, [], limits))
    operator.submit(imported())
    assert rt.state.tools["notes.send"]["1.0.0"].binding.server == "notes"


def test_arguments_are_refused_against_the_pinned_schema(rt, operator):
    operator.submit(imported())
    with pytest.raises(InvalidOperation, match=re.escape("input schema of notes.send@1.0.0")):
        operator.submit(ops.InvokeTool("notes.send", {"text": 5}))
    assert rt.state.call_table() == {}


def test_a_server_glob_grants_every_tool_of_that_server_and_no_other(rt, operator):
    operator.submit(imported())
    operator.submit(server("other"))
    other = DEFINITION | {"name": "send"}
    binding = McpBinding("other", "send", mcp.definition_pin(other), other)
    operator.submit(imported(other, name="other.send", binding=binding))
    worker = agent_with(rt, "tool.invoke:tool/notes.*", unattended=True)
    started = worker.submit(ops.InvokeTool("notes.send", {"text": "x"})).first(ev.ToolStarted)
    assert started.caps == ["tool.invoke:tool/notes.send"]
    with pytest.raises(NotCovered, match=re.escape("tool.invoke:tool/other.send")):
        worker.submit(ops.InvokeTool("other.send", {"text": "x"}))


def test_an_agents_external_call_is_held_unless_its_grant_is_unattended(rt, operator):
    operator.submit(imported())
    attended = agent_with(rt, "tool.invoke:tool/notes.*")
    assert attended.submit(ops.InvokeTool("notes.send", {"text": "x"})).pending is not None
    unattended = agent_with(rt, "tool.invoke:tool/notes.*", unattended=True)
    assert unattended.submit(ops.InvokeTool("notes.send", {"text": "x"})).pending is None
    # The operator's own calls are never held for want of an approval.
    assert operator.submit(ops.InvokeTool("notes.send", {"text": "x"})).pending is None
    read_only = imported(DEFINITION | {"name": "peek"}, name="notes.peek", side_effect="read_only")
    operator.submit(read_only)
    assert attended.submit(ops.InvokeTool("notes.peek", {"text": "x"})).pending is None


def test_delegation_cannot_make_a_grant_unattended(rt):
    agent = agent_with(rt, "cap.grant:*", "tool.invoke:tool/*", "agent.spawn:*")
    child, _ = agent.spawn_agent("child")
    with pytest.raises(NotCovered, match="not unattended"):
        agent.submit(ops.GrantCapability(child, ["tool.invoke:tool/*"], 60, unattended=True))
    narrowed = agent.submit(ops.GrantCapability(child, ["tool.invoke:tool/*"], 60))
    assert narrowed.first(ev.CapabilityGranted).unattended is msgspec.UNSET


def test_a_call_of_a_removed_server_is_refused_before_its_intent(rt, operator):
    operator.submit(imported())
    operator.submit(ops.RemoveMcpServer("notes"))
    with pytest.raises(
        NotFound, match=re.escape("MCP server notes of tool notes.send was removed")
    ):
        operator.submit(ops.InvokeTool("notes.send", {"text": "x"}))


def test_only_a_call_not_safe_to_repeat_may_be_stated_unknown(rt, operator):
    operator.submit(
        imported(DEFINITION | {"name": "peek"}, name="notes.peek", side_effect="read_only")
    )
    call = operator.submit(ops.InvokeTool("notes.peek", {"text": "x"})).first(ev.ToolStarted).call
    lost = ops.CallOutcome(ok=False, error_kind=effects.UNKNOWN_OUTCOME, message="went away")
    with pytest.raises(InvalidOperation, match="a lost outcome is a failure"):
        rt.submit(rt.host_sign(ops.RecordOutcome(call, lost), calls.outcome_nonce(call)))
    operator.submit(imported())
    call = operator.submit(ops.InvokeTool("notes.send", {"text": "x"})).first(ev.ToolStarted).call
    rt.submit(rt.host_sign(ops.RecordOutcome(call, lost), calls.outcome_nonce(call)))
    assert rt.state.call_table()[call].status == "unknown"


def test_an_mcp_record_must_be_the_calls_own_tool_as_pinned(rt, operator):
    operator.submit(imported())
    call = operator.submit(ops.InvokeTool("notes.send", {"text": "x"})).first(ev.ToolStarted).call
    wrong = ev.McpCalled("notes", "send", "f" * 64, "0" * 64, None, None, "", 1.0)
    statement = ops.RecordOutcome(call, ops.CallOutcome(ok=True, effects=[wrong]))
    with pytest.raises(InvalidOperation, match="not its tool's, as pinned"):
        rt.submit(rt.host_sign(statement, calls.outcome_nonce(call, 9)))
    assert call in rt.state.call_table()


def test_without_the_sdk_a_call_fails_as_unavailable_and_says_how_to_install_it(
    rt, operator, monkeypatch
):
    import sys

    from toka.core import tools
    from toka.core.errors import MissingExtra
    from toka.core.tools.mcp.importing import offers

    monkeypatch.setitem(sys.modules, "mcp", None)  # what `import mcp` meets without the extra
    with pytest.raises(MissingExtra, match=re.escape("pip install 'toka[mcp]'")):
        offers(rt, "notes")
    operator.submit(imported(side_effect="read_only"))
    result = tools.invoke_as(operator, "notes.send", {"text": "x"})
    assert (result.status, result.error.kind) == ("failed", "unavailable")
    assert "pip install 'toka[mcp]'" in result.error.message
    assert rt.state.call_table() == {}
