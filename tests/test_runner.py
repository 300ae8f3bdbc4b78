"""The agent runner: tasks driven as their agents, leases, and exactly-once steps."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import msgspec
import pytest

from toka.core.agents.behaviours.echo import Echo
from toka.core.agents.runner import Runner
from toka.core.agents.steps import TaskRun, step_nonce
from toka.core.errors import InvalidOperation
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.runtime.home import Home

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Crash(BaseException):
    """Stands in for the runner process dying: nothing in the runner catches it."""


class Scripted:
    """A test behaviour: emits one observation per step, then completes with their count.

    ``crash_after`` makes the first pass die right after that many new steps; ``hook``
    runs before each observation step."""

    name = "scripted"

    def __init__(self, steps: int = 3, crash_after: int | None = None, hook=None):
        self.steps = steps
        self.crash_after = crash_after
        self.hook = hook
        self.calls = 0

    def check_ready(self) -> None:
        return None

    def run(self, task: TaskRun) -> None:
        for i in range(self.steps):
            if self.hook is not None:
                self.hook(task, i)
            task.submit(ops.EmitObservation(task.agent.id, {"step": i, "task": task.id}))
            self.calls += 1
            if self.crash_after is not None and self.calls == self.crash_after:
                self.crash_after = None
                raise Crash
        task.complete(self.steps)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def home(tmp_path: Path, clock: Clock) -> Home:
    h = Home(tmp_path / "home")
    h.init(now=clock())
    return h


@pytest.fixture
def rt(home: Home, clock: Clock):
    runtime = Runtime(home, clock=clock)
    yield runtime
    runtime.close()


def kinds_for(rt: Runtime, kind: str) -> list:
    return [r for r in rt.log.query(kinds=[kind], limit=10_000)]


def spawn(rt: Runtime, name: str, behaviour: str) -> str:
    agent, _ = Client(rt).spawn_agent(name, behaviour)
    return agent


def test_echo_agent_completes_each_task_with_its_description_as_itself(rt: Runtime):
    agent = spawn(rt, "e", "echo")
    tasks = [Client(rt).schedule(agent, f"say {i}").first(ev.TaskScheduled).task for i in range(3)]
    runner = Runner(rt, runner_id="r1")
    assert runner.run(until_idle=True) == 3
    assert [rt.state.tasks[t].result for t in tasks] == ["say 0", "say 1", "say 2"]
    completed = kinds_for(rt, "task.completed")
    assert {r.principal for r in completed} == {agent}
    assert runner.status == "off"


def test_manual_agents_are_left_to_people(rt: Runtime):
    manual = spawn(rt, "m", "manual")
    task = Client(rt).schedule(manual, "by hand").first(ev.TaskScheduled).task
    assert Runner(rt).run(until_idle=True) == 0
    assert rt.state.tasks[task].status == "scheduled"


def test_agent_filter_drives_only_that_agent(rt: Runtime):
    a, b = spawn(rt, "a", "echo"), spawn(rt, "b", "echo")
    ta = Client(rt).schedule(a, "x").first(ev.TaskScheduled).task
    tb = Client(rt).schedule(b, "y").first(ev.TaskScheduled).task
    Runner(rt, agent=a).run(until_idle=True)
    assert (rt.state.tasks[ta].status, rt.state.tasks[tb].status) == ("completed", "scheduled")


def test_paused_agents_tasks_wait_until_resumed(rt: Runtime):
    agent = spawn(rt, "p", "echo")
    op = Client(rt)
    task = op.schedule(agent, "later").first(ev.TaskScheduled).task
    op.pause(agent)
    runner = Runner(rt)
    assert runner.run(until_idle=True) == 0
    assert rt.state.tasks[task].status == "scheduled"
    op.resume(agent)
    assert runner.run(until_idle=True) == 1
    assert rt.state.tasks[task].status == "completed"


def test_terminating_an_agent_cancels_its_open_tasks_and_the_runner_leaves_them(rt: Runtime):
    agent = spawn(rt, "t", "echo")
    op = Client(rt)
    task = op.schedule(agent, "never").first(ev.TaskScheduled).task
    kinds = [e.kind for e in op.terminate(agent).events]
    assert "task.cancelled" in kinds
    assert Runner(rt).run(until_idle=True) == 0
    assert rt.state.tasks[task].status == "cancelled"


def test_a_leased_task_is_refused_to_other_runners_until_the_lease_expires(
    rt: Runtime, clock: Clock
):
    agent = spawn(rt, "l", "manual")
    task = Client(rt).schedule(agent, "x").first(ev.TaskScheduled).task
    as_agent = Client(rt, agent)
    as_agent.submit(ops.StartTask(task, "runner-a", 30))
    assert rt.state.tasks[task].lease_until == rt.state.ts + 30_000
    with pytest.raises(InvalidOperation, match="leased by runner runner-a"):
        as_agent.submit(ops.StartTask(task, "runner-b", 30))
    as_agent.submit(ops.StartTask(task, "runner-a", 30))  # the holder renews at any time
    clock.advance(31)
    as_agent.submit(ops.StartTask(task, "runner-b", 30))
    assert rt.state.tasks[task].runner == "runner-b"


def test_a_released_task_can_be_taken_at_once(rt: Runtime):
    agent = spawn(rt, "l", "manual")
    task = Client(rt).schedule(agent, "x").first(ev.TaskScheduled).task
    as_agent = Client(rt, agent)
    as_agent.submit(ops.StartTask(task, "runner-a", 600))
    with pytest.raises(InvalidOperation, match="not leased by runner runner-b"):
        as_agent.submit(ops.ReleaseTask(task, "runner-b"))
    as_agent.submit(ops.ReleaseTask(task, "runner-a"))
    as_agent.submit(ops.StartTask(task, "runner-b", 600))
    assert rt.state.tasks[task].runner == "runner-b"


def test_a_runner_that_dies_mid_task_is_replaced_without_repeating_a_step(
    home: Home, rt: Runtime, clock: Clock
):
    agent = spawn(rt, "s", "scripted")
    task = Client(rt).schedule(agent, "three steps").first(ev.TaskScheduled).task
    dying = Runner(rt, runner_id="runner-a", lease_s=30, behaviours={"scripted": Scripted(3, 2)})
    with pytest.raises(Crash):
        dying.step()
    assert len(kinds_for(rt, "observation.emitted")) == 2

    with Runtime(home, clock=clock) as other:
        behaviour = Scripted(3)
        heir = Runner(other, runner_id="runner-b", lease_s=30, behaviours={"scripted": behaviour})
        assert heir.step() == 0  # runner-a's lease is still live: the heir waits it out
        assert heir.others_working() is True
        clock.advance(31)
        assert heir.run(until_idle=True) == 1
        assert other.state.tasks[task].status == "completed"
        assert other.state.tasks[task].runner == "runner-b"
    observed = [
        msgspec.json.decode(r.payload)["data"]["step"] for r in kinds_for(rt, "observation.emitted")
    ]
    assert observed == [0, 1, 2]
    assert len(kinds_for(rt, "task.completed")) == 1


def test_a_step_refused_because_the_agent_was_paused_is_retried_after_resume(rt: Runtime):
    agent = spawn(rt, "p", "scripted")
    task = Client(rt).schedule(agent, "x").first(ev.TaskScheduled).task
    paused = []

    def pause_once(run: TaskRun, step: int) -> None:
        if step == 1 and not paused:
            paused.append(Client(rt).pause(agent))  # lands while the runner is mid-task

    runner = Runner(rt, behaviours={"scripted": Scripted(3, hook=pause_once)})
    runner.run(until_idle=True)
    assert rt.state.tasks[task].status == "started"
    refused = rt.log.operation(agent, step_nonce(task, 1, 0))
    assert refused is not None and refused.error_code == "agent_not_running"
    Client(rt).resume(agent)
    runner.run(until_idle=True)
    assert rt.state.tasks[task].status == "completed"
    steps = [
        msgspec.json.decode(r.payload)["data"]["step"] for r in kinds_for(rt, "observation.emitted")
    ]
    assert steps == [0, 1, 2]


class Fickle:
    """Decides differently on replay: a bug the runner must catch, not paper over."""

    name = "fickle"

    def __init__(self) -> None:
        self.passes = 0

    def check_ready(self) -> None:
        return None

    def run(self, task: TaskRun) -> None:
        self.passes += 1
        if self.passes == 1:
            task.submit(ops.EmitObservation(task.agent.id, "first"))
            task.wait("come back later")
        task.submit(ops.ScheduleTask(task.agent.id, "something else"))


def test_a_behaviour_that_decides_differently_on_replay_fails_its_task(rt: Runtime):
    agent = spawn(rt, "f", "fickle")
    task = Client(rt).schedule(agent, "x").first(ev.TaskScheduled).task
    runner = Runner(rt, behaviours={"fickle": Fickle()})
    runner.step()
    Client(rt).observe(agent, "something happened")  # the waiting task is looked at again
    runner.run(until_idle=True)
    t = rt.state.tasks[task]
    assert t.status == "failed"
    assert t.error.startswith("nondeterministic: step 0 of task")


class Oversized:
    name = "oversized"

    def check_ready(self) -> None:
        return None

    def run(self, task: TaskRun) -> None:
        task.complete("x" * 300_000)


def test_a_refused_completion_fails_the_task_with_the_kernels_reason(rt: Runtime):
    agent = spawn(rt, "o", "oversized")
    task = Client(rt).schedule(agent, "x").first(ev.TaskScheduled).task
    Runner(rt, behaviours={"oversized": Oversized()}).run(until_idle=True)
    t = rt.state.tasks[task]
    assert t.status == "failed"
    assert t.error.startswith("invalid_operation: task result is")


def test_a_task_the_runner_cannot_take_is_not_retried_until_grants_change(rt: Runtime):
    agent = spawn(rt, "r", "echo")
    op = Client(rt)
    task = op.schedule(agent, "x").first(ev.TaskScheduled).task
    base = next(g.jti for g in rt.state.grants.values() if g.subject == agent)
    op.revoke(base)
    runner = Runner(rt)
    runner.run(until_idle=True)
    assert task in runner.stuck
    before = rt.state.seq
    assert runner.step() == 0
    assert rt.state.seq == before  # no refusal flood: the stuck task is not retried
    op.grant(agent, [f"task.start:agent/{agent}", f"task.complete:agent/{agent}"], 600)
    runner.run(until_idle=True)
    assert rt.state.tasks[task].status == "completed"


def test_step_nonces_are_stable_and_distinct():
    assert step_nonce("tk-5", 0) == step_nonce("tk-5", 0)
    nonces = {step_nonce(t, i, a) for t in ("tk-5", "tk-6") for i in range(3) for a in range(2)}
    assert len(nonces) == 12


def test_runner_refuses_bad_settings(rt: Runtime):
    with pytest.raises(Exception, match="unknown agent"):
        Runner(rt, agent="ag-nobody")
    with pytest.raises(Exception, match="lease"):
        Runner(rt, lease_s=0)
    with pytest.raises(Exception, match="pace"):
        Runner(rt, pace_s=-1)


def test_a_runner_in_a_thread_stops_on_its_event(rt: Runtime, home: Home, clock: Clock):
    import threading

    stop = threading.Event()
    with Runtime(home, clock=clock) as own:
        runner = Runner(own, behaviours={"echo": Echo()})
        thread = threading.Thread(target=runner.run, kwargs={"stop_event": stop, "poll_s": 0.01})
        thread.start()
        agent = spawn(rt, "e", "echo")
        task = Client(rt).schedule(agent, "in the background").first(ev.TaskScheduled).task
        for _ in range(500):
            rt.catch_up()
            if rt.state.tasks[task].status == "completed":
                break
            threading.Event().wait(0.01)
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert rt.state.tasks[task].result == "in the background"
    assert runner.status == "off"


def test_another_principal_squatting_a_steps_nonce_neither_fails_nor_alters_the_task(rt: Runtime):
    from toka.core.tools import invoke, register_builtins

    register_builtins(Client(rt))
    victim = spawn(rt, "victim", "scripted")
    attacker = spawn(rt, "attacker", "manual")
    Client(rt).grant(attacker, ["tool.invoke:tool/echo"], 600)
    task = Client(rt).schedule(victim, "x").first(ev.TaskScheduled).task
    # The attacker computes the victim's step nonces and uses them first: an observation
    # of its own for step 0, a tool call of its own for step 1.
    squat = Client(rt, attacker)
    rt.submit(
        squat.sign(ops.EmitObservation(attacker, {"step": "forged"}), nonce=step_nonce(task, 0))
    )
    forged = squat.sign(ops.InvokeTool("echo", {"forged": True}), nonce=step_nonce(task, 1))
    assert invoke(rt, forged).ok
    Runner(rt, behaviours={"scripted": Scripted(2)}).run(until_idle=True)
    done = rt.state.tasks[task]
    assert (done.status, done.result, done.error) == ("completed", 2, None)
    observed = [
        (r.principal, msgspec.json.decode(r.payload)["data"])
        for r in kinds_for(rt, "observation.emitted")
    ]
    assert observed == [
        (attacker, {"step": "forged"}),
        (victim, {"step": 0, "task": task}),
        (victim, {"step": 1, "task": task}),
    ]


class Slow:
    """One step that takes longer than the lease: a remembered fact that is slow to get."""

    name = "slow"

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.computed: list[str] = []

    def check_ready(self) -> None:
        return None

    def run(self, task: TaskRun) -> None:
        def compute() -> str:
            self.computed.append(task.runner.runner_id)
            time.sleep(self.seconds)
            return "slow answer"

        task.complete(task.remember(compute))


def test_a_step_longer_than_the_lease_runs_once_with_two_runners(tmp_path: Path):
    home = Home(tmp_path / "shared")
    home.init()
    slow = Slow(seconds=4.5)  # the lease is 2 s: without renewal it lapses mid-step
    with Runtime(home) as first, Runtime(home) as second:
        agent = spawn(first, "slowpoke", "slow")
        task = Client(first).schedule(agent, "think").first(ev.TaskScheduled).task
        stop = threading.Event()
        runners = [
            Runner(rt, runner_id=name, lease_s=2, behaviours={"slow": slow})
            for rt, name in ((first, "r1"), (second, "r2"))
        ]
        threads = [threading.Thread(target=r.run, kwargs={"stop_event": stop}) for r in runners]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            first.catch_up()
            if first.state.tasks[task].status == "completed":
                break
            time.sleep(0.05)
        time.sleep(2.5)  # time for a second runner to (wrongly) take the task over
        stop.set()
        for t in threads:
            t.join(timeout=30)
        first.catch_up()
        assert first.state.tasks[task].status == "completed"
        assert len(slow.computed) == 1, slow.computed  # the step ran once
        started = [
            msgspec.json.decode(r.payload)["runner"] for r in kinds_for(first, "task.started")
        ]
        assert set(started) == {slow.computed[0]}  # renewed by its runner, never taken over
