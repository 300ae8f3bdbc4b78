"""Activity plots: the header's strip of event and refusal rates, and an agent's activity.

Both draw with Textual's Sparkline, one bar per bucket when there is room (more buckets than
columns: each bar is the busiest of the buckets it covers). The captions are the console's
own words and numbers; nothing from the log reaches them.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static

from toka.core.activity import Activity
from toka.tui.view import span


def window_text(activity: Activity) -> str:
    """``5m by 10s``: how long the window is and how long one bucket."""
    window = activity.window
    return f"{span(window.buckets * window.bucket_ms // 1000)} by {span(window.bucket_ms // 1000)}"


class ActivityStrip(Horizontal):
    """One line under the header: events and refusals per bucket over the last minutes,
    each followed by its total over the window."""

    def compose(self) -> ComposeResult:
        yield Static("", classes="activity-caption")
        yield Static("events", classes="activity-label")
        yield Sparkline([], id="activity-events")
        yield Static("", id="activity-events-total", classes="activity-total")
        yield Static("refused", classes="activity-label")
        yield Sparkline([], id="activity-refusals")
        yield Static("", id="activity-refusals-total", classes="activity-total")

    def show(self, activity: Activity) -> None:
        self.query_one(".activity-caption", Static).update(Text(f"last {window_text(activity)}"))
        self.query_one("#activity-events", Sparkline).data = activity.events
        self.query_one("#activity-refusals", Sparkline).data = activity.refusals
        self.query_one("#activity-events-total", Static).update(str(activity.total_events))
        refused = self.query_one("#activity-refusals-total", Static)
        refused.update(str(activity.total_refusals))
        refused.set_class(activity.total_refusals > 0, "-refused")


class ActivityPlot(Vertical):
    """One thing's activity over a window: a caption, a two-line sparkline, its time axis."""

    def __init__(self, activity: Activity | None = None, *, classes: str | None = None) -> None:
        super().__init__(classes=classes)
        self._initial = activity

    def on_mount(self) -> None:
        if self._initial is not None:
            self.show(self._initial)

    def compose(self) -> ComposeResult:
        yield Static("", classes="activity-plot-caption")
        yield Sparkline([], classes="activity-plot-bars")
        with Horizontal(classes="activity-plot-axis"):
            yield Static("", classes="activity-plot-from")
            yield Static("now", classes="activity-plot-to")

    def show(self, activity: Activity) -> None:
        window = activity.window
        caption = Text.assemble(
            ("activity", "bold underline"),
            f"  {activity.total_events} events, {activity.total_refusals} refused",
        )
        self.query_one(".activity-plot-caption", Static).update(caption)
        self.query_one(".activity-plot-bars", Sparkline).data = activity.events
        ago = span(window.buckets * window.bucket_ms // 1000)
        every = span(window.bucket_ms // 1000)
        self.query_one(".activity-plot-from", Static).update(Text(f"{ago} ago · {every} buckets"))
