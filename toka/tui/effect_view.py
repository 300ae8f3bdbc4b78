"""What the console shows of tool calls with an effect: the open calls, and (from
``describe``, shared with ``toka effects show``) intents and effect records.

Pure functions of the state, like ``view``: no Textual here.
"""

from __future__ import annotations

from typing import NamedTuple

from toka.core.describe import (  # noqa: F401  (the console's names for them)
    CLASS_MEANING,
    Value,
    aligned,
    effects_text,
    intent_text,
    log_time,
)
from toka.core.model.state import WorldState

# Open calls the operator has to resolve: the runner stopped (unknown), or the deadline
# passed with no outcome recorded (interrupted).
NEEDS_OPERATOR = ("unknown", "interrupted")
STANDING_MEANING = {
    "started": "may still be running",
    "interrupted": "past its deadline, no outcome recorded",
    "unknown": "its runner stopped before its end",
}


class CallRow(NamedTuple):
    """One open call with an effect, as it stands at the time it was read."""

    call: str
    tool: str
    version: str
    side_effect: str
    standing: str  # started, interrupted or unknown
    principal: str
    task: str | None
    started_ms: int
    deadline_ms: int
    caps: tuple[str, ...]
    reason: str

    @property
    def needs_operator(self) -> bool:
        return self.standing in NEEDS_OPERATOR

    def label(self) -> str:
        """``iv-30 · fs-write@1.0.1 · external · unknown``"""
        return f"{self.call} · {self.tool}@{self.version} · {self.side_effect} · {self.standing}"

    def lines(self) -> list[tuple[str, Value]]:
        """Everything about the call, as labelled values."""
        return [
            ("standing", f"{self.standing}: {STANDING_MEANING.get(self.standing, '')}"),
            ("by", self.principal + (f" for task {self.task}" if self.task else "")),
            ("started", log_time(self.started_ms)),
            ("deadline", log_time(self.deadline_ms)),
            ("may touch", list(self.caps) or "-"),
            *([("reason", self.reason)] if self.reason else []),
        ]


def call_rows(state: WorldState, now_ms: int) -> tuple[CallRow, ...]:
    """Every open call, oldest first."""
    calls = sorted(state.call_table().values(), key=lambda c: c.op_seq)
    return tuple(
        CallRow(
            c.id,
            c.tool,
            c.version,
            c.side_effect,
            c.standing(now_ms),
            c.principal,
            c.task,
            c.started_ms,
            c.deadline_ms,
            tuple(c.caps),
            c.reason,
        )
        for c in calls
    )


def waiting_text(count: int) -> str:
    """``1 call needs you``, ``2 calls need you``."""
    return f"{count} call needs you" if count == 1 else f"{count} calls need you"
