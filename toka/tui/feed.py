"""The console's view of the log: polls a Runtime for new events and turns them into
batches of row changes the UI applies in one go.

The feed owns its Runtime (the console submits through another one), and every read of
that runtime's state happens under ``Feed.lock``, so a worker thread can poll while
another builds a detail view. A LogFollower notices commits by any process for the cost
of one pragma; only then does the runtime fold the new events. No Textual here: the app
posts batches to the UI thread.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from toka.core.activity import Activity, ActivityTracker, Window, count
from toka.core.log.follow import LogFollower
from toka.core.model.events import EventRecord
from toka.core.model.state import McpServer, Tool, WorldState, version_key
from toka.core.runtime import Runtime
from toka.tui import tool_view, view
from toka.tui.effect_view import CallRow, call_rows
from toka.tui.event_filter import EventFilter
from toka.tui.permissions import Permissions
from toka.tui.tool_view import ENDING_KINDS, LastCall, ToolRow, last_call_of
from toka.tui.view import AgentRow, Detail, EventRow, GrantRow, Row, TableDiff

BUFFER = 2000
PAGE = 1000
RATE_WINDOW_S = 2.0
# The header's plots: the last five minutes in ten-second buckets, redrawn once a second.
ACTIVITY_SPAN_MS = 300_000
ACTIVITY_BUCKET_MS = 10_000
# An agent's detail: its last hour in two-minute buckets.
AGENT_SPAN_MS = 3_600_000
AGENT_BUCKET_MS = 120_000
# At start (and when travelling): how many of the newest call endings are read to learn
# each tool's last call; from then on every new ending updates it.
LAST_CALLS_READ = 1000


NO_CHANGE = TableDiff([], [])


class Batch(NamedTuple):
    """What changed since the last batch, for the UI to apply at once."""

    events: list[EventRow]
    reset_events: bool
    generation: int
    agents: TableDiff[AgentRow]
    grants: TableDiff[GrantRow]
    tools: TableDiff[ToolRow]
    permissions: Permissions | None
    head_seq: int
    rate: float | None
    arrived: int
    calls: tuple[CallRow, ...] | None = None  # open calls with an effect; None: unchanged
    mcp_servers: tuple[str, ...] | None = None  # registered MCP servers; None: unchanged
    activity: Activity | None = None  # the header's plots; None: unchanged


class World:
    """Details of one world: the live one (read under a lock) or a replayed past one."""

    def __init__(
        self,
        runtime: Runtime,
        state: Callable[[], WorldState],
        lock: threading.Lock,
        now_s: Callable[[], int],
        last_calls: dict[str, LastCall],
        until: int | None = None,
    ):
        self._runtime = runtime
        self._state = state
        self._lock = lock
        self._now_s = now_s
        self._last_calls = last_calls  # read under the lock: the feed updates it in place
        self.until = until

    def detail(self, pane: str, key: str) -> Detail | None:
        """The full detail of the row ``key`` of ``pane``, or None if it is gone."""
        with self._lock:
            state = self._state()
            now_s = self._now_s()
            if pane == "agents":
                agent = state.agents.get(key)
                if agent is None:
                    return None
                window = Window.ending_at(now_s * 1000, AGENT_SPAN_MS, AGENT_BUCKET_MS)
                plot = count(self._runtime.log, window, until=self.until, agent=agent.id)
                return view.agent_detail(state, agent, now_s, plot)
            if pane == "grants":
                grant = state.grants.get(key)
                return view.grant_detail(state, grant, now_s) if grant else None
            if pane == "tools":
                server = tool_view.server_of_key(key)
                if server is not None:
                    return tool_view.server_detail(state, server)
                name, _, version = key.partition("@")
                tool = state.tools.get(name, {}).get(version)
                if tool is None:
                    return None
                return tool_view.tool_detail(state, tool, self._last_calls.get(key), now_s)
            if pane == "events":
                seq = int(key)
                if self.until is not None and seq > self.until:
                    return None
                record = self._runtime.log.record(seq)
                return view.event_detail(state, record) if record else None
        raise ValueError(f"unknown pane {pane!r}")

    def tool(self, key: str) -> tuple[Tool, list[str]] | None:
        """The tool ``name@version`` and every registered version of it."""
        name, _, version = key.partition("@")
        with self._lock:
            versions = self._state().tools.get(name, {})
            tool = versions.get(version)
            return (tool, sorted(versions, key=version_key)) if tool else None

    def mcp_servers(self) -> list[McpServer]:
        """The registered MCP servers, in registration order."""
        with self._lock:
            return list(self._state().mcp_table().values())

    def cascade(self, jti: str) -> list[str]:
        """The grants revoking ``jti`` would revoke with it (those not revoked already)."""
        with self._lock:
            state = self._state()
            return [j for j in state.descendants(jti) if not state.grants[j].revoked]


class _Rate:
    """Events per second over a short window of (time, head seq) samples."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, seq: int) -> float:
        self._samples.append((now, seq))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S:
            self._samples.popleft()
        t0, s0 = self._samples[0]
        return (seq - s0) / (now - t0) if now > t0 else 0.0


class Feed:
    """Follows one Runtime's log and keeps the rows the console last showed."""

    def __init__(self, runtime: Runtime, principal: str, *, buffer: int = BUFFER):
        self.runtime = runtime
        self.principal = principal
        self.buffer = buffer
        self.lock = threading.Lock()
        self._last_calls: dict[str, LastCall] = {}  # by tool version, kept up to date
        self.world = World(runtime, lambda: runtime.state, self.lock, self._now_s, self._last_calls)
        self._filter = EventFilter()
        self._generation = 0
        self._rows: dict[str, dict[str, Row]] = {"agents": {}, "grants": {}, "tools": {}}
        self._rate = _Rate()
        self._seen_s: int | None = None
        self._activity = ActivityTracker(ACTIVITY_SPAN_MS, ACTIVITY_BUCKET_MS)
        self._activity_s: int | None = None  # the second the plots were last sent
        self._follower = LogFollower(runtime.home, runtime.state.seq)

    def close(self) -> None:
        """Close the follower and the runtime (the feed owns both)."""
        with self.lock:
            self._follower.close()
            self.runtime.close()

    def _now_s(self) -> int:
        return int(self.runtime.clock())

    @property
    def filter(self) -> EventFilter:
        return self._filter

    def start(self) -> Batch:
        """Everything, for a fresh screen."""
        with self.lock:
            self._rows = {"agents": {}, "grants": {}, "tools": {}}
            self._last_calls.clear()
            self._last_calls.update(self._load_last_calls(self.runtime.state.seq))
            self._activity.load(self.runtime.log, self.runtime.now_ms(), self.runtime.state.seq)
            self._activity_s = None
            return self._batch(self._load_events(self.runtime.state.seq), True, 0)

    def poll(self) -> Batch | None:
        """Fold what was appended since the last poll; None when nothing changed.

        Raises IntegrityFailure if the log no longer links up."""
        with self.lock:
            records = self.runtime.catch_up() if self._follower.poll() else []
            if not records and self._now_s() == self._seen_s:
                return None
            self._activity.add(records)
            for record in records:
                ended = last_call_of(record)
                if ended is not None:
                    self._last_calls[ended[0]] = ended[1]
            return self._batch(self._matching(records), False, len(records))

    def refilter(self, event_filter: EventFilter) -> Batch:
        """The newest events matching ``event_filter``; later polls filter with it too.

        Only events: table changes travel in poll batches alone, so they stay in order."""
        with self.lock:
            self._filter = event_filter
            self._generation += 1
            return self._events_only(
                self._load_events(self.runtime.state.seq), self.runtime.state.seq
            )

    def refilter_past(self, event_filter: EventFilter, seq: int) -> Batch:
        """The newest events up to ``seq`` matching ``event_filter`` (for time travel)."""
        with self.lock:
            return self._events_only(self._load_events(seq, event_filter), seq)

    def _events_only(self, events: list[EventRow], seq: int) -> Batch:
        return Batch(
            events, True, self._generation, NO_CHANGE, NO_CHANGE, NO_CHANGE, None, seq, None, 0
        )

    def travel(self, seq: int) -> tuple[Batch, World]:
        """The world as it was at ``seq``: its rows, its last events and its details."""
        past = self.runtime.state_at(seq)
        now_s = past.ts // 1000
        with self.lock:
            events = self._load_events(seq, EventFilter())
            last_calls = self._load_last_calls(seq)
        batch = Batch(
            events,
            True,
            0,
            TableDiff.between({}, view.agent_rows(past, now_s)),
            TableDiff.between({}, view.grant_rows(past, now_s)),
            TableDiff.between({}, tool_view.tool_rows(past, last_calls, now_s)),
            Permissions.none(self.principal),
            past.seq,
            0.0,
            0,
            call_rows(past, past.ts),
            tuple(past.mcp_table()),
            self.activity_at(seq, past.ts),
        )
        world = World(self.runtime, lambda: past, threading.Lock(), lambda: now_s, last_calls, seq)
        return batch, world

    def activity_at(self, seq: int, now_ms: int) -> Activity:
        """The header's plots as they were at ``seq`` (stamped ``now_ms``)."""
        window = Window.ending_at(now_ms, ACTIVITY_SPAN_MS, ACTIVITY_BUCKET_MS)
        with self.lock:
            return count(self.runtime.log, window, until=seq)

    def _load_last_calls(self, until: int) -> dict[str, LastCall]:
        """Each tool version's last call up to ``until``, from the newest call endings."""
        found: dict[str, LastCall] = {}
        newest = self.runtime.log.query(
            kinds=list(ENDING_KINDS), before=until + 1, limit=LAST_CALLS_READ, newest_first=True
        )
        for record in newest:
            ended = last_call_of(record)
            if ended is not None:
                found.setdefault(*ended)
        return found

    def _matching(self, records: list[EventRecord]) -> list[EventRow]:
        rows: list[EventRow] = []
        for r in reversed(records):
            if len(rows) >= self.buffer:
                break
            if self._filter.matches(r):
                rows.append(view.event_row(r))
        rows.reverse()
        return rows

    def _load_events(self, until: int, event_filter: EventFilter | None = None) -> list[EventRow]:
        """The newest ``buffer`` events up to ``until`` that pass the filter."""
        flt = self._filter if event_filter is None else event_filter
        rows: list[EventRow] = []
        before = until + 1
        while len(rows) < self.buffer:
            page = self.runtime.log.query(
                **flt.query_args(), before=before, limit=PAGE, newest_first=True
            )
            if not page:
                break
            rows += [view.event_row(r) for r in page if flt.matches_agent(r)]
            before = page[-1].seq
        rows = rows[: self.buffer]
        rows.reverse()
        return rows

    def _batch(self, events: list[EventRow], reset: bool, arrived: int) -> Batch:
        state = self.runtime.state
        now = self.runtime.clock()
        now_s = int(now)
        self._seen_s = now_s
        tables = {
            "agents": view.agent_rows(state, now_s),
            "grants": view.grant_rows(state, now_s),
            "tools": tool_view.tool_rows(state, self._last_calls, now_s),
        }
        diffs = {name: TableDiff.between(self._rows[name], rows) for name, rows in tables.items()}
        self._rows = tables
        return Batch(
            events,
            reset,
            self._generation,
            diffs["agents"],
            diffs["grants"],
            diffs["tools"],
            Permissions.of(state, self.principal, now_s),
            state.seq,
            self._rate.add(now, state.seq),
            arrived,
            call_rows(state, int(now * 1000)),
            tuple(state.mcp_table()),
            self._activity_due(now),
        )

    def _activity_due(self, now: float) -> Activity | None:
        """The plots once per second at most: under a flood of events the buckets fill
        on every poll, but redrawing them more often would show nothing new."""
        if int(now) == self._activity_s:
            return None
        self._activity_s = int(now)
        return self._activity.activity(int(now * 1000))
