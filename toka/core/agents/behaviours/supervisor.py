"""``supervisor``: fans a task out to child agents and completes when they all have.

The task payload::

    {"fan_out": ["subtask", {"description": "...", "payload": {...}}, ...],
     "behaviour": "echo",                       # the children's behaviour (default echo)
     "caps": ["tool.invoke:tool/echo"],         # optional: granted to each child
     "budgets": {"max_ops": 10}}                # optional: the budgets of that grant

For each subtask the supervisor spawns a child agent (its ``parent`` is the
supervisor; its base grant derives from, and expires with, the supervisor's grant),
grants it ``caps`` if given (delegated from the supervisor's own grant, so never more
than the supervisor holds, expiring with it), and schedules the subtask for it. The
supervisor then waits without blocking anyone: the children's task ids are in its
recorded steps, and each later pass re-reads their status from the world state. When
every child task has completed, the task completes with their results, in order; if
any failed or was cancelled, it fails naming them.

The supervisor needs ``agent.spawn:behaviour/<behaviour>``,
``task.schedule:agent/*`` and, to grant ``caps``, ``cap.grant:agent/*`` plus the
caps themselves.
"""

from __future__ import annotations

from typing import Any

import msgspec

from toka.core.agents.steps import TaskRun
from toka.core.errors import Denied, InvalidInput, TokaError
from toka.core.model import caps as capmod
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.model.state import OPEN_TASK_STATUSES, Budgets

MAX_CHILDREN = 100
CLOCK_MARGIN_S = 5  # a child's grant ends this long before its supervisor's


class Subtask(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    description: str
    payload: Any = None


class FanOut(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    fan_out: list[str | Subtask]
    behaviour: str = "echo"
    caps: list[str] = []
    budgets: Budgets = Budgets()


def parse_fan_out(payload: Any) -> FanOut:
    try:
        spec = msgspec.convert(payload, FanOut)
    except msgspec.ValidationError as exc:
        raise InvalidInput(
            f'{exc} (expected {{"fan_out": ["subtask", ...], "behaviour": "echo"}})'
        ) from None
    if not 1 <= len(spec.fan_out) <= MAX_CHILDREN:
        raise InvalidInput(f"fan_out takes 1 to {MAX_CHILDREN} subtasks, not {len(spec.fan_out)}")
    if spec.caps:
        capmod.validate(spec.caps)
    return spec


class Supervisor:
    name = "supervisor"
    summary = "spawns one child agent per subtask, waits for all, completes with their results"

    def check_ready(self) -> None:
        return None

    def run(self, task: TaskRun) -> None:
        try:
            spec = parse_fan_out(task.payload)
        except InvalidInput as exc:
            task.fail(f"invalid fan-out: {exc.message}")
        children: list[tuple[str, str]] = []
        for n, item in enumerate(spec.fan_out, start=1):
            sub = Subtask(item) if isinstance(item, str) else item
            label = f"subtask {n}"
            try:
                child = task.spawn(f"{task.agent.name}-{n}", spec.behaviour)
                if spec.caps:
                    # The TTL depends on the clock: remembered (a step of its own), so a
                    # replay submits the very grant it recorded.
                    ttl = task.remember(lambda c=child: {"child": c, "ttl_s": self._ttl(task, c)})
                    task.submit(
                        ops.GrantCapability(child, list(spec.caps), ttl["ttl_s"], spec.budgets)
                    )
                scheduled = task.submit(ops.ScheduleTask(child, sub.description, sub.payload))
            except Denied as exc:
                task.fail(f"{label}: denied: {exc.message}")
            except TokaError as exc:
                task.fail(f"{label}: {exc.reason}")
            children.append((child, scheduled.first(ev.TaskScheduled).task))

        tasks = task.state.tasks
        still_open = [t for _, t in children if tasks[t].status in OPEN_TASK_STATUSES]
        if still_open:
            task.wait(f"{len(still_open)} of {len(children)} subtasks open")
        failed = [tasks[t] for _, t in children if tasks[t].status != "completed"]
        if failed:
            task.fail(
                f"{len(failed)} of {len(children)} subtasks did not complete: "
                + "; ".join(f"{t.id} ({t.agent}) {t.status}: {t.error}" for t in failed)
            )
        task.complete(
            [{"agent": agent, "task": t, "result": tasks[t].result} for agent, t in children]
        )

    @staticmethod
    def _ttl(task: TaskRun, child: str) -> int:
        """How long a child's grant may live: until shortly before the supervisor's own expires.

        The kernel measures the grant's expiry from the commit's clock, which may have
        ticked past the second read here; CLOCK_MARGIN_S keeps the request inside the
        supervisor's grant however long the step takes to reach the log.
        """
        now_s = task.runtime.now_ms() // 1000
        wanted = f"cap.grant:agent/{child}"
        grants = [
            g
            for g in task.state.active_grants(task.agent.id, now_s)
            if capmod.covers(g.caps, wanted)
        ]
        return max(1, grants[-1].exp - now_s - CLOCK_MARGIN_S) if grants else 1
