"""Who may do what: the presented grant, the capabilities an operation needs, budgets."""

from __future__ import annotations

from toka.core.errors import (
    AgentNotRunning,
    BindingMismatch,
    BudgetExhausted,
    InvalidOperation,
    NotCovered,
    Revoked,
    TokenExpired,
    TokenInvalid,
)
from toka.core.kernel.context import Ctx, find_task, subject_resource
from toka.core.model import caps, ops
from toka.core.model.state import Grant, WorldState


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
        if not caps.covers(grant.caps, cap):
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
            return [f"{kind}:agent/{find_task(state, op.task).agent}"]
        case ops.ReleaseTask():  # managing one's own lease is part of the right to start
            return [f"task.start:agent/{find_task(state, op.task).agent}"]
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
