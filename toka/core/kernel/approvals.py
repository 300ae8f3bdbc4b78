"""The approval queue: operations under an ``approve`` grant wait for an approver.

The kernel authorizes such an operation and then holds it instead of deciding it: it
logs ``operation.pending``, and ``WorldState.approvals`` lists it by the digest of the
signed operation. The signed bytes stay in the log (the operation's own row, found by
the seq of its ``operation.pending`` event: :func:`pending_seq`); the runtime reads them
back for the approval (``Ctx.held``) and the kernel checks them against the digest.
(Logs written before Toka 0.2 carry the bytes in the event and in the state.) An approver holding ``op.approve:approval/<id>`` decides it with a signed
operation of their own:

- ``op.approve`` re-checks the held operation against the state *at approval time*
  (token not revoked or expired, capability still covered, budgets, the operation's
  own rules) and logs ``operation.approved`` followed by the held operation's events,
  all in the approver's operation. Those events keep the principal and grant columns
  of the held operation's author: the author acted and pays for it (budgets), the
  approver released it (the first event, under the approver's principal).
- ``op.deny`` logs ``operation.denied`` with the reason.

Nobody approves their own operation. Approvals and denials are never held, and
neither are task leases (``task.start``/``task.release``): they are how runners
coordinate, not actions in the world, and holding them would stall an agent's
every task before it could ask for anything.
The held operation was counted against its grant's operation budget when it was
queued; approving it does not count it again.
"""

from __future__ import annotations

import msgspec

from toka.core.errors import Denied, IntegrityFailure, InvalidOperation, NotFound, TokaError
from toka.core.kernel.auth import authorize, required_caps
from toka.core.kernel.context import OPERATOR, Ctx, Decider, Evolver
from toka.core.kernel.derive import derive
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.model.state import Approval, WorldState

MAX_REASON_BYTES = 4096
_DECISIONS = (ops.ApproveOperation, ops.DenyOperation)
_NEVER_HELD = (*_DECISIONS, ops.StartTask, ops.ReleaseTask, ops.RecordOutcome, ops.AbandonCall)


def requires_approval(state: WorldState, op: ops.Operation, ctx: Ctx) -> bool:
    """Is ``op`` presented under a grant (or an ancestor) marked ``approve``, or a call
    by anyone but the operator of a ``privileged`` tool (whatever the grant says) or an
    ``external`` one (unless the grant is ``unattended``)?"""
    if ctx.approval is not None or isinstance(op, _NEVER_HELD) or ctx.grant is None:
        return False
    if isinstance(op, ops.InvokeTool) and ctx.principal != OPERATOR:
        side_effect = _call_class(state, op)
        if side_effect == "privileged":
            return True
        grant = state.grants.get(ctx.grant)
        if side_effect == "external" and (grant is None or grant.unattended is not True):
            return True
    return any(link.approve for link in state.grant_chain(ctx.grant))


def _call_class(state: WorldState, op: ops.InvokeTool) -> str:
    """The class this call is made as (an ``http-fetch`` GET is read-only); ``none``
    when it cannot be made at all (no such tool, arguments that name no place): the
    rule refuses it then, with its reason, instead of holding it for an approver."""
    tool = state.find_tool(op.tool, op.version)
    if tool is None:
        return "none"
    try:
        return derive(state, tool, op.args).side_effect
    except TokaError:
        return "none"


def hold(state: WorldState, op: ops.Operation, ctx: Ctx) -> list[msgspec.Struct] | None:
    """The ``operation.pending`` event that queues ``op``, or None if it needs no approval.

    Only authorization is checked now; the operation's own rules are checked when it is
    approved, against the state of that moment."""
    if not requires_approval(state, op, ctx):
        return None
    grant = authorize(state, ctx, required_caps(state, op))
    # The id names the seq of this event, which is where the held operation's own row
    # starts; the signed bytes are that row's, not repeated here or in the state.
    return [ev.OperationPending(f"ap-{ctx.seq}", ops.op_type(op), grant.jti, b"")]


def pending_seq(approval_id: str) -> int | None:
    """The seq of the ``operation.pending`` event behind ``approval_id`` (``ap-<seq>``)."""
    prefix, _, seq = approval_id.partition("-")
    return int(seq) if prefix == "ap" and seq.isdecimal() else None


def _pending(state: WorldState, approval_id: str) -> Approval:
    approval = state.approvals.get(approval_id)
    if approval is None:
        raise NotFound(f"unknown approval {approval_id!r}")
    if approval.status != "pending":
        raise InvalidOperation(
            f"approval {approval.id} is already {approval.status}"
            + (f" by {approval.decided_by}" if approval.decided_by else "")
        )
    return approval


def released_ctx(approval: Approval, held: ops.SignedOperation, ctx: Ctx) -> Ctx:
    """The context the held operation is decided in: its author, its grant, now.

    Its events follow ``operation.approved`` (at ``ctx.seq``), so ids derived from the
    sequence number still name the event that creates them."""
    return Ctx(
        seq=ctx.seq + 1,
        ts=ctx.ts,
        principal=approval.principal,
        grant=approval.grant,
        op_digest=approval.op_digest,
        outcome=ctx.outcome,
        signed=held.to_json(),
        approval=approval.id,
        checked=ctx.checked,
    )


def check_decision(state: WorldState, op: ops.Operation, ctx: Ctx) -> Approval:
    """Authorize an approve/deny and return the pending approval it decides."""
    authorize(state, ctx, required_caps(state, op))
    approval = _pending(state, op.approval)  # type: ignore[attr-defined]
    if isinstance(op, ops.ApproveOperation) and approval.principal == ctx.principal:
        raise Denied(f"{ctx.principal} cannot approve its own operation ({approval.id})")
    return approval


def held_operation(approval: Approval, held: bytes) -> ops.SignedOperation:
    """The operation ``approval`` holds: ``held`` (read from the log), or for an approval
    logged before the state kept only digests, the state's copy; it must match the digest."""
    data = approval.signed or held
    if not data:
        raise IntegrityFailure(f"the operation held by approval {approval.id} is not in the log")
    signed = ops.SignedOperation.from_json(data)
    if signed.digest != approval.op_digest:
        raise IntegrityFailure(
            f"the operation read back for approval {approval.id} is not the one it holds "
            f"(digest {signed.digest[:12]}, expected {approval.op_digest[:12]})"
        )
    return signed


def approve(
    state: WorldState, op: ops.ApproveOperation, ctx: Ctx, *, apply: Decider
) -> list[msgspec.Struct]:
    """Decide the held operation now, with the kernel's ``apply``, and release its events."""
    approval = check_decision(state, op, ctx)
    held = held_operation(approval, ctx.held)
    try:
        payloads = apply(state, held.op, released_ctx(approval, held, ctx))
    except TokaError as exc:
        raise type(exc)(
            f"approval {approval.id} cannot be applied now: {exc.message} "
            "(it stays pending; deny it to clear it)"
        ) from exc
    return [
        ev.OperationApproved(approval.id, approval.principal, approval.op_kind, approval.op_digest),
        *(ev.Attributed(approval.principal, approval.grant, p) for p in payloads),
    ]


def deny(state: WorldState, op: ops.DenyOperation, ctx: Ctx) -> list[msgspec.Struct]:
    approval = check_decision(state, op, ctx)
    size = len(op.reason.encode())
    if size > MAX_REASON_BYTES:
        raise InvalidOperation(f"reason is {size} bytes, over the {MAX_REASON_BYTES} byte limit")
    return [ev.OperationDenied(approval.id, op.reason, approval.principal, approval.op_kind)]


# -- evolvers ----------------------------------------------------------------------


def _on_pending(state: WorldState, e: ev.OperationPending, r: ev.EventRecord) -> None:
    state.approvals[e.approval] = Approval(
        id=e.approval,
        principal=r.principal,
        grant=e.grant,
        op_kind=e.op_kind,
        signed=e.signed,
        status="pending",
        created_ms=r.ts,
        op_digest=r.op_digest,
    )


def _decided(state: WorldState, approval_id: str, status: str, r: ev.EventRecord) -> Approval:
    approval = state.approvals[approval_id]
    approval.status = status
    approval.decided_by = r.principal
    approval.decided_seq = r.seq
    approval.signed = b""  # the signed operation stays in the log; the state keeps it small
    return approval


def _on_approved(state: WorldState, e: ev.OperationApproved, r: ev.EventRecord) -> None:
    _decided(state, e.approval, "approved", r)


def _on_denied(state: WorldState, e: ev.OperationDenied, r: ev.EventRecord) -> None:
    _decided(state, e.approval, "denied", r).reason = e.reason


EVOLVERS: dict[str, Evolver] = {
    "operation.pending": _on_pending,
    "operation.approved": _on_approved,
    "operation.denied": _on_denied,
}
