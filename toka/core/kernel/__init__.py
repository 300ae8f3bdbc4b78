"""The deterministic kernel.

``apply(state, op, ctx)`` decides which events an operation produces; it reads the
state and never changes it, and takes time and ids only from ``ctx``.
``evolve(state, record)`` folds one logged event into the state; replaying the
log through ``evolve`` rebuilds the identical state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from toka.core.errors import (
    AgentNotRunning,
    BindingMismatch,
    BudgetExhausted,
    InvalidInput,
    InvalidOperation,
    NotCovered,
    NotFound,
    Revoked,
    TokenExpired,
    TokenInvalid,
)
from toka.core.model import caps as capmod
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.model.keys import agent_id_for, unb64
from toka.core.model.state import OPEN_TASK_STATUSES, Agent, Grant, Task, Tool, WorldState

MAX_NAME_BYTES = 256
MAX_DESCRIPTION_BYTES = 4096
MAX_OBSERVATION_BYTES = 1024 * 1024
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_RESULT_BYTES = 256 * 1024
MAX_OPEN_TASKS = 10_000
MAX_TTL_S = 10 * 365 * 24 * 3600
MAX_LEASE_S = 3600
KERNEL = "kernel"
OPERATOR = "operator"
BASE_ACTIONS = ("task.start", "task.complete", "task.fail", "observation.emit")

_json = msgspec.json.Encoder(order="sorted")


class Ctx(msgspec.Struct, frozen=True):
    """What the runtime knows about one operation: log position, time, who, under which grant."""

    seq: int
    ts: int
    principal: str
    grant: str | None
    op_digest: str
    outcome: Any = None
    # The signed operation's canonical JSON (what an approval queue holds), and, when an
    # approved operation is being applied, the approval that released it.
    signed: bytes = b""
    approval: str | None = None


def _size(value: Any) -> int:
    try:
        return len(_json.encode(value))
    except (TypeError, msgspec.EncodeError) as exc:
        raise InvalidInput(f"value is not JSON-encodable: {exc}") from exc


def _check_text(label: str, value: str, limit: int, *, empty_ok: bool = False) -> None:
    size = len(value.encode())
    if size > limit:
        raise InvalidOperation(f"{label} is {size} bytes, over the {limit} byte limit")
    if not empty_ok and not value.strip():
        raise InvalidOperation(f"{label} must not be empty")


def _check_json(label: str, value: Any, limit: int) -> None:
    size = _size(value)
    if size > limit:
        raise InvalidOperation(f"{label} is {size} bytes, over the {limit} byte limit")


def subject_resource(state: WorldState, subject: str) -> str:
    return f"agent/{subject}" if subject in state.agents else f"principal/{subject}"


def _agent(state: WorldState, agent_id: str) -> Agent:
    agent = state.agents.get(agent_id)
    if agent is None:
        raise NotFound(f"unknown agent {agent_id!r}")
    return agent


def _task(state: WorldState, task_id: str) -> Task:
    task = state.tasks.get(task_id)
    if task is None:
        raise NotFound(f"unknown task {task_id!r}")
    return task


def presenting_grant(state: WorldState, ctx: Ctx) -> Grant:
    """The grant behind the caller's token, checked against revocation, expiry and holder."""
    if ctx.grant is None:
        raise TokenInvalid("no token presented")
    grant = state.grants.get(ctx.grant)
    if grant is None:
        raise TokenInvalid(f"token {ctx.grant} was not issued by this kernel")
    if grant.subject != ctx.principal:
        raise BindingMismatch(f"token {grant.jti} belongs to {grant.subject}, not {ctx.principal}")
    for link in state.grant_chain(grant.jti):
        if link.revoked:
            which = "token" if link.jti == grant.jti else f"ancestor grant {link.jti} of token"
            raise Revoked(f"{which} {grant.jti} is revoked")
    if grant.exp * 1000 <= ctx.ts:
        raise TokenExpired(f"token {grant.jti} expired")
    agent = state.agents.get(ctx.principal)
    if agent is not None and agent.status != "running":
        raise AgentNotRunning(f"agent {agent.id} is {agent.status} and cannot act")
    return grant


def authorize(state: WorldState, ctx: Ctx, required: list[str]) -> Grant:
    grant = presenting_grant(state, ctx)
    for cap in required:
        if not capmod.covers(grant.caps, cap):
            raise NotCovered(f"{ctx.principal}'s token {grant.jti} does not cover {cap}")
    # An approved operation was counted when it entered the approval queue.
    already_counted = 1 if ctx.approval is not None else 0
    for link in state.grant_chain(grant.jti):
        limit = link.budgets.max_ops
        if limit is not None and link.usage.ops - already_counted >= limit:
            raise BudgetExhausted(
                f"budget: grant {link.jti} has used {link.usage.ops} of {limit} operations"
            )
    return grant


def required_caps(state: WorldState, op: ops.Operation) -> list[str]:
    """The capabilities a token must cover for ``op`` (raises NotFound for unknown targets)."""
    kind = ops.op_type(op)
    match op:
        case ops.SpawnAgent():
            return [f"agent.spawn:behaviour/{op.behaviour}"]
        case ops.PauseAgent() | ops.ResumeAgent() | ops.TerminateAgent():
            return [f"{kind}:agent/{op.agent}"]
        case ops.ScheduleTask() | ops.EmitObservation():
            return [f"{kind}:agent/{op.agent}"]
        case ops.StartTask() | ops.CompleteTask() | ops.FailTask():
            return [f"{kind}:agent/{_task(state, op.task).agent}"]
        case ops.ReleaseTask():  # managing one's own lease is part of the right to start
            return [f"task.start:agent/{_task(state, op.task).agent}"]
        case ops.GrantCapability():
            return [f"cap.grant:{subject_resource(state, op.subject)}"]
        case ops.RevokeCapability():
            return [f"cap.revoke:grant/{op.jti}"]
        case ops.RegisterTool():
            return [f"tool.register:tool/{op.name}"]
        case ops.InvokeTool():
            tool = state.tools.get(op.tool, {}).get(op.version) if op.version else None
            tool = tool or state.latest_tool(op.tool)
            extra = list(tool.capabilities) if tool is not None else []
            return [f"tool.invoke:tool/{op.tool}", *extra]
        case ops.ApproveOperation() | ops.DenyOperation():
            return [f"op.approve:approval/{op.approval}"]
    raise InvalidOperation(f"operation {kind} is not supported by this kernel")


# -- deciders ---------------------------------------------------------------------------

Decider = Callable[[WorldState, Any, Ctx], list[msgspec.Struct]]
_DECIDERS: dict[type, Decider] = {}


def decider(op_cls: type) -> Callable[[Decider], Decider]:
    def register(fn: Decider) -> Decider:
        _DECIDERS[op_cls] = fn
        return fn

    return register


def apply(state: WorldState, op: ops.Operation, ctx: Ctx) -> list[msgspec.Struct]:
    """Decide the events ``op`` produces in ``state``; raises a specific error to refuse.

    An operation under a grant marked ``approve`` is only authorized here and queued
    (``operation.pending``); it is decided when an approver approves it."""
    fn = _DECIDERS.get(type(op))
    if fn is None:
        raise InvalidOperation(f"operation {ops.op_type(op)} is not supported by this kernel")
    held = _approvals.hold(state, op, ctx)
    if held is not None:
        return held
    return fn(state, op, ctx)


def base_grant(
    state: WorldState, agent_id: str, parent: Grant | None, ctx: Ctx, jti: str
) -> ev.CapabilityGranted:
    exp = parent.exp if parent is not None else ctx.ts // 1000 + MAX_TTL_S
    return ev.CapabilityGranted(
        jti=jti,
        subject=agent_id,
        caps=[f"{action}:agent/{agent_id}" for action in BASE_ACTIONS],
        issuer=KERNEL,
        parent=parent.jti if parent is not None else None,
        iat=ctx.ts // 1000,
        exp=exp,
    )


@decider(ops.SpawnAgent)
def _spawn(state: WorldState, op: ops.SpawnAgent, ctx: Ctx) -> list[msgspec.Struct]:
    _check_text("agent name", op.name, MAX_NAME_BYTES)
    _check_text("behaviour", op.behaviour, 64)
    grant = authorize(state, ctx, required_caps(state, op))
    try:
        raw_key = unb64(op.public_key)
    except InvalidInput:
        raw_key = b""
    if len(raw_key) != 32:
        raise InvalidOperation("public_key must be a base64url Ed25519 public key (32 bytes)")
    agent_id = agent_id_for(op.public_key)
    if agent_id in state.agents:
        raise InvalidOperation(f"agent {agent_id} already exists (public key reused)")
    if op.parent is not None:
        _agent(state, op.parent)
    return [
        ev.AgentSpawned(agent_id, op.name, op.behaviour, op.public_key, op.parent),
        base_grant(state, agent_id, grant, ctx, f"gr-{ctx.seq + 1}"),
    ]


def _lifecycle(state: WorldState, op: ops.Operation, agent_id: str, ctx: Ctx) -> Agent:
    authorize(state, ctx, required_caps(state, op))
    return _agent(state, agent_id)


@decider(ops.PauseAgent)
def _pause(state: WorldState, op: ops.PauseAgent, ctx: Ctx) -> list[msgspec.Struct]:
    agent = _lifecycle(state, op, op.agent, ctx)
    if agent.status != "running":
        raise InvalidOperation(f"agent {agent.id} is {agent.status}; only a running agent pauses")
    return [ev.AgentPaused(agent.id)]


@decider(ops.ResumeAgent)
def _resume(state: WorldState, op: ops.ResumeAgent, ctx: Ctx) -> list[msgspec.Struct]:
    agent = _lifecycle(state, op, op.agent, ctx)
    if agent.status != "paused":
        raise InvalidOperation(f"agent {agent.id} is {agent.status}; only a paused agent resumes")
    return [ev.AgentResumed(agent.id)]


@decider(ops.TerminateAgent)
def _terminate(state: WorldState, op: ops.TerminateAgent, ctx: Ctx) -> list[msgspec.Struct]:
    agent = _lifecycle(state, op, op.agent, ctx)
    _check_text("reason", op.reason, MAX_DESCRIPTION_BYTES, empty_ok=True)
    if agent.status == "terminated":
        raise InvalidOperation(f"agent {agent.id} is already terminated")
    out: list[msgspec.Struct] = [ev.AgentTerminated(agent.id, op.reason)]
    out += [
        ev.TaskCancelled(t.id, f"agent {agent.id} terminated")
        for t in state.tasks.values()
        if t.agent == agent.id and t.status in OPEN_TASK_STATUSES
    ]
    for g in state.grants.values():
        if g.subject == agent.id and not g.revoked:
            cascade = [j for j in state.descendants(g.jti) if not state.grants[j].revoked]
            out.append(
                ev.CapabilityRevoked(g.jti, [g.jti, *cascade], f"agent {agent.id} terminated")
            )
    return out


@decider(ops.ScheduleTask)
def _schedule(state: WorldState, op: ops.ScheduleTask, ctx: Ctx) -> list[msgspec.Struct]:
    authorize(state, ctx, required_caps(state, op))
    agent = _agent(state, op.agent)
    _check_text("task description", op.description, MAX_DESCRIPTION_BYTES)
    _check_json("task payload", op.payload, MAX_PAYLOAD_BYTES)
    if agent.status == "terminated":
        raise InvalidOperation(f"agent {agent.id} is terminated; it takes no tasks")
    if agent.open_tasks >= MAX_OPEN_TASKS:
        raise InvalidOperation(f"agent {agent.id} already has {MAX_OPEN_TASKS} open tasks")
    return [ev.TaskScheduled(f"tk-{ctx.seq}", agent.id, op.description, op.payload)]


def _open_task(state: WorldState, op: ops.Operation, task_id: str, ctx: Ctx) -> Task:
    task = _task(state, task_id)
    authorize(state, ctx, required_caps(state, op))
    if task.status not in OPEN_TASK_STATUSES:
        raise InvalidOperation(f"task {task.id} is already {task.status}")
    return task


@decider(ops.StartTask)
def _start(state: WorldState, op: ops.StartTask, ctx: Ctx) -> list[msgspec.Struct]:
    task = _open_task(state, op, op.task, ctx)
    _check_text("runner", op.runner, MAX_NAME_BYTES)
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


@decider(ops.ReleaseTask)
def _release(state: WorldState, op: ops.ReleaseTask, ctx: Ctx) -> list[msgspec.Struct]:
    task = _open_task(state, op, op.task, ctx)
    if task.status != "started" or task.runner != op.runner or task.lease_until is None:
        raise InvalidOperation(f"task {task.id} is not leased by runner {op.runner}")
    return [ev.TaskReleased(task.id, op.runner)]


@decider(ops.CompleteTask)
def _complete(state: WorldState, op: ops.CompleteTask, ctx: Ctx) -> list[msgspec.Struct]:
    task = _open_task(state, op, op.task, ctx)
    _check_json("task result", op.result, MAX_RESULT_BYTES)
    return [ev.TaskCompleted(task.id, op.result)]


@decider(ops.FailTask)
def _fail(state: WorldState, op: ops.FailTask, ctx: Ctx) -> list[msgspec.Struct]:
    task = _open_task(state, op, op.task, ctx)
    _check_text("failure reason", op.reason, MAX_DESCRIPTION_BYTES)
    return [ev.TaskFailed(task.id, op.reason)]


@decider(ops.EmitObservation)
def _observe(state: WorldState, op: ops.EmitObservation, ctx: Ctx) -> list[msgspec.Struct]:
    authorize(state, ctx, required_caps(state, op))
    agent = _agent(state, op.agent)
    _check_json("observation", op.data, MAX_OBSERVATION_BYTES)
    if agent.status == "terminated":
        raise InvalidOperation(f"agent {agent.id} is terminated")
    return [ev.ObservationEmitted(agent.id, op.data)]


@decider(ops.GrantCapability)
def _grant(state: WorldState, op: ops.GrantCapability, ctx: Ctx) -> list[msgspec.Struct]:
    if op.subject not in state.principals:
        raise NotFound(f"unknown principal {op.subject!r}")
    parent = authorize(state, ctx, required_caps(state, op))
    wanted = capmod.validate(op.caps)
    if not 1 <= op.ttl_s <= MAX_TTL_S:
        raise InvalidOperation(f"ttl must be between 1 s and {MAX_TTL_S} s")
    agent = state.agents.get(op.subject)
    if agent is not None and agent.status == "terminated":
        raise InvalidOperation(f"agent {agent.id} is terminated")
    missing = capmod.uncovered(parent.caps, wanted)
    if missing:
        raise NotCovered(
            f"delegation only narrows: token {parent.jti} does not cover {', '.join(missing)}"
        )
    now_s = ctx.ts // 1000
    exp = now_s + op.ttl_s
    if exp > parent.exp:
        raise NotCovered(
            f"delegation only narrows: the grant would outlive token {parent.jti} "
            f"(max ttl {parent.exp - now_s} s)"
        )
    for field in ("max_ops", "max_tool_calls", "max_fuel"):
        mine = getattr(op.budgets, field)
        if mine is not None and mine < 0:
            raise InvalidOperation(f"budget {field} must not be negative")
        for link in state.grant_chain(parent.jti):
            limit = getattr(link.budgets, field)
            if limit is None:
                continue
            used = getattr(
                link.usage,
                {"max_ops": "ops", "max_tool_calls": "tool_calls", "max_fuel": "fuel"}[field],
            )
            if mine is None or mine > limit - used:
                raise NotCovered(
                    f"delegation only narrows: {field} must be set and at most "
                    f"{limit - used} (what remains of grant {link.jti})"
                )
    approve = op.approve or any(link.approve for link in state.grant_chain(parent.jti))
    return [
        ev.CapabilityGranted(
            jti=f"gr-{ctx.seq}",
            subject=op.subject,
            caps=wanted,
            issuer=ctx.principal,
            parent=parent.jti,
            iat=now_s,
            exp=exp,
            budgets=op.budgets,
            approve=approve,
        )
    ]


@decider(ops.RevokeCapability)
def _revoke(state: WorldState, op: ops.RevokeCapability, ctx: Ctx) -> list[msgspec.Struct]:
    target = state.grants.get(op.jti)
    if target is None:
        raise NotFound(f"unknown grant {op.jti!r}")
    mine = presenting_grant(state, ctx)
    delegated_by_me = mine.jti in {g.jti for g in state.grant_chain(target.jti)[1:]}
    if not delegated_by_me:
        authorize(state, ctx, required_caps(state, op))
    else:
        authorize(state, ctx, [])
    _check_text("reason", op.reason, MAX_DESCRIPTION_BYTES, empty_ok=True)
    if target.revoked:
        raise InvalidOperation(f"grant {target.jti} is already revoked")
    cascade = [j for j in state.descendants(target.jti) if not state.grants[j].revoked]
    return [ev.CapabilityRevoked(target.jti, [target.jti, *cascade], op.reason)]


# -- evolvers ---------------------------------------------------------------------------

Evolver = Callable[[WorldState, Any, ev.EventRecord], None]
_EVOLVERS: dict[str, Evolver] = {}


def evolver(kind: str) -> Callable[[Evolver], Evolver]:
    def register(fn: Evolver) -> Evolver:
        _EVOLVERS[kind] = fn
        return fn

    return register


def evolve(state: WorldState, record: ev.EventRecord) -> None:
    """Fold one logged event into ``state`` (in place)."""
    if record.seq != state.seq + 1:
        raise ValueError(f"event {record.seq} does not follow state at {state.seq}")
    if record.part == 0 and record.grant is not None and record.kind != "operation.rejected":
        for link in state.grant_chain(record.grant):
            link.usage.ops += 1
    fn = _EVOLVERS.get(record.kind)
    if fn is not None:
        fn(state, ev.decode_payload(record.kind, record.payload), record)
    state.seq = record.seq
    state.ts = record.ts


@evolver("log.genesis")
def _on_genesis(state: WorldState, e: ev.Genesis, r: ev.EventRecord) -> None:
    state.home_id = e.home_id
    state.principals[e.operator] = e.operator_key


@evolver("capability.granted")
def _on_granted(state: WorldState, e: ev.CapabilityGranted, r: ev.EventRecord) -> None:
    state.grants[e.jti] = Grant(
        jti=e.jti,
        subject=e.subject,
        caps=list(e.caps),
        issuer=e.issuer,
        parent=e.parent,
        iat=e.iat,
        exp=e.exp,
        budgets=e.budgets,
        approve=e.approve,
    )


@evolver("capability.revoked")
def _on_revoked(state: WorldState, e: ev.CapabilityRevoked, r: ev.EventRecord) -> None:
    for jti in e.revoked:
        grant = state.grants[jti]
        grant.revoked = True
        grant.revoked_at = r.ts


@evolver("agent.spawned")
def _on_spawned(state: WorldState, e: ev.AgentSpawned, r: ev.EventRecord) -> None:
    state.agents[e.agent] = Agent(
        id=e.agent,
        name=e.name,
        behaviour=e.behaviour,
        status="running",
        public_key=e.public_key,
        spawned_by=r.principal,
        parent=e.parent,
        created_ms=r.ts,
    )
    state.principals[e.agent] = e.public_key


@evolver("agent.paused")
def _on_paused(state: WorldState, e: ev.AgentPaused, r: ev.EventRecord) -> None:
    state.agents[e.agent].status = "paused"


@evolver("agent.resumed")
def _on_resumed(state: WorldState, e: ev.AgentResumed, r: ev.EventRecord) -> None:
    state.agents[e.agent].status = "running"


@evolver("agent.terminated")
def _on_terminated(state: WorldState, e: ev.AgentTerminated, r: ev.EventRecord) -> None:
    state.agents[e.agent].status = "terminated"


@evolver("task.scheduled")
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


@evolver("task.started")
def _on_started(state: WorldState, e: ev.TaskStarted, r: ev.EventRecord) -> None:
    task = state.tasks[e.task]
    task.status = "started"
    task.runner = e.runner
    task.lease_until = e.lease_until
    task.updated_ms = r.ts


@evolver("task.released")
def _on_released(state: WorldState, e: ev.TaskReleased, r: ev.EventRecord) -> None:
    task = state.tasks[e.task]
    task.lease_until = None
    task.updated_ms = r.ts


def _close(state: WorldState, task_id: str, status: str, r: ev.EventRecord) -> Task:
    task = state.tasks[task_id]
    task.status = status
    task.updated_ms = r.ts
    state.agents[task.agent].open_tasks -= 1
    return task


@evolver("task.completed")
def _on_completed(state: WorldState, e: ev.TaskCompleted, r: ev.EventRecord) -> None:
    _close(state, e.task, "completed", r).result = e.result


@evolver("task.failed")
def _on_failed(state: WorldState, e: ev.TaskFailed, r: ev.EventRecord) -> None:
    _close(state, e.task, "failed", r).error = e.reason


@evolver("task.cancelled")
def _on_cancelled(state: WorldState, e: ev.TaskCancelled, r: ev.EventRecord) -> None:
    _close(state, e.task, "cancelled", r).error = e.reason


@evolver("observation.emitted")
def _on_observed(state: WorldState, e: ev.ObservationEmitted, r: ev.EventRecord) -> None:
    state.agents[e.agent].observations += 1


@evolver("tool.registered")
def _on_tool(state: WorldState, e: ev.ToolRegistered, r: ev.EventRecord) -> None:
    state.tools.setdefault(e.name, {})[e.version] = Tool(
        name=e.name,
        version=e.version,
        description=e.description,
        kind=e.kind,
        module_sha256=e.module_sha256,
        capabilities=list(e.capabilities),
        limits=dict(e.limits),
        input_schema=e.input_schema,
        registered_by=r.principal,
        registered_ms=r.ts,
    )


def _count_tool_call(state: WorldState, fuel: int, r: ev.EventRecord) -> None:
    if r.grant is None:
        return
    for link in state.grant_chain(r.grant):
        link.usage.tool_calls += 1
        link.usage.fuel += fuel


@evolver("tool.succeeded")
def _on_tool_ok(state: WorldState, e: ev.ToolSucceeded, r: ev.EventRecord) -> None:
    _count_tool_call(state, e.fuel_used, r)


@evolver("tool.failed")
def _on_tool_failed(state: WorldState, e: ev.ToolFailed, r: ev.EventRecord) -> None:
    _count_tool_call(state, e.fuel_used, r)


# Deciders that live with the rest of their rules: the approval queue (op.approve,
# op.deny) and tools (tool.register, tool.invoke).
from toka.core import approvals as _approvals  # noqa: E402
from toka.core import tools as _tools  # noqa: E402, F401
