"""ConsoleScreen: the four panes, the detail area and every action.

One class shows both the live world and a replayed past one (``read_only``): in the
past, every action that would submit an operation is hidden. What the actions do is
in ``actions.py``; this module lays the screen out, applies the feed, follows the
selection and decides which actions are allowed now.
"""

from __future__ import annotations

from typing import cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.events import DescendantFocus, Resize
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from toka.tui import keymap
from toka.tui.commands import ConsoleCommands
from toka.tui.effect_view import CallRow
from toka.tui.event_filter import HELP as FILTER_HELP
from toka.tui.event_filter import EventFilter
from toka.tui.feed import Batch, World
from toka.tui.host import ConsoleHost
from toka.tui.keymap import KeyHelp
from toka.tui.literal import literal
from toka.tui.permissions import Permissions
from toka.tui.screens.actions import OperatorActions
from toka.tui.screens.detail import DetailScreen
from toka.tui.screens.mcp_actions import McpActions
from toka.tui.tool_view import TOOL_COLUMNS, ToolRow
from toka.tui.view import AGENT_COLUMNS, GRANT_COLUMNS, PANES, TITLES, AgentRow, Detail, GrantRow
from toka.tui.widgets import (
    ActivityStrip,
    DetailView,
    EventStream,
    ResourceTable,
    Status,
    StatusLine,
)

COMPACT_WIDTH = 100
COMPACT_HEIGHT = 30


class ConsoleScreen(OperatorActions, McpActions, Screen[None]):
    COMMANDS = {ConsoleCommands}

    BINDINGS = keymap.BINDINGS

    def __init__(
        self,
        world: World | None,
        *,
        read_only: bool = False,
        at_seq: int | None = None,
        initial: Batch | None = None,
    ) -> None:
        super().__init__(classes="-read-only" if read_only else "")
        self.world = world
        self.initial = initial
        self.read_only = read_only
        self.at_seq = at_seq
        self.permissions = Permissions.none("")
        self.open_calls: tuple[CallRow, ...] = ()
        self.mcp_servers: tuple[str, ...] = ()
        self.current = "agents"
        self.filter = EventFilter()
        self.generation = 0
        self.following = True
        self.held: list = []
        self.held_count = 0
        self.head_seq = 0
        self.rate = 0.0
        self.loaded = False
        self._detail_token = 0
        self._binding_state: tuple = ()

    @property
    def console(self) -> ConsoleHost:
        """The app, as the services it offers its screens."""
        return cast("ConsoleHost", self.app)

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        yield ActivityStrip(id="activity")
        if self.read_only:
            yield Static(
                Text(
                    f"TIME TRAVEL @ seq {self.at_seq} — read-only view of the past · "
                    "esc returns to live"
                ),
                id="banner",
            )
        yield Static(id="pane-tabs")
        with Horizontal(id="top", classes="band"):
            with Vertical(id="agents-pane", classes="pane"):
                yield ResourceTable(AGENT_COLUMNS, id="agents")
                yield Static(self._agents_hint(), id="agents-hint", classes="empty-hint")
            with Vertical(id="tools-pane", classes="pane"):
                yield ResourceTable(TOOL_COLUMNS, id="tools")
                yield Static(
                    "[b]No tools registered.[/b]\n\nRegister one with: toka tool register MANIFEST",
                    id="tools-hint",
                    classes="empty-hint",
                )
        with Vertical(id="events-pane", classes="pane"):
            yield EventStream(
                capacity=self.console.buffer,
                empty_text="Loading the log…",
                id="events",
            )
            yield Input(id="event-filter", placeholder=FILTER_HELP, compact=True)
        with Horizontal(id="bottom", classes="band"):
            with Vertical(id="grants-pane", classes="pane"):
                yield ResourceTable(GRANT_COLUMNS, id="grants")
                yield Static("No grants at this point.", id="grants-hint", classes="empty-hint")
            yield DetailView(id="detail", classes="pane")
        yield Footer()

    def _agents_hint(self) -> str:
        if self.read_only:
            return "[b]No agents at this point in the log.[/b]"
        demo = (
            "\nor press [b]ctrl+p[/b] and choose [b]Load demo scenario[/b]."
            if self.console.demo
            else "."
        )
        return (
            "[b]No agents yet.[/b]\n\n"
            f"Press [b]s[/b] to spawn your first agent{demo}\n"
            "Press [b]?[/b] for every key, [b]ctrl+p[/b] for every command."
        )

    def on_mount(self) -> None:
        for pane in PANES:
            self.query_one(f"#{pane}-pane").border_title = TITLES[pane]
        detail = self.query_one("#detail", DetailView)
        detail.border_title = "Detail"
        detail.show(None, "Select a row to see it here; Enter opens it in full.")
        self.query_one("#event-filter", Input).display = False
        self._layout_for(self.size.width, self.size.height)
        self._mark_current("agents")
        self.query_one("#agents", ResourceTable).focus()
        self._update_titles()
        self._update_status()
        if self.initial is not None:
            self.apply_batch(self.initial)
            self.initial = None

    def on_resize(self, event: Resize) -> None:
        self._layout_for(event.size.width, event.size.height)

    def _layout_for(self, width: int, height: int) -> None:
        self.set_class(width < COMPACT_WIDTH or height < COMPACT_HEIGHT, "-compact")

    @property
    def compact(self) -> bool:
        return self.has_class("-compact")

    # -- applying the feed ----------------------------------------------------------------

    def apply_batch(self, batch: Batch) -> None:
        """Apply one batch of changes: row diffs, events, permissions, header numbers."""
        tables = {"agents": batch.agents, "grants": batch.grants, "tools": batch.tools}
        changed_selection = False
        for name, diff in tables.items():
            if not diff:
                continue
            table = self.query_one(f"#{name}", ResourceTable)
            table.apply(diff)
            key = table.selected_key()
            if name == self.current and any(k == key for k, _ in diff.upserts):
                changed_selection = True
        if batch.permissions is not None:
            self.permissions = batch.permissions
        if batch.calls is not None:
            self.open_calls = batch.calls
        if batch.mcp_servers is not None:
            self.mcp_servers = batch.mcp_servers
        if batch.generation == self.generation:
            self._apply_events(batch)
        self.head_seq = batch.head_seq
        if batch.rate is not None:
            self.rate = batch.rate
        if batch.activity is not None:
            self.query_one(ActivityStrip).show(batch.activity)
        if not self.loaded:
            self.loaded = True
            stream = self.query_one(EventStream)
            stream.empty_text = "No events match the filter (/ to change it, esc to clear)."
            changed_selection = True
        for name in ("agents", "grants", "tools"):
            empty = not self.query_one(f"#{name}", ResourceTable).row_data
            self.query_one(f"#{name}-pane").set_class(empty and self.loaded, "-empty")
        if changed_selection:
            self._show_selected_detail()
        self._update_titles()
        self._update_status()
        self._refresh_bindings_if_changed()

    def _apply_events(self, batch: Batch) -> None:
        stream = self.query_one(EventStream)
        if batch.reset_events:
            self.held, self.held_count = [], 0
            stream.replace(batch.events)
        elif not self.following:
            self.held.extend(batch.events)
            self.held_count += len(batch.events)
            del self.held[: max(len(self.held) - stream.capacity, 0)]
        else:
            stream.extend(batch.events)

    def _update_titles(self) -> None:
        events_title = "Events"
        if self.filter:
            events_title += f" · filter: {self.filter.describe()}"
        if not self.following:
            events_title += f" · paused (+{self.held_count} new)"
        self.query_one("#events-pane").border_title = literal(events_title)
        for name in ("agents", "grants", "tools"):
            count = len(self.query_one(f"#{name}", ResourceTable).row_data)
            self.query_one(f"#{name}-pane").border_subtitle = str(count) if count else ""
        stream = self.query_one(EventStream)
        self.query_one("#events-pane").border_subtitle = (
            f"{len(stream.rows)} shown · last {stream.capacity} kept" if stream.rows else ""
        )
        tabs = Text()
        for number, pane in enumerate(PANES, 1):
            style = "reverse bold" if pane == self.current else "dim"
            tabs.append(f" {number} {TITLES[pane]} ", style=style)
            tabs.append(" ")
        self.query_one("#pane-tabs", Static).update(tabs)

    def _update_status(self) -> None:
        app = self.console
        chain, chain_ok = app.chain
        if self.read_only:
            follow, follow_ok = f"past @ {self.at_seq}", False
        elif not self.following:
            follow, follow_ok = f"paused (+{self.held_count})", False
        else:
            follow, follow_ok = ("following" if app.follow else "not following"), app.follow
        self.query_one(StatusLine).show(
            Status(
                home=app.home_label,
                seq=self.at_seq if self.read_only and self.at_seq else self.head_seq,
                chain=chain,
                chain_ok=chain_ok,
                principal=app.client.principal,
                key=app.key_label,
                runner=app.runner,
                rate=0.0 if self.read_only else self.rate,
                follow=follow,
                follow_ok=follow_ok,
                calls_waiting=sum(c.needs_operator for c in self.open_calls),
            )
        )

    def refresh_status(self) -> None:
        self._update_status()

    def feed_stopped(self, reason: str) -> None:
        """The log can no longer be followed: say why where the events would be."""
        stream = self.query_one(EventStream)
        stream.empty_text = f"Not following the log: {reason}"
        stream.refresh()

    # -- selection and detail -------------------------------------------------------------

    def on_descendant_focus(self, event: DescendantFocus) -> None:
        for pane in PANES:
            if event.widget.id in (pane, f"{pane}-pane") or (
                pane == "events" and event.widget.id == "event-filter"
            ):
                if pane != self.current:
                    self.current = pane
                    self._mark_current(pane)
                    self._update_titles()
                    self._show_selected_detail()
                    self._refresh_bindings_if_changed()
                return

    def selected_key(self, pane: str) -> str | None:
        if pane == "events":
            row = self.query_one(EventStream).selected()
            return str(row.seq) if row else None
        return self.query_one(f"#{pane}", ResourceTable).selected_key()

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == self.current:
            self._show_selected_detail()
        self._refresh_bindings_if_changed()

    @on(EventStream.Highlighted)
    def _event_highlighted(self, event: EventStream.Highlighted) -> None:
        if self.current == "events":
            self._show_selected_detail()

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_show_detail()

    @on(EventStream.Selected)
    def _event_selected(self, event: EventStream.Selected) -> None:
        self.action_show_detail()

    def _show_selected_detail(self) -> None:
        key = self.selected_key(self.current)
        self._detail_token += 1
        if key is None or self.world is None:
            self.query_one(DetailView).show(None, f"Nothing selected in {TITLES[self.current]}.")
            return
        self._load_detail(self.current, key, self._detail_token, False)

    @work(thread=True, group="detail")
    def _load_detail(self, pane: str, key: str, token: int, full: bool) -> None:
        assert self.world is not None
        detail = self.world.detail(pane, key)
        self.app.call_from_thread(self._detail_loaded, detail, token, full)

    def _detail_loaded(self, detail: Detail | None, token: int, full: bool) -> None:
        if full:
            if detail is not None:
                self.app.push_screen(DetailScreen(detail))
            return
        if token == self._detail_token:
            self.query_one(DetailView).show(detail, "It is gone from the world.")

    def action_show_detail(self) -> None:
        key = self.selected_key(self.current)
        if key is not None and self.world is not None:
            self._load_detail(self.current, key, self._detail_token, True)

    # -- permissions ----------------------------------------------------------------------

    def _refresh_bindings_if_changed(self) -> None:
        """Redraw the footer only when what the keys would do has changed: the footer
        rebuilds all its keys on every refresh, which costs more than a whole frame."""
        state = tuple(self.check_action(a, ()) for a in keymap.BOUND_ACTIONS)
        if state != self._binding_state:
            self._binding_state = state
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The screen's modes first (time travel, filter, following), then what the
        action's rule in ``keymap.ACTIONS`` says the token allows."""
        if action in keymap.WRITES and self.read_only:
            return False
        if action == "leave_time_travel":
            return self.read_only
        if action == "close_filter":
            return self.query_one("#event-filter", Input).has_focus
        if action == "clear_filter":
            return bool(self.filter) and not self.read_only
        if action == "pause_follow":
            return self.following and not self.read_only
        if action == "resume_follow":
            return not self.following and not self.read_only
        if action == "load_demo" and self.console.demo is None:
            return False
        rule = keymap.RULES.get(action)
        return True if rule is None else rule(self)

    def selected_agent(self) -> AgentRow | None:
        return self.query_one("#agents", ResourceTable).selected()

    def selected_grant(self) -> GrantRow | None:
        return self.query_one("#grants", ResourceTable).selected()

    def selected_tool(self) -> ToolRow | None:
        return self.query_one("#tools", ResourceTable).selected()

    # -- navigation -----------------------------------------------------------------------

    def _mark_current(self, pane: str) -> None:
        """In compact layout only the current pane (and its band) is shown."""
        for name in PANES:
            self.query_one(f"#{name}-pane").set_class(name == pane, "current")
        self.query_one("#top").set_class(pane in ("agents", "tools"), "current")
        # Wide layout: the Tools pane, in use, takes the room of Agents (its columns need it).
        self.query_one("#top").set_class(pane == "tools", "-tools-current")
        self.query_one("#bottom").set_class(pane == "grants", "current")

    def action_focus_pane(self, pane: str) -> None:
        self._mark_current(pane)
        self.query_one(f"#{pane}").focus()

    def action_next_pane(self) -> None:
        self.action_focus_pane(PANES[(PANES.index(self.current) + 1) % len(PANES)])

    def action_previous_pane(self) -> None:
        self.action_focus_pane(PANES[(PANES.index(self.current) - 1) % len(PANES)])

    # -- events pane ----------------------------------------------------------------------

    def action_pause_follow(self) -> None:
        self.following = False
        self._follow_changed()

    def action_resume_follow(self) -> None:
        self.following = True
        if self.held:
            self.query_one(EventStream).extend(self.held)
        self.held, self.held_count = [], 0
        self._follow_changed()

    def _follow_changed(self) -> None:
        self._update_titles()
        self._update_status()
        self._refresh_bindings_if_changed()

    def action_filter_events(self) -> None:
        box = self.query_one("#event-filter", Input)
        box.value = self.filter.describe().replace("'", "")
        box.display = True
        if self.compact:
            self.action_focus_pane("events")
        box.focus()

    @on(Input.Submitted, "#event-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._set_filter(EventFilter.parse(event.value))

    def action_clear_filter(self) -> None:
        self._set_filter(EventFilter())

    def action_close_filter(self) -> None:
        self.query_one("#event-filter", Input).display = False
        self.query_one(EventStream).focus()

    def _set_filter(self, event_filter: EventFilter) -> None:
        self.query_one("#event-filter", Input).display = False
        self.query_one(EventStream).focus()
        self.filter = event_filter
        self.generation += 1
        self._update_titles()
        self._refresh_bindings_if_changed()
        self._refilter(event_filter, self.generation)

    @work(thread=True, group="refilter")
    def _refilter(self, event_filter: EventFilter, generation: int) -> None:
        feed = self.console.feed
        if feed is None:
            return
        if self.read_only:
            batch = feed.refilter_past(event_filter, self.at_seq or 0)
        else:
            batch = feed.refilter(event_filter)
        self.app.call_from_thread(self._filtered, batch, generation)

    def _filtered(self, batch: Batch, generation: int) -> None:
        if generation == self.generation:
            self.held, self.held_count = [], 0
            self.query_one(EventStream).replace(batch.events)
            self._update_titles()

    # -- help -----------------------------------------------------------------------------

    def key_help(self) -> list[KeyHelp]:
        """The keys valid on this screen now, grouped; dimmed ones are not allowed now."""
        return keymap.key_help(
            lambda action: self.check_action(action, ()), self.app.get_key_display
        )
