"""One-line descriptions of logged events, shared by the CLI and the console."""

from __future__ import annotations

import json
from typing import Any


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
            return f"{p['op']}: {p['code']}: {p['reason']}"
        case "log.genesis":
            return f"home {p['home_id']}"
        case "tool.registered":
            return f"{p['name']}@{p['version']} ({p['kind']})"
        case "tool.succeeded":
            return f"{p['tool']}@{p['version']} -> {short(p.get('output'))}"
        case "tool.failed":
            return f"{p['tool']}@{p['version']}: {p['error_kind']}: {p['message']}"
    return short(p)


def short(value: Any, width: int = 60) -> str:
    """``value`` as compact JSON (strings as they are), cut to ``width`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"
