"""Modal forms for the console's actions. A form only collects and parses input; the
console screen turns the result into a signed operation and submits it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

import msgspec
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from toka.core.errors import InvalidInput
from toka.core.model.state import Budgets
from toka.tui.literal import literal

T = TypeVar("T")
Choice = tuple[Text, str]  # (label, value): a Text, as a str option would be read as markup


class FormError(Exception):
    """A field the operator has to fix; nothing was submitted."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class SpawnRequest(NamedTuple):
    name: str
    behaviour: str
    parent: str | None


class TaskRequest(NamedTuple):
    agent: str
    description: str
    payload: Any


class ObservationRequest(NamedTuple):
    agent: str
    data: Any


class GrantRequest(NamedTuple):
    subject: str
    caps: list[str]
    ttl_s: int
    budgets: Budgets
    approve: bool


def field_row(label: str, widget: Widget, hint: str = "") -> ComposeResult:
    """A labelled field; the label and the hint are shown literally (a tool's schema
    names and describes its fields)."""
    with Horizontal(classes="field"):
        yield Label(literal(label), classes="field-label")
        with Vertical(classes="field-input"):
            yield widget
            if hint:
                yield Static(literal(hint, multiline=True), classes="field-hint")


class Form(ModalScreen[T], Generic[T]):
    """Fields, an error line, Submit and Cancel. Enter in a field submits, Escape cancels."""

    TITLE: ClassVar[str] = ""
    INTRO: ClassVar[str] = ""
    SUBMIT: ClassVar[str] = "Submit"
    AUTO_FOCUS = ".field-input > Input, .field-input > TextArea, .field-input > Select"

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="form-cancel"),
        Binding("ctrl+s", "submit", "Submit", id="form-submit"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="form") as box:
            box.border_title = self.TITLE
            if self.INTRO:
                yield Static(self.INTRO, classes="form-intro")
            yield from self.fields()
            yield Static("", id="form-error", classes="form-error")
            yield from self.extra()
            with Horizontal(classes="form-buttons"):
                yield Button(self.SUBMIT, variant="primary", id="submit", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    # Each form defines its fields and how to read them back (raising FormError).
    fields: Callable[[], ComposeResult]
    collect: Callable[[], T]

    def extra(self) -> ComposeResult:
        yield from ()

    # -- helpers for subclasses -----------------------------------------------------------

    def text(self, field: str, *, required: str | None = None) -> str:
        value = self.query_one(f"#{field}", Input).value.strip()
        if required and not value:
            raise FormError(field, required)
        return value

    def integer(self, field: str, label: str) -> int | None:
        value = self.text(field)
        if not value:
            return None
        try:
            number = int(value)
        except ValueError:
            raise FormError(field, f"{label} must be a whole number, not {value!r}") from None
        if number < 0:
            raise FormError(field, f"{label} must not be negative")
        return number

    def choice(self, field: str, message: str) -> str:
        value = self.query_one(f"#{field}", Select).value
        if value is Select.NULL or value is None:
            raise FormError(field, message)
        return str(value)

    def json(self, field: str, label: str, *, text_fallback: bool = False) -> Any:
        value = self.text(field)
        if not value:
            return None
        try:
            return msgspec.json.decode(value.encode())
        except msgspec.DecodeError as exc:
            if text_fallback:
                return value
            raise FormError(field, f"{label} is not valid JSON: {exc}") from None

    # -- events ---------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "submit":
            self.action_submit()
        elif event.button.id == "cancel":
            self.action_cancel()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def action_submit(self) -> None:
        try:
            value = self.collect()
        except FormError as exc:
            self.show_error(exc.message, exc.field)
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def show_error(self, message: str, field: str | None = None) -> None:
        error = self.query_one("#form-error", Static)
        error.update(literal(f"✗ {message}", "bold red"))
        if field:
            self.query_one(f"#{field}").focus()
        # On a short terminal the form scrolls: whatever the focus shows, show the error.
        self.call_after_refresh(error.scroll_visible, animate=False)


class PendingForm(Form[T]):
    """A form that stays open while its request runs (in a worker of the action that
    opened it, given as ``on_request``): it says it is ``WORKING``, then closes when
    the request is ``done``, or shows why it was ``refused`` and may be sent again."""

    WORKING: ClassVar[str] = "working…"

    def __init__(self, on_request: Callable[[T], None]):
        super().__init__()
        self.on_request = on_request
        self.busy = False

    def action_submit(self) -> None:
        if self.busy:
            return
        try:
            request = self.collect()
        except FormError as exc:
            self.show_error(exc.message, exc.field)
            return
        self.busy = True
        self.query_one("#form-error", Static).update(Text(self.WORKING, style="dim"))
        self.on_request(request)

    def refused(self, message: str) -> None:
        self.busy = False
        self.show_error(message)

    def done(self) -> None:
        self.dismiss(None)


class SpawnAgentForm(Form[SpawnRequest]):
    TITLE = "Spawn agent"
    AUTO_FOCUS = "#name"
    INTRO = "A new agent gets its own key pair and a base grant on its own tasks."
    SUBMIT = "Spawn"

    def __init__(self, parents: list[Choice]):
        super().__init__()
        self.parents = parents

    def fields(self) -> ComposeResult:
        yield from field_row("Name", Input(id="name", placeholder="e.g. summarizer", compact=True))
        yield from field_row(
            "Behaviour",
            Input(value="manual", id="behaviour", compact=True),
            "what drives it; manual = only operations you send",
        )
        yield from field_row(
            "Parent",
            Select(self.parents, id="parent", prompt="none", compact=True),
            "optional: the agent it works for",
        )

    def collect(self) -> SpawnRequest:
        name = self.text("name", required="give the agent a name")
        behaviour = self.text("behaviour", required="behaviour must not be empty (manual?)")
        parent = self.query_one("#parent", Select).value
        return SpawnRequest(name, behaviour, None if parent is Select.NULL else str(parent))


class AgentForm(Form[T]):
    """A form about one agent, picked from ``agents``; ``selected`` is preselected."""

    def __init__(self, agents: list[Choice], selected: str | None):
        super().__init__()
        self.agents = agents
        self.selected = selected

    def agent_field(self) -> ComposeResult:
        values = [value for _, value in self.agents]
        first = values[0] if values else Select.NULL
        yield from field_row(
            "Agent",
            Select(
                self.agents,
                id="agent",
                allow_blank=not self.agents,
                value=self.selected if self.selected in values else first,
                prompt="no agents",
                compact=True,
            ),
        )


class ScheduleTaskForm(AgentForm[TaskRequest]):
    TITLE = "Schedule task"
    AUTO_FOCUS = "#description"
    SUBMIT = "Schedule"

    def fields(self) -> ComposeResult:
        yield from self.agent_field()
        yield from field_row(
            "Description", Input(id="description", placeholder="what to do", compact=True)
        )
        yield from field_row(
            "Payload",
            Input(id="payload", placeholder='optional JSON, e.g. {"url": "…"}', compact=True),
        )

    def collect(self) -> TaskRequest:
        agent = self.choice("agent", "pick the agent that gets the task")
        description = self.text("description", required="describe the task")
        return TaskRequest(agent, description, self.json("payload", "the payload"))


class ObservationForm(AgentForm[ObservationRequest]):
    TITLE = "Emit observation"
    AUTO_FOCUS = "#data"
    SUBMIT = "Emit"

    def fields(self) -> ComposeResult:
        yield from self.agent_field()
        yield from field_row(
            "Data",
            Input(id="data", placeholder="JSON, or plain text", compact=True),
            "recorded in the log as the agent's observation",
        )

    def collect(self) -> ObservationRequest:
        agent = self.choice("agent", "pick the agent this observation is about")
        self.text("data", required="an observation needs data")
        return ObservationRequest(agent, self.json("data", "data", text_fallback=True))


class GrantForm(Form[GrantRequest]):
    TITLE = "Grant capability"
    AUTO_FOCUS = "#caps"
    INTRO = "Delegation only narrows: you can grant only what your own token covers."
    SUBMIT = "Grant"

    def __init__(self, subjects: list[Choice], selected: str | None):
        super().__init__()
        self.subjects = subjects
        self.selected = selected

    def fields(self) -> ComposeResult:
        values = [value for _, value in self.subjects]
        yield from field_row(
            "Subject",
            Select(
                self.subjects,
                id="subject",
                allow_blank=False,
                value=self.selected if self.selected in values else values[0],
                compact=True,
            ),
        )
        yield from field_row(
            "Capabilities",
            Input(
                id="caps", placeholder="tool.invoke:tool/wordcount task.schedule:*", compact=True
            ),
            "ACTION:RESOURCE patterns, separated by spaces or commas",
        )
        yield from field_row("TTL", Input(value="1h", id="ttl", compact=True), "30s, 10m, 2h, 7d")
        yield from field_row(
            "Max ops", Input(id="max-ops", placeholder="unlimited", type="integer", compact=True)
        )
        yield from field_row(
            "Max tool calls",
            Input(id="max-tool-calls", placeholder="unlimited", type="integer", compact=True),
        )
        yield from field_row(
            "Max fuel", Input(id="max-fuel", placeholder="unlimited", type="integer", compact=True)
        )
        yield from field_row(
            "Approval", Checkbox("operations wait for operator approval", id="approve")
        )

    def collect(self) -> GrantRequest:
        from toka.core.durations import parse_duration

        subject = self.choice("subject", "pick who receives the grant")
        caps = [c for c in self.text("caps").replace(",", " ").split() if c]
        if not caps:
            raise FormError("caps", "name at least one capability, e.g. agent.spawn:*")
        try:
            ttl_s = parse_duration(self.text("ttl", required="give the grant a lifetime"))
        except InvalidInput as exc:
            raise FormError("ttl", exc.message) from None
        budgets = Budgets(
            self.integer("max-ops", "max ops"),
            self.integer("max-tool-calls", "max tool calls"),
            self.integer("max-fuel", "max fuel"),
        )
        return GrantRequest(
            subject, caps, ttl_s, budgets, self.query_one("#approve", Checkbox).value
        )


class TimeTravelForm(Form[int]):
    TITLE = "Time travel"
    AUTO_FOCUS = "#seq"
    INTRO = "Browse the world as it was after one event. Nothing can be changed there."
    SUBMIT = "Travel"

    def __init__(self, head: int):
        super().__init__()
        self.head = head

    def fields(self) -> ComposeResult:
        yield from field_row(
            "Sequence",
            Input(value=str(self.head), id="seq", type="integer", compact=True),
            f"1 … {self.head} (the head)",
        )

    def collect(self) -> int:
        seq = self.integer("seq", "the sequence number")
        if seq is None or not 1 <= seq <= self.head:
            raise FormError("seq", f"pick a sequence number between 1 and {self.head}")
        return seq
