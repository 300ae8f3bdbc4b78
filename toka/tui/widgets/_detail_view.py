"""DetailView: everything about the selected row, as labelled fields and titled blocks."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from toka.tui.literal import literal
from toka.tui.view import Detail
from toka.tui.widgets._activity_plot import ActivityPlot


def render_body(detail: Detail) -> Group:
    """The fields (one line each) and the sections, all shown literally."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="dim", no_wrap=True)
    fields.add_column(overflow="fold")
    for key, value in detail.fields:
        fields.add_row(literal(key), literal(value))  # a str cell would be parsed as markup
    parts: list = [fields]
    for heading, body in detail.sections:
        block = literal(body, multiline=True)
        block.overflow = "fold"
        parts += [Text(""), literal(heading, "bold underline"), block]
    return Group(*parts)


def detail_parts(detail: Detail) -> ComposeResult:
    """A detail as widgets, for a screen that shows its title elsewhere: its activity plot
    (if it has one) over its body."""
    if detail.activity is not None:
        yield ActivityPlot(detail.activity, classes="activity-plot")
    yield Static(render_body(detail), classes="detail-body")


class DetailView(VerticalScroll, can_focus=False):
    """Shows one Detail (its title, its activity plot if any, its body), or a hint when
    nothing is selected."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._title = Static(classes="detail-body")
        self._plot = ActivityPlot(classes="activity-plot")
        self._body = Static(classes="detail-body")

    def compose(self) -> ComposeResult:
        yield self._title
        yield self._plot
        yield self._body

    def show(self, detail: Detail | None, hint: str = "") -> None:
        if detail is None:
            self._title.update(literal(hint, "dim"))
            self._body.update("")
        else:
            self._title.update(literal(detail.title, "bold"))
            self._body.update(render_body(detail))
        activity = detail.activity if detail is not None else None
        self._plot.display = activity is not None
        if activity is not None:
            self._plot.show(activity)
        self.scroll_home(animate=False)
