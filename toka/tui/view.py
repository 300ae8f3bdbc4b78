"""What the console shows: table rows and detail texts, built from WorldState and log records
(the Tools pane's are in ``tool_view``).

Pure functions of their arguments (time comes in as ``now_s``), so the console, its
snapshot tests and time travel all render the same world the same way. No Textual here.
"""

from __future__ import annotations

import json
import time
from typing import Any, Generic, NamedTuple, TypeVar

import msgspec

from toka.core.activity import Activity
from toka.core.describe import (
    active_grants_by_subject,
    budget_use,
    grant_status,
    grant_usage,
    log_time,
    summarize,
)
from toka.core.model.events import EventRecord
from toka.core.model.keys import thumbprint
from toka.core.model.state import (
    OPEN_TASK_STATUSES,
    Agent,
    Grant,
    WorldState,
)
from toka.tui.effect_view import (
    CallRow,
    aligned,
    effects_text,
    intent_text,
    waiting_text,
)
from toka.tui.literal import visible

DETAIL_LIST_LIMIT = 50
TITLES = {"agents": "Agents", "events": "Events", "grants": "Grants", "tools": "Tools"}
PANES = tuple(TITLES)  # in the order of their number keys

Row = tuple[str, ...]  # a table row: one text per column, in column order
RowT = TypeVar("RowT", bound=Row)


class AgentRow(NamedTuple):
    """One line of the Agents pane; the field names are its column headings."""

    id: str
    name: str
    behaviour: str
    status: str
    open: str
    budget: str


class GrantRow(NamedTuple):
    """One line of the Grants pane; the field names are its column headings."""

    jti: str
    subject: str
    capabilities: str
    expires: str
    parent: str
    status: str


AGENT_COLUMNS = AgentRow._fields
GRANT_COLUMNS = GrantRow._fields


class EventRow(NamedTuple):
    """One line of the Events pane."""

    seq: int
    time: str
    kind: str
    principal: str
    summary: str


class TableDiff(NamedTuple, Generic[RowT]):
    """Rows to add or change (in order), and keys to drop."""

    upserts: list[tuple[str, RowT]]
    removed: list[str]

    @classmethod
    def between(cls, old: dict[str, RowT], new: dict[str, RowT]) -> TableDiff[RowT]:
        upserts = [(k, row) for k, row in new.items() if old.get(k) != row]
        return cls(upserts, [k for k in old if k not in new])

    def __bool__(self) -> bool:
        return bool(self.upserts or self.removed)


class Detail(NamedTuple):
    """Everything about one selected thing: a title, labelled fields, titled text blocks,
    and for an agent its activity over time (plotted between the fields and the blocks)."""

    title: str
    fields: list[tuple[str, str]]
    sections: list[tuple[str, str]]
    activity: Activity | None = None

    def plain(self) -> str:
        width = max((len(k) for k, _ in self.fields), default=0)
        lines = [self.title, ""]
        lines += [f"{k:<{width}}  {v}" for k, v in self.fields]
        for heading, body in self.sections:
            lines += ["", heading, body]
        return "\n".join(lines)


# -- formatting ---------------------------------------------------------------------------


def clock_time(ms: int) -> str:
    """``HH:MM:SS.mmm`` (UTC) of a log timestamp."""
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}"


def span(seconds: int) -> str:
    """A duration in its largest whole unit: ``45s``, ``59m``, ``23h``, ``12d``, ``9y``."""
    for unit, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def count(n: int) -> str:
    """``950``, ``12k``, ``3M``: limits and budgets at a glance."""
    for suffix, size in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= size and n % size == 0:
            return f"{n // size}{suffix}"
    return str(n)


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


# -- rows ---------------------------------------------------------------------------------


def event_row(record: EventRecord) -> EventRow:
    try:
        summary = summarize(record.kind, msgspec.json.decode(record.payload))
    except (msgspec.DecodeError, KeyError, TypeError):
        summary = record.payload[:80].decode(errors="replace")
    return EventRow(
        record.seq,
        clock_time(record.ts),
        record.kind,
        record.principal,
        summary.replace("\n", " "),
    )


def budget_text(grants: list[Grant]) -> str:
    """Budget use of an agent's live grants: ``ops 3/100 calls 0/5``, or ``-`` if unlimited."""
    return " ".join(budget_use(grants, count)) or "-"


def agent_rows(state: WorldState, now_s: int) -> dict[str, AgentRow]:
    live = active_grants_by_subject(state, now_s)
    return {
        a.id: AgentRow(
            a.id,
            a.name,
            a.behaviour,
            a.status,
            str(a.open_tasks),
            budget_text(live.get(a.id, [])),
        )
        for a in state.agents.values()
    }


def grant_rows(state: WorldState, now_s: int) -> dict[str, GrantRow]:
    rows = {}
    for g in state.grants.values():
        status = grant_status(state, g, now_s)
        expires = span(g.exp - now_s) if status == "active" else "-"
        rows[g.jti] = GrantRow(g.jti, g.subject, " ".join(g.caps), expires, g.parent or "-", status)
    return rows


# -- details ------------------------------------------------------------------------------


def _signer(state: WorldState, principal: str) -> str:
    key = state.principals.get(principal)
    return f"{principal} (key {thumbprint(key)[:16]})" if key else principal


def event_detail(state: WorldState, record: EventRecord) -> Detail:
    sections = []
    try:
        data = msgspec.json.decode(record.payload)
        payload = pretty_json(data)
        sections = _call_sections(record, data)
    except msgspec.DecodeError:
        payload = record.payload.decode(errors="replace")
    return Detail(
        f"event {record.seq} · {record.kind}",
        [
            ("seq", str(record.seq)),
            ("time", log_time(record.ts)),
            ("kind", record.kind),
            ("signer", _signer(state, record.principal)),
            ("token", record.grant or "-"),
            ("operation", f"{record.op_digest} (part {record.part})"),
            ("hash", record.hash),
            ("prev hash", record.prev_hash),
        ],
        [*sections, ("payload", payload)],
    )


def _call_sections(record: EventRecord, data: Any) -> list[tuple[str, str]]:
    """A call with an effect: its intent, or what it touched (before the raw payload)."""
    if not isinstance(data, dict):
        return []
    if record.kind == "tool.started":
        return [("intent", intent_text(data, record.ts))]
    if record.kind in ("tool.succeeded", "tool.failed") and data.get("call"):
        effects = [e for e in data.get("effects") or [] if isinstance(e, dict)]
        return [(f"effects ({len(effects)})", effects_text(effects))]
    return []


def _limited(lines: list[str]) -> str:
    if not lines:
        return "(none)"
    if len(lines) > DETAIL_LIST_LIMIT:
        hidden = len(lines) - DETAIL_LIST_LIMIT
        lines = [*lines[-DETAIL_LIST_LIMIT:], f"(and {hidden} earlier)"]
    return "\n".join(lines)


def agent_detail(
    state: WorldState, agent: Agent, now_s: int, activity: Activity | None = None
) -> Detail:
    tasks = [t for t in state.tasks.values() if t.agent == agent.id]
    grants = [g for g in state.grants.values() if g.subject == agent.id]
    live = [g for g in grants if grant_status(state, g, now_s) == "active"]
    # One line per task, whatever its description holds (a newline in it would start
    # what looks like another task).
    task_lines = [
        f"{t.id:<10} {t.status:<10} {visible(t.description)}"
        + (f"  ({visible(t.error)})" if t.error and t.status not in OPEN_TASK_STATUSES else "")
        for t in tasks
    ]
    grant_lines = [
        f"{g.jti:<8} {grant_status(state, g, now_s):<8} {' '.join(g.caps)}  [{grant_usage(g)}]"
        for g in grants
    ]
    return Detail(
        f"agent {agent.id} · {agent.name}",
        [
            ("id", agent.id),
            ("name", agent.name),
            ("behaviour", agent.behaviour),
            ("status", agent.status),
            ("spawned", f"{log_time(agent.created_ms)} by {agent.spawned_by}"),
            ("parent", agent.parent or "-"),
            ("public key", agent.public_key),
            ("open tasks", str(agent.open_tasks)),
            ("observations", str(agent.observations)),
            ("budget", budget_text(live)),
        ],
        [
            (f"tasks ({len(tasks)})", _limited(task_lines)),
            (f"grants ({len(grants)})", _limited(grant_lines)),
        ],
        activity,
    )


def grant_detail(state: WorldState, grant: Grant, now_s: int) -> Detail:
    b = grant.budgets
    chain = [g.jti for g in state.grant_chain(grant.jti)[1:]]
    cascade = state.descendants(grant.jti)
    status = grant_status(state, grant, now_s)
    fields = [
        ("jti", grant.jti),
        ("subject", grant.subject),
        ("issuer", grant.issuer),
        ("parent", grant.parent or "-"),
        ("status", status),
        ("issued", log_time(grant.iat * 1000)),
        (
            "expires",
            log_time(grant.exp * 1000)
            + (f" (in {span(grant.exp - now_s)})" if status == "active" else ""),
        ),
        ("approval", "operations wait for operator approval" if grant.approve else "not required"),
        (
            "budgets",
            ", ".join(
                f"{name} {value}"
                for name, value in (
                    ("max ops", b.max_ops),
                    ("max tool calls", b.max_tool_calls),
                    ("max fuel", b.max_fuel),
                )
                if value is not None
            )
            or "unlimited",
        ),
        ("usage", grant_usage(grant)),
    ]
    if grant.revoked_at is not None:
        fields.append(("revoked at", log_time(grant.revoked_at)))
    return Detail(
        f"grant {grant.jti} · {grant.subject}",
        fields,
        [
            ("capabilities", "\n".join(grant.caps)),
            ("delegated from (nearest first)", " -> ".join(chain) or "(root grant)"),
            (f"revoking it also revokes ({len(cascade)})", " ".join(cascade) or "(nothing else)"),
        ],
    )


def open_calls_detail(calls: tuple[CallRow, ...]) -> Detail:
    """Every open call with an effect; the ones that wait for the operator first."""
    waiting = [c for c in calls if c.needs_operator]
    running = [c for c in calls if not c.needs_operator]
    title = "open calls · " + (waiting_text(len(waiting)) if waiting else "none needs you")
    fields = [
        ("open", str(len(calls))),
        ("need you", f"{len(waiting)} (unknown, or interrupted past their deadline)"),
    ]
    if waiting:
        fields.append(("resolve", "ctrl+p, Resolve call: say whether each happened"))
    sections = [(c.label(), aligned(c.lines())) for c in (*waiting, *running)]
    if not calls:
        sections = [("no open calls", "Every call with an effect has ended.")]
    return Detail(title, fields, sections)
