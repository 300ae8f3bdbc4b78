"""Every refusal through the real submit path: the specific error, an audit event, no change."""

from __future__ import annotations

import jwt
import msgspec
import pytest

from toka.core.errors import (
    BadSignature,
    BindingMismatch,
    BudgetExhausted,
    Denied,
    InvalidOperation,
    NotCovered,
    NotFound,
    ReplayedNonce,
    Revoked,
    StaleOperation,
    TokenExpired,
    TokenInvalid,
)
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.model.keys import KeyPair, thumbprint
from toka.core.model.state import Budgets
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.runtime.home import Home
from toka.core.runtime.refusals import REJECTIONS_PER_PRINCIPAL_PER_MIN
from toka.core.runtime.tokens import TokenAuthority


class Clock:
    def __init__(self, t: float = 1_900_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rt(home: Home, clock: Clock):
    runtime = Runtime(home, clock=clock)
    yield runtime
    runtime.close()


@pytest.fixture
def op(rt: Runtime) -> Client:
    return Client(rt)


@pytest.fixture
def agent(op: Client) -> str:
    agent_id, _ = op.spawn_agent("worker", key=KeyPair.from_seed(b"worker"))
    return agent_id


def world(rt: Runtime) -> bytes:
    """Everything but the log position: must not change when an operation is refused."""
    st = rt.state
    return msgspec.msgpack.encode([st.principals, st.agents, st.tasks, st.grants, st.tools])


def refused(rt: Runtime, signed: ops.SignedOperation, error: type[Exception]) -> dict:
    """Submit, expect ``error``, check nothing changed, return the audit event's payload."""
    before_seq, before = rt.state.seq, world(rt)
    with pytest.raises(error) as info:
        rt.submit(signed)
    assert type(info.value) is error
    assert world(rt) == before
    new = list(rt.log.records(after=before_seq))
    assert [r.kind for r in new] == ["operation.rejected"]
    payload = msgspec.json.decode(new[0].payload)
    assert payload["code"] == error.code
    return payload


def test_token_from_another_kernel_is_refused(rt, op, agent):
    foreign = TokenAuthority(b"x" * 32, rt.state.home_id).mint(rt.state.grants["gr-2"], "whatever")
    signed = Client(rt, token=foreign).sign(ops.PauseAgent(agent))
    payload = refused(rt, signed, TokenInvalid)
    assert payload["authenticated"] is False


def test_alg_none_token_is_refused(rt, op, agent):
    real = rt.token_for("operator")
    claims = jwt.decode(real, options={"verify_signature": False})
    forged = jwt.encode(claims, None, algorithm="none")
    refused(rt, Client(rt, token=forged).sign(ops.PauseAgent(agent)), TokenInvalid)


def test_token_missing_a_claim_is_refused(rt, op, agent):
    claims = jwt.decode(rt.token_for("operator"), options={"verify_signature": False})
    del claims["cnf"]
    forged = jwt.encode(claims, rt.home.secret(), algorithm="HS256")
    refused(rt, Client(rt, token=forged).sign(ops.PauseAgent(agent)), TokenInvalid)


def test_expired_token_is_refused(rt, op, agent, clock):
    token = op.grant(agent, [f"task.schedule:agent/{agent}"], ttl_s=60).tokens
    clock.t += 120
    agent_client = Client(rt, agent, token=next(iter(token.values())))
    refused(rt, agent_client.sign(ops.ScheduleTask(agent, "late")), TokenExpired)


def test_stolen_token_signed_with_another_key_is_refused(rt, op, agent):
    intruder = KeyPair.from_seed(b"intruder")
    signed = Client(rt, agent, key=intruder).sign(ops.EmitObservation(agent, "hi"))
    payload = refused(rt, signed, BadSignature)
    assert payload["authenticated"] is False


def test_token_bound_to_another_key_is_refused(rt, op, agent):
    intruder = KeyPair.from_seed(b"intruder")
    base = next(g for g in rt.state.grants.values() if g.subject == agent)
    token = rt.authority.mint(base, thumbprint(intruder.public_key))
    signed = Client(rt, agent, key=intruder, token=token).sign(ops.EmitObservation(agent, "hi"))
    payload = refused(rt, signed, BindingMismatch)
    assert "cnf" in payload["reason"]


def test_token_presented_by_another_principal_is_refused(rt, op, agent):
    operator_token = rt.token_for("operator")
    signed = Client(rt, agent, token=operator_token).sign(ops.PauseAgent(agent))
    refused(rt, signed, BindingMismatch)


def test_tampered_operation_signature_is_refused(rt, op, agent):
    signed = op.sign(ops.PauseAgent(agent))
    tampered = msgspec.structs.replace(signed, op=ops.TerminateAgent(agent))
    refused(rt, tampered, BadSignature)


def test_replayed_nonce_with_other_content_is_refused(rt, op, agent):
    first = op.sign(ops.EmitObservation(agent, "one"))
    rt.submit(first)
    again = op.sign(ops.EmitObservation(agent, "two"), nonce=first.nonce)
    refused(rt, again, ReplayedNonce)


def test_identical_resubmission_returns_original_outcome_once(rt, op, agent):
    signed = op.sign(ops.ScheduleTask(agent, "once"))
    first = rt.submit(signed)
    seq = rt.state.seq
    second = rt.submit(signed)
    assert second.replayed and not first.replayed
    assert second.first_seq == first.first_seq and second.events == first.events
    assert rt.state.seq == seq
    assert sum(1 for t in rt.state.tasks.values() if t.description == "once") == 1


def test_stale_operation_is_refused(rt, op, agent, clock):
    signed = op.sign(ops.EmitObservation(agent, "old"))
    clock.t += rt.config.op_max_age_s + 10
    refused(rt, signed, StaleOperation)


def test_revoked_token_is_refused(rt, op, agent):
    outcome = op.grant(agent, [f"task.schedule:agent/{agent}"], ttl_s=600)
    ((jti, token),) = outcome.tokens.items()
    op.revoke(jti)
    signed = Client(rt, agent, token=token).sign(ops.ScheduleTask(agent, "x"))
    refused(rt, signed, Revoked)


def test_revoked_ancestor_revokes_the_delegated_token(rt, op, agent):
    sup_key = KeyPair.from_seed(b"sup")
    sup, _ = op.spawn_agent("sup", key=sup_key)
    parent = op.grant(sup, ["cap.grant:agent/*", "task.schedule:agent/*"], ttl_s=600)
    (parent_jti,) = parent.tokens
    sup_client = Client(rt, sup, token=parent.tokens[parent_jti])
    child = sup_client.grant(agent, [f"task.schedule:agent/{agent}"], ttl_s=300)
    ((child_jti, child_token),) = child.tokens.items()
    assert rt.state.grants[child_jti].parent == parent_jti
    revoked = op.revoke(parent_jti).first(ev.CapabilityRevoked).revoked
    assert revoked == [parent_jti, child_jti]
    signed = Client(rt, agent, token=child_token).sign(ops.ScheduleTask(agent, "x"))
    refused(rt, signed, Revoked)


def test_capability_not_covering_the_operation_is_refused(rt, op, agent):
    signed = Client(rt, agent).sign(ops.TerminateAgent(agent))
    payload = refused(rt, signed, NotCovered)
    assert payload["authenticated"] is True
    assert f"agent.terminate:agent/{agent}" in payload["reason"]


def test_budget_exhausted_is_refused(rt, op, agent):
    outcome = op.grant(
        agent, [f"task.schedule:agent/{agent}"], ttl_s=600, budgets=Budgets(max_ops=2)
    )
    (token,) = outcome.tokens.values()
    client = Client(rt, agent, token=token)
    client.schedule(agent, "one")
    client.schedule(agent, "two")
    payload = refused(rt, client.sign(ops.ScheduleTask(agent, "three")), BudgetExhausted)
    assert "budget" in payload["reason"]
    assert rt.state.grants[next(iter(outcome.tokens))].usage.ops == 2


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda a: ops.SpawnAgent("n" * 257, KeyPair.from_seed(b"n").public_key), InvalidOperation),
        (lambda a: ops.ScheduleTask(a, "d" * 4097), InvalidOperation),
        (lambda a: ops.ScheduleTask(a, "   "), InvalidOperation),
        (lambda a: ops.EmitObservation(a, "x" * (1024 * 1024 + 1)), InvalidOperation),
        (lambda a: ops.ScheduleTask("ag-nosuch", "x"), NotFound),
        (lambda a: ops.CompleteTask("tk-999"), NotFound),
        (lambda a: ops.ResumeAgent(a), InvalidOperation),
        (lambda a: ops.SpawnAgent("x", "not-a-key"), InvalidOperation),
        (lambda a: ops.GrantCapability(a, ["frob:x"], 60), Exception),
        (lambda a: ops.GrantCapability(a, ["task.fail:*"], 0), InvalidOperation),
        (lambda a: ops.RevokeCapability("gr-nosuch"), NotFound),
    ],
)
def test_invalid_operations_are_refused(rt, op, agent, make, error):
    signed = op.sign(make(agent))
    if error is Exception:
        from toka.core.errors import InvalidInput

        error = InvalidInput
    refused(rt, signed, error)


def test_no_task_on_a_terminated_agent(rt, op, agent):
    op.terminate(agent)
    refused(rt, op.sign(ops.ScheduleTask(agent, "too late")), InvalidOperation)


def test_terminated_agent_cannot_act_and_its_grants_are_revoked(rt, op, agent):
    task = op.schedule(agent, "open work").first(ev.TaskScheduled).task
    outcome = op.terminate(agent)
    kinds = [e.kind for e in outcome.events]
    assert kinds == ["agent.terminated", "task.cancelled", "capability.revoked"]
    assert rt.state.tasks[task].status == "cancelled"
    with pytest.raises(Denied):
        Client(rt, agent).sign(ops.EmitObservation(agent, "still here?"))


def test_delegation_cannot_widen_capabilities(rt, op, agent):
    sup, _ = op.spawn_agent("sup", key=KeyPair.from_seed(b"sup2"))
    outcome = op.grant(sup, [f"cap.grant:agent/{agent}", f"task.schedule:agent/{agent}"], 600)
    sup_client = Client(rt, sup, token=next(iter(outcome.tokens.values())))
    signed = sup_client.sign(ops.GrantCapability(agent, ["agent.terminate:agent/*"], 60))
    payload = refused(rt, signed, NotCovered)
    assert "only narrows" in payload["reason"]


def test_delegation_cannot_outlive_the_parent(rt, op, agent):
    sup, _ = op.spawn_agent("sup", key=KeyPair.from_seed(b"sup3"))
    outcome = op.grant(sup, [f"cap.grant:agent/{agent}", f"task.schedule:agent/{agent}"], 600)
    sup_client = Client(rt, sup, token=next(iter(outcome.tokens.values())))
    signed = sup_client.sign(ops.GrantCapability(agent, [f"task.schedule:agent/{agent}"], 601))
    refused(rt, signed, NotCovered)


def test_delegation_cannot_drop_or_widen_a_budget(rt, op, agent):
    sup, _ = op.spawn_agent("sup", key=KeyPair.from_seed(b"sup4"))
    outcome = op.grant(
        sup,
        [f"cap.grant:agent/{agent}", f"task.schedule:agent/{agent}"],
        600,
        budgets=Budgets(max_ops=10),
    )
    sup_client = Client(rt, sup, token=next(iter(outcome.tokens.values())))
    cap = [f"task.schedule:agent/{agent}"]
    refused(rt, sup_client.sign(ops.GrantCapability(agent, cap, 60)), NotCovered)
    refused(
        rt, sup_client.sign(ops.GrantCapability(agent, cap, 60, Budgets(max_ops=50))), NotCovered
    )
    ok = sup_client.grant(agent, cap, 60, budgets=Budgets(max_ops=5))
    assert rt.state.grants[ok.first(ev.CapabilityGranted).jti].budgets.max_ops == 5


def test_holder_may_revoke_what_it_delegated(rt, op, agent):
    sup, _ = op.spawn_agent("sup", key=KeyPair.from_seed(b"sup5"))
    outcome = op.grant(sup, [f"cap.grant:agent/{agent}", f"task.schedule:agent/{agent}"], 600)
    sup_client = Client(rt, sup, token=next(iter(outcome.tokens.values())))
    child = sup_client.grant(agent, [f"task.schedule:agent/{agent}"], 60)
    jti = child.first(ev.CapabilityGranted).jti
    sup_client.revoke(jti)
    assert rt.state.grants[jti].revoked


def test_spawn_creates_key_and_self_scoped_base_grant(rt, op):
    agent_id, outcome = op.spawn_agent("fresh")
    assert rt.home.keystore.has(agent_id)
    assert (rt.home.keystore.path(agent_id).stat().st_mode & 0o777) == 0o600
    base = outcome.first(ev.CapabilityGranted)
    assert base.subject == agent_id and base.parent == "gr-2"
    assert sorted(base.caps) == sorted(
        f"{a}:agent/{agent_id}"
        for a in ("task.start", "task.complete", "task.fail", "observation.emit")
    )


def test_rejections_are_rate_limited(rt, op, agent):
    signed_ops = [Client(rt, agent).sign(ops.TerminateAgent(agent)) for _ in range(30)]
    for s in signed_ops:
        with pytest.raises(NotCovered):
            rt.submit(s)
    logged = rt.log.query(kinds=["operation.rejected"], limit=1000)
    assert len(logged) == REJECTIONS_PER_PRINCIPAL_PER_MIN


def test_a_budget_is_charged_whatever_token_the_agent_presents(rt, op, agent):
    """An agent holds its base grant and a budgeted one that both cover observation.emit;
    presenting the base token must not dodge the budget."""
    budgeted = (
        op.grant(agent, [f"observation.emit:agent/{agent}"], ttl_s=600, budgets=Budgets(max_ops=2))
        .first(ev.CapabilityGranted)
        .jti
    )
    base = next(g for g in rt.state.grants.values() if g.subject == agent and g.jti != budgeted)
    token = rt.authority.mint(base, thumbprint(rt.state.principals[agent]))
    as_base = Client(rt, agent, token=token)
    first = as_base.observe(agent, "one")
    assert first.first(ev.BudgetCharged).grants == [budgeted]
    as_base.observe(agent, "two")
    assert rt.state.grants[budgeted].usage.ops == 2
    payload = refused(rt, as_base.sign(ops.EmitObservation(agent, "three")), BudgetExhausted)
    assert f"grant {budgeted} has used 2 of 2 operations" in payload["reason"]
    # What the budgeted grant does not cover stays the base grant's alone.
    task = op.schedule(agent, "t").first(ev.TaskScheduled).task
    assert as_base.complete(task, "done").kinds == ["task.completed"]
    assert rt.replay().state_hash() == rt.state.state_hash()
