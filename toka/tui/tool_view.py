"""What the console shows of tools: the Tools pane's rows (each tool version, and each
registered MCP server none of whose tools is imported yet), how each tool's last call
ended, and the detail of a tool or a server.

Pure functions of their arguments, like ``view``: no Textual here. The last calls come
from the log's call endings (``last_call_of``); the feed keeps them up to date.
"""

from __future__ import annotations

import shlex
from typing import NamedTuple

import msgspec

from toka.core.describe import log_time
from toka.core.model.events import EventRecord
from toka.core.model.state import McpServer, Tool, WorldState, version_key
from toka.tui.effect_view import CLASS_MEANING
from toka.tui.view import Detail, count, pretty_json, span

SERVER_KIND = "mcp server"  # the kind shown on a server's own row
PIN_SHOWN = 12  # hex digits of a pin in a row, as ``toka mcp tools`` shows it
ENDING_KINDS = ("tool.succeeded", "tool.failed", "tool.unknown", "tool.resolved")
DEFINITION_CHANGED = "definition_changed"


class ToolRow(NamedTuple):
    """One line of the Tools pane; the field names are its column headings."""

    name: str
    version: str
    side_effect: str  # shown as "side effect"
    kind: str  # "mcp SERVER" for an imported MCP tool; SERVER_KIND for a server's row
    last_call: str  # how it ended, and how long ago
    pin: str  # an MCP tool's definition pin, shortened
    limits: str

    @property
    def is_server(self) -> bool:
        """The row of an MCP server with no imported tool, not of a tool."""
        return self.kind == SERVER_KIND


TOOL_COLUMNS = ToolRow._fields


class LastCall(NamedTuple):
    """How the newest ended call of one tool version ended."""

    seq: int
    ts_ms: int
    ending: str  # succeeded, failed, unknown or resolved
    call: str | None  # the call's id, for a call with an effect
    error_kind: str | None  # of a failed call
    outcome: str | None  # the operator's word, for a resolved call
    message: str  # why it failed, why its outcome is unknown, or the operator's note

    @property
    def definition_changed(self) -> bool:
        return self.error_kind == DEFINITION_CHANGED

    def verdict(self) -> str:
        """``ok``, ``definition changed``, ``failed: tool_error``, ``unknown``,
        ``resolved: failed``."""
        if self.ending == "succeeded":
            return "ok"
        if self.definition_changed:
            return "definition changed"
        if self.ending == "failed":
            return f"failed: {self.error_kind}"
        if self.ending == "resolved":
            return f"resolved: {self.outcome}"
        return self.ending

    def cell(self, now_s: int) -> str:
        """The verdict first (a narrow column cuts the end): ``ok · 2m ago``."""
        return f"{self.verdict()} · {span(now_s - self.ts_ms // 1000)} ago"


class _Ending(msgspec.Struct):
    """What ``LastCall`` reads from any of the four call endings (the rest is skipped)."""

    tool: str
    version: str
    call: str | None = None
    error_kind: str | None = None
    message: str = ""
    reason: str = ""
    outcome: str | None = None
    note: str = ""


_decode_ending = msgspec.json.Decoder(_Ending).decode


def last_call_of(record: EventRecord) -> tuple[str, LastCall] | None:
    """The tool version (``name@version``) a call ending is about, and how the call
    ended; None for any other event (or an ending that does not decode)."""
    if record.kind not in ENDING_KINDS:
        return None
    try:
        e = _decode_ending(record.payload)
    except msgspec.DecodeError:
        return None
    ending = record.kind.removeprefix("tool.")
    message = e.message or e.reason or e.note
    return f"{e.tool}@{e.version}", LastCall(
        record.seq, record.ts, ending, e.call, e.error_kind, e.outcome, message
    )


# -- rows ---------------------------------------------------------------------------------


def size_text(n: int) -> str:
    """Bytes in the largest binary unit that divides them: ``64 KiB``, ``16 MiB``."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


def limits_text(limits: dict[str, int]) -> str:
    """``fuel 100M · 16 MiB · 1s · out 64 KiB``."""
    parts = []
    if "fuel" in limits:
        parts.append(f"fuel {count(limits['fuel'])}")
    if "memory_mb" in limits:
        parts.append(size_text(limits["memory_mb"] << 20))
    if "timeout_ms" in limits:
        ms = limits["timeout_ms"]
        parts.append(f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms} ms")
    if "max_output_bytes" in limits:
        parts.append(f"out {size_text(limits['max_output_bytes'])}")
    known = {"fuel", "memory_mb", "timeout_ms", "max_output_bytes"}
    parts += [f"{k} {v}" for k, v in sorted(limits.items()) if k not in known]
    return " · ".join(parts) or "-"


def tool_key(tool: Tool) -> str:
    return f"{tool.name}@{tool.version}"


def server_key(name: str) -> str:
    """A server row's key: ``mcp/NAME`` (a tool's key always holds an ``@``)."""
    return f"mcp/{name}"


def server_of_key(key: str) -> str | None:
    """The server a row key names, or None for a tool's key."""
    prefix, slash, name = key.partition("/")
    return name if slash and prefix == "mcp" and "@" not in key else None


def tool_rows(state: WorldState, last_calls: dict[str, LastCall], now_s: int) -> dict[str, ToolRow]:
    """Every tool version, then a row for each MCP server with no imported tool."""
    rows: dict[str, ToolRow] = {}
    imported_from: set[str] = set()
    for versions in state.tools.values():
        for t in versions.values():
            key = tool_key(t)
            last = last_calls.get(key)
            kind, pin = t.kind, "-"
            if t.binding is not None:
                imported_from.add(t.binding.server)
                kind, pin = f"mcp {t.binding.server}", t.binding.pin[:PIN_SHOWN]
            rows[key] = ToolRow(
                t.name,
                t.version,
                t.effect_class,
                kind,
                last.cell(now_s) if last else "-",
                pin,
                limits_text(t.limits),
            )
    for name in state.mcp_table():
        if name not in imported_from:
            rows[server_key(name)] = ToolRow(
                name, "-", "-", SERVER_KIND, "no tools imported", "-", "-"
            )
    return rows


# -- details ------------------------------------------------------------------------------


def server_target(server: McpServer) -> str:
    """What a server is reached by: its command line, or its URL."""
    if server.transport == "http":
        return server.url or "-"
    return shlex.join(server.command or [])


def _server_fields(server: McpServer) -> list[tuple[str, str]]:
    secrets = {**server.env_secrets, **server.header_secrets}
    fields = [
        ("transport", server.transport + (" (legacy handshake)" if server.legacy else "")),
        ("url" if server.transport == "http" else "command", server_target(server)),
    ]
    if server.env:
        fields.append(("environment", " ".join(f"{k}={v}" for k, v in sorted(server.env.items()))))
    if secrets:
        what = "headers" if server.transport == "http" else "secret env"
        fields.append((what, " ".join(f"{k}={v}" for k, v in sorted(secrets.items()))))
    return fields


def server_detail(state: WorldState, name: str) -> Detail | None:
    """A registered MCP server: how it is reached, and what to do next."""
    server = state.mcp_table().get(name)
    if server is None:
        return None
    return Detail(
        f"mcp server {name}",
        [
            ("name", name),
            *_server_fields(server),
            ("registered", f"{log_time(server.added_ms)} by {server.added_by}"),
            ("tools", f"none imported yet: they will be named {name}.TOOL"),
        ],
        [
            (
                "next",
                "ctrl+p, Import MCP tools: see what it offers, pick tools and their "
                f"side-effect class (or: toka mcp tools {name}, then toka mcp import {name})",
            )
        ],
    )


def _last_call_fields(last: LastCall | None, now_s: int) -> list[tuple[str, str]]:
    if last is None:
        return [("last call", "none in the log")]
    when = f"{log_time(last.ts_ms)} ({span(now_s - last.ts_ms // 1000)} ago)"
    where = f"seq {last.seq}" + (f", call {last.call}" if last.call else "")
    fields = [("last call", f"{last.verdict()} · {when} · {where}")]
    if last.message:
        fields.append(("said", last.message))
    return fields


def _mcp_parts(
    state: WorldState, tool: Tool, last: LastCall | None
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """An MCP tool's fields (where it comes from) and sections (what to do when its
    definition changed; the definition it is pinned to)."""
    binding = tool.binding
    assert binding is not None
    server = state.mcp_table().get(binding.server)
    fields = [("server", binding.server if server else f"{binding.server} (removed)")]
    fields += _server_fields(server) if server else []
    fields += [("server's tool", binding.tool), ("pin", binding.pin)]
    definition = binding.definition
    sections = []
    if last is not None and last.definition_changed:
        fields.insert(0, ("definition", "definition changed: calls are refused, nothing is sent"))
        sections.append(
            (
                "definition changed",
                f"The server's definition of {binding.tool} no longer matches the pin of "
                f"{tool.name}@{tool.version}, so its calls fail and nothing is sent.\n"
                "Review the new definition, then import it as a new version:\n"
                f"  toka mcp import {binding.server} --tools {binding.tool} --accept-changed\n"
                "  or ctrl+p, Import MCP tools, with 'accept changed definitions'",
            )
        )
    sections.append(("pinned description", str(definition.get("description") or "(none)")))
    annotations = definition.get("annotations")
    sections.append(
        (
            "pinned annotations (the server's hints; the side effect above is yours)",
            pretty_json(annotations) if annotations else "(none)",
        )
    )
    if definition.get("outputSchema"):
        sections.append(("output schema", pretty_json(definition["outputSchema"])))
    return fields, sections


def tool_detail(state: WorldState, tool: Tool, last: LastCall | None, now_s: int) -> Detail:
    versions = sorted(state.tools.get(tool.name, {}), key=version_key)
    fields = [
        ("name", tool.name),
        ("version", tool.version),
        ("kind", tool.kind),
        ("side effect", f"{tool.effect_class}: {CLASS_MEANING.get(tool.effect_class, '?')}"),
        ("description", tool.description),
    ]
    sections = []
    if tool.binding is None:
        fields.append(("module sha256", tool.module_sha256 or "-"))
    else:
        mcp_fields, sections = _mcp_parts(state, tool, last)
        fields += mcp_fields
    fields += [
        ("needs", " ".join(tool.capabilities) or "nothing beyond tool.invoke"),
        ("limits", limits_text(tool.limits)),
        ("registered", f"{log_time(tool.registered_ms)} by {tool.registered_by}"),
        ("versions", " ".join(versions)),
        *_last_call_fields(last, now_s),
    ]
    schema = pretty_json(tool.input_schema) if tool.input_schema else "(any JSON)"
    title = f"tool {tool.name}@{tool.version}"
    if last is not None and last.definition_changed:
        title += " · definition changed"
    return Detail(title, fields, [*sections, ("input schema", schema)])
