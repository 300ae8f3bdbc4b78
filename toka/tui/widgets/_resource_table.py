"""ResourceTable: a DataTable of agents, grants or tools, updated by row diffs."""

from __future__ import annotations

from typing import Generic

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from toka.tui.literal import literal
from toka.tui.view import RowT, TableDiff

STATUS_STYLES = {
    "running": "green",
    "active": "green",
    "paused": "yellow",
    "expired": "yellow",
    "terminated": "dim",
    "revoked": "red",
}
# A tool's side-effect class: the ones that may act in the world stand out.
CLASS_STYLES = {"none": "dim", "external": "yellow", "privileged": "bold red"}
# How a tool's last call ended (the cell's words before " · "): what went wrong stands out.
LAST_CALL_STYLES = {
    "definition changed": "bold red",
    "unknown": "bold yellow",
    "resolved: failed": "red",
}
COLUMN_STYLES = {"status": STATUS_STYLES, "side_effect": CLASS_STYLES}
MAX_CELL = 48


def _style(column: str, value: str) -> str:
    if column == "last_call":
        verdict = value.partition(" · ")[0]
        return LAST_CALL_STYLES.get(verdict, "red" if verdict.startswith("failed") else "")
    return COLUMN_STYLES.get(column, {}).get(value, "")


def _cell(column: str, value: str) -> Text:
    """A cell as shown: the value literally (a str cell would be parsed as markup), one
    line, cut to ``MAX_CELL`` with an ellipsis."""
    text = literal(value, _style(column, value))
    text.no_wrap, text.end = True, ""
    if text.cell_len > MAX_CELL:
        text.truncate(MAX_CELL, overflow="ellipsis")
    return text


def heading_of(column: str) -> str:
    """A column's heading: its row field's name, in words (``side_effect``: side effect)."""
    return column.replace("_", " ")


class ResourceTable(DataTable[Text], Generic[RowT]):
    """Rows keyed by id; ``apply`` adds, changes and drops rows in place.

    Column widths are set here, from the rows, before the rows change: DataTable's own
    auto-width is computed later, on idle, and a frame painted in between would cache
    cells at the old widths.
    """

    BINDINGS = [
        Binding("k", "cursor_up", "Up", show=False),
        Binding("j", "cursor_down", "Down", show=False),
        Binding("home", "scroll_top", "First row", show=False),
        Binding("end", "scroll_bottom", "Last row", show=False),
    ]

    def __init__(self, columns: tuple[str, ...], *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.column_names = columns
        self.row_data: dict[str, RowT] = {}

    def on_mount(self) -> None:
        for name in self.column_names:
            heading = heading_of(name)
            self.add_column(heading, key=name, width=cell_len(heading))

    def apply(self, diff: TableDiff[RowT]) -> None:
        widened = self._widen(diff)
        for key, row in diff.upserts:
            old = self.row_data.get(key)
            self.row_data[key] = row
            if old is None:
                cells = [_cell(c, v) for c, v in zip(self.column_names, row, strict=True)]
                self.add_row(*cells, key=key)
                continue
            for column, before, after in zip(self.column_names, old, row, strict=True):
                if before != after:
                    # update_width only makes DataTable recompute its scrollable width
                    self.update_cell(
                        key, column, _cell(column, after), update_width=column in widened
                    )
        for key in diff.removed:
            if self.row_data.pop(key, None) is not None:
                self.remove_row(key)

    def _widen(self, diff: TableDiff[RowT]) -> set[str]:
        """Grow columns to fit the new values (they never shrink, so rows do not jitter)."""
        widened = set()
        for index, name in enumerate(self.column_names):
            column = self.columns[name]  # type: ignore[index]
            wanted = max((_cell(name, row[index]).cell_len for _, row in diff.upserts), default=0)
            if wanted > column.width:
                column.width = wanted
                widened.add(name)
        return widened

    def selected_key(self) -> str | None:
        if not self.row_data or self.row_count == 0:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return row_key.value

    def selected(self) -> RowT | None:
        key = self.selected_key()
        return self.row_data.get(key) if key is not None else None
