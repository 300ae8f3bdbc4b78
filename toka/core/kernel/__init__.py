"""The deterministic kernel: which operations exist, and the rule that decides each.

``apply(state, op, ctx)`` decides which events an operation produces; it reads the
state and never changes it, and takes time and ids only from ``ctx``.
``evolve(state, record)`` folds one logged event into the state; replaying the
log through ``evolve`` rebuilds the identical state.

The two tables below are the whole kernel at a glance: ``DECIDERS`` names the rule
for every operation type, ``EVOLVERS`` the fold for every event kind. Each rule
module (``agents``, ``tasks``, ``grants``, ``tools``, ``effects``, ``places``,
``mcp``, ``approvals``) holds plain
functions and imports only the model and the modules beside it; this package
assembles them, so no import order matters and nothing registers itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from functools import partial

import msgspec

from toka.core.errors import InvalidOperation, TokaError
from toka.core.kernel import agents, approvals, auth, effects, grants, mcp, places, tasks, tools
from toka.core.kernel.auth import authorize, presenting_grant, required_caps
from toka.core.kernel.context import KERNEL, OPERATOR, Ctx, Decider, Evolver
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.model.state import WorldState

__all__ = [
    "DECIDERS",
    "EVOLVERS",
    "KERNEL",
    "OPERATOR",
    "UNFOLDED",
    "Ctx",
    "apply",
    "arguments_to_check",
    "authorize",
    "evolve",
    "evolve_rows",
    "invokes_tool",
    "presenting_grant",
    "required_caps",
]


def apply(state: WorldState, op: ops.Operation, ctx: Ctx) -> list[msgspec.Struct]:
    """Decide the events ``op`` produces in ``state``; raises a specific error to refuse.

    An operation under a grant marked ``approve`` is only authorized here and queued
    (``operation.pending``); it is decided when an approver approves it."""
    decide = DECIDERS.get(type(op))
    if decide is None:
        raise InvalidOperation(f"operation {ops.op_type(op)} is not supported by this kernel")
    held = approvals.hold(state, op, ctx)
    events = held if held is not None else decide(state, op, ctx)
    return [*events, *_charges(state, op, ctx)]


def _charges(state: WorldState, op: ops.Operation, ctx: Ctx) -> list[msgspec.Struct]:
    """``budget.charged`` for the caller's other budgeted grants that cover ``op``
    (``auth.budgeted_elsewhere``; authorize refused already if one is spent)."""
    grant = state.grants.get(ctx.grant) if ctx.grant is not None else None
    if grant is None or ctx.approval is not None:
        return []  # an approved operation was counted when it was queued
    try:
        required = required_caps(state, op)
    except TokaError:
        return []
    extra = auth.budgeted_elsewhere(state, ctx, grant, required)
    return [ev.BudgetCharged(extra)] if extra else []


def _on_budget_charged(state: WorldState, e: ev.BudgetCharged, r: ev.EventRecord) -> None:
    for jti in e.grants:
        state.grants[jti].usage.ops += 1


def arguments_to_check(
    state: WorldState, op: ops.Operation, prepared: object = None, held: bytes = b""
) -> tools.ArgsToCheck | None:
    """The tool and arguments whose check against its input schema deciding ``op`` needs:
    a ``tool.invoke``'s, or those of the ``tool.invoke`` an ``op.approve`` releases
    (``held``: its signed bytes, as for ``Ctx.held``).

    The check is the costly part of deciding; the runtime runs it before the write lock
    (``tools.args_verdict``) and hands the verdict to the rule in ``Ctx.checked``."""
    if isinstance(op, ops.ApproveOperation):
        approval = state.approvals.get(op.approval)
        if approval is None or approval.status != "pending" or approval.op_kind != "tool.invoke":
            return None
        op = approvals.held_operation(approval, held).op
    if not isinstance(op, ops.InvokeTool):
        return None
    tool = tools.tool_to_check(state, op, prepared)
    return None if tool is None else tools.ArgsToCheck(tool, op.args)


_INVOKES_TOOL = (ops.InvokeTool, ops.ApproveOperation)


def invokes_tool(op: ops.Operation) -> bool:
    """Might deciding ``op`` check tool arguments (see ``arguments_to_check``)?"""
    return isinstance(op, _INVOKES_TOOL)  # a tuple: on every submission's path


DECIDERS: Mapping[type[ops.Operation], Decider] = {
    ops.SpawnAgent: agents.spawn,
    ops.PauseAgent: agents.pause,
    ops.ResumeAgent: agents.resume,
    ops.TerminateAgent: agents.terminate,
    ops.EmitObservation: agents.observe,
    ops.ScheduleTask: tasks.schedule,
    ops.StartTask: tasks.start,
    ops.ReleaseTask: tasks.release,
    ops.CompleteTask: tasks.complete,
    ops.FailTask: tasks.fail,
    ops.GrantCapability: grants.grant,
    ops.RevokeCapability: grants.revoke,
    ops.RegisterTool: tools.register,
    ops.InvokeTool: tools.invoke,
    # Approving decides the held operation with this very kernel.
    ops.ApproveOperation: partial(approvals.approve, apply=apply),
    ops.DenyOperation: approvals.deny,
    ops.AddMount: places.add_mount,
    ops.RemoveMount: places.remove_mount,
    ops.AllowHost: places.allow_host,
    ops.RevokeHost: places.revoke_host,
    # Host statements on calls with an effect, and the operator's word on them.
    ops.RecordOutcome: effects.record,
    ops.AbandonCall: effects.abandon,
    ops.ResolveCall: effects.resolve,
    ops.RegisterMcpServer: mcp.register_server,
    ops.RemoveMcpServer: mcp.remove_server,
}

EVOLVERS: Mapping[str, Evolver] = {
    **agents.EVOLVERS,
    **tasks.EVOLVERS,
    **grants.EVOLVERS,
    **tools.EVOLVERS,
    **approvals.EVOLVERS,
    **places.EVOLVERS,
    **effects.EVOLVERS,
    **mcp.EVOLVERS,
    "budget.charged": _on_budget_charged,
}

# Event kinds that change nothing but the log position (a refusal is audited, not applied).
UNFOLDED = frozenset({"operation.rejected"})
assert not UNFOLDED & EVOLVERS.keys(), "an unfolded kind has no evolver"


# Kinds whose evolver reads nothing of the record but its payload: a rebuild builds no
# record for them (observations: most of a busy log).
_PAYLOAD_ONLY = frozenset({"observation.emitted"})
# What folding a row of each kind takes: its evolver, its payload's decoder, whether it
# adds (or replaces) a grant, so changes the chain a grant's operations count in, and
# whether its evolver reads only the payload.
_FOLDS: dict[str, tuple[Evolver, Callable[[bytes], msgspec.Struct], bool, bool]] = {
    kind: (fold, ev.fold_decoder(kind), kind == "capability.granted", kind in _PAYLOAD_ONLY)
    for kind, fold in EVOLVERS.items()
}


def evolve(state: WorldState, record: ev.EventRecord) -> None:
    """Fold one logged event into ``state`` (in place)."""
    if record.seq != state.seq + 1:
        raise ValueError(f"event {record.seq} does not follow state at {state.seq}")
    if record.part == 0 and record.grant is not None and record.kind not in UNFOLDED:
        for link in state.grant_chain(record.grant):
            link.usage.ops += 1
    fold = _FOLDS.get(record.kind)
    if fold is not None:
        evolver, decode, _, _ = fold
        evolver(state, decode(record.payload), record)
    state.seq = record.seq
    state.ts = record.ts


def evolve_rows(state: WorldState, rows: Iterable[tuple], head: str) -> str:
    """Fold log rows (tuples in ``EventRecord`` field order) into ``state``: the same as
    ``evolve(state, EventRecord(*row))`` on each in turn, for rebuilds from a long log.
    Each row must also link to the one before (its ``prev_hash`` the hash before it,
    ``head`` for the first): checked here, in the same pass. Returns the last row's hash.

    Faster in ways that change no result: no record is built for an evolver that reads
    none (``_PAYLOAD_ONLY``); ``state.seq`` and ``state.ts`` are set once, on return (no
    evolver reads them), and so are the operations each row counts against its grant
    chain, added up per grant (no evolver reads them either), except before a grant is
    added, which can change a chain. On an error ``state.seq`` is the last row folded."""
    charged: list[str] = []  # one entry per operation counted: its grant's jti
    charge = charged.append
    fold_of = _FOLDS.get
    record = ev.EventRecord
    folded, folded_ts = state.seq, state.ts
    try:
        for row in rows:
            seq, ts, kind, _, grant, _, part, payload, prev_hash, hash_ = row
            if seq != folded + 1:
                raise ValueError(f"event {seq} does not follow state at {folded}")
            if prev_hash != head:
                raise ValueError(f"event {seq} does not link to the hash before it")
            fold = fold_of(kind)
            if fold is not None:
                if part == 0 and grant is not None:  # as in evolve (no UNFOLDED kind folds)
                    charge(grant)
                evolver, decode, adds_grant, payload_only = fold
                if adds_grant:
                    _count_ops(state, charged)
                evolver(state, decode(payload), None if payload_only else record(*row))
            elif part == 0 and grant is not None and kind not in UNFOLDED:
                charge(grant)
            folded, folded_ts, head = seq, ts, hash_
    finally:
        state.seq, state.ts = folded, folded_ts
        _count_ops(state, charged)
    return head


def _count_ops(state: WorldState, charged: list[str]) -> None:
    """Count each entry of ``charged`` (a grant's jti) as one operation against that
    grant and its ancestors, as ``evolve`` does row by row; empties ``charged``."""
    for jti, ops_count in Counter(charged).items():
        for link in state.grant_chain(jti):
            link.usage.ops += ops_count
    charged.clear()
