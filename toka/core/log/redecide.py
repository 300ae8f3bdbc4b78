"""Re-deciding the log: every event must be exactly what its signed operation decides.

The hash chain shows that nothing changed *after* it was hashed; it cannot show that a
chain recomputed from an edited event is the kernel's. Only the principals' keys can
make operations, and the kernel is deterministic, so ``toka verify`` decides each
stored signed operation again against the state before it, with the context the log
recorded (its seq, time, principal and presented grant; a tool's recorded outcome; an
approval's held operation), and compares the events byte for byte. Whoever rewrites an
event without the signer's private key is caught at that event, with or without
checkpoints.

What re-deciding cannot re-check: a tool's output (the tool ran outside the kernel;
the event records what it returned) and the refusals' audit records (refusals decide
no events). Checkpoints kept outside the log (``verify --against``) cover those.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from toka.core import kernel
from toka.core.errors import IntegrityFailure, TokaError
from toka.core.kernel.approvals import pending_seq
from toka.core.kernel.tools import ToolRun
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.model.events import EventRecord
from toka.core.model.state import WorldState

HeldBytes = Callable[[int], bytes]  # the signed bytes of the operation at a first seq


def recorded_run(records: list[EventRecord]) -> ToolRun | None:
    """The tool run an operation's events record (its outcome, handed to the kernel)."""
    for r in records:
        if r.kind == "tool.succeeded":
            p = ev.decode_payload(r.kind, r.payload)
            return ToolRun(
                p.tool, p.version, True, p.output, None, "", None, p.fuel_used, p.wall_ms
            )
        if r.kind == "tool.failed":
            p = ev.decode_payload(r.kind, r.payload)
            return ToolRun(
                p.tool,
                p.version,
                False,
                None,
                p.error_kind,
                p.message,
                p.exit_code,
                p.fuel_used,
                p.wall_ms,
            )
    return None


def redecide(
    state: WorldState,
    signed: ops.SignedOperation,
    signed_json: bytes,
    digest: str,
    records: list[EventRecord],
    held_bytes: HeldBytes,
) -> None:
    """Raise :class:`IntegrityFailure` unless ``records`` are what ``signed`` decides in
    ``state`` (the state just before them)."""
    first = records[0]
    held = b""
    if isinstance(signed.op, ops.ApproveOperation):
        approval = state.approvals.get(signed.op.approval)
        seq = pending_seq(signed.op.approval)
        if approval is not None and not approval.signed and seq is not None:
            held = held_bytes(seq)
    ctx = kernel.Ctx(
        seq=first.seq,
        ts=first.ts,
        principal=signed.principal,
        grant=first.grant,
        op_digest=digest,
        outcome=recorded_run(records),
        signed=signed_json,
        held=held,
    )
    try:
        decided = kernel.apply(state, signed.op, ctx)
    except TokaError as exc:
        raise IntegrityFailure(
            f"event {first.seq}: operation {signed.nonce} ({signed.kind}) is refused when "
            f"decided again ({exc.code}: {exc.message}), yet the log applied it",
            first.seq,
        ) from None
    expected = []
    for item in decided:
        who, via, payload = signed.principal, first.grant, item
        if isinstance(item, ev.Attributed):
            who, via, payload = item.principal, item.grant, item.payload
        expected.append((ev.kind_of(payload), who, via, ev.encode_payload(payload)))
    if len(expected) != len(records):
        raise IntegrityFailure(
            f"event {first.seq}: operation {signed.nonce} ({signed.kind}) decides "
            f"{len(expected)} events, the log holds {len(records)}",
            first.seq,
        )
    for want, r in zip(expected, records, strict=True):
        got = (r.kind, r.principal, r.grant, r.payload)
        if got != want and not _legacy_pending(want, got, signed_json):
            raise IntegrityFailure(
                f"event {r.seq}: is not what operation {signed.nonce} ({signed.kind}) "
                f"decides: {_difference(want, got)}",
                r.seq,
            )


def _legacy_pending(want: tuple, got: tuple, signed_json: bytes) -> bool:
    """Logs written before the state kept only digests hold the held operation's signed
    bytes in ``operation.pending``: accepted when they are exactly its own."""
    if want[0] != "operation.pending" or got[:3] != want[:3]:
        return False
    stored = ev.decode_payload(got[0], got[3])
    decided = ev.decode_payload(want[0], want[3])
    return stored.signed == signed_json and msgspec.structs.replace(
        stored, signed=b""
    ) == msgspec.structs.replace(decided, signed=b"")


def _difference(want: tuple, got: tuple) -> str:
    for label, w, g in zip(("kind", "principal", "grant", "payload"), want, got, strict=True):
        if w != g:
            if label == "payload":
                return f"its payload is {_show(g)}, the operation decides {_show(w)}"
            return f"its {label} is {g!r}, the operation decides {w!r}"
    return "it differs"


def _show(payload: bytes) -> str:
    text = payload.decode("utf-8", "replace")
    return text if len(text) <= 160 else text[:159] + "…"
