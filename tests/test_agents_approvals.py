"""Human approval: operations under an ``approve`` grant wait for an approver."""

from __future__ import annotations

import pytest

from toka.core import approvals, tools
from toka.core.errors import Denied, IntegrityFailure, InvalidOperation, Revoked
from toka.core.log.audit import verify_log
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.model.ops import SignedOperation
from toka.core.model.state import Budgets
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client


def agent_with(rt: Runtime, caps: list[str], **grant) -> tuple[str, str]:
    agent, _ = Client(rt).spawn_agent("gated", "manual")
    g = Client(rt).grant(agent, caps, 3600, **grant).first(ev.CapabilityGranted).jti
    return agent, g


def test_an_operation_under_an_approve_grant_waits_instead_of_applying(runtime: Runtime):
    worker, _ = Client(runtime).spawn_agent("worker", "manual")
    agent, grant = agent_with(runtime, [f"task.schedule:agent/{worker}"], approve=True)
    outcome = Client(runtime, agent).schedule(worker, "do it")
    approval_id = outcome.pending
    assert approval_id is not None
    assert [e.kind for e in outcome.events] == ["operation.pending"]
    assert not runtime.state.tasks
    held = runtime.state.approvals[approval_id]
    assert (held.status, held.principal, held.grant, held.op_kind) == (
        "pending",
        agent,
        grant,
        "task.schedule",
    )
    assert approvals.describe(runtime, held)["operation"]["description"] == "do it"


def test_approving_applies_the_held_operation_as_its_author(runtime: Runtime):
    worker, _ = Client(runtime).spawn_agent("worker", "manual")
    agent, grant = agent_with(runtime, [f"task.schedule:agent/{worker}"], approve=True)
    approval_id = Client(runtime, agent).schedule(worker, "do it").pending
    outcome = approvals.approve(Client(runtime), approval_id)
    records = list(runtime.log.records(after=outcome.first_seq - 1, until=outcome.last_seq))
    assert [(r.kind, r.principal, r.grant) for r in records] == [
        ("operation.approved", "operator", "gr-2"),
        ("task.scheduled", agent, grant),
    ]
    assert {r.op_digest for r in records} == {outcome.digest}
    task = runtime.state.tasks[f"tk-{records[1].seq}"]
    assert (task.scheduled_by, task.description) == (agent, "do it")
    approval = runtime.state.approvals[approval_id]
    assert (approval.status, approval.decided_by, approval.signed) == ("approved", "operator", b"")
    assert approvals.pending(runtime.state) == []


def test_the_state_keeps_a_held_operations_digest_and_the_log_keeps_its_bytes(runtime: Runtime):
    worker, _ = Client(runtime).spawn_agent("worker", "manual")
    agent, _ = agent_with(runtime, [f"task.schedule:agent/{worker}"], approve=True)
    description = "held " + "x" * 4000
    approval_id = Client(runtime, agent).schedule(worker, description).pending
    held = runtime.state.approvals[approval_id]
    assert held.signed == b""
    assert description.encode() not in runtime.state.encode()
    pending_event = runtime.log.record(int(approval_id.removeprefix("ap-")))
    assert description.encode() not in pending_event.payload
    row = runtime.log.operation_at(pending_event.seq)
    assert SignedOperation.from_json(row.signed).digest == held.op_digest == row.digest
    # Another runtime on the same home reads the held operation back from the log.
    with Runtime(runtime.home) as other:
        assert approvals.describe(other, held)["operation"]["description"] == description
        outcome = approvals.approve(Client(other), approval_id)
        task = other.state.tasks[f"tk-{outcome.last_seq}"]
        assert task.description == description
    runtime.catch_up()
    report = verify_log(runtime.log, runtime.home.kernel_public_key(), signatures=True)
    assert report["ok"] is True
    assert runtime.replay_check()["ok"] is True


def test_a_held_operation_rewritten_in_the_log_is_not_released(runtime: Runtime):
    worker, _ = Client(runtime).spawn_agent("worker", "manual")
    agent, _ = agent_with(runtime, [f"task.schedule:agent/{worker}"], approve=True)
    approval_id = Client(runtime, agent).schedule(worker, "harmless").pending
    seq = int(approval_id.removeprefix("ap-"))
    row = runtime.log.operation_at(seq)
    forged = row.signed.replace(b"harmless", b"harmful!")
    with runtime.log.write():
        runtime.log.conn.execute(
            "UPDATE operations SET signed = ? WHERE nonce = ?", (forged, row.nonce)
        )
    before = runtime.log.head()
    with pytest.raises(IntegrityFailure, match=f"approval {approval_id}"):
        approvals.approve(Client(runtime), approval_id)
    assert not runtime.state.tasks
    assert runtime.state.approvals[approval_id].status == "pending"
    assert runtime.log.head()[0] > before[0]  # the refusal is on record, nothing applied


def test_a_held_operation_counts_once_against_its_budget(runtime: Runtime):
    agent, grant = agent_with(
        runtime, ["observation.emit:agent/*"], approve=True, budgets=Budgets(max_ops=1)
    )
    approval_id = Client(runtime, agent).observe(agent, "hello").pending
    assert runtime.state.grants[grant].usage.ops == 1
    approvals.approve(Client(runtime), approval_id)
    assert runtime.state.grants[grant].usage.ops == 1
    assert runtime.state.agents[agent].observations == 1


def test_approval_rechecks_the_operation_against_the_state_of_that_moment(runtime: Runtime):
    agent, grant = agent_with(runtime, ["observation.emit:agent/*"], approve=True)
    approval_id = Client(runtime, agent).observe(agent, "hello").pending
    Client(runtime).revoke(grant)
    with pytest.raises(Revoked, match="stays pending"):
        approvals.approve(Client(runtime), approval_id)
    assert runtime.state.approvals[approval_id].status == "pending"
    approvals.deny(Client(runtime), approval_id, "grant was revoked")
    assert runtime.state.approvals[approval_id].status == "denied"
    assert runtime.state.agents[agent].observations == 0


def test_nobody_approves_their_own_operation(runtime: Runtime):
    agent, _ = agent_with(
        runtime, ["observation.emit:agent/*", "op.approve:approval/*"], approve=True
    )
    approval_id = Client(runtime, agent).observe(agent, "mine").pending
    with pytest.raises(Denied, match="cannot approve its own operation"):
        approvals.approve(Client(runtime, agent), approval_id)
    approvals.deny(Client(runtime, agent), approval_id, "withdrawn")  # withdrawing is fine
    assert runtime.state.approvals[approval_id].reason == "withdrawn"


def test_a_decided_approval_cannot_be_decided_again(runtime: Runtime):
    agent, _ = agent_with(runtime, ["observation.emit:agent/*"], approve=True)
    approval_id = Client(runtime, agent).observe(agent, "x").pending
    approvals.deny(Client(runtime), approval_id, "no")
    with pytest.raises(InvalidOperation, match="already denied by operator"):
        approvals.approve(Client(runtime), approval_id)


def test_decisions_themselves_are_never_held(runtime: Runtime):
    agent, _ = agent_with(runtime, ["observation.emit:agent/*"], approve=True)
    approver, _ = agent_with(runtime, ["op.approve:approval/*"], approve=True)
    approval_id = Client(runtime, agent).observe(agent, "x").pending
    outcome = approvals.approve(Client(runtime, approver), approval_id)
    assert outcome.pending is None
    assert runtime.state.approvals[approval_id].decided_by == approver


def test_a_held_tool_call_runs_only_when_approved_and_is_paid_by_its_author(runtime: Runtime):
    tools.register_builtins(Client(runtime))
    agent, grant = agent_with(runtime, ["tool.invoke:tool/upper"], approve=True)
    approver, approver_grant = agent_with(runtime, ["op.approve:approval/*"])
    invocation = tools.invoke_as(Client(runtime, agent), "upper", {"text": "quiet"})
    assert invocation.pending is not None
    assert runtime.log.query(kinds=["tool.*"], after=10) == []  # nothing ran
    outcome = approvals.approve(Client(runtime, approver), invocation.pending)
    ran = runtime.log.record(outcome.last_seq)
    assert (ran.kind, ran.principal, ran.grant) == ("tool.succeeded", agent, grant)
    assert outcome.events[-1].payload.output == {"text": "QUIET"}
    assert runtime.state.grants[grant].usage.tool_calls == 1
    assert runtime.state.grants[approver_grant].usage.tool_calls == 0


def test_the_log_with_approvals_verifies_and_replays_to_the_same_state(runtime: Runtime):
    tools.register_builtins(Client(runtime))
    agent, _ = agent_with(runtime, ["tool.invoke:tool/*", "observation.emit:agent/*"], approve=True)
    first = tools.invoke_as(Client(runtime, agent), "upper", {"text": "a"}).pending
    second = Client(runtime, agent).observe(agent, "b").pending
    approvals.approve(Client(runtime), first)
    approvals.deny(Client(runtime), second, "no")
    assert runtime.replay_check()["ok"] is True
    report = verify_log(runtime.log, runtime.home.kernel_public_key(), signatures=True)
    assert report["ok"] is True
    assert runtime.replay().approvals == runtime.state.approvals


def test_held_operation_kinds_keep_their_own_rules_at_approval(runtime: Runtime):
    worker, _ = Client(runtime).spawn_agent("worker", "manual")
    agent, _ = agent_with(runtime, [f"task.schedule:agent/{worker}"], approve=True)
    approval_id = Client(runtime, agent).submit(ops.ScheduleTask(worker, "   ")).pending
    with pytest.raises(InvalidOperation, match="task description must not be empty"):
        approvals.approve(Client(runtime), approval_id)


def test_an_agent_whose_every_grant_needs_approval_still_takes_its_tasks(runtime: Runtime):
    from toka.core.agents.runner import Runner

    boss, _ = agent_with(
        runtime,
        ["agent.spawn:behaviour/echo", "task.schedule:agent/*"],
        approve=True,
    )
    spawned = approvals.approve(
        Client(runtime), Client(runtime, boss).spawn_agent("child", "echo")[1].pending
    )
    child = spawned.events[1].payload.agent
    held = Client(runtime, boss).schedule(child, "hello").pending
    task = approvals.approve(Client(runtime), held).events[1].payload.task
    Runner(runtime).run(until_idle=True)
    # The lease was taken without asking; the completion waits for a decision.
    assert runtime.state.tasks[task].status == "started"
    [completion] = approvals.pending(runtime.state)
    assert completion.op_kind == "task.complete"
    approvals.approve(Client(runtime), completion.id)
    assert runtime.state.tasks[task].result == "hello"
