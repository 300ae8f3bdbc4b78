"""Acting on the approval queue: what the CLI, the console and the runner do with it.

The rules of the queue (what is held, who may decide, what approving applies) are the
kernel's: ``toka.core.kernel.approvals``. This module reads the queue and submits
decisions; approving a held ``tool.invoke`` runs the tool first, as any invocation.
"""

from __future__ import annotations

from typing import Any

import msgspec

from toka.core import tools
from toka.core.errors import TokaError
from toka.core.kernel import Ctx
from toka.core.kernel import approvals as rules
from toka.core.kernel import tools as tool_rules
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.model.events import EventRecord
from toka.core.model.state import Approval, WorldState
from toka.core.runtime import Outcome, Runtime
from toka.core.runtime.client import Client


def pending(state: WorldState) -> list[Approval]:
    """The approvals waiting for a decision, oldest first."""
    return [a for a in state.approvals.values() if a.status == "pending"]


def describe(runtime: Runtime, approval: Approval) -> dict[str, Any]:
    """An approval as plain data, with the held operation (from the log) while it is pending."""
    data: dict[str, Any] = {
        "id": approval.id,
        "status": approval.status,
        "op": approval.op_kind,
        "principal": approval.principal,
        "grant": approval.grant,
        "created_ms": approval.created_ms,
        "digest": approval.op_digest,
        "decided_by": approval.decided_by,
        "decided_seq": approval.decided_seq,
        "reason": approval.reason,
    }
    if approval.status == "pending":
        held = runtime.held_operation(approval)
        data["operation"] = msgspec.to_builtins(held.op)
        data["nonce"] = held.nonce
    return data


def approve(client: Client, approval_id: str) -> Outcome:
    """Approve a held operation as ``client``'s principal; a held ``tool.invoke`` runs now.

    A pure tool runs outside the kernel (like any invocation) only if the approval would
    be accepted, and the kernel records its outcome with the approval. A call with an
    effect is released as its intent (``tool.started``) and performed after, its outcome
    stated by this host (``tools.perform``)."""
    rt = client.runtime
    rt.catch_up()
    signed = client.sign(ops.ApproveOperation(approval_id))
    approval = rt.state.approvals.get(approval_id)
    prepared = None
    if approval is not None and approval.status == "pending" and approval.op_kind == "tool.invoke":
        prepared = _run_held_tool(rt, signed, approval)
    outcome = rt.submit(signed, prepared)
    started = outcome.all(ev.ToolStarted)
    if started and not outcome.replayed:
        tools.perform(rt, started[0].call)
    return outcome


def _run_held_tool(rt: Runtime, signed: ops.SignedOperation, approval: Approval) -> Any:
    """The run of a held pure tool, or None (a call with an effect runs after its intent)."""
    held = rt.held_operation(approval)

    def plan(state: WorldState, ctx: Ctx) -> Any:
        rules.check_decision(state, signed.op, ctx)
        return tool_rules.plan_invocation(state, held.op, rules.released_ctx(approval, held, ctx))  # type: ignore[arg-type]

    try:
        planned = rt.dry_run(signed, plan)
    except TokaError:
        return None  # submitting records the refusal and raises it
    if planned.effect.side_effect != "none":
        return None
    return tools.runner_for(rt).run(planned, held.op.args)  # type: ignore[attr-defined]


def deny(client: Client, approval_id: str, reason: str = "") -> Outcome:
    """Deny a held operation as ``client``'s principal."""
    return client.submit(ops.DenyOperation(approval_id, reason))


def released_records(runtime: Runtime, approval: Approval) -> list[EventRecord]:
    """The events an approved operation produced (what its author's submission would have
    returned had it not been held), read from the log."""
    if approval.decided_seq is None or approval.status != "approved":
        return []
    decision = runtime.log.record(approval.decided_seq)
    if decision is None:
        return []
    out = []
    for r in runtime.log.records(after=approval.decided_seq, limit=10_000):
        if r.op_digest != decision.op_digest:
            break
        out.append(r)
    return out
