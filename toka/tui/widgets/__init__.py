"""The console's widgets."""

from toka.tui.widgets._activity_plot import ActivityPlot, ActivityStrip
from toka.tui.widgets._detail_view import DetailView, detail_parts
from toka.tui.widgets._event_stream import EventStream
from toka.tui.widgets._resource_table import ResourceTable
from toka.tui.widgets._status_line import Status, StatusLine

__all__ = [
    "ActivityPlot",
    "ActivityStrip",
    "DetailView",
    "EventStream",
    "ResourceTable",
    "Status",
    "StatusLine",
    "detail_parts",
]
