"""TokaConsole: the operator console app, and ``make_app``, the factory that builds it.

Besides its screens the app owns the Client every action goes through (on the
runtime the CLI would use), a Feed on a second runtime that a worker thread polls for
new events, and, unless disabled, the agent runner on a third. Batches travel to the
UI thread as messages; the follower waits for each to be applied, so a flood of
events turns into bigger batches, never into a backlog of redraws.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.worker import get_current_worker

from toka.core.errors import IntegrityFailure, StoreUnavailable, TokaError
from toka.core.model.keys import thumbprint
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.tui.feed import BUFFER, Batch, Feed, World
from toka.tui.host import VERIFYING, DemoLoader, McpOffers
from toka.tui.keymap import KeyHelp
from toka.tui.literal import visible
from toka.tui.screens.console import ConsoleScreen
from toka.tui.screens.help import HelpScreen
from toka.tui.stylesheet import stylesheet_path

if TYPE_CHECKING:  # loading the tool runner waits until a server is reached
    from toka.core.tools.mcp.importing import Offer

POLL_INTERVAL_S = 0.1
APPLY_WAIT_S = 0.1


class TokaConsole(App[None]):
    """``toka tui``: watch the log live and act through signed operations."""

    TITLE = "toka"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("question_mark", "help", "Keys", id="help"),
    ]

    class BatchReady(Message):
        def __init__(self, batch: Batch) -> None:
            super().__init__()
            self.batch = batch

    class RunnerStatus(Message):
        def __init__(self, label: str) -> None:
            super().__init__()
            self.label = label

    class FeedFailed(Message):
        def __init__(self, message: str, seq: int | None) -> None:
            super().__init__()
            self.message = message
            self.seq = seq

    class ChainChecked(Message):
        """The start-up verification's result: the header's chain text and whether the
        chain held, and the failure to report (empty when it held)."""

        def __init__(self, chain: tuple[str, bool | None], failure: str) -> None:
            super().__init__()
            self.chain = chain
            self.failure = failure

    def __init__(
        self,
        client: Client,
        *,
        home_label: str,
        follow: bool = True,
        demo: DemoLoader | None = None,
        buffer: int = BUFFER,
        poll_interval: float = POLL_INTERVAL_S,
        greeting: str | None = None,
        run_agents: bool = False,
        mcp_offers: McpOffers | None = None,
    ) -> None:
        super().__init__(css_path=stylesheet_path())
        self.mcp_offers = mcp_offers or server_offers
        self.run_agents = run_agents
        self._runner_stop = threading.Event()
        self.greeting = greeting
        self.client = client
        self.home_label = home_label
        self.follow = follow
        self.demo = demo
        self.runner = "off"
        self.buffer = buffer
        self.poll_interval = poll_interval
        self.key_label = "key " + thumbprint(client.key.public_key)[:12]
        self.chain: tuple[str, bool | None] = VERIFYING
        self.feed: Feed | None = None
        self.submit_lock = threading.Lock()
        self._wake = threading.Event()
        self._applied = threading.Event()
        self._stopping = False
        self.live = ConsoleScreen(None)

    # -- lifecycle ------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.push_screen(self.live)
        self._check_chain()
        self._follow_log()
        if self.run_agents:
            self._drive_agents()
        if self.greeting:
            self.notify(self.greeting, title="Welcome", timeout=15)

    def on_unmount(self) -> None:
        self._stopping = True
        self._wake.set()
        self._runner_stop.set()
        if self.feed is not None:
            self.feed.close()

    @work(thread=True, group="feed")
    def _follow_log(self) -> None:
        worker = get_current_worker()
        try:
            writer = self.client.runtime
            reader = Runtime(writer.home, clock=writer.clock)
            feed = Feed(reader, self.client.principal, buffer=self.buffer)
            first = feed.start()
        except TokaError as exc:
            self.post_message(self.FeedFailed(exc.message, getattr(exc, "seq", None)))
            return
        self.feed = feed
        self.call_from_thread(self._attach, feed.world)
        self._deliver(first, worker)
        unreachable = False
        while self.follow and not worker.is_cancelled and not self._stopping:
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            if worker.is_cancelled or self._stopping:
                return
            try:
                batch = feed.poll()
            except IntegrityFailure as exc:
                self.post_message(self.FeedFailed(exc.message, exc.seq))
                return
            except StoreUnavailable as exc:  # a shared log's server away: poll again
                if not unreachable:
                    self.call_from_thread(self.notify, visible(exc.message), severity="warning")
                unreachable = True
                continue
            unreachable = False
            if batch is not None:
                self._deliver(batch, worker)

    @work(thread=True, group="runner")
    def _drive_agents(self) -> None:
        """The agent runner (toka.core.agents.runner), on its own Runtime, until the app closes."""
        from toka.core.agents.runner import Runner

        labels = {"working": "on", "idle": "idle", "off": "off"}

        def show(status: str) -> None:
            # posted, not called: the runner thread must never wait on a closing UI
            self.post_message(self.RunnerStatus(labels.get(status, status)))

        writer = self.client.runtime
        try:
            with Runtime(writer.home, clock=writer.clock) as runtime:
                Runner(runtime, on_status=show).run(stop_event=self._runner_stop)
        except TokaError as exc:
            show("off")
            self.notify(exc.message, title="The agent runner stopped", severity="error")

    @work(thread=True, group="verify-at-start")
    def _check_chain(self) -> None:
        """The quick verification (hash chain, checkpoints, snapshots; ``v`` checks every
        signature too), once at start-up, so the header says at once whether the log is
        intact. In a worker: a long log does not hold up the console."""
        try:
            result = self.client.runtime.verify(quick=True)
        except IntegrityFailure as exc:
            where = f"BROKEN at seq {exc.seq}" if exc.seq else "verification failed"
            self.post_message(self.ChainChecked((where, False), exc.message))
        except TokaError as exc:
            self.post_message(self.ChainChecked(("verification failed", False), exc.message))
        else:
            self.post_message(self.ChainChecked((f"intact to {result['head_seq']}", True), ""))

    @on(ChainChecked)
    def _chain_checked(self, message: ChainChecked) -> None:
        if self.chain != VERIFYING:
            return  # the feed or a finished `v` has said more since
        self.chain = message.chain
        if message.failure:
            self.notify(
                message.failure, title="Log integrity failure", severity="error", timeout=60
            )
        self.refresh_all_status()

    @on(RunnerStatus)
    def _runner_status(self, message: RunnerStatus) -> None:
        self.runner = message.label
        self.refresh_all_status()

    def _attach(self, world: World) -> None:
        self.live.world = world

    def _deliver(self, batch: Batch, worker) -> None:
        """Post a batch and wait until the UI has applied it (or the app is closing)."""
        self._applied.clear()
        self.post_message(self.BatchReady(batch))
        while not self._applied.wait(APPLY_WAIT_S):
            if worker.is_cancelled or self._stopping:
                return

    @on(BatchReady)
    def _batch_ready(self, message: BatchReady) -> None:
        if not self.live.is_mounted:
            # The feed's first batch can arrive while the screen is still mounting its
            # widgets (the feed starts in on_mount): apply it once they are all there.
            self.call_after_refresh(self._batch_ready, message)
            return
        try:
            self.live.apply_batch(message.batch)
        except NoMatches:
            # Mounted, then its widgets went: the app is closing and a last batch was
            # still on its way. There is nothing left to show it in.
            pass
        finally:
            self._applied.set()

    @on(FeedFailed)
    def _feed_failed(self, message: FeedFailed) -> None:
        where = f"BROKEN at seq {message.seq}" if message.seq else "unreadable"
        self.chain = (where, False)
        self.notify(
            message.message, title="The log stopped verifying", severity="error", timeout=60
        )
        self.live.feed_stopped(message.message)
        self.refresh_all_status()

    # -- services for the screens ---------------------------------------------------------

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """A toast, always shown literally (``markup`` is ignored): the console's toasts
        carry names, reasons and results from the log, so they are never read as markup,
        and control characters in them appear as escapes."""
        super().notify(
            visible(message, multiline=True),
            title=visible(title),
            severity=severity,
            timeout=timeout,
            markup=False,
        )

    def refresh_feed(self) -> None:
        """Show what was just submitted: wake the follower, or poll once when not following.

        Called from worker threads."""
        feed = self.feed
        if feed is None:
            return
        if self.follow:
            self._wake.set()
            return
        try:
            batch = feed.poll()
        except IntegrityFailure as exc:
            self.post_message(self.FeedFailed(exc.message, exc.seq))
            return
        if batch is not None:
            self.post_message(self.BatchReady(batch))

    def live_head(self) -> int:
        return self.live.head_seq

    def show_past(self, seq: int, batch: Batch, world: World, replace: bool) -> None:
        screen = ConsoleScreen(world, read_only=True, at_seq=seq, initial=batch)
        if replace:
            self.switch_screen(screen)
        else:
            self.push_screen(screen)

    def refresh_all_status(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, ConsoleScreen):
                screen.refresh_status()

    # -- app-wide actions -----------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Textual's commands, with "Keys" opening the console's own key help."""
        for command in super().get_system_commands(screen):
            if command.title != "Keys":
                yield command
        yield SystemCommand("Keys", "the keys valid here, and what they do", self.action_help)

    def action_help(self) -> None:
        screen = self.screen
        if isinstance(screen, ConsoleScreen):
            entries = screen.key_help()
        else:
            entries = [
                KeyHelp("Here", self.get_key_display(b.binding), b.binding.description, b.enabled)
                for b in screen.active_bindings.values()
                if b.binding.description
            ]
        footnote = "Dimmed keys are not allowed now: your token does not cover them, or they do not apply to the selected row."
        self.push_screen(HelpScreen(entries, footnote))


def server_offers(runtime: Runtime, server: str) -> list[Offer]:
    """What ``server`` offers now (``importing.offers``: it reaches the server)."""
    from toka.core.tools.mcp.importing import offers

    return offers(runtime, server)


def make_app(
    runtime: Runtime,
    *,
    client: Client | None = None,
    home_label: str | None = None,
    **options: Any,
) -> TokaConsole:
    """Build the console on ``runtime`` (its clock is the console's clock): the operator's
    client and the home's path unless given; ``options`` are TokaConsole's other keywords.

    Tests pass a runtime with a fixed clock, a fixed ``home_label`` and ``follow=False``
    (and, for a screen of a server's offers, ``mcp_offers``) so every screen is
    reproducible; the CLI passes the real ones.
    """
    label = home_label if home_label is not None else str(runtime.home.root)
    return TokaConsole(client or Client(runtime), home_label=label, **options)
