"""Demo data: a realistic scenario seeded into a home, and a paced synthetic load.

Everything goes through signed Operations, each agent acting with its own key and
token, so the log a demo leaves behind verifies and replays like any other.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import msgspec

from toka.core.demo import team
from toka.core.errors import InvalidInput, TokaError
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.model.state import Budgets
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client

DAY_S = 24 * 3600
LOAD_AGENTS = 3
MAX_LOAD_BATCH = 500


class DemoSummary(msgspec.Struct):
    """What ``seed`` created: agent ids by role, grant ids, task ids, the log span."""

    agents: dict[str, str]
    grants: dict[str, str]
    tasks: dict[str, str]
    first_seq: int
    last_seq: int


def seed(runtime: Runtime) -> DemoSummary:
    """Seed one batch of the scenario; running it again adds another batch of agents.

    A planner hands work to an echo agent under a budgeted grant, a supervisor may pause
    and resume echo, tasks end completed and failed, observations are recorded, one
    grant is revoked and one agent is left paused.
    """
    first = runtime.state.seq + 1
    operator = Client(runtime)
    agents: dict[str, str] = {}
    for role in ("planner", "supervisor", "echo", "scratch"):
        behaviour = "echo" if role == "scratch" else role
        agents[role], _ = operator.spawn_agent(role, behaviour)
    planner, supervisor, echo, scratch = (agents[r] for r in agents)

    grants = {
        "planner_budget": operator.grant(
            planner,
            [f"task.schedule:agent/{echo}", f"observation.emit:agent/{echo}"],
            DAY_S,
            budgets=Budgets(max_ops=50),
        )
        .first(ev.CapabilityGranted)
        .jti,
        "supervisor": operator.grant(
            supervisor,
            [f"agent.pause:agent/{echo}", f"agent.resume:agent/{echo}"],
            DAY_S,
        )
        .first(ev.CapabilityGranted)
        .jti,
        "revoked": operator.grant(scratch, [f"task.schedule:agent/{echo}"], 3600)
        .first(ev.CapabilityGranted)
        .jti,
    }
    operator.revoke(grants["revoked"], "demo: scratch no longer schedules work for echo")

    as_planner = Client(runtime, planner)
    as_echo = Client(runtime, echo)
    as_supervisor = Client(runtime, supervisor)
    tasks: dict[str, str] = {}
    for name, description, payload in (
        ("summary", "summarize the overnight build logs", {"source": "ci", "nights": 1}),
        ("triage", "triage the three newest bug reports", {"limit": 3}),
        ("digest", "draft the weekly status digest", {"week": 42}),
    ):
        outcome = as_planner.schedule(echo, description, payload)
        tasks[name] = outcome.first(ev.TaskScheduled).task
    as_planner.observe(echo, {"note": "handed three tasks to echo", "tasks": len(tasks)})

    as_echo.complete(tasks["summary"], {"summary": "2 flaky tests, 0 failures", "lines": 1834})
    as_echo.fail(tasks["triage"], "the bug tracker did not answer within 30 s")
    as_echo.observe(echo, {"progress": "digest outline ready", "percent": 40})
    as_supervisor.pause(echo)
    as_supervisor.resume(echo)
    tasks["review"] = (
        operator.schedule(
            scratch, "review the revoked-grant audit trail", {"grant": grants["revoked"]}
        )
        .first(ev.TaskScheduled)
        .task
    )
    operator.observe(scratch, {"note": "paused pending review"})
    operator.pause(scratch)
    # One agent of each behaviour with work queued, for a runner (toka run, toka tui) to do.
    seeded = team.seed(operator)
    agents.update(seeded["agents"])
    tasks.update(seeded["tasks"])
    return DemoSummary(agents, grants, tasks, first, runtime.state.seq)


class LoadSummary(msgspec.Struct):
    sent: int
    applied: int
    refused: int
    seconds: float
    target_rate: float
    achieved_rate: float
    first_seq: int
    last_seq: int


def stream_load(
    runtime: Runtime,
    rate: float,
    seconds: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> LoadSummary:
    """Stream signed operations at ``rate`` per second for ``seconds``: the operator
    schedules tasks, the load agents complete their own tasks and emit observations.

    Operations that fall due together (the store is behind, or the rate is high) are
    submitted as one batch, so the pacing holds as long as the store keeps up.
    """
    if rate <= 0 or seconds <= 0:
        raise InvalidInput("--load RATE and --seconds must both be positive")
    operator = Client(runtime)
    first = runtime.state.seq + 1
    agents = [operator.spawn_agent(f"load-{i}", "manual")[0] for i in range(LOAD_AGENTS)]
    op_token = runtime.token_for("operator", ["task.schedule:agent/*"])
    clients = {
        a: Client(runtime, a, token=runtime.token_for(a, [f"observation.emit:agent/{a}"]))
        for a in agents
    }
    operator = Client(runtime, token=op_token)
    open_tasks: dict[str, list[str]] = {a: [] for a in agents}
    kinds = itertools.cycle(("schedule", "observe", "complete"))
    targets = itertools.cycle(agents)
    total = max(1, round(rate * seconds))
    sent = applied = refused = 0
    start = clock()
    while sent < total:
        due = min(total, int((clock() - start) * rate) + 1) - sent
        if due <= 0:
            sleep(max(0.0, start + sent / rate - clock()))
            continue
        batch: list[ops.SignedOperation] = []
        owners: list[tuple[str, str]] = []
        for _ in range(min(due, MAX_LOAD_BATCH)):
            kind, agent = next(kinds), next(targets)
            if kind == "complete" and open_tasks[agent]:
                task = open_tasks[agent].pop(0)
                batch.append(clients[agent].sign(ops.CompleteTask(task, {"ok": True})))
            elif kind == "observe":
                batch.append(
                    clients[agent].sign(ops.EmitObservation(agent, {"load": sent + len(batch)}))
                )
            else:
                kind = "schedule"
                batch.append(
                    operator.sign(ops.ScheduleTask(agent, f"load task {sent + len(batch)}"))
                )
            owners.append((kind, agent))
        results = runtime.submit_many(batch) if len(batch) > 1 else _one(runtime, batch[0])
        for (kind, agent), result in zip(owners, results, strict=True):
            if isinstance(result, TokaError):
                refused += 1
                continue
            applied += 1
            if kind == "schedule":
                open_tasks[agent].append(result.first(ev.TaskScheduled).task)
        sent += len(batch)
    elapsed = max(clock() - start, 1e-9)
    return LoadSummary(
        sent=sent,
        applied=applied,
        refused=refused,
        seconds=round(elapsed, 3),
        target_rate=rate,
        achieved_rate=round(sent / elapsed, 1),
        first_seq=first,
        last_seq=runtime.state.seq,
    )


def _one(runtime: Runtime, signed: ops.SignedOperation) -> list:
    try:
        return [runtime.submit(signed)]
    except TokaError as exc:
        return [exc]
