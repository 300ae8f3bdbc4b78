"""Property: random valid and invalid operation sequences never crash the kernel, and
replaying the log reaches the same state hash."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from toka.core.errors import TokaError
from toka.core.model import ops
from toka.core.model.keys import KeyPair
from toka.core.model.state import Budgets
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.runtime.home import Home

KEYS = [KeyPair.from_seed(bytes([i])) for i in range(3)]
WORDS = st.sampled_from(["", " ", "scan", "x" * 300, "report", "ünïcode"])
CAPS = st.sampled_from(
    [
        "*:*",
        "task.schedule:agent/*",
        "task.*:*",
        "frob:x",
        "agent.pause:agent/*",
        "observation.emit:*",
        "cap.grant:agent/*",
    ]
)


def op_strategy():
    agent = st.sampled_from(["A0", "A1", "A2", "ag-ghost"])
    task = st.sampled_from(["T0", "T1", "tk-999"])
    grant = st.sampled_from(["G0", "G1", "gr-2", "gr-999"])
    return st.one_of(
        st.builds(lambda i, w: ("spawn", i, w), st.integers(0, 2), WORDS),
        st.builds(lambda a: ("pause", a), agent),
        st.builds(lambda a: ("resume", a), agent),
        st.builds(lambda a: ("terminate", a), agent),
        st.builds(lambda a, w: ("schedule", a, w), agent, WORDS),
        st.builds(lambda t: ("complete", t), task),
        st.builds(lambda t, w: ("fail", t, w), task, WORDS),
        st.builds(lambda a, w: ("observe", a, w), agent, WORDS),
        st.builds(
            lambda a, c, ttl, n: ("grant", a, c, ttl, n),
            agent,
            st.lists(CAPS, max_size=3),
            st.integers(-5, 10_000),
            st.none() | st.integers(0, 3),
        ),
        st.builds(lambda g: ("revoke", g), grant),
    )


def steps_strategy():
    actor = st.sampled_from(["operator", "A0", "A1"])
    return st.lists(st.tuples(actor, op_strategy()), max_size=25)


class Clock:
    def __init__(self):
        self.t = 1_900_000_000.0

    def __call__(self):
        return self.t


@pytest.fixture(scope="module")
def base_home(tmp_path_factory):
    return tmp_path_factory.mktemp("prop")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps_strategy())
def test_random_operations_never_crash_and_replay_matches(base_home, steps):
    import tempfile

    root = tempfile.mkdtemp(dir=base_home)
    home = Home(f"{root}/home")
    clock = Clock()
    home.init(now=clock.t)
    rt = Runtime(home, clock=clock)
    agents: dict[str, str] = {}
    tasks: list[str] = []
    grants: list[str] = []
    applied: list[str] = []

    def resolve(name: str) -> str:
        if name.startswith("A"):
            return agents.get(name, "ag-unborn0")
        if name.startswith("T"):
            i = int(name[1:])
            return tasks[i] if i < len(tasks) else "tk-unborn"
        if name.startswith("G"):
            i = int(name[1:])
            return grants[i] if i < len(grants) else "gr-unborn"
        return name

    try:
        for index in (0, 1):
            agent_id, _ = Client(rt).spawn_agent(f"seed{index}", key=KEYS[index])
            agents[f"A{index}"] = agent_id
        for actor, step in steps:
            clock.t += 1
            principal = "operator" if actor == "operator" else agents.get(actor)
            if principal is None:
                continue
            client = Client(rt, principal)
            verb, *rest = step
            if verb == "spawn":
                op = ops.SpawnAgent(rest[1] or "a", KEYS[rest[0]].public_key)
            elif verb in ("pause", "resume", "terminate"):
                cls = {
                    "pause": ops.PauseAgent,
                    "resume": ops.ResumeAgent,
                    "terminate": ops.TerminateAgent,
                }[verb]
                op = cls(resolve(rest[0]))
            elif verb == "schedule":
                op = ops.ScheduleTask(resolve(rest[0]), rest[1])
            elif verb == "complete":
                op = ops.CompleteTask(resolve(rest[0]), {"r": 1})
            elif verb == "fail":
                op = ops.FailTask(resolve(rest[0]), rest[1])
            elif verb == "observe":
                op = ops.EmitObservation(resolve(rest[0]), rest[1])
            elif verb == "grant":
                op = ops.GrantCapability(
                    resolve(rest[0]), rest[1], rest[2], Budgets(max_ops=rest[3])
                )
            else:
                op = ops.RevokeCapability(resolve(rest[0]))
            try:
                signed = client.sign(op)
                outcome = rt.submit(signed)
                applied.append(verb)
            except TokaError:
                continue
            for e in outcome.events:
                p = e.payload
                if e.kind == "agent.spawned":
                    index = next(i for i, k in enumerate(KEYS) if k.public_key == p.public_key)
                    agents[f"A{index}"] = p.agent
                    if not home.keystore.has(p.agent):
                        home.keystore.save(p.agent, KEYS[index])
                elif e.kind == "task.scheduled":
                    tasks.append(p.task)
                elif e.kind == "capability.granted":
                    grants.append(p.jti)
        event(f"applied {min(len(applied), 5)}+ ops")
        live = rt.state.state_hash()
        assert rt.replay().state_hash() == live
        assert rt.verify()["ok"]
        fresh = Runtime(home, clock=clock)
        assert fresh.state.state_hash() == live
        fresh.close()
    finally:
        rt.close()


def test_apply_does_not_mutate_state(runtime, operator):
    from toka.core import kernel

    agent, _ = operator.spawn_agent("a")
    before = runtime.state.state_hash()
    ctx = kernel.Ctx(runtime.state.seq + 1, runtime.state.ts, "operator", "gr-2", "d" * 64)
    for op in (
        ops.ScheduleTask(agent, "x"),
        ops.TerminateAgent(agent),
        ops.PauseAgent(agent),
        ops.GrantCapability(agent, ["task.fail:*"], 60),
        ops.RevokeCapability("gr-2"),
    ):
        kernel.apply(runtime.state, op, ctx)
    assert runtime.state.state_hash() == before


def test_same_state_same_op_same_ctx_same_events(runtime, operator):
    from toka.core import kernel

    agent, _ = operator.spawn_agent("a")
    ctx = kernel.Ctx(runtime.state.seq + 1, 1234, "operator", "gr-2", "d" * 64)
    op = ops.TerminateAgent(agent, "done")
    assert kernel.apply(runtime.state, op, ctx) == kernel.apply(runtime.state.copy(), op, ctx)
