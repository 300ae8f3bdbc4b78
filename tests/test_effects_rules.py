"""The kernel's rules for calls with an effect, driven through the runtime.

Host statements carry the kernel's signature and nothing else lets them in; a call's
outcome must stay within what its intent (or grant) covers; a revoked grant stops a
call that has not run yet; a secret is sent only where a grant binds it.
"""

from __future__ import annotations

import re

import pytest
from http_support import serving

from toka.core import tools
from toka.core.errors import BadSignature, Denied, InvalidOperation, NotCovered, TokaError
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.model.keys import KeyPair
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.tools import calls


@pytest.fixture
def rt(runtime: Runtime, operator: Client, tmp_path) -> Runtime:
    tools.register_builtins(operator)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.md").write_text("alpha")
    operator.submit(ops.AddMount("ws", str(ws), "rw"))
    return runtime


def agent_with(rt: Runtime, *caps: str) -> tuple[Client, str]:
    agent, _ = Client(rt).spawn_agent("worker")
    grant = Client(rt).grant(agent, list(caps), 3600).first(ev.CapabilityGranted).jti
    return Client(rt, agent), grant


def intent_only(client: Client, tool: str, args: dict) -> str:
    """Commit a call's intent and nothing more (its host never performs it)."""
    outcome = client.runtime.submit(client.sign(ops.InvokeTool(tool, args)))
    return outcome.first(ev.ToolStarted).call


def test_a_host_statement_is_refused_unless_the_kernel_signed_it(rt: Runtime, operator: Client):
    call = intent_only(operator, "fs-read", {"mount": "ws", "path": "a.md"})
    forged = ops.RecordOutcome(call, ops.CallOutcome(ok=True, output="forged"))
    # An agent (or the operator) signing a statement as itself: not the kernel's word.
    with pytest.raises(InvalidOperation, match="host statement"):
        operator.submit(forged)
    # Claiming to be the kernel with another key fails the signature check.
    impostor = ops.sign(forged, "kernel", "", KeyPair.generate(), rt.now_ms(), "f" * 32)
    with pytest.raises(BadSignature):
        rt.submit(impostor)
    # The kernel signs host statements only, never an ordinary operation.
    with pytest.raises(Denied, match="only host statements"):
        rt.submit(rt.host_sign(ops.PauseAgent("ag-x"), "e" * 32))
    assert call in rt.state.call_table()


def test_an_outcome_recording_an_effect_beyond_the_intent_is_refused(rt: Runtime, operator):
    worker, _ = agent_with(rt, "tool.invoke:tool/fs-read", "fs.read:mount/ws/a.md")
    call_id = intent_only(worker, "fs-read", {"mount": "ws", "path": "a.md"})
    beyond = ev.FileRead("ws", "secret.md", 1, "0" * 64)
    statement = ops.RecordOutcome(call_id, ops.CallOutcome(ok=True, effects=[beyond]))
    with pytest.raises(InvalidOperation, match=re.escape("fs.read:mount/ws/secret.md")):
        rt.submit(rt.host_sign(statement, calls.outcome_nonce(call_id, 9)))
    assert call_id in rt.state.call_table()


def test_revoking_the_grant_after_the_intent_stops_the_call_before_it_runs(rt, operator, tmp_path):
    worker, grant = agent_with(rt, "tool.invoke:tool/fs-write", "fs.write:mount/ws/**")
    call_id = intent_only(worker, "fs-write", {"mount": "ws", "path": "b.md", "content": "x"})
    operator.revoke(grant, "changed my mind")
    result = tools.perform(rt, call_id)
    assert (result.status, result.error.kind) == ("failed", "refused")
    assert "revoked" in result.error.message
    assert not (tmp_path / "ws" / "b.md").exists()


def test_an_abandon_statement_is_refused_for_a_call_safe_to_repeat(rt: Runtime, operator):
    call_id = intent_only(operator, "fs-read", {"mount": "ws", "path": "a.md"})
    call = rt.state.call_table()[call_id]
    rt.clock = lambda: call.deadline_ms / 1000 + 1
    with pytest.raises(InvalidOperation, match="run it again"):
        calls.abandon(rt, call, "gone")


def test_a_secret_is_sent_only_where_a_grant_binds_it(rt: Runtime, operator):
    rt.home.secrets.set("vault", b"s3cr3t-token")
    with serving() as server:
        operator.submit(ops.AllowHost("127.0.0.1", server.port))
        place = f"net.http:GET/http/127.0.0.1/{server.port}/**"
        worker, _ = agent_with(rt, "tool.invoke:tool/http-fetch", place)
        args = {"url": server.url("/leak"), "secret_headers": {"Authorization": "vault"}}
        with pytest.raises(NotCovered, match=re.escape("secret.use:secret/vault/127.0.0.1")):
            tools.invoke_as(worker, "http-fetch", args)
        assert server.received == []
        trusted, _ = agent_with(
            rt, "tool.invoke:tool/http-fetch", place, "secret.use:secret/vault/127.0.0.1"
        )
        assert tools.invoke_as(trusted, "http-fetch", args).ok
        assert server.received[-1].headers["authorization"] == "s3cr3t-token"


def test_a_write_to_a_read_only_mount_is_refused_at_grant_and_at_use(rt, operator, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    operator.submit(ops.AddMount("docs", str(docs), "ro"))
    agent, _ = Client(rt).spawn_agent("writer")
    with pytest.raises(NotCovered, match="read-only"):
        operator.grant(agent, ["fs.write:mount/docs/**"], 3600)
    with pytest.raises(NotCovered, match="read-only"):
        tools.invoke_as(operator, "fs-write", {"mount": "docs", "path": "x", "content": "x"})
    assert list(docs.iterdir()) == []


def test_adding_then_removing_a_mount_leaves_the_mounts_as_they_were(rt, operator, tmp_path):
    before = dict(rt.state.mount_table())
    operator.submit(ops.AddMount("tmp", str(tmp_path), "ro"))
    assert set(rt.state.mount_table()) == {"ws", "tmp"}
    operator.submit(ops.RemoveMount("tmp"))
    assert rt.state.mount_table() == before
    # An emptied table encodes as it did before any mount existed (old logs' hashes).
    operator.submit(ops.RemoveMount("ws"))
    assert rt.state.mount_table() == {} and b"mounts" not in rt.state.encode()
    assert rt.replay().state_hash() == rt.state.state_hash()
    with pytest.raises(TokaError, match="unknown mount"):
        operator.submit(ops.RemoveMount("ws"))
