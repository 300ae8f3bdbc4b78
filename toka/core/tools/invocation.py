"""What a tool call came to, as the CLI, the console and behaviours see it.

Read back from the log: a pure call's outcome is in its own operation; a call with an
effect ends in a host statement of its own (``calls``), or stays open, or is resolved
by the operator. Content the log names by blob (a file read, a response body) is put
back from the blob store (``effects.blobs.present``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from toka.core.errors import TokaError
from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.runtime import Outcome
from toka.core.tools.effects.blobs import present
from toka.core.tools.sandbox import ToolFailure

# How a call stands: ended (succeeded, failed), still open (started: it may be running;
# unknown: its runner stopped and nobody knows whether its effect happened), waiting
# for an approval (pending), or ended by the operator's word (resolved).
STATUSES = ("succeeded", "failed", "started", "unknown", "pending", "resolved")


class Invocation(msgspec.Struct, frozen=True):
    """The recorded result of one invocation, as the CLI and console report it."""

    ok: bool
    output: Any
    error: ToolFailure | None
    seq: int
    tool: str
    version: str
    fuel_used: int
    wall_ms: float
    stderr: str = ""
    replayed: bool = False
    pending: str | None = None  # the approval id, when it waits in the approval queue
    call: str | None = None  # a call with an effect: its id (``iv-<seq>``)
    status: str = "succeeded"
    effects: list[ev.AnyEffect] = msgspec.field(default_factory=list)
    # The output as the log holds it: content named by blob, not put back.
    recorded: Any = None

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)

    @property
    def ended(self) -> bool:
        return self.status in ("succeeded", "failed", "resolved")

    @classmethod
    def from_outcome(cls, outcome: Outcome, op: ops.InvokeTool, stderr: str = "") -> Invocation:
        """A pure call's result, or a call with an effect as its intent left it (see
        ``calls.result`` for how it ended)."""
        if outcome.pending is not None:
            return cls.not_ended(
                outcome.last_seq,
                op.tool,
                op.version or "",
                "pending",
                pending=outcome.pending,
                replayed=outcome.replayed,
            )
        for e in outcome.events:
            p = e.payload
            if isinstance(p, ev.ToolStarted):
                return cls.not_ended(
                    e.seq, p.tool, p.version, "started", call=p.call, replayed=outcome.replayed
                )
            if isinstance(p, ev.ToolSucceeded | ev.ToolFailed):
                return cls.ended_by(e.seq, p, None, stderr=stderr, replayed=outcome.replayed)
        raise TokaError(f"operation {outcome.digest[:12]} recorded no tool outcome")

    @classmethod
    def not_ended(
        cls,
        seq: int,
        tool: str,
        version: str,
        status: str,
        *,
        call: str | None = None,
        pending: str | None = None,
        replayed: bool = False,
        reason: str = "",
        effects: list[ev.AnyEffect] | None = None,
    ) -> Invocation:
        """A call still waiting for approval (``pending``), or open (``started``,
        ``unknown``): no output; an unknown call's error says why it is unknown."""
        unknown = ToolFailure("unknown", reason or "its outcome is unknown")
        return cls(
            ok=False,
            output=None,
            error=unknown if status == "unknown" else None,
            seq=seq,
            tool=tool,
            version=version,
            fuel_used=0,
            wall_ms=0.0,
            replayed=replayed,
            pending=pending,
            call=call,
            status=status,
            effects=effects or [],
        )

    @classmethod
    def ended_by(
        cls,
        seq: int,
        p: ev.ToolSucceeded | ev.ToolFailed,
        blobs: Path | None,
        *,
        stderr: str = "",
        replayed: bool = False,
    ) -> Invocation:
        """The result an ending event records (content put back from ``blobs``)."""
        failed = isinstance(p, ev.ToolFailed)
        effects = [] if p.effects is msgspec.UNSET else list(p.effects)
        recorded = None if failed else p.output  # type: ignore[union-attr]
        output = recorded
        if output is not None and blobs is not None:
            output = present(output, blobs)
        return cls(
            ok=not failed,
            tool=p.tool,
            version=p.version,
            output=output,
            error=ToolFailure(p.error_kind, p.message, p.exit_code) if failed else None,  # type: ignore[union-attr]
            seq=seq,
            fuel_used=p.fuel_used,
            wall_ms=p.wall_ms,
            stderr=stderr,
            replayed=replayed,
            call=None if p.call is msgspec.UNSET else p.call,
            status="failed" if failed else "succeeded",
            effects=effects,
            recorded=recorded,
        )

    @classmethod
    def resolved_by(cls, seq: int, p: ev.ToolResolved) -> Invocation:
        """A call the operator resolved: ok as they said, with their note as the output
        (or the error's message); what it did in the world is not on record."""
        ok = p.outcome == "succeeded"
        return cls(
            ok=ok,
            tool=p.tool,
            version=p.version,
            output={"resolved": p.outcome, "note": p.note} if ok else None,
            recorded={"resolved": p.outcome, "note": p.note} if ok else None,
            error=None if ok else ToolFailure("resolved", p.note or "resolved as failed"),
            seq=seq,
            fuel_used=0,
            wall_ms=0.0,
            call=p.call,
            status="resolved",
        )
