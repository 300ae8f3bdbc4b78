"""HelpScreen: the keys valid on the screen it was opened from, dimmed when not allowed now."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from toka.tui.keymap import KeyHelp


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", id="help-close")]

    def __init__(self, entries: list[KeyHelp], footnote: str = ""):
        super().__init__()
        self.entries = entries
        self.footnote = footnote

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help-dialog") as box:
            box.border_title = "Keys"
            box.border_subtitle = "esc to close"
            yield Static(self._table())

    def _table(self) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(no_wrap=True, justify="right")
        table.add_column()
        group = None
        for entry in self.entries:
            if entry.group != group:
                if group is not None:
                    table.add_row("", "")
                table.add_row("", Text(entry.group, style="bold underline"))
                group = entry.group
            style = "" if entry.enabled else "dim"
            description = entry.description + ("" if entry.enabled else "  (not allowed now)")
            table.add_row(
                Text(entry.keys, style="bold " + style if entry.enabled else style),
                Text(description, style=style),
            )
        if self.footnote:
            table.add_row("", "")
            table.add_row("", Text(self.footnote, style="dim"))
        return table

    def action_close(self) -> None:
        self.dismiss(None)
