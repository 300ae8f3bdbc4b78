"""EventStream: the live log as a bounded, line-rendered table with a row cursor.

A DataTable re-indexes on every row removal, which makes trimming a stream O(n) per
row; this widget keeps its rows in a list, renders only the visible lines, and
appends a whole batch at once.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from toka.tui.literal import literal, visible
from toka.tui.view import EventRow

TIME_WIDTH = 12
NARROW = 100  # below this width the time column gives its room to the summary
KIND_WIDTH = 20
PRINCIPAL_WIDTH = 14
KIND_CLASSES = {
    "agent": "event-stream--agent",
    "task": "event-stream--task",
    "capability": "event-stream--capability",
    "tool": "event-stream--tool",
    "observation": "event-stream--observation",
    "operation": "event-stream--operation",
    "log": "event-stream--log",
}


class EventStream(ScrollView, can_focus=True, inherit_bindings=False):
    """The newest events, oldest at the top; the cursor sticks to the newest row unless moved."""

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "first", "Oldest", show=False),
        Binding("end", "last", "Newest", show=False),
        Binding("enter", "select", "Detail", id="event-detail"),
    ]

    COMPONENT_CLASSES = {
        "event-stream--header",
        "event-stream--cursor",
        "event-stream--cursor-blurred",
        "event-stream--seq",
        "event-stream--time",
        "event-stream--principal",
        "event-stream--empty",
        *KIND_CLASSES.values(),
        "event-stream--failed",
    }

    cursor: reactive[int] = reactive(-1, init=False)

    class Highlighted(Message):
        """The cursor moved onto ``row``."""

        def __init__(self, stream: EventStream, row: EventRow) -> None:
            super().__init__()
            self.stream = stream
            self.row = row

    class Selected(Message):
        """Enter was pressed on ``row``."""

        def __init__(self, stream: EventStream, row: EventRow) -> None:
            super().__init__()
            self.stream = stream
            self.row = row

    def __init__(self, *, capacity: int, empty_text: str = "", id: str | None = None) -> None:
        super().__init__(id=id)
        self.capacity = capacity
        self.empty_text = empty_text
        self.rows: list[EventRow] = []

    # -- content --------------------------------------------------------------------------

    @property
    def at_newest(self) -> bool:
        return self.cursor >= len(self.rows) - 1

    def replace(self, rows: list[EventRow]) -> None:
        """Show exactly ``rows`` (the newest ``capacity`` of them), cursor on the newest."""
        self.rows = rows[-self.capacity :]
        self._moved(len(self.rows) - 1, force=True)

    def extend(self, rows: list[EventRow]) -> None:
        """Append a batch, drop the oldest beyond capacity, keep the cursor on its event."""
        if not rows:
            return
        following = self.at_newest
        self.rows.extend(rows)
        overflow = len(self.rows) - self.capacity
        if overflow > 0:
            del self.rows[:overflow]
        target = len(self.rows) - 1 if following else max(self.cursor - max(overflow, 0), 0)
        self._moved(target, force=True)

    def selected(self) -> EventRow | None:
        return self.rows[self.cursor] if 0 <= self.cursor < len(self.rows) else None

    def _moved(self, index: int, *, force: bool = False) -> None:
        # no horizontal scrolling: rows are cut to the width with an ellipsis
        self.virtual_size = Size(0, len(self.rows) + 1)
        index = min(max(index, 0), len(self.rows) - 1)
        changed = index != self.cursor
        self.set_reactive(EventStream.cursor, index)
        self._scroll_to_cursor()
        self.refresh()
        if (changed or force) and index >= 0:
            self.post_message(self.Highlighted(self, self.rows[index]))

    def _scroll_to_cursor(self) -> None:
        visible = max(self.size.height - 1, 1)
        top = round(self.scroll_y)
        if self.cursor < top:
            top = self.cursor
        elif self.cursor >= top + visible:
            top = self.cursor - visible + 1
        self.scroll_to(y=max(top, 0), animate=False, immediate=True)

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(0, len(self.rows) + 1)
        # the scroll limits follow the new size only after the next refresh
        self.call_after_refresh(self._scroll_to_cursor)

    def watch_show_vertical_scrollbar(self, shown: bool) -> None:
        # Rows loaded into a pane laid out empty: it may scroll only once the next
        # layout gives it a scrollbar, so its first scroll to the cursor did nothing.
        if shown:
            self.call_after_refresh(self._scroll_to_cursor)

    # -- keys and mouse -------------------------------------------------------------------

    def action_cursor(self, delta: int) -> None:
        self._moved(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self._moved(self.cursor + direction * max(self.size.height - 2, 1))

    def action_first(self) -> None:
        self._moved(0)

    def action_last(self) -> None:
        self._moved(len(self.rows) - 1)

    def action_select(self) -> None:
        row = self.selected()
        if row is not None:
            self.post_message(self.Selected(self, row))

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self._moved(round(self.scroll_y) + event.y - 1)

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        event.stop()
        self._moved(self.cursor + 3)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        event.stop()
        self._moved(self.cursor - 3)

    # -- rendering ------------------------------------------------------------------------

    def _seq_width(self) -> int:
        return max(len(str(self.rows[-1].seq)) if self.rows else 0, 3)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            return self._header(width, base)
        index = round(self.scroll_y) + y - 1
        if not self.rows:
            if y == 2 and self.empty_text:
                style = base + self.get_component_rich_style("event-stream--empty")
                text = f" {visible(self.empty_text)}"[:width].ljust(width)
                return Strip([Segment(text, style)])
            return Strip.blank(width, base)
        if index >= len(self.rows):
            return Strip.blank(width, base)
        return self._row(self.rows[index], index == self.cursor, width, base)

    def _header(self, width: int, base: Style) -> Strip:
        style = base + self.get_component_rich_style("event-stream--header")
        seq = self._seq_width()
        time = f"{'time':<{TIME_WIDTH}}  " if width >= NARROW else ""
        text = (
            f" {'seq':>{seq}}  {time}{'kind':<{KIND_WIDTH}} "
            f"{'principal':<{PRINCIPAL_WIDTH}} summary"
        )
        return Strip([Segment(text[:width].ljust(width), style)])

    def _row(self, row: EventRow, is_cursor: bool, width: int, base: Style) -> Strip:
        component = self.get_component_rich_style
        seq = self._seq_width()
        family = row.kind.split(".", 1)[0]
        kind_class = (
            "event-stream--failed"
            if row.kind in ("tool.failed", "task.failed", "operation.rejected")
            else KIND_CLASSES.get(family, "event-stream--log")
        )
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        text.append(f" {row.seq:>{seq}}  ", component("event-stream--seq"))
        if width >= NARROW:
            text.append(f"{row.time:<{TIME_WIDTH}}  ", component("event-stream--time"))
        text.append(_column(row.kind, KIND_WIDTH, component(kind_class), cut=False))
        text.append(_column(row.principal, PRINCIPAL_WIDTH, component("event-stream--principal")))
        text.append(literal(row.summary))
        text.truncate(width, overflow="ellipsis", pad=True)
        style = base
        if is_cursor:
            name = "event-stream--cursor" if self.has_focus else "event-stream--cursor-blurred"
            text.stylize(component(name))
        segments = list(text.render(self.app.console))
        return Strip(segments, width).apply_style(style)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()


def _column(value: str, width: int, style: Style, *, cut: bool = True) -> Text:
    """``value`` literally, padded to ``width`` cells (and cut to it), then a space."""
    text = literal(value, style)
    if cut:
        text.truncate(width)
    text.pad_right(max(width - text.cell_len, 0))
    text.append(" ")
    return text
