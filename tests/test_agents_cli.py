"""Agents through the command line: behaviours run by ``toka run``, budgets, approvals."""

from __future__ import annotations

import json

import pytest
from toka_cli import run_toka

from toka.cli.main import main


@pytest.fixture
def toka(tmp_path, capsys, monkeypatch):
    """Run ``toka ARGS`` in-process on a fresh home; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("TOKA_HOME", str(tmp_path / "home"))

    def run(*args: str):
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    run.home = tmp_path / "home"
    assert run("init")[0] == 0
    return run


def js(result) -> dict:
    code, out, err = result
    assert code == 0, err
    return json.loads(out)


def spawn(toka, name: str, behaviour: str = "manual") -> str:
    return js(toka("agent", "spawn", name, "--behaviour", behaviour, "--json"))["id"]


def test_planner_and_supervisor_agents_act_as_themselves_under_toka_run(tmp_path):
    home = tmp_path / "home"

    def toka(*args: str) -> dict:
        done = run_toka(*args, "--json", home=home)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    toka("init")
    planner = toka("agent", "spawn", "planner", "--behaviour", "planner")["id"]
    toka("grant", "issue", planner, "tool.invoke:tool/echo")
    steps = [{"tool": "echo", "args": {"n": 1}}, {"tool": "echo", "args": {"m": "$prev.n"}}]
    good = toka("task", "schedule", planner, "plan", "--payload", json.dumps({"steps": steps}))
    sneaky = [{"tool": "upper", "args": {"text": "x"}}]
    bad = toka("task", "schedule", planner, "nope", "--payload", json.dumps({"steps": sneaky}))
    boss = toka("agent", "spawn", "boss", "--behaviour", "supervisor")["id"]
    toka("grant", "issue", boss, "agent.spawn:behaviour/echo", "task.schedule:agent/*")
    fan = {"fan_out": ["one", "two", "three"], "behaviour": "echo"}
    split = toka("task", "schedule", boss, "split", "--payload", json.dumps(fan))

    ran = toka("run", "--until-idle")
    assert ran["open"] == [] and ran["stuck"] == {}

    tasks = {t["id"]: t for t in toka("task", "list")["tasks"]}
    assert tasks[good["task"]]["result"] == [{"n": 1}, {"m": 1}]
    assert tasks[bad["task"]]["status"] == "failed"
    assert tasks[bad["task"]]["error"].startswith("step 1 (upper): denied: ")
    assert [r["result"] for r in tasks[split["task"]]["result"]] == ["one", "two", "three"]
    children = [r["agent"] for r in tasks[split["task"]]["result"]]

    events = toka("events", "list", "--limit", "1000")["events"]
    actors = {(e["kind"], e["principal"]) for e in events}
    assert ("tool.succeeded", planner) in actors
    assert ("agent.spawned", boss) in actors
    assert {c for k, c in actors if k == "task.completed"} == {planner, boss, *children}
    refused = [e for e in events if e["kind"] == "operation.rejected"]
    assert [(e["principal"], e["payload"]["op"], e["payload"]["code"]) for e in refused] == [
        (planner, "tool.invoke", "not_covered")  # the planner's denied step, and nothing else
    ]
    assert toka("verify")["ok"] is True
    assert toka("replay", "--check")["ok"] is True


def test_budgets_refuse_past_each_limit_with_exit_3_and_show_use(toka):
    agent = spawn(toka, "thrifty")
    js(toka("grant", "issue", agent, f"observation.emit:agent/{agent}", "--max-ops", "1", "--json"))
    assert toka("--as", agent, "obs", "emit", agent, "one")[0] == 0
    code, _, err = toka("--as", agent, "obs", "emit", agent, "two")
    assert code == 3 and err.startswith("toka: error: budget: ") and "1 of 1 operations" in err

    caller = spawn(toka, "caller")
    js(toka("grant", "issue", caller, "tool.invoke:tool/echo", "--max-tool-calls", "1", "--json"))
    assert toka("--as", caller, "tool", "invoke", "echo", "--args", "{}")[0] == 0
    code, _, err = toka("--as", caller, "tool", "invoke", "echo", "--args", "{}")
    assert code == 3 and "budget: " in err and "1 of 1 tool calls" in err

    burner = spawn(toka, "burner")
    js(toka("grant", "issue", burner, "tool.invoke:tool/wordcount", "--max-fuel", "500", "--json"))
    code, _, err = toka("--as", burner, "tool", "invoke", "wordcount", "--args", '{"text":"a b"}')
    assert code == 1 and "out_of_fuel" in err  # the run burned the whole budget
    code, _, err = toka("--as", burner, "tool", "invoke", "wordcount", "--args", '{"text":"a"}')
    assert code == 3 and "budget: " in err and "500 of 500 fuel" in err

    shown = {a: toka("agent", "show", a)[1] for a in (agent, caller, burner)}
    assert "budget     ops 1/1" in shown[agent]
    assert "calls 1/1" in shown[caller]
    assert "fuel 500/500" in shown[burner]
    rejected = js(toka("events", "list", "--kind", "operation.rejected", "--json"))["events"]
    assert [e["payload"]["code"] for e in rejected] == ["budget"] * 3


def test_approval_flow_pending_then_approved_or_denied(toka):
    agent = spawn(toka, "gated")
    js(toka("grant", "issue", agent, "tool.invoke:tool/upper", "--approve", "--json"))
    code, out, _ = toka("--as", agent, "tool", "invoke", "upper", "--args", '{"text":"hi"}')
    assert code == 0 and out.startswith("pending approval ap-")
    first = out.split()[-1]
    second = js(toka("--as", agent, "tool", "invoke", "upper", "--args", '{"text":"no"}', "--json"))
    assert set(second) == {"pending"}

    queue = js(toka("approvals", "list", "--json"))["approvals"]
    assert [(a["id"], a["op"], a["principal"]) for a in queue] == [
        (first, "tool.invoke", agent),
        (second["pending"], "tool.invoke", agent),
    ]
    assert queue[0]["operation"]["args"] == {"text": "hi"}
    assert toka("--as", agent, "approvals", "approve", first)[0] == 3  # not theirs to approve

    approved = js(toka("approvals", "approve", first, "--json"))
    assert approved["events"] == ["operation.approved", "tool.succeeded"]
    code, out, _ = toka("approvals", "deny", second["pending"], "--reason", "not today")
    assert code == 0 and out.startswith(f"denied {second['pending']}")
    assert toka("approvals", "approve", second["pending"])[0] == 4  # already decided
    assert toka("approvals", "approve", "ap-999")[0] == 4
    assert "no operations waiting" in toka("approvals", "list")[1]

    decided = {a["id"]: a for a in js(toka("approvals", "list", "--all", "--json"))["approvals"]}
    assert decided[first]["status"] == "approved"
    assert decided[second["pending"]]["reason"] == "not today"
    ran = js(toka("events", "list", "--kind", "tool.succeeded", "--json"))["events"]
    assert [(e["principal"], e["payload"]["output"]) for e in ran] == [(agent, {"text": "HI"})]
    assert js(toka("verify", "--json"))["ok"] is True
    assert js(toka("replay", "--check", "--json"))["ok"] is True


def test_a_planner_step_waits_for_approval_and_resumes_under_toka_run(toka):
    planner = spawn(toka, "careful", "planner")
    js(toka("grant", "issue", planner, "tool.invoke:tool/upper", "--approve", "--json"))
    plan = json.dumps({"steps": [{"tool": "upper", "args": {"text": "ok"}}]})
    task = js(toka("task", "schedule", planner, "shout", "--payload", plan, "--json"))["task"]
    first = js(toka("run", "--until-idle", "--json"))
    assert first["open"] == [task]
    approval = js(toka("approvals", "list", "--json"))["approvals"][0]
    assert approval["operation"]["task"] == task
    js(toka("approvals", "approve", approval["id"], "--json"))
    second = js(toka("run", "--until-idle", "--json"))
    assert [f["task"] for f in second["finished"]] == [task]
    shown = js(toka("task", "list", "--json"))["tasks"][0]
    assert shown["result"] == [{"text": "OK"}]


def test_a_denied_planner_step_fails_the_task_with_denied(toka):
    planner = spawn(toka, "careful", "planner")
    js(toka("grant", "issue", planner, "tool.invoke:tool/upper", "--approve", "--json"))
    plan = json.dumps({"steps": [{"tool": "upper", "args": {"text": "ok"}}]})
    js(toka("task", "schedule", planner, "shout", "--payload", plan, "--json"))
    js(toka("run", "--until-idle", "--json"))
    approval = js(toka("approvals", "list", "--json"))["approvals"][0]["id"]
    js(toka("approvals", "deny", approval, "--reason", "too loud", "--json"))
    js(toka("run", "--until-idle", "--json"))
    task = js(toka("task", "list", "--json"))["tasks"][0]
    assert task["status"] == "failed"
    assert task["error"] == (
        f"step 1 (upper): denied: tool.invoke was denied by operator (approval {approval}): "
        "too loud"
    )


def test_toka_run_refuses_an_agent_it_cannot_drive(toka):
    manual = spawn(toka, "hands")
    code, _, err = toka("run", "--until-idle", "--agent", manual)
    assert code == 4 and "which no runner drives" in err
    assert toka("run", "--until-idle", "--agent", "ag-nobody")[0] == 4
    assert toka("run", "--until-idle", "--lease", "forever")[0] == 4
    code, _, err = toka("agent", "spawn", "x", "--behaviour", "robot")
    assert code == 4 and "unknown behaviour 'robot'" in err


def test_a_task_whose_agent_spent_its_budget_fails_saying_so(toka):
    agent = spawn(toka, "spender", "echo")
    budget = js(toka("grant", "issue", agent, f"task.*:agent/{agent}", "--max-ops", "1", "--json"))
    first = js(toka("task", "schedule", agent, "one", "--json"))["task"]
    second = js(toka("task", "schedule", agent, "two", "--json"))["task"]
    js(toka("run", "--until-idle", "--json"))
    tasks = {t["id"]: t for t in js(toka("task", "list", "--json"))["tasks"]}
    spent = f"budget: grant {budget['jti']} has used"
    # The first took its lease (the one operation) and could not complete; the second
    # could not even take its lease. Neither stays open. (Failing past the budget is
    # let through, and counted: the second reason says 2 of 1.)
    assert {t: tasks[t]["status"] for t in (first, second)} == {first: "failed", second: "failed"}
    assert tasks[first]["error"] == f"{spent} 1 of 1 operations"
    assert tasks[second]["error"] == f"{spent} 2 of 1 operations"
    listing = toka("task", "list")[1]
    assert listing.count(spent) == 2
    assert js(toka("replay", "--check", "--json"))["ok"] is True
