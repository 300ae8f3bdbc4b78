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
from toka.core.kernel.context import Ctx, find_call, find_task, subject_resource
from toka.core.kernel.derive import derived_caps
from toka.core.model import caps, ops, places
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


def authorize(
    state: WorldState, ctx: Ctx, required: list[str], *, past_budget: bool = False
) -> Grant:
    """The presented grant, if it covers ``required`` and no operations budget that
    covers them is spent: not the presented grant's chain, nor any other grant of the
    caller's that covers the operation (``budgeted_elsewhere``), so which token is
    presented does not change what is charged. ``past_budget`` lets an operation through
    spent budgets (a task failed because its agent's budget is spent)."""
    grant = presenting_grant(state, ctx)
    for cap in required:
        if not caps.covers(grant.caps, cap):
            raise NotCovered(f"{ctx.principal}'s token {grant.jti} does not cover {cap}")
    if past_budget:
        return grant
    # An approved operation was counted when it entered the approval queue.
    already_counted = 1 if ctx.approval is not None else 0
    links = state.grant_chain(grant.jti)
    if ctx.approval is None:
        links = links + [state.grants[j] for j in budgeted_elsewhere(state, ctx, grant, required)]
    for link in links:
        limit = link.budgets.max_ops
        if limit is not None and link.usage.ops - already_counted >= limit:
            raise BudgetExhausted(
                f"budget: grant {link.jti} has used {link.usage.ops} of {limit} operations"
            )
    return grant


def budgeted_elsewhere(
    state: WorldState, ctx: Ctx, presented: Grant, required: list[str]
) -> list[str]:
    """The grants with an operations budget, outside the presented grant's chain, that
    the caller holds and that cover ``required`` (or their ancestors): they are charged
    for the operation too (``budget.charged``), in the order of their ids."""
    if not required:
        return []  # an operation any token may perform (revoking one's own grant)
    charged_anyway = {link.jti for link in state.grant_chain(presented.jti)}
    now_s = ctx.ts // 1000
    found: dict[str, None] = {}
    for other in state.grants.values():
        if other.subject != ctx.principal or other.jti in charged_anyway:
            continue
        if other.revoked or other.exp <= now_s:
            continue
        chain = state.grant_chain(other.jti)
        if not any(link.budgets.max_ops is not None for link in chain):
            continue
        if any(link.revoked for link in chain):
            continue
        if all(caps.covers(other.caps, cap) for cap in required):
            for link in chain:
                if link.budgets.max_ops is not None and link.jti not in charged_anyway:
                    found[link.jti] = None
    return sorted(found, key=lambda jti: (len(jti), jti))


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
            tool = state.find_tool(op.tool, op.version) or state.latest_tool(op.tool)
            extra = list(tool.capabilities) if tool is not None else []
            return [f"tool.invoke:tool/{op.tool}", *extra, *derived_caps(state, tool, op.args)]
        case ops.ApproveOperation() | ops.DenyOperation():
            return [f"op.approve:approval/{op.approval}"]
        case ops.AddMount() | ops.RemoveMount():
            return [f"fs.mount:mount/{places.encode_segment(op.name)}"]
        case ops.AllowHost() | ops.RevokeHost():
            return [places.host_resource(op.host, op.port)]
        case ops.RegisterMcpServer() | ops.RemoveMcpServer():
            return [f"mcp.register:mcp/{places.encode_segment(op.name)}"]
        case ops.ResolveCall():
            return [f"tool.resolve:tool/{find_call(state, op.call).tool}"]
        case ops.RecordOutcome() | ops.AbandonCall():
            return []  # host statements: the kernel's signature, no token
    raise InvalidOperation(f"operation {kind} is not supported by this kernel")
