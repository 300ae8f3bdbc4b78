"""Calls with an effect, after their intent: performing them, and recording how they end.

The kernel has committed the call's intent (``tool.started``, see
``toka.core.kernel.effects``) before anything here runs. The tool runner
(``runner.ToolRunner.perform``) reads the call's arguments back from the log
(``invocation_of``), runs the tool, stores the bytes it touched as blobs, and states
the outcome (``record``) as a host statement signed with the kernel's key
(``tool.record``). Whoever holds the runtime may do this: the invoker, the approver
that released the call, or a runner taking over a task whose first runner died (for
calls safe to repeat).

Each call's outcome statement has a nonce derived from the call, so two hosts racing
to record one call record it once: the second is refused as a replayed nonce and reads
the first one's outcome. ``abandon`` states that a call not safe to repeat has an
unknown outcome; ``result`` reads how a call stands.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging

import msgspec

from toka.core.errors import IntegrityFailure, InvalidInput, NotFound, ReplayedNonce, TokaError
from toka.core.kernel import KERNEL
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.model.state import OpenCall
from toka.core.runtime import Runtime
from toka.core.tools.invocation import Invocation

log = logging.getLogger(__name__)

# A refused outcome statement (which would be a bug: every effect is checked before it
# is stated) is followed by a failure statement under the next attempt's nonce.
_ATTEMPTS = 2


def outcome_nonce(call_id: str, attempt: int = 0) -> str:
    return hashlib.sha256(f"toka-record:{call_id}:{attempt}".encode()).hexdigest()[:32]


def abandon_nonce(call_id: str) -> str:
    return hashlib.sha256(f"toka-abandon:{call_id}".encode()).hexdigest()[:32]


def call_seq(call_id: str) -> int:
    prefix, _, seq = call_id.partition("-")
    if prefix != "iv" or not seq.isdecimal() or len(seq) > 18:
        raise InvalidInput(f"{call_id!r} is not a call id (iv-<seq>)")
    return int(seq)


def invocation_of(runtime: Runtime, call: OpenCall) -> ops.InvokeTool:
    """The signed ``tool.invoke`` behind ``call``, read back from the log and checked."""
    row = runtime.log.operation_at(call.op_seq)
    if row is None or not row.signed:
        raise IntegrityFailure(f"the operation of call {call.id} is not in the log")
    signed = ops.SignedOperation.from_json(row.signed)
    if signed.digest != call.op_digest or not isinstance(signed.op, ops.InvokeTool):
        raise IntegrityFailure(
            f"the operation read back for call {call.id} is not the one it started with"
        )
    return signed.op


def record(runtime: Runtime, call: OpenCall, outcome: ops.CallOutcome) -> Invocation:
    """State ``outcome`` as how ``call`` ended (once, whoever else races to)."""
    for attempt in range(_ATTEMPTS):
        nonce = outcome_nonce(call.id, attempt)
        seen = runtime.log.operation(KERNEL, nonce)
        if seen is None:
            try:
                runtime.submit(runtime.host_sign(ops.RecordOutcome(call.id, outcome), nonce))
                break
            except ReplayedNonce:
                seen = runtime.log.operation(KERNEL, nonce)  # another host got there first
            except TokaError as exc:
                if exc.code == "not_found":
                    break  # ended meanwhile (resolved by the operator)
                log.error("the outcome of %s was refused: %s", call.id, exc.message)
                outcome = ops.CallOutcome(
                    ok=False,
                    error_kind="refused",
                    message=f"the outcome could not be recorded: {exc.message}",
                )
                continue
        if seen is not None and seen.status == "applied":
            break  # its outcome stands
    return result(runtime, call.id)


def abandon(runtime: Runtime, call: OpenCall, reason: str) -> None:
    """State that ``call``'s runner is gone and its outcome is unknown (see the kernel's
    ``effects.abandon`` for when that is allowed)."""
    statement = ops.AbandonCall(call.id, reason)
    with contextlib.suppress(ReplayedNonce):  # another runner said so first
        runtime.submit(runtime.host_sign(statement, abandon_nonce(call.id)))


def result(runtime: Runtime, call_id: str) -> Invocation:
    """How ``call_id`` stands now: ended (as recorded), resolved, or still open."""
    runtime.catch_up()
    started = runtime.log.record(call_seq(call_id))
    if started is None or started.kind != "tool.started":
        raise NotFound(f"no tool call {call_id!r} in the log")
    blobs = runtime.home.blobs
    lost: list[ev.AnyEffect] = []  # done before its host lost the outcome (``tool.unknown``)
    for attempt in range(_ATTEMPTS):
        row = runtime.log.operation(KERNEL, outcome_nonce(call_id, attempt))
        if row is None or row.status != "applied" or row.first_seq is None:
            continue
        record_ = runtime.log.record(row.first_seq)
        if record_ is not None and record_.kind in ("tool.succeeded", "tool.failed"):
            return Invocation.ended_by(record_.seq, record_.data(), blobs)  # type: ignore[arg-type]
        if record_ is not None and record_.kind == "tool.unknown":
            unknown = record_.data()
            lost = [] if unknown.effects is msgspec.UNSET else list(unknown.effects)  # type: ignore[attr-defined]
    call = runtime.state.call_table().get(call_id)
    if call is not None:
        return Invocation.not_ended(
            call_seq(call_id),
            call.tool,
            call.version,
            call.status,
            call=call_id,
            reason=call.reason,
            effects=lost,
        )
    for r in runtime.log.query(kinds=["tool.resolved"], text=call_id, after=call_seq(call_id)):
        resolved = r.data()
        if isinstance(resolved, ev.ToolResolved) and resolved.call == call_id:
            return Invocation.resolved_by(r.seq, resolved)
    raise NotFound(f"no tool call {call_id!r} in the log")
