"""What the console shows of tool calls with an effect: open calls, intents, effect records.

Pure functions of the state or of a logged payload (decoded JSON), like ``view``: no
Textual here. Every value that came from the log passes through ``visible`` before it
joins a multi-line text, so a newline or ESC in a path or a header cannot forge a line.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from toka.core.describe import log_time
from toka.core.model.state import WorldState
from toka.tui.literal import visible

# What each side-effect class means for the operator (``state.SIDE_EFFECTS``).
CLASS_MEANING = {
    "none": "computes only",
    "read_only": "reads; safe to run again",
    "idempotent": "may write; doing it twice is doing it once",
    "external": "acts where a repeat is another act: an interrupted call waits for you",
    "privileged": "external, and always waits for the operator's approval",
}
# Open calls the operator has to resolve: the runner stopped (unknown), or the deadline
# passed with no outcome recorded (interrupted).
NEEDS_OPERATOR = ("unknown", "interrupted")
STANDING_MEANING = {
    "started": "may still be running",
    "interrupted": "past its deadline, no outcome recorded",
    "unknown": "its runner stopped before its end",
}


# A labelled value: one line, or a list shown one item a line.
Value = str | list[str]


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


def aligned(rows: list[tuple[str, Value]], indent: str = "") -> str:
    """``label  value`` lines, values in one column; a list value (capabilities,
    headers) continues under itself, one item a line. Every value is shown escaped
    (``visible``): a newline in it cannot start a line of its own."""
    width = max((len(label) for label, _ in rows), default=0)
    lines = []
    for label, value in rows:
        parts = [visible(part) for part in (value if isinstance(value, list) else [value])] or [""]
        lines.append(f"{indent}{label:<{width}}  {parts[0]}".rstrip())
        lines += [f"{indent}{'':<{width}}  {part}" for part in parts[1:]]
    return "\n".join(lines)


# -- logged payloads -----------------------------------------------------------------


def intent_text(p: dict[str, Any], ts: int) -> str:
    """What a ``tool.started`` says: the call, its class, what it may touch and how it
    is pinned (arguments' hash, idempotency key, deadline)."""
    cls = str(p.get("side_effect", ""))
    deadline = p.get("deadline_ms")
    after = f" ({(deadline - ts) / 1000:g}s after the intent)" if isinstance(deadline, int) else ""
    return aligned(
        [
            ("call", str(p.get("call", "?"))),
            ("tool", f"{p.get('tool', '?')}@{p.get('version', '?')}"),
            ("class", f"{cls}: {CLASS_MEANING[cls]}" if cls in CLASS_MEANING else cls),
            ("may touch", [str(c) for c in p.get("caps") or []] or "-"),
            ("args sha256", str(p.get("args_sha256", "-"))),
            ("idempotency key", str(p.get("idempotency_key", "-"))),
            ("deadline", (log_time(deadline) if isinstance(deadline, int) else "-") + after),
            ("arguments", f"in the signed tool.invoke at seq {p.get('op_seq', '?')}"),
            ("task", str(p.get("task") or "-")),
        ]
    )


def _bytes(n: Any) -> str:
    return f"{n} B" if isinstance(n, int) else str(n)


def _blobs(names: list[Any]) -> Value:
    return [f"blobs/{name}" for name in names if name] or "-"


def _effect_rows(e: dict[str, Any]) -> tuple[str, list[tuple[str, Value]]]:
    """One effect record: its headline (what and where) and its labelled values."""
    kind = str(e.get("effect", "?"))
    place = f"{e.get('mount', '?')}:{e.get('path') or '.'}"
    match kind:
        case "fs.read":
            return f"fs.read  {place}", [
                ("size", _bytes(e.get("size"))),
                ("sha256", str(e.get("sha256"))),
                ("blobs", _blobs([e.get("sha256")])),
            ]
        case "fs.listed":
            return f"fs.listed  {place}", [
                ("entries", str(e.get("entries"))),
                ("sha256", f"{e.get('sha256')} (the listing)"),
                ("blobs", _blobs([e.get("sha256")])),
            ]
        case "fs.written":
            before = e.get("before_sha256")
            return f"fs.written  {place}", [
                ("size", _bytes(e.get("size"))),
                ("before", str(before) if before else "none: the file did not exist"),
                ("after", str(e.get("after_sha256"))),
                ("changed", "yes" if e.get("changed") else "no: it already held these bytes"),
                ("blobs", _blobs([e.get("after_sha256")])),
            ]
        case "net.fetched":
            headers = e.get("headers") or {}
            request = e.get("request_sha256")
            return f"net.fetched  {e.get('method', '?')} {e.get('url', '?')}", [
                ("status", str(e.get("status"))),
                ("size", _bytes(e.get("size"))),
                ("address", str(e.get("address"))),
                ("time", f"{e.get('ms')} ms"),
                ("query", f"hmac {e['query_hmac']}" if e.get("query_hmac") else "none"),
                ("request", f"sha256 {request}" if request else "no body"),
                *([("request hmac", str(e["request_hmac"]))] if e.get("request_hmac") else []),
                ("response", f"sha256 {e.get('response_sha256')}"),
                ("headers", [f"{k}: {v}" for k, v in headers.items()] or "-"),
                ("blobs", _blobs([e.get("response_sha256"), request])),
            ]
    rows: list[tuple[str, Value]] = [(str(k), str(v)) for k, v in e.items() if k != "effect"]
    return kind, rows


def effects_text(effects: list[dict[str, Any]]) -> str:
    """Every effect record of an ended call, numbered, each with its values."""
    if not effects:
        return "(none: the call touched nothing)"
    blocks = []
    for number, effect in enumerate(effects, 1):
        headline, rows = _effect_rows(effect)
        blocks.append(f"{number}  {visible(headline)}\n{aligned(rows, '   ')}")
    return "\n".join(blocks)
