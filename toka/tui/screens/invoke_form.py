"""InvokeToolForm: a tool's arguments, as fields built from its input schema (or as raw
JSON), with each call's result shown in the form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec
from rich.text import Text
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Select, Static, TextArea

from toka.core.model.state import Tool
from toka.tui.literal import literal, visible
from toka.tui.screens.forms import Form, FormError, field_row
from toka.tui.view import limits_text, pretty_json


class InvokeRequest(NamedTuple):
    tool: str
    version: str
    args: Any


SIMPLE_TYPES = ("string", "number", "integer", "boolean")


def schema_fields(schema: dict[str, Any] | None) -> list[tuple[str, dict[str, Any], bool]] | None:
    """(name, property schema, required) for a flat object schema of simple types, else None."""
    if not schema or schema.get("type") != "object":
        return None
    props = schema.get("properties")
    if not isinstance(props, dict) or not props:
        return None
    required = set(schema.get("required") or [])
    out = []
    for name, prop in props.items():
        if not isinstance(prop, dict) or prop.get("type") not in SIMPLE_TYPES:
            return None
        out.append((name, prop, name in required))
    return out


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
        self.simple = schema_fields(tool.input_schema)

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
        if self.simple is None:
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
        for index, (name, prop, required) in enumerate(self.simple):
            label = f"{name}{' *' if required else ''}"
            hint = prop.get("description", "")
            field = arg_id(index)
            if prop["type"] == "boolean":
                widget: Widget = Checkbox(
                    literal(hint or name), value=bool(prop.get("default")), id=field
                )
                hint = ""
            elif "enum" in prop:
                widget = Select(
                    [(literal(str(v)), str(v)) for v in prop["enum"]],
                    id=field,
                    prompt="(leave out)",
                    compact=True,
                )
            else:
                kind = {"integer": "integer", "number": "number"}.get(prop["type"], "text")
                default = "" if prop.get("default") is None else str(prop["default"])
                if visible(default) != default:
                    # An Input shows its value as it is, so a default holding terminal
                    # control is not filled in: the hint shows it instead.
                    hint = f"{hint} (default: {visible(default)})".strip()
                    default = ""
                widget = Input(
                    default,
                    id=field,
                    type=kind,
                    placeholder=prop["type"],
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
        if self.simple is None:
            raw = self.query_one("#args", TextArea).text.strip() or "null"
            try:
                return msgspec.json.decode(raw.encode())
            except msgspec.DecodeError as exc:
                raise FormError("args", f"arguments are not valid JSON: {exc}") from None
        args: dict[str, Any] = {}
        for index, (name, prop, required) in enumerate(self.simple):
            field = arg_id(index)
            if prop["type"] == "boolean":
                args[name] = self.query_one(f"#{field}", Checkbox).value
                continue
            if "enum" in prop:
                value = self.query_one(f"#{field}", Select).value
                raw = None if value is Select.NULL else str(value)
            else:
                raw = self.query_one(f"#{field}", Input).value
            if raw is None or raw == "":
                if required:
                    raise FormError(field, f"{name} is required")
                continue
            args[name] = _convert(prop, raw, field, name)
        return args

    def show_result(self, lines: Text) -> None:
        self.query_one("#result", Static).update(lines)


def arg_id(index: int) -> str:
    """The widget id of the schema's ``index``-th field: by position, since a property
    name may be anything, and an id or a selector may not."""
    return f"arg-{index}"


def _convert(prop: dict[str, Any], raw: str, field: str, name: str) -> Any:
    kind = prop["type"]
    if "enum" in prop:
        for option in prop["enum"]:
            if str(option) == raw:
                return option
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


def outcome_text(ok: bool, headline: str, body: Any) -> Text:
    """``✓ headline`` (or ``✗``) over the output, as shown under the invoke form."""
    text = Text()
    text.append(literal(("✓ " if ok else "✗ ") + headline, "bold green" if ok else "bold red"))
    if body is not None:
        text.append("\n")
        text.append(literal(body if isinstance(body, str) else pretty_json(body), multiline=True))
    return text
