"""The pieces of ``toka mcp serve``, in-process: what a principal is offered, how a
call is answered, the HTTP bearer token and gate, the bind address and its checks.
(tests/test_mcp_serve.py drives the real command end to end.)"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
import wasmtime

from toka.cli.mcp_serve_cmd import parse_address
from toka.core import tools
from toka.core.errors import InvalidInput
from toka.core.gateway import Gateway
from toka.core.gateway.bearer import MIN_TOKEN_CHARS, BearerGate, bearer_token
from toka.core.gateway.server import is_loopback, transport_security
from toka.core.model import events as ev
from toka.core.model.keys import thumbprint
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.runtime.home import Home

WASM = Path(__file__).parent / "wasm"


@pytest.fixture
def runtime_with_tools(runtime: Runtime, operator: Client) -> Runtime:
    tools.register_builtins(operator)
    return runtime


def spawn_with(runtime: Runtime, *grants: list[str]) -> tuple[str, list[str]]:
    """A new agent holding one grant per list of capabilities; its id and grant ids."""
    operator = Client(runtime)
    agent, _ = operator.spawn_agent("gw", "manual")
    jtis = [operator.grant(agent, caps, 3600).first(ev.CapabilityGranted).jti for caps in grants]
    return agent, jtis


def offered(runtime: Runtime, agent: str, token: str | None = None) -> list[str]:
    return [t.name for t in Gateway(Client(runtime, agent, token=token)).offered()]


def wasm_tool(runtime: Runtime, directory: Path, wat: str, name: str, extra: str = "") -> None:
    """Register tests/wasm/WAT.wat as tool ``name`` (manifest lines ``extra``)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.wasm").write_bytes(wasmtime.wat2wasm((WASM / f"{wat}.wat").read_text()))
    manifest = directory / f"{name}.toml"
    manifest.write_text(
        f'name = "{name}"\nversion = "1.0.0"\ndescription = "from {wat}.wat"\n'
        f'kind = "wasm"\nmodule = "{name}.wasm"\n{extra}\n'
    )
    tools.register(Client(runtime), manifest)


def test_a_tool_is_offered_only_when_one_grant_covers_all_it_needs(
    runtime_with_tools: Runtime, tmp_path: Path
):
    rt = runtime_with_tools
    wasm_tool(rt, tmp_path, "echo", "guarded", 'capabilities = ["fs.read:mount/docs/**"]')
    invoke_only, _ = spawn_with(rt, ["tool.invoke:tool/guarded"])
    split, _ = spawn_with(rt, ["tool.invoke:tool/guarded"], ["fs.read:mount/docs/**"])
    both, _ = spawn_with(rt, ["tool.invoke:tool/guarded", "fs.read:mount/**"])
    assert offered(rt, invoke_only) == []
    assert offered(rt, split) == []  # a call presents one token
    assert offered(rt, both) == ["guarded"]
    assert "guarded" in offered(rt, "operator")


def test_a_tool_without_a_schema_takes_any_object(runtime_with_tools: Runtime, tmp_path: Path):
    wasm_tool(runtime_with_tools, tmp_path, "echo", "loose")
    [loose] = [t for t in Gateway(Client(runtime_with_tools)).offered() if t.name == "loose"]
    assert loose.input_schema == {"type": "object"}


def test_the_list_follows_grants_issued_and_revoked_by_another_process(
    runtime_with_tools: Runtime, home: Home
):
    agent, [first] = spawn_with(runtime_with_tools, ["tool.invoke:tool/upper"])
    served = Gateway(Client(runtime_with_tools, agent))
    assert [t.name for t in served.offered()] == ["upper"]
    with Runtime(home) as elsewhere:
        Client(elsewhere).grant(agent, ["tool.invoke:tool/stats"], 3600)
        assert [t.name for t in served.offered()] == ["stats", "upper"]
        Client(elsewhere).revoke(first)
    assert [t.name for t in served.offered()] == ["stats"]
    refused = served.call("upper", {"text": "x"})
    assert refused.is_error and refused.text.startswith("refused: ")
    assert refused.meta == {"toka/refused": "not_covered"}


def test_a_fixed_token_offers_only_what_that_token_covers(runtime_with_tools: Runtime):
    rt = runtime_with_tools
    agent, [wordcount, _] = spawn_with(rt, ["tool.invoke:tool/wordcount"], ["tool.invoke:*"])
    assert "echo" in offered(rt, agent)
    token = rt.authority.mint(rt.state.grants[wordcount], thumbprint(rt.state.principals[agent]))
    assert offered(rt, agent, token) == ["wordcount"]
    assert offered(rt, agent, "not-a-token") == []


def test_an_unknown_principal_is_refused_before_serving(runtime_with_tools: Runtime):
    with pytest.raises(InvalidInput, match="unknown principal 'ag-nobody'"):
        Gateway(Client(runtime_with_tools, "ag-nobody")).check()


def test_a_tool_that_fails_answers_with_its_error_kind(runtime_with_tools: Runtime, tmp_path: Path):
    wasm_tool(runtime_with_tools, tmp_path, "exit7", "seven")
    failed = Gateway(Client(runtime_with_tools)).call("seven", {})
    assert failed.is_error is True and failed.structured is None
    assert failed.meta["toka/status"] == "failed"
    recorded = runtime_with_tools.log.record(failed.meta["toka/seq"])
    payload = recorded.data()
    assert recorded.kind == "tool.failed"
    assert failed.text == f"{payload.error_kind}: {payload.message}"


def test_the_bearer_token_comes_from_a_file_the_environment_or_chance(tmp_path: Path):
    path = tmp_path / "token"
    path.write_text("f" * MIN_TOKEN_CHARS + "\n")
    assert bearer_token(str(path), "e" * MIN_TOKEN_CHARS).value == "f" * MIN_TOKEN_CHARS
    from_env = bearer_token(None, "e" * MIN_TOKEN_CHARS)
    assert (from_env.value, from_env.generated) == ("e" * MIN_TOKEN_CHARS, False)
    one, two = bearer_token(None, None), bearer_token(None, "")
    assert one.generated and two.generated and one.value != two.value
    assert len(one.value) >= MIN_TOKEN_CHARS
    with pytest.raises(InvalidInput, match="at least"):
        bearer_token(None, "short")
    with pytest.raises(InvalidInput, match="cannot read"):
        bearer_token(str(tmp_path / "missing"), None)


def test_the_bearer_gate_lets_through_only_the_exact_token():
    reached: list[str] = []

    async def app(scope, receive, send) -> None:
        reached.append(scope["type"])

    gate = BearerGate(app, "s" * 20)
    assert gate.allows(b"Bearer " + b"s" * 20)
    assert gate.allows(b"bearer " + b"s" * 20)
    for wrong in (None, b"", b"s" * 20, b"Basic " + b"s" * 20, b"Bearer " + b"s" * 19):
        assert not gate.allows(wrong)

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def drive() -> None:
        await gate({"type": "http", "headers": []}, None, send)
        await gate({"type": "lifespan"}, None, send)
        headers = [(b"authorization", b"Bearer " + b"s" * 20)]
        await gate({"type": "http", "headers": headers}, None, send)

    anyio.run(drive)
    assert sent[0]["status"] == 401
    assert reached == ["lifespan", "http"]


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("8765", ("127.0.0.1", 8765)),
        (":0", ("127.0.0.1", 0)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("[::1]:9000", ("::1", 9000)),
    ],
)
def test_http_address_defaults_to_loopback(text: str, address: tuple[str, int]):
    assert parse_address(text) == address


@pytest.mark.parametrize("text", ["", "host:", "host:port", "1:70000", "-1"])
def test_a_bad_http_address_is_invalid_input(text: str):
    with pytest.raises(InvalidInput, match="expected"):
        parse_address(text)


def test_dns_rebinding_protection_stays_on_whatever_the_bind_address():
    local = transport_security("127.0.0.1", 8765)
    assert local.enable_dns_rebinding_protection is True
    assert local.allowed_hosts == ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    lan = transport_security("192.0.2.7", 8765)
    assert lan.enable_dns_rebinding_protection is True
    assert "192.0.2.7:8765" in lan.allowed_hosts
    assert "http://192.0.2.7:8765" in lan.allowed_origins
    assert [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "192.0.2.7")] == [
        True,
        True,
        True,
        False,
        False,
    ]
