"""ConsoleHost: what the console's screens use from the app that shows them.

The app imports the screens, so the screens do not import the app: they type it
against this protocol, and the import graph of the console runs one way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.tui.feed import Batch, Feed, World

if TYPE_CHECKING:  # loading the tool runner waits until a server is reached
    from toka.core.tools.mcp.importing import Offer

DemoLoader = Callable[[Client], Any]
# What an MCP server offers now, against what was imported (it reaches the server).
McpOffers = Callable[[Runtime, str], "list[Offer]"]
VERIFYING: tuple[str, bool | None] = ("verifying…", None)  # the header's chain meanwhile


class ConsoleHost(Protocol):
    """The app's services for its screens (TokaConsole implements it)."""

    client: Client  # every action is submitted through it
    home_label: str  # the home as the header names it
    follow: bool  # following the log, or polling only after the console's own actions
    demo: DemoLoader | None  # what "Load demo scenario" runs, if offered
    mcp_offers: McpOffers  # how "Import MCP tools" lists a server's tools (in a worker)
    buffer: int  # events kept in the Events pane
    feed: Feed | None  # None until the follower has read the log
    submit_lock: threading.Lock  # one submission at a time
    chain: tuple[str, bool | None]  # the header's chain text and whether it verified
    runner: str
    key_label: str

    def refresh_feed(self) -> None:
        """Show what was just submitted (called from worker threads)."""

    def live_head(self) -> int:
        """The newest sequence number the live screen shows."""

    def show_past(self, seq: int, batch: Batch, world: World, replace: bool) -> None:
        """Open the world as it was at ``seq``, over the live screen or instead of a past one."""

    def refresh_all_status(self) -> None:
        """Redraw the header of every console screen."""
