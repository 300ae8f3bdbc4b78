"""The console's widgets."""

from toka.tui.widgets._detail_view import DetailView, render_detail
from toka.tui.widgets._event_stream import EventStream
from toka.tui.widgets._resource_table import ResourceTable
from toka.tui.widgets._status_line import Status, StatusLine

__all__ = ["DetailView", "EventStream", "ResourceTable", "Status", "StatusLine", "render_detail"]
