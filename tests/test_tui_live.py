"""The console follows the log live: writes by other connections and processes appear,
the Events pane stays bounded, pauses, filters, and verification reports tampering."""

from __future__ import annotations

import asyncio
import threading
import time

import apsw
from snapshots.world import HOME_LABEL, World
from textual.pilot import Pilot
from toka_cli import run_toka

from toka.core.model import ops
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.tui.app import make_app
from toka.tui.screens.console import ConsoleScreen
from toka.tui.widgets import EventStream, ResourceTable, StatusLine


def drive(app, scenario, *, notifications: bool = False) -> None:
    async def main() -> None:
        async with app.run_test(size=(120, 40), notifications=notifications) as pilot:
            await settle(pilot)
            await scenario(pilot)

    asyncio.run(main())


async def settle(pilot: Pilot) -> None:
    """Let every worker finish but the follower and the agent runner, which run until the
    app closes."""
    await pilot.pause()
    busy = [w for w in pilot.app.workers if w.group not in ("feed", "runner")]
    if busy:  # an empty list would mean every worker
        await pilot.app.workers.wait_for_complete(busy)
    await pilot.pause()


async def wait_until(pilot: Pilot, condition, timeout: float = 10.0) -> None:
    """Let the app run until ``condition()`` holds (the follower polls on its own)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the console did not catch up"
        await pilot.pause(0.05)


def live_app(world: World, **options):
    """A following console (it polls in a worker thread, as ``toka tui`` does)."""
    return make_app(
        world.runtime, home_label=HOME_LABEL, follow=True, poll_interval=0.02, **options
    )


def console(pilot: Pilot) -> ConsoleScreen:
    return pilot.app.live  # type: ignore[attr-defined]


def newest_seq(pilot: Pilot) -> int:
    rows = console(pilot).query_one(EventStream).rows
    return rows[-1].seq if rows else 0


def test_a_command_in_another_process_appears_live(runtime: Runtime, operator: Client):
    scout, _ = operator.spawn_agent("scout")
    head = runtime.state.seq

    async def scenario(pilot: Pilot) -> None:
        await wait_until(pilot, lambda: newest_seq(pilot) == head)
        done = await asyncio.to_thread(
            run_toka, "obs", "emit", scout, '{"from": "elsewhere"}', home=runtime.home.root
        )
        assert done.returncode == 0, done.stderr
        await wait_until(pilot, lambda: newest_seq(pilot) == head + 1)
        row = console(pilot).query_one(EventStream).rows[-1]
        assert (row.kind, row.principal) == ("observation.emitted", "operator")
        assert '"from":"elsewhere"' in row.summary

    app = make_app(runtime, home_label="~/toka", follow=True, poll_interval=0.02)
    drive(app, scenario)


def test_state_panes_follow_writes_from_another_connection(world: World):
    other = Runtime(world.home, durability="normal", clock=world.runtime.clock)
    archivist = world.agents["archivist"]

    async def scenario(pilot: Pilot) -> None:
        agents = console(pilot).query_one("#agents", ResourceTable)
        await wait_until(pilot, lambda: archivist in agents.row_data)
        assert agents.row_data[archivist][3] == "paused"
        await asyncio.to_thread(Client(other).resume, archivist)
        await wait_until(pilot, lambda: agents.row_data[archivist][3] == "running")

    try:
        drive(live_app(world), scenario)
    finally:
        other.close()


def test_the_events_pane_keeps_only_the_newest_events(world: World):
    scout = world.agents["scout"]
    for n in range(60):
        world.submit(ops.EmitObservation(scout, n))

    async def scenario(pilot: Pilot) -> None:
        rows = console(pilot).query_one(EventStream).rows
        assert [r.seq for r in rows] == list(range(88 - 19, 89))
        world.submit(ops.EmitObservation(scout, "one more"))
        await wait_until(pilot, lambda: newest_seq(pilot) == 89)
        assert len(console(pilot).query_one(EventStream).rows) == 20

    drive(live_app(world, buffer=20), scenario)


def test_pausing_holds_new_events_back_until_resumed(world: World):
    scout = world.agents["scout"]

    async def scenario(pilot: Pilot) -> None:
        await pilot.press("p")
        world.submit(ops.EmitObservation(scout, "while paused"))
        screen = console(pilot)
        await wait_until(pilot, lambda: screen.head_seq == 29)
        assert newest_seq(pilot) == 28
        assert "paused (+1 new)" in str(screen.query_one("#events-pane").border_title)
        await pilot.press("p")
        assert newest_seq(pilot) == 29

    drive(live_app(world), scenario)


def test_a_filter_applies_to_the_loaded_and_the_new_events(world: World):
    scout = world.agents["scout"]

    async def scenario(pilot: Pilot) -> None:
        await pilot.press("slash", *"kind:task")
        await pilot.press("enter")
        await settle(pilot)
        stream = console(pilot).query_one(EventStream)
        assert {r.kind for r in stream.rows} == {"task.scheduled", "task.completed"}
        world.submit(ops.EmitObservation(scout, "not a task"))
        world.submit(ops.ScheduleTask(scout, "a new task"))
        await wait_until(pilot, lambda: console(pilot).head_seq == 30)
        await pilot.pause(0.1)
        assert stream.rows[-1].summary.endswith("a new task")
        assert all(r.kind.startswith("task.") for r in stream.rows)
        await pilot.press("escape")  # clears the filter
        await settle(pilot)
        assert len(stream.rows) == 30

    drive(live_app(world), scenario)


def test_the_log_is_verified_in_the_background_at_start_up(world: World, monkeypatch):
    release = threading.Event()
    verify = Runtime.verify

    def held_verify(self, **options):
        release.wait()
        return verify(self, **options)

    monkeypatch.setattr(Runtime, "verify", held_verify)
    app = world.app()

    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            try:
                await wait_until(pilot, lambda: console(pilot).loaded)
                assert app.chain == ("verifying…", None)  # the rows are there meanwhile
                await pilot.press("2")
                assert console(pilot).current == "events"  # and the keys work
            finally:
                release.set()
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
            assert app.chain == ("intact to 28", True)
            assert "✓ intact to 28" in console(pilot).query_one(StatusLine).render().plain

    asyncio.run(main())


def test_a_tampered_log_is_reported_at_start_up(world: World):
    scout = world.agents["scout"]
    forged = f'{{"agent":"{scout}","data":{{"cpu":0.01,"queue":0}}}}'.encode()
    with apsw.Connection(str(world.home.db_path)) as conn:
        conn.execute("UPDATE events SET payload = ? WHERE seq = 20", (forged,))
    toasts: list = []

    async def scenario(pilot: Pilot) -> None:
        toasts.extend(pilot.app._notifications)
        assert pilot.app.chain == ("BROKEN at seq 20", False)  # type: ignore[attr-defined]

    drive(world.app(), scenario, notifications=True)
    assert [(t.severity, t.title, t.message) for t in toasts] == [
        ("error", "Log integrity failure", "event 20: hash does not match its contents")
    ]


def test_verify_reports_an_intact_chain_in_the_header(world: World):
    async def scenario(pilot: Pilot) -> None:
        await pilot.press("v")
        await settle(pilot)
        assert pilot.app.chain == ("verified to 28", True)  # type: ignore[attr-defined]

    drive(world.app(), scenario)


def test_verify_reports_a_tampered_event(world: World):
    scout = world.agents["scout"]
    forged = f'{{"agent":"{scout}","data":{{"cpu":0.01,"queue":0}}}}'.encode()
    with apsw.Connection(str(world.home.db_path)) as conn:
        conn.execute("UPDATE events SET payload = ? WHERE seq = 20", (forged,))
    toasts: list = []

    async def scenario(pilot: Pilot) -> None:
        await pilot.press("v")
        await settle(pilot)
        toasts.extend(pilot.app._notifications)
        assert pilot.app.chain == ("BROKEN at seq 20", False)  # type: ignore[attr-defined]

    drive(world.app(), scenario, notifications=True)
    assert [(t.severity, t.title, t.message) for t in toasts] == [
        ("error", title, "event 20: hash does not match its contents")
        for title in ("Log integrity failure", "Verify log: integrity failure")  # start, v
    ]


def test_a_log_that_no_longer_folds_stops_the_feed_and_says_so(world: World):
    with apsw.Connection(str(world.home.db_path)) as conn:
        conn.execute("UPDATE events SET payload = ? WHERE seq = 20", (b'{"agent":"x","data":1}',))
    toasts: list = []

    async def scenario(pilot: Pilot) -> None:
        toasts.extend(pilot.app._notifications)
        assert pilot.app.chain[1] is False  # type: ignore[attr-defined]
        assert "BROKEN at seq 20" in pilot.app.chain[0]  # type: ignore[attr-defined]

    drive(world.app(), scenario, notifications=True)
    # The follower and the start-up verification both find it: the follower's report
    # wins, and the verification's adds a toast only if it finished first.
    assert toasts and {t.severity for t in toasts} == {"error"}
    assert all(t.message.startswith("event 20") for t in toasts)


def test_load_demo_scenario_from_the_palette(runtime: Runtime):
    from toka.cli.tui_cmds import demo_loader

    async def scenario(pilot: Pilot) -> None:
        await pilot.press("ctrl+p", *"load demo", "enter")
        await settle(pilot)
        agents = console(pilot).query_one("#agents", ResourceTable)
        await wait_until(pilot, lambda: len(agents.row_data) >= 4)
        names = {row[1] for row in agents.row_data.values()}
        assert {"planner", "supervisor", "echo", "scratch"} <= names

    app = make_app(
        runtime, home_label="~/toka", follow=True, poll_interval=0.02, demo=demo_loader()
    )
    drive(app, scenario)
