"""Idempotent submission: an operation is applied at most once, whoever resubmits it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from log_support import make_home, run_toka, scalar

from toka.core.errors import NotCovered, ReplayedNonce
from toka.core.model import ops
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.runtime.home import Home

pytestmark = pytest.mark.stores


@pytest.fixture
def home(tmp_path) -> Home:
    return make_home(tmp_path / "home", checkpoint_interval=1000)


@pytest.fixture
def rt(home):
    with Runtime(home) as runtime:
        yield runtime


def counts(rt: Runtime) -> tuple[int, int]:
    return rt.log.head()[0], scalar(rt.home, "SELECT count(*) FROM operations")


def test_resubmitting_an_applied_operation_returns_its_original_outcome(rt):
    operator = Client(rt)
    agent, _ = operator.spawn_agent("idem")
    signed = operator.sign(ops.ScheduleTask(agent, "only once"))
    first = rt.submit(signed)
    before = counts(rt)
    again = rt.submit(signed)
    assert again.replayed is True and first.replayed is False
    assert (again.first_seq, again.last_seq, again.digest) == (
        first.first_seq,
        first.last_seq,
        first.digest,
    )
    assert again.events == first.events
    assert counts(rt) == before
    assert rt.state.agents[agent].open_tasks == 1


def test_a_refused_operation_resubmitted_gets_the_same_refusal_and_no_new_event(rt):
    operator = Client(rt)
    agent, _ = operator.spawn_agent("limited")
    other, _ = operator.spawn_agent("other")
    signed = Client(rt, agent).sign(ops.EmitObservation(other, "not mine"))
    with pytest.raises(NotCovered):
        rt.submit(signed)
    before = counts(rt)
    with pytest.raises(NotCovered):
        rt.submit(signed)
    assert counts(rt) == before


def test_a_nonce_reused_for_another_operation_is_refused(rt):
    operator = Client(rt)
    agent, _ = operator.spawn_agent("nonce")
    rt.submit(operator.sign(ops.EmitObservation(agent, "first"), nonce="n" * 32))
    before = counts(rt)
    with pytest.raises(ReplayedNonce, match="already used by another operation"):
        rt.submit(operator.sign(ops.EmitObservation(agent, "second"), nonce="n" * 32))
    assert rt.log.head()[0] == before[0] + 1  # only the audited refusal
    assert rt.state.agents[agent].observations == 1


def test_the_same_operation_twice_in_one_batch_is_applied_once(rt):
    operator = Client(rt)
    agent, _ = operator.spawn_agent("batch")
    signed = operator.sign(ops.ScheduleTask(agent, "dup"))
    first, second = rt.submit_many([signed, signed])
    assert first.replayed is False and second.replayed is True
    assert second.first_seq == first.first_seq
    assert rt.state.agents[agent].open_tasks == 1


def test_resubmission_from_another_process_is_not_applied_twice(home, rt, tmp_path):
    operator = Client(rt)
    agent, _ = operator.spawn_agent("elsewhere")
    signed = operator.sign(ops.EmitObservation(agent, {"from": "file"}))
    path = tmp_path / "op.json"
    path.write_bytes(signed.to_json())
    applied = run_toka("op", "submit", str(path), "--json", home=home.root)
    assert applied.returncode == 0, applied.stderr
    seq = json.loads(applied.stdout)["seq"]
    again = run_toka("op", "submit", str(path), home=home.root)
    assert again.returncode == 3
    assert f"seq {seq}" in again.stderr and "already applied" in again.stderr
    rt.catch_up()
    outcome = rt.submit(signed)
    assert outcome.replayed and outcome.first_seq == seq
    assert rt.state.agents[agent].observations == 1


CRASHER = textwrap.dedent(
    """
    import os, signal, sys
    from toka.core.runtime.home import Home
    from toka.core.model.ops import SignedOperation
    from toka.core.runtime import Runtime

    rt = Runtime(Home(sys.argv[1]))
    rt.submit(SignedOperation.from_json(open(sys.argv[2], "rb").read()))
    # Committed, but the caller never hears about it.
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_resubmission_after_a_crash_returns_the_original_outcome(home, rt, tmp_path):
    operator = Client(rt)
    agent, _ = operator.spawn_agent("crash")
    signed = operator.sign(ops.ScheduleTask(agent, "survives the crash"))
    path = tmp_path / "op.json"
    path.write_bytes(signed.to_json())
    # The crasher inherits this process's environment: on PostgreSQL, TOKA_STORE and
    # TOKA_STORE_SCHEMA, so it commits to the test's schema.
    proc = subprocess.run(
        [sys.executable, "-c", CRASHER, str(home.root), str(path)], capture_output=True
    )
    assert proc.returncode == -9
    applied_at = scalar(home, "SELECT first_seq FROM operations WHERE nonce = ?", (signed.nonce,))
    outcome = rt.submit(signed)
    assert outcome.replayed is True
    assert outcome.first_seq == applied_at
    assert rt.state.agents[agent].open_tasks == 1


def test_op_sign_then_submit_twice_is_refused_as_a_replay(home, tmp_path):
    agent = json.loads(run_toka("agent", "spawn", "signer", "--json", home=home.root).stdout)["id"]
    signed = run_toka(
        "op",
        "sign",
        "task.schedule",
        "--agent",
        agent,
        "--description",
        "signed offline",
        "--payload",
        '{"n": 1}',
        home=home.root,
    )
    assert signed.returncode == 0, signed.stderr
    path = tmp_path / "op.json"
    path.write_text(signed.stdout)
    data = json.loads(signed.stdout)
    assert data["op"] == {
        "type": "task.schedule",
        "agent": agent,
        "description": "signed offline",
        "payload": {"n": 1},
    }
    first = run_toka("op", "submit", str(path), "--json", home=home.root)
    assert first.returncode == 0, first.stderr
    seq = json.loads(first.stdout)["seq"]
    second = run_toka("op", "submit", str(path), home=home.root)
    assert second.returncode == 3
    assert f"seq {seq}" in second.stderr
    tasks = json.loads(run_toka("task", "list", "--json", home=home.root).stdout)
    assert len([t for t in tasks["tasks"] if t["description"] == "signed offline"]) == 1


def test_op_sign_never_opens_the_log(home, tmp_path, store_backend):
    sign = ("op", "sign", "--op", '{"type": "agent.spawn", "name": "x", "public_key": "AAAA"}')
    if store_backend == "postgresql":
        # The log is out of reach: a server that does not exist (no socket there).
        away = {"TOKA_STORE": f"postgresql:///postgres?host={tmp_path / 'no-server'}"}
        unreachable = run_toka("events", "list", home=home.root, env=away)
        assert unreachable.returncode != 0 and "cannot reach the log" in unreachable.stderr
        result = run_toka(*sign, home=home.root, env=away)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["principal"] == "operator"
        return
    moved = tmp_path / "elsewhere.db"
    home.db_path.rename(moved)
    try:
        result = run_toka(*sign, home=home.root)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["principal"] == "operator"
        assert not home.db_path.exists()
    finally:
        moved.rename(home.db_path)


def test_op_sign_as_an_agent_needs_its_token(home, rt, tmp_path):
    agent, _ = Client(rt).spawn_agent("offline-agent")
    args = ("--as", agent, "op", "sign", "observation.emit", "--agent", agent, "--data", "7")
    refused = run_toka(*args, home=home.root)
    assert refused.returncode == 4
    assert "TOKA_TOKEN" in refused.stderr
    token = rt.token_for(agent)
    signed = run_toka(*args, home=home.root, env={"TOKA_TOKEN": token})
    assert signed.returncode == 0, signed.stderr
    path = tmp_path / "agent-op.json"
    path.write_text(signed.stdout)
    submitted = run_toka("op", "submit", str(path), "--json", home=home.root)
    assert submitted.returncode == 0, submitted.stderr
    rt.catch_up()
    assert rt.state.agents[agent].observations == 1
    assert rt.log.record(json.loads(submitted.stdout)["seq"]).principal == agent


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("task.schedule", "--agent", "ag-x"), "required"),
        (("task.schedule", "--nope", "1"), "no field 'nope'"),
        (("no.such",), "unknown operation kind"),
        (("--op", "[1, 2]"), "JSON object"),
        ((), "give the operation"),
    ],
)
def test_op_sign_rejects_bad_input_with_one_line(home, args, message):
    result = run_toka("op", "sign", *args, home=home.root)
    assert result.returncode == 4
    assert message in result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1


def test_op_submit_rejects_a_malformed_file(home, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"op": 1}')
    before = scalar(home, "SELECT count(*) FROM events")
    result = run_toka("op", "submit", str(path), home=home.root)
    assert result.returncode == 4
    assert "malformed signed operation" in result.stderr
    assert scalar(home, "SELECT count(*) FROM events") == before
