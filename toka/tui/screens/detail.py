"""DetailScreen: one event, agent, grant or tool in full, over the console."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen

from toka.tui.literal import literal
from toka.tui.view import Detail
from toka.tui.widgets import detail_parts


class DetailScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,enter,q", "close", "Close", id="detail-close"),
        Binding("up,k", "scroll(-1)", "Up", show=False),
        Binding("down,j", "scroll(1)", "Down", show=False),
    ]

    def __init__(self, detail: Detail):
        super().__init__()
        self.detail = detail

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog detail-dialog") as box:
            box.border_title = literal(self.detail.title)
            box.border_subtitle = "esc to close"
            yield from detail_parts(self.detail)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_scroll(self, lines: int) -> None:
        box = self.query_one(VerticalScroll)
        box.scroll_relative(y=lines, animate=False)
