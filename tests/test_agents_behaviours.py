"""The reference behaviours: planner and supervisor, driven by the runner in-process."""

from __future__ import annotations

import pytest

from toka.core import tools
from toka.core.agents.behaviours import check_spawnable, names
from toka.core.agents.behaviours.planner import PlanError, resolve
from toka.core.agents.runner import Runner
from toka.core.errors import InvalidInput
from toka.core.model import events as ev
from toka.core.model.state import Budgets
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client


def spawn(rt: Runtime, name: str, behaviour: str, *caps: str, **grant) -> str:
    agent, _ = Client(rt).spawn_agent(name, behaviour)
    if caps:
        Client(rt).grant(agent, list(caps), grant.pop("ttl", 3600), **grant)
    return agent


def schedule(rt: Runtime, agent: str, description: str, payload=None) -> str:
    return Client(rt).schedule(agent, description, payload).first(ev.TaskScheduled).task


def run(rt: Runtime) -> None:
    Runner(rt).run(until_idle=True)


@pytest.fixture
def rt(runtime: Runtime) -> Runtime:
    tools.register_builtins(Client(runtime))
    return runtime


# -- planner ----------------------------------------------------------------------------


def test_planner_runs_its_plan_feeding_each_output_to_the_next(rt: Runtime):
    agent = spawn(rt, "p", "planner", "tool.invoke:tool/echo", "tool.invoke:tool/wordcount")
    plan = {
        "steps": [
            {"tool": "echo", "args": {"text": "one two three", "n": 3}},
            {"tool": "wordcount", "args": {"text": "$prev.text"}},
            {"tool": "echo", "args": {"words": "$prev.words", "first": "$steps.1", "raw": "$$x"}},
        ]
    }
    task = schedule(rt, agent, "count", plan)
    run(rt)
    t = rt.state.tasks[task]
    assert t.status == "completed", t.error
    first, counted, last = t.result
    assert first == {"text": "one two three", "n": 3}
    assert counted["words"] == 3
    assert last == {"words": 3, "first": first, "raw": "$x"}
    invoked = rt.log.query(kinds=["tool.succeeded"], principal=agent)
    assert [r.principal for r in invoked] == [agent] * 3


def test_planner_fails_with_denied_when_a_step_needs_a_tool_it_was_not_granted(rt: Runtime):
    agent = spawn(rt, "p", "planner", "tool.invoke:tool/echo")
    plan = {"steps": [{"tool": "echo", "args": {"text": "hi"}}, {"tool": "upper", "args": {}}]}
    task = schedule(rt, agent, "sneaky", plan)
    run(rt)
    t = rt.state.tasks[task]
    assert t.status == "failed"
    assert t.error.startswith("step 2 (upper): denied: ")
    assert "does not cover tool.invoke:tool/upper" in t.error
    assert len(rt.log.query(kinds=["tool.succeeded"], principal=agent)) == 1


def test_planner_fails_naming_the_tool_failure(rt: Runtime):
    agent = spawn(rt, "p", "planner", "tool.invoke:tool/wordcount", budgets=Budgets(max_fuel=50))
    task = schedule(rt, agent, "hungry", {"steps": [{"tool": "wordcount", "args": {"text": "a"}}]})
    run(rt)
    assert rt.state.tasks[task].error.startswith("step 1 (wordcount) failed: out_of_fuel: ")


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (None, "invalid plan: "),
        ({"steps": []}, "invalid plan: a plan has 1 to 100 steps, not 0"),
        ({"steps": [{"tool": "echo", "oops": 1}]}, "invalid plan: "),
        ({"steps": [{"tool": "echo", "args": "$prev"}]}, "step 1 (echo): $prev: there is no"),
        ({"steps": [{"tool": "nope"}]}, "step 1 (nope): not_found: unknown tool 'nope'"),
    ],
)
def test_planner_fails_a_plan_it_cannot_run_saying_why(rt: Runtime, payload, error):
    agent = spawn(rt, "p", "planner", "tool.invoke:tool/*")
    task = schedule(rt, agent, "bad", payload)
    run(rt)
    assert rt.state.tasks[task].status == "failed"
    assert rt.state.tasks[task].error.startswith(error)


def test_plan_references_resolve_paths_and_refuse_what_is_not_there():
    outputs = [{"items": [10, {"k": "v"}]}, "second"]
    assert resolve("$prev", outputs) == "second"
    assert resolve({"a": ["$steps.1.items.1.k", 5]}, outputs) == {"a": ["v", 5]}
    assert resolve("$$prev", outputs) == "$prev"
    assert resolve("plain $prev", outputs) == "plain $prev"
    for bad, message in (
        ("$steps.3", "must name an earlier step"),
        ("$steps.1.items.9", "has no '9'"),
        ("$prev.x", "has no 'x'"),
        ("$later", "unknown reference"),
    ):
        with pytest.raises(PlanError, match=message):
            resolve(bad, outputs)


# -- supervisor -------------------------------------------------------------------------

SUPERVISOR_CAPS = ("agent.spawn:behaviour/*", "task.schedule:agent/*", "cap.grant:agent/*")


def test_supervisor_fans_out_to_children_that_each_act_as_themselves(rt: Runtime):
    sup = spawn(rt, "boss", "supervisor", *SUPERVISOR_CAPS)
    task = schedule(rt, sup, "split", {"fan_out": ["a", "b", "c"], "behaviour": "echo"})
    run(rt)
    t = rt.state.tasks[task]
    assert t.status == "completed", t.error
    assert [r["result"] for r in t.result] == ["a", "b", "c"]
    children = [r["agent"] for r in t.result]
    for child in children:
        agent = rt.state.agents[child]
        assert (agent.parent, agent.spawned_by, agent.behaviour) == (sup, sup, "echo")
    done = rt.log.query(kinds=["task.completed"])
    assert sorted(r.principal for r in done) == sorted([*children, sup])
    spawned = rt.log.query(kinds=["agent.spawned"], principal=sup)
    assert len(spawned) == 3


def test_supervisor_grants_children_only_what_they_need_expiring_with_its_own(rt: Runtime):
    sup = spawn(rt, "boss", "supervisor", *SUPERVISOR_CAPS, "tool.invoke:tool/echo", ttl=900)
    plan = {"steps": [{"tool": "echo", "args": {"n": 1}}]}
    payload = {
        "fan_out": [{"description": "plan it", "payload": plan}] * 2,
        "behaviour": "planner",
        "caps": ["tool.invoke:tool/echo"],
    }
    task = schedule(rt, sup, "delegate", payload)
    run(rt)
    t = rt.state.tasks[task]
    assert t.status == "completed", t.error
    sup_grant = next(g for g in rt.state.grants.values() if "cap.grant:agent/*" in g.caps)
    for entry in t.result:
        assert entry["result"] == [{"n": 1}]
        grants = [g for g in rt.state.grants.values() if g.subject == entry["agent"]]
        delegated = [g for g in grants if g.caps == ["tool.invoke:tool/echo"]]
        assert len(delegated) == 1
        assert delegated[0].exp <= sup_grant.exp
        assert all(g.exp <= sup_grant.exp for g in grants)


def test_supervisor_without_the_spawn_capability_fails_with_denied(rt: Runtime):
    sup = spawn(rt, "boss", "supervisor", "task.schedule:agent/*")
    task = schedule(rt, sup, "split", {"fan_out": ["a"]})
    run(rt)
    assert rt.state.tasks[task].error.startswith("subtask 1: denied: ")


def test_supervisor_waits_without_blocking_and_fails_if_a_child_fails(rt: Runtime):
    sup = spawn(rt, "boss", "supervisor", *SUPERVISOR_CAPS)
    task = schedule(rt, sup, "split", {"fan_out": ["ok", "bad"], "behaviour": "manual"})
    runner = Runner(rt)
    runner.run(until_idle=True)  # returns: the children are manual, nothing is runnable
    t = rt.state.tasks[task]
    assert t.status == "started" and t.lease_until is None  # waiting holds no lease
    child_tasks = [x for x in rt.state.tasks.values() if x.agent != sup]
    first, second = child_tasks
    Client(rt, first.agent).complete(first.id, "fine")
    Client(rt, second.agent).fail(second.id, "broken")
    runner.run(until_idle=True)
    t = rt.state.tasks[task]
    assert t.status == "failed"
    assert (
        t.error == f"1 of 2 subtasks did not complete: {second.id} ({second.agent}) failed: broken"
    )
    assert len(rt.log.query(kinds=["agent.spawned"], principal=sup)) == 2


def test_behaviour_registry_refuses_unknown_names():
    assert names() == ["manual", "echo", "llm", "planner", "supervisor"]
    check_spawnable("planner")
    with pytest.raises(InvalidInput, match="unknown behaviour 'robot'"):
        check_spawnable("robot")
