"""DetailView: everything about the selected row, as labelled fields and titled blocks."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from toka.tui.literal import literal
from toka.tui.view import Detail


def render_detail(detail: Detail, *, title: bool = True) -> Group:
    """The title, the fields (one line each) and the sections, all shown literally."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="dim", no_wrap=True)
    fields.add_column(overflow="fold")
    for key, value in detail.fields:
        fields.add_row(literal(key), literal(value))  # a str cell would be parsed as markup
    parts: list = [literal(detail.title, "bold"), fields] if title else [fields]
    for heading, body in detail.sections:
        block = literal(body, multiline=True)
        block.overflow = "fold"
        parts += [Text(""), literal(heading, "bold underline"), block]
    return Group(*parts)


class DetailView(VerticalScroll, can_focus=False):
    """Shows one Detail, or a hint when nothing is selected."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._body = Static(classes="detail-body")

    def compose(self):
        yield self._body

    def show(self, detail: Detail | None, hint: str = "") -> None:
        if detail is None:
            self._body.update(literal(hint, "dim"))
        else:
            self._body.update(render_detail(detail))
        self.scroll_home(animate=False)
