"""ResolveCallForm: the operator's word on a call with an effect whose outcome nobody
recorded (unknown, or interrupted past its deadline): it succeeded or it failed."""

from __future__ import annotations

from typing import NamedTuple

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Select, Static

from toka.tui.effect_view import CallRow, aligned
from toka.tui.literal import literal
from toka.tui.screens.forms import Form, field_row

OUTCOMES = (
    ("succeeded", "succeeded: its effect happened"),
    ("failed", "failed: its effect did not happen"),
)


class ResolveRequest(NamedTuple):
    call: str
    outcome: str  # "succeeded" or "failed"
    note: str


class ResolveCallForm(Form[ResolveRequest]):
    TITLE = "Resolve call"
    AUTO_FOCUS = "#call"
    INTRO = (
        "The runner of this call stopped before recording how it ended. Check the world "
        "first (the file, the remote system), then say what happened: the log keeps "
        "your word and your note."
    )
    SUBMIT = "Resolve"

    def __init__(self, calls: list[CallRow], selected: str | None = None):
        super().__init__()
        self.calls = {c.call: c for c in calls}
        self.selected = selected if selected in self.calls else next(iter(self.calls), None)

    def fields(self) -> ComposeResult:
        with Horizontal(classes="field"):
            yield Label("Call", classes="field-label")
            with Vertical(classes="field-input"):
                yield Select(
                    [(literal(c.label()), c.call) for c in self.calls.values()],
                    id="call",
                    allow_blank=self.selected is None,
                    value=self.selected if self.selected is not None else Select.NULL,
                    prompt="no call waits for you",
                    compact=True,
                )
                # What the chosen call may have touched: what to check in the world.
                yield Static(self._about(self.selected), id="call-about", classes="field-hint")
        yield from field_row(
            "Outcome",
            Select(
                [(Text(label), value) for value, label in OUTCOMES],
                id="outcome",
                prompt="pick what happened",
                compact=True,
            ),
        )
        yield from field_row(
            "Note",
            Input(id="note", placeholder="what you found out", compact=True),
            "kept in the log with your word",
        )

    def _about(self, call_id: str | None) -> Text:
        call = self.calls.get(call_id) if call_id is not None else None
        if call is None:
            return Text("")
        return literal(aligned(call.lines()), multiline=True)

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "call":
            value = event.value
            about = self._about(None if value is Select.NULL else str(value))
            self.query_one("#call-about", Static).update(about)

    def collect(self) -> ResolveRequest:
        call = self.choice("call", "pick the call to resolve")
        outcome = self.choice("outcome", "say whether the call succeeded or failed")
        return ResolveRequest(call, outcome, self.text("note"))
