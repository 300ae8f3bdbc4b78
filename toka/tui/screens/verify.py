"""VerifyScreen: the progress and the result of walking the log's hash chain.

The console screen runs the verification in its own worker, so closing this dialog
does not stop it; the header shows the outcome either way.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import ProgressBar, Static

from toka.tui.literal import literal


class VerifyScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter", "close", "Close", id="verify-close")]

    def __init__(self, total: int):
        super().__init__()
        self.total = max(total, 1)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog verify-dialog") as box:
            box.border_title = "Verify log"
            yield Static(
                Text(f"Walking the hash chain of {self.total} events…"), id="verify-status"
            )
            yield ProgressBar(total=self.total, show_eta=False, id="verify-progress")
            yield Static("esc to close (verification goes on)", classes="dialog-hint")

    def progress(self, done: int, total: int) -> None:
        self.total = max(total, 1)
        self.query_one(ProgressBar).update(total=self.total, progress=done)

    def finished(self, ok: bool, message: str, detail: str = "") -> None:
        if ok:
            self.query_one(ProgressBar).update(total=self.total, progress=self.total)
        mark = "✓ " if ok else "✗ "
        headline = literal(mark + message, "bold green" if ok else "bold red", multiline=True)
        if detail:
            headline.append("\n")
            headline.append(literal(detail, "dim", multiline=True))
        self.query_one("#verify-status", Static).update(headline)
        self.query_one(".dialog-hint", Static).update("esc to close")

    def action_close(self) -> None:
        self.dismiss(None)
