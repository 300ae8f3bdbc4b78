"""Descriptions of logged events, shared by the CLI and the console: one line for an
event, and the full text of a tool call's intent and effect records."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from toka.core.errors import with_code
from toka.core.model.state import Grant, WorldState
from toka.core.model.text import one_line


def summarize(kind: str, payload: dict) -> str:
    """One line describing an event, for tables and the console."""
    p = payload
    match kind:
        case "agent.spawned":
            return f"{p['agent']} {p['name']!r} ({p['behaviour']})"
        case "agent.paused" | "agent.resumed":
            return p["agent"]
        case "agent.terminated":
            return f"{p['agent']} {p.get('reason') or ''}".strip()
        case "task.scheduled":
            return f"{p['task']} -> {p['agent']}: {p['description']}"
        case "task.completed":
            return f"{p['task']} result={short(p.get('result'))}"
        case "task.failed" | "task.cancelled":
            return f"{p['task']}: {p['reason']}"
        case "task.started":
            return f"{p['task']} by {p.get('runner') or '?'}"
        case "task.released":
            return f"{p['task']} by {p['runner']}"
        case "operation.pending":
            return f"{p['approval']}: {p['op_kind']} waits for approval"
        case "operation.approved":
            return f"{p['approval']}: {p.get('op_kind', '')} by {p.get('principal', '?')} approved"
        case "operation.denied":
            reason = f": {p['reason']}" if p.get("reason") else ""
            return f"{p['approval']}: {p.get('op_kind', '')} by {p.get('principal', '?')} denied{reason}"
        case "observation.emitted":
            return f"{p['agent']}: {short(p['data'])}"
        case "capability.granted":
            return f"{p['jti']} -> {p['subject']}: {' '.join(p['caps'])}"
        case "capability.revoked":
            return f"{', '.join(p['revoked'])} {p.get('reason') or ''}".strip()
        case "operation.rejected":
            return f"{p['op']}: {with_code(p['code'], p['reason'])}"
        case "budget.charged":
            return f"also counted against {', '.join(p['grants'])}"
        case "log.genesis":
            return f"home {p['home_id']}"
        case "tool.registered":
            return f"{p['name']}@{p['version']} ({p['kind']})"
        case "tool.started":
            return f"{p['call']} {p['tool']}@{p['version']} ({p['side_effect']}): {' '.join(p['caps'])}"
        case "tool.succeeded" if p.get("call"):
            return f"{p['call']} {p['tool']} ok: {effects_summary(p.get('effects') or [])}"
        case "tool.failed" if p.get("call"):
            return f"{p['call']} {p['tool']} {p['error_kind']}: {p['message']}"
        case "tool.succeeded":
            return f"{p['tool']}@{p['version']} -> {short(p.get('output'))}"
        case "tool.failed":
            return f"{p['tool']}@{p['version']}: {p['error_kind']}: {p['message']}"
        case "tool.unknown":
            return f"{p['call']} {p['tool']}: outcome unknown ({p['reason']})"
        case "tool.resolved":
            note = f": {p['note']}" if p.get("note") else ""
            return f"{p['call']} {p['tool']} resolved as {p['outcome']}{note}"
        case "mount.added":
            return f"{p['name']} ({p['mode']}) -> {p['path']}"
        case "mount.removed":
            return p["name"]
        case "host.allowed" | "host.revoked":
            return f"{p['host']}:{p['port']}"
        case "mcp.registered":
            target = p.get("url") or " ".join(p.get("command") or [])
            return f"{p['name']} ({p['transport']}): {target}"
        case "mcp.removed":
            return p["name"]
    return short(p)


def effects_summary(effects: list[dict]) -> str:
    """What a call touched, in a few words: ``fs.read docs/a.md (12 B)``."""
    if not effects:
        return "no effects"
    parts = []
    for e in effects[:3]:
        match e.get("effect"):
            case "fs.read":
                parts.append(f"read {e['mount']}:{e['path']} ({e['size']} B)")
            case "fs.listed":
                parts.append(f"listed {e['mount']}:{e['path'] or '.'} ({e['entries']})")
            case "fs.written":
                verb = "wrote" if e.get("changed") else "kept"
                parts.append(f"{verb} {e['mount']}:{e['path']} ({e['size']} B)")
            case "net.fetched":
                parts.append(f"{e['method']} {e['url']} -> {e['status']} ({e['size']} B)")
            case "mcp.called":
                answer = {True: "error", False: "ok"}.get(e.get("is_error"), "no answer")
                parts.append(f"called {e['tool']} on {e['server']} -> {answer}")
    more = f" +{len(effects) - 3}" if len(effects) > 3 else ""
    return "; ".join(parts) + more


def log_time(ms: int | None) -> str:
    """A log timestamp (ms since the epoch) in UTC, to the millisecond; ``-`` for none."""
    if not ms:
        return "-"
    return _log_second(ms // 1000) + f".{ms % 1000:03d}Z"


@functools.lru_cache(maxsize=1024)
def _log_second(s: int) -> str:
    # Cached: a listing of thousands of rows logged within a few seconds formats each
    # second once.
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s))


def short(value: Any, width: int = 60) -> str:
    """``value`` as compact JSON (strings as they are), cut to ``width`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


def grant_status(state: WorldState, grant: Grant, now_s: int) -> str:
    """``active``, ``expired`` or ``revoked`` (a revoked ancestor revokes it too)."""
    if grant.revoked or any(link.revoked for link in state.grant_chain(grant.jti)):
        return "revoked"
    return "expired" if grant.exp <= now_s else "active"


def active_grants_by_subject(state: WorldState, now_s: int) -> dict[str, list[Grant]]:
    """Every subject's active grants (by ``grant_status``), in issue order."""
    active: dict[str, list[Grant]] = {}
    for g in state.grants.values():
        if grant_status(state, g, now_s) == "active":
            active.setdefault(g.subject, []).append(g)
    return active


def grant_usage(grant: Grant) -> str:
    """One grant's use, against its budgets where set: ``ops 3/10, calls 1, fuel 90/500``."""
    b, u = grant.budgets, grant.usage
    parts = [f"ops {u.ops}" + (f"/{b.max_ops}" if b.max_ops is not None else "")]
    if u.tool_calls or b.max_tool_calls is not None:
        limit = f"/{b.max_tool_calls}" if b.max_tool_calls is not None else ""
        parts.append(f"calls {u.tool_calls}{limit}")
    if u.fuel or b.max_fuel is not None:
        parts.append(f"fuel {u.fuel}" + (f"/{b.max_fuel}" if b.max_fuel is not None else ""))
    return ", ".join(parts)


def budget_use(grants: Iterable[Grant], number: Callable[[int], str] = str) -> list[str]:
    """Use against each budget of ``grants``: ``["ops 3/100", "calls 0/5"]``."""
    parts = []
    for g in grants:
        b, u = g.budgets, g.usage
        if b.max_ops is not None:
            parts.append(f"ops {number(u.ops)}/{number(b.max_ops)}")
        if b.max_tool_calls is not None:
            parts.append(f"calls {number(u.tool_calls)}/{number(b.max_tool_calls)}")
        if b.max_fuel is not None:
            parts.append(f"fuel {number(u.fuel)}/{number(b.max_fuel)}")
    return parts


# -- tool calls with an effect: their intent and their effect records, as the console and
# ``toka effects show`` print them. Every value from the log goes through ``one_line``.

# What each side-effect class means for the operator (``state.SIDE_EFFECTS``).
CLASS_MEANING = {
    "none": "computes only",
    "read_only": "reads; safe to run again",
    "idempotent": "may write; doing it twice is doing it once",
    "external": "acts where a repeat is another act: an interrupted call waits for you",
    "privileged": "external, and always waits for the operator's approval",
}
# A labelled value: one line, or a list shown one item a line.
Value = str | list[str]


def aligned(rows: list[tuple[str, Value]], indent: str = "") -> str:
    """``label  value`` lines, values in one column; a list value (capabilities,
    headers) continues under itself, one item a line. Every value is shown escaped
    (``one_line``): a newline in it cannot start a line of its own."""
    width = max((len(label) for label, _ in rows), default=0)
    lines = []
    for label, value in rows:
        parts = [one_line(part) for part in (value if isinstance(value, list) else [value])] or [""]
        lines.append(f"{indent}{label:<{width}}  {parts[0]}".rstrip())
        lines += [f"{indent}{'':<{width}}  {part}" for part in parts[1:]]
    return "\n".join(lines)


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
        case "mcp.called":
            result = e.get("result_sha256")
            answer = {True: "an error result", False: "a result"}.get(e.get("is_error"))
            return f"mcp.called  {e.get('tool', '?')} on {e.get('server', '?')}", [
                ("pin", str(e.get("pin"))),
                ("answer", answer or "none: the server went away or did not answer in time"),
                ("arguments", f"sha256 {e.get('args_sha256')}"),
                ("result", f"sha256 {result}" if result else "-"),
                ("protocol", str(e.get("protocol") or "-")),
                ("time", f"{e.get('ms')} ms"),
                ("blobs", _blobs([e.get("args_sha256"), result])),
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
        blocks.append(f"{number}  {one_line(headline)}\n{aligned(rows, '   ')}")
    return "\n".join(blocks)
