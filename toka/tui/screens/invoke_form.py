"""InvokeToolForm: a tool's arguments, as fields built from its input schema (or as raw
JSON), with each call's result shown in the form."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec
from rich.text import Text
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Select, Static, TextArea

from toka.core.describe import effects_summary
from toka.core.model.state import Tool
from toka.tui.literal import literal, visible
from toka.tui.screens.forms import Form, FormError, field_row
from toka.tui.tool_view import limits_text
from toka.tui.view import pretty_json

if TYPE_CHECKING:  # loading the tool runner waits until a tool is invoked
    from toka.core.tools.invocation import Invocation


class InvokeRequest(NamedTuple):
    tool: str
    version: str
    args: Any


SCALAR_TYPES = ("string", "number", "integer", "boolean")


class ArgField(NamedTuple):
    """One property of a tool's input schema, as a form field."""

    name: str
    prop: dict[str, Any]
    required: bool
    # boolean, enum, integer, number, string; text (a string, or a list of strings,
    # typed as text: fs-write's content); json (anything else: an object, a list)
    kind: str


def field_kind(prop: dict[str, Any]) -> str:
    kind = prop.get("type")
    if kind == "boolean":
        return "boolean"
    if isinstance(prop.get("enum"), list) and prop["enum"]:
        return "enum"
    if kind in SCALAR_TYPES:
        return kind
    items = prop.get("items")
    if (
        isinstance(kind, list)
        and "string" in kind
        and set(kind) <= {"string", "array"}
        and (not isinstance(items, dict) or items.get("type") == "string")
    ):
        return "text"
    return "json"


def schema_fields(schema: dict[str, Any] | None) -> list[ArgField] | None:
    """The fields of an object schema with properties, required ones first; else None
    (the arguments are typed as raw JSON)."""
    if not schema or schema.get("type") != "object":
        return None
    props = schema.get("properties")
    if not isinstance(props, dict) or not props:
        return None
    if not all(isinstance(prop, dict) for prop in props.values()):
        return None
    required = [name for name in schema.get("required") or [] if name in props]
    # The required fields first, in the schema's order: the log keeps a schema's
    # properties sorted by name, so "mount" would come after "content".
    names = list(dict.fromkeys([*required, *props]))
    return [
        ArgField(name, props[name], name in required, field_kind(props[name])) for name in names
    ]


class InvokeToolForm(Form[InvokeRequest]):
    """Arguments from the tool's input schema. Submitting hands the request to
    ``on_request`` (the action that opened the form submits it) and keeps the form open:
    the result (or failure kind) appears in place, ready for another call."""

    TITLE = "Invoke tool"
    SUBMIT = "Invoke"

    def __init__(
        self, tool: Tool, versions: list[str], on_request: Callable[[InvokeRequest], None]
    ):
        super().__init__()
        self.tool = tool
        self.versions = versions
        self.on_request = on_request
        self.arg_fields = schema_fields(tool.input_schema)

    def fields(self) -> ComposeResult:
        t = self.tool
        yield Static(
            Text.assemble(
                literal(t.name, "bold"),
                "  ",
                literal(t.description),
                "\n",
                literal(limits_text(t.limits), "dim"),
            ),
            classes="form-intro",
        )
        yield from field_row(
            "Version",
            Select(
                [(literal(v), v) for v in self.versions],
                id="version",
                allow_blank=False,
                value=t.version,
                compact=True,
            ),
        )
        if self.arg_fields is None:
            yield from field_row(
                "Arguments",
                TextArea(id="args", soft_wrap=True, placeholder='JSON, e.g. {"text": "hello"}'),
                "JSON"
                + (
                    ": must match the input schema (see the tool's detail)"
                    if t.input_schema
                    else ""
                ),
            )
            return
        for index, (name, prop, required, kind) in enumerate(self.arg_fields):
            label = f"{name}{' *' if required else ''}"
            hint = str(prop.get("description", ""))
            field = arg_id(index)
            if kind == "boolean":
                widget: Widget = Checkbox(
                    literal(hint or name), value=bool(prop.get("default")), id=field
                )
                hint = ""
            elif kind == "enum":
                widget = Select(
                    [(literal(str(v)), str(v)) for v in prop["enum"]],
                    id=field,
                    prompt="(leave out)",
                    compact=True,
                )
            elif kind == "text":
                widget = TextArea(id=field, soft_wrap=True, placeholder="text")
                hint = f"{hint} (here: text, as typed)".strip()
            elif kind == "json":
                expected = "a JSON object" if prop.get("type") == "object" else "JSON"
                widget = Input(id=field, placeholder=expected, compact=True)
            else:
                input_type = {"integer": "integer", "number": "number"}.get(kind, "text")
                default = "" if prop.get("default") is None else str(prop["default"])
                if visible(default) != default:
                    # An Input shows its value as it is, so a default holding terminal
                    # control is not filled in: the hint shows it instead.
                    hint = f"{hint} (default: {visible(default)})".strip()
                    default = ""
                widget = Input(
                    default,
                    id=field,
                    type=input_type,
                    placeholder=kind,
                    compact=True,
                )
            yield from field_row(label, widget, hint)

    def on_mount(self) -> None:
        first = self.query(".field-input > *").exclude("#version").first()
        first.focus()

    def extra(self) -> ComposeResult:
        yield Static("", id="result", classes="tool-result")

    def collect(self) -> InvokeRequest:
        version = self.choice("version", "pick a version")
        return InvokeRequest(self.tool.name, version, self.arguments())

    def action_submit(self) -> None:
        try:
            request = self.collect()
        except FormError as exc:
            self.show_error(exc.message, exc.field)
            return
        self.on_request(request)
        self.query_one("#form-error", Static).update("")
        self.query_one("#result", Static).update(Text("running…", style="dim"))

    def arguments(self) -> Any:
        if self.arg_fields is None:
            raw = self.query_one("#args", TextArea).text.strip() or "null"
            try:
                return msgspec.json.decode(raw.encode())
            except msgspec.DecodeError as exc:
                raise FormError("args", f"arguments are not valid JSON: {exc}") from None
        args: dict[str, Any] = {}
        for index, (name, prop, required, kind) in enumerate(self.arg_fields):
            field = arg_id(index)
            if kind == "boolean":
                args[name] = self.query_one(f"#{field}", Checkbox).value
                continue
            if kind == "text":
                # A file's content: written as typed, and empty is an empty file.
                text = self.query_one(f"#{field}", TextArea).text
                if text or required:
                    args[name] = text
                continue
            if kind == "enum":
                value = self.query_one(f"#{field}", Select).value
                raw = None if value is Select.NULL else str(value)
            else:
                raw = self.query_one(f"#{field}", Input).value
            if raw is None or raw == "":
                if required:
                    raise FormError(field, f"{name} is required")
                continue
            args[name] = _convert(prop, kind, raw, field, name)
        return args

    def show_result(self, lines: Text) -> None:
        self.query_one("#result", Static).update(lines)


def arg_id(index: int) -> str:
    """The widget id of the schema's ``index``-th field: by position, since a property
    name may be anything, and an id or a selector may not."""
    return f"arg-{index}"


def _convert(prop: dict[str, Any], kind: str, raw: str, field: str, name: str) -> Any:
    if kind == "enum":
        for option in prop["enum"]:
            if str(option) == raw:
                return option
    if kind == "json":
        try:
            value = msgspec.json.decode(raw.encode())
        except msgspec.DecodeError as exc:
            raise FormError(field, f"{name} is not valid JSON: {exc}") from None
        if prop.get("type") == "object" and not isinstance(value, dict):
            raise FormError(field, f'{name} must be a JSON object, such as {{"key": "value"}}')
        return value
    if kind == "integer":
        try:
            return int(raw)
        except ValueError:
            raise FormError(field, f"{name} must be a whole number") from None
    if kind == "number":
        try:
            return float(raw) if any(c in raw for c in ".eE") else int(raw)
        except ValueError:
            raise FormError(field, f"{name} must be a number") from None
    return raw


def outcome_text(ok: bool | None, headline: str, body: Any, note: str = "") -> Text:
    """``✓ headline`` (``✗`` failed, ``…`` not ended) over a dim note (what the call
    touched) and the output. A file's text content is shown as it reads, after the
    other fields, rather than as one JSON string."""
    mark, style = {True: ("✓ ", "bold green"), False: ("✗ ", "bold red")}.get(
        ok, ("… ", "bold yellow")
    )
    text = literal(mark + headline, style)
    if note:
        text.append("\n")
        text.append(literal(note, "dim"))
    content = body.get("content") if isinstance(body, dict) else None
    if isinstance(content, str) and body.get("encoding", "utf-8") == "utf-8":
        rest = {k: v for k, v in body.items() if k != "content"}
        text.append("\n")
        text.append(literal(pretty_json(rest), multiline=True))
        text.append("\ncontent:\n", "bold")
        text.append(literal(content, multiline=True))
    elif body is not None:
        text.append("\n")
        text.append(literal(body if isinstance(body, str) else pretty_json(body), multiline=True))
    return text


def invocation_text(inv: Invocation) -> Text:
    """What an invocation came to, for the form's result area."""
    where = (f"call {inv.call} · " if inv.call else "") + f"seq {inv.seq}"
    touched = effects_summary([msgspec.to_builtins(e) for e in inv.effects]) if inv.call else ""
    if inv.status == "succeeded":
        cost = f"fuel {inv.fuel_used} · " if inv.fuel_used or not inv.call else ""
        headline = f"{inv.tool}@{inv.version} ok · {where} · {cost}{inv.wall_ms:.1f} ms"
        return outcome_text(True, headline, inv.output, touched)
    if inv.status == "resolved":
        ok = inv.ok
        body = inv.output if ok else (inv.error.message if inv.error else None)
        verdict = "succeeded" if ok else "failed"
        headline = f"{inv.tool}@{inv.version} resolved by the operator as {verdict} · {where}"
        return outcome_text(ok, headline, body)
    if inv.error is not None:
        headline = f"{inv.tool}@{inv.version} failed: {inv.error.kind} · {where}"
        return outcome_text(False, headline, inv.error.message, touched)
    if inv.pending is not None:
        headline = f"{inv.tool}@{inv.version} waits for approval {inv.pending} · {where}"
        return outcome_text(None, headline, None)
    headline = f"{inv.tool}@{inv.version} has not ended: {inv.status} · {where}"
    return outcome_text(None, headline, None, "see Show open calls (ctrl+p)")


def invocation_summary(inv: Invocation) -> str:
    """The toast line of an invocation: how it ended, and where in the log."""
    if inv.status == "succeeded":
        how = "succeeded"
    elif inv.status == "resolved":
        how = "resolved as " + ("succeeded" if inv.ok else "failed")
    elif inv.error is not None:
        how = f"failed: {inv.error.kind}"
    elif inv.pending is not None:
        how = f"waits for approval {inv.pending}"
    else:
        how = f"call {inv.call} is {inv.status}"
    return f"{inv.tool}@{inv.version} {how} at seq {inv.seq}"
