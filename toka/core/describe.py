"""One-line descriptions of logged events, shared by the CLI and the console."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from toka.core.errors import with_code
from toka.core.model.state import Grant, WorldState


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
            return f"{p['call']} {p['tool']} ok: {effects_text(p.get('effects') or [])}"
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
    return short(p)


def effects_text(effects: list[dict]) -> str:
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
    more = f" +{len(effects) - 3}" if len(effects) > 3 else ""
    return "; ".join(parts) + more


def log_time(ms: int | None) -> str:
    """A log timestamp (ms since the epoch) in UTC, to the millisecond; ``-`` for none."""
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


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
