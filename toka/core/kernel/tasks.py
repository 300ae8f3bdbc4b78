"""Tasks: schedule, lease (start, release), complete, fail; cancelling is the agents' rule."""

from __future__ import annotations

import msgspec

from toka.core.errors import InvalidOperation
from toka.core.kernel.auth import authorize, required_caps
from toka.core.kernel.context import (
    MAX_DESCRIPTION_BYTES,
    MAX_LEASE_S,
    MAX_NAME_BYTES,
    MAX_OPEN_TASKS,
    MAX_PAYLOAD_BYTES,
    MAX_RESULT_BYTES,
    Ctx,
    Evolver,
    check_json,
    check_name,
    check_text,
    find_agent,
    find_task,
)
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.model.state import OPEN_TASK_STATUSES, Task, WorldState


def schedule(state: WorldState, op: ops.ScheduleTask, ctx: Ctx) -> list[msgspec.Struct]:
    authorize(state, ctx, required_caps(state, op))
    agent = find_agent(state, op.agent)
    check_text("task description", op.description, MAX_DESCRIPTION_BYTES)
    check_json("task payload", op.payload, MAX_PAYLOAD_BYTES)
    if agent.status == "terminated":
        raise InvalidOperation(f"agent {agent.id} is terminated; it takes no tasks")
    if agent.open_tasks >= MAX_OPEN_TASKS:
        raise InvalidOperation(f"agent {agent.id} already has {MAX_OPEN_TASKS} open tasks")
    return [ev.TaskScheduled(f"tk-{ctx.seq}", agent.id, op.description, op.payload)]


def _open_task(
    state: WorldState, op: ops.Operation, task_id: str, ctx: Ctx, *, past_budget: bool = False
) -> Task:
    task = find_task(state, task_id)
    authorize(state, ctx, required_caps(state, op), past_budget=past_budget)
    if task.status not in OPEN_TASK_STATUSES:
        raise InvalidOperation(f"task {task.id} is already {task.status}")
    return task


def start(state: WorldState, op: ops.StartTask, ctx: Ctx) -> list[msgspec.Struct]:
    task = _open_task(state, op, op.task, ctx)
    check_name("runner", op.runner, MAX_NAME_BYTES)
    if not 1 <= op.lease_s <= MAX_LEASE_S:
        raise InvalidOperation(f"lease must be between 1 s and {MAX_LEASE_S} s")
    if state.agents[task.agent].status != "running":
        raise InvalidOperation(f"agent {task.agent} is {state.agents[task.agent].status}")
    held = task.status == "started" and task.runner != op.runner
    if held and task.lease_until is not None and ctx.ts < task.lease_until:
        raise InvalidOperation(
            f"task {task.id} is leased by runner {task.runner} for another "
            f"{(task.lease_until - ctx.ts + 999) // 1000} s"
        )
    return [ev.TaskStarted(task.id, op.runner, ctx.ts + op.lease_s * 1000)]


def release(state: WorldState, op: ops.ReleaseTask, ctx: Ctx) -> list[msgspec.Struct]:
    task = _open_task(state, op, op.task, ctx)
    if task.status != "started" or task.runner != op.runner or task.lease_until is None:
        raise InvalidOperation(f"task {task.id} is not leased by runner {op.runner}")
    return [ev.TaskReleased(task.id, op.runner)]


def complete(state: WorldState, op: ops.CompleteTask, ctx: Ctx) -> list[msgspec.Struct]:
    task = _open_task(state, op, op.task, ctx)
    check_json("task result", op.result, MAX_RESULT_BYTES)
    return [ev.TaskCompleted(task.id, op.result)]


def fail(state: WorldState, op: ops.FailTask, ctx: Ctx) -> list[msgspec.Struct]:
    # An agent whose operations budget is spent may still fail its task saying so:
    # otherwise the task would stay open for ever (its capabilities are still checked).
    spent = op.reason.startswith(BUDGET_REASON)
    task = _open_task(state, op, op.task, ctx, past_budget=spent)
    check_text("failure reason", op.reason, MAX_DESCRIPTION_BYTES)
    return [ev.TaskFailed(task.id, op.reason)]


BUDGET_REASON = "budget:"


# -- evolvers ----------------------------------------------------------------------


def _close(state: WorldState, task_id: str, status: str, r: ev.EventRecord) -> Task:
    task = state.tasks[task_id]
    task.status = status
    task.updated_ms = r.ts
    state.agents[task.agent].open_tasks -= 1
    return task


def _on_scheduled(state: WorldState, e: ev.TaskScheduled, r: ev.EventRecord) -> None:
    state.tasks[e.task] = Task(
        id=e.task,
        agent=e.agent,
        description=e.description,
        status="scheduled",
        scheduled_by=r.principal,
        created_ms=r.ts,
        updated_ms=r.ts,
        payload=e.payload,
    )
    state.agents[e.agent].open_tasks += 1


def _on_started(state: WorldState, e: ev.TaskStarted, r: ev.EventRecord) -> None:
    task = state.tasks[e.task]
    task.status = "started"
    task.runner = e.runner
    task.lease_until = e.lease_until
    task.updated_ms = r.ts


def _on_released(state: WorldState, e: ev.TaskReleased, r: ev.EventRecord) -> None:
    task = state.tasks[e.task]
    task.lease_until = None
    task.updated_ms = r.ts


def _on_completed(state: WorldState, e: ev.TaskCompleted, r: ev.EventRecord) -> None:
    _close(state, e.task, "completed", r).result = e.result


def _on_failed(state: WorldState, e: ev.TaskFailed, r: ev.EventRecord) -> None:
    _close(state, e.task, "failed", r).error = e.reason


def _on_cancelled(state: WorldState, e: ev.TaskCancelled, r: ev.EventRecord) -> None:
    _close(state, e.task, "cancelled", r).error = e.reason


EVOLVERS: dict[str, Evolver] = {
    "task.scheduled": _on_scheduled,
    "task.started": _on_started,
    "task.released": _on_released,
    "task.completed": _on_completed,
    "task.failed": _on_failed,
    "task.cancelled": _on_cancelled,
}
