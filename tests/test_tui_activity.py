"""The console's activity plots: the strip under the header follows what arrives (redrawn
at most once a second), an agent's detail plots its own events, time travel its past."""

from __future__ import annotations

import contextlib

from snapshots.world import World
from textual.pilot import Pilot
from textual.widgets import Sparkline, Static
from tui_support import console, drive, settle

from toka.core.errors import NotCovered
from toka.core.model import ops
from toka.core.model.keys import KeyPair
from toka.core.runtime import Runtime
from toka.tui.feed import Feed
from toka.tui.widgets import ActivityPlot, DetailView


def refuse(world: World) -> None:
    """scout (no grant to spawn) tries to spawn an agent: one operation.rejected."""
    rogue = ops.SpawnAgent("rogue", KeyPair.from_seed(b"rogue").public_key)
    with contextlib.suppress(NotCovered):
        world.submit(rogue, world.as_agent("scout"))


def strip_totals(pilot: Pilot) -> tuple[str, str]:
    screen = console(pilot)
    events = screen.query_one("#activity-events-total", Static).render()
    refused = screen.query_one("#activity-refusals-total", Static).render()
    return str(events), str(refused)


def test_the_strip_counts_what_arrives_after_the_first_load(world: World):
    app = world.app()

    async def scenario(pilot: Pilot) -> None:
        events, refused = strip_totals(pilot)
        bars = console(pilot).query_one("#activity-refusals", Sparkline)
        assert bars.data is not None and bars.data[-1] == int(refused) == 1
        world.now += 1  # the next second: the plots are due again
        refuse(world)
        refuse(world)
        app.refresh_feed()
        await settle(pilot)
        assert strip_totals(pilot) == (str(int(events) + 2), "3")
        assert bars.data[-1] == 3  # the same ten seconds

    drive(app, scenario)


def test_the_plots_are_sent_at_most_once_a_second(world: World):
    with Runtime(world.home, clock=lambda: world.now) as reader:
        feed = Feed(reader, "operator")
        first = feed.start().activity
        assert first is not None and first.total_refusals == 1
        refuse(world)
        same_second = feed.poll()
        assert same_second is not None and same_second.arrived == 1
        assert same_second.activity is None
        world.now += 1
        refuse(world)
        next_second = feed.poll()
        assert next_second is not None and next_second.activity is not None
        assert next_second.activity.total_refusals == 3  # both, though one was not drawn
        feed.close()


def test_an_agents_detail_plots_its_own_events(world: World):
    app = world.app()

    async def scenario(pilot: Pilot) -> None:
        plot = console(pilot).query_one(DetailView).query_one(ActivityPlot)
        assert plot.display
        caption = str(plot.query_one(".activity-plot-caption", Static).render())
        scout = world.agents["scout"]
        mine = [
            r
            for r in world.runtime.log.records()
            if r.principal == scout or scout.encode() in r.payload
        ]
        assert caption == f"activity  {len(mine)} events, 0 refused"
        await pilot.press("2")  # an event's detail has no plot
        await settle(pilot)
        assert not plot.display

    drive(app, scenario)


def test_time_travel_shows_the_activity_of_the_past(world: World):
    app = world.app()

    async def scenario(pilot: Pilot) -> None:
        await pilot.press("h", "ctrl+a", "ctrl+k", *"17", "enter")
        await settle(pilot)
        past = pilot.app.screen
        assert past is not console(pilot)
        total = str(past.query_one("#activity-events-total", Static).render())
        assert total == "15"  # seq 3 to 17: genesis and the root grant are an hour earlier
        assert str(console(pilot).query_one("#activity-events-total", Static).render()) == "26"

    drive(app, scenario)
