"""Every console action submits exactly the expected signed operation, as the operator,
through the Client; a refused one changes nothing and shows the kernel's reason."""

from __future__ import annotations

from snapshots.world import World
from textual.pilot import Pilot
from textual.widgets import Static
from tui_support import console, drive, press, settle

from toka.core.model import ops
from toka.core.model.ops import SignedOperation
from toka.tui.screens.confirm import Confirm
from toka.tui.screens.console import ConsoleScreen
from toka.tui.screens.forms import SpawnAgentForm
from toka.tui.screens.invoke_form import InvokeRequest, InvokeToolForm
from toka.tui.widgets import EventStream, ResourceTable


def operations(world: World) -> list[tuple[str, str, str, SignedOperation]]:
    """(kind, principal, status, signed operation) of every row of the operations table."""
    rows = world.runtime.log.conn.execute(
        "SELECT kind, principal, status, signed FROM operations ORDER BY rowid"
    )
    return [(k, p, s, SignedOperation.from_json(signed)) for k, p, s, signed in rows]


def new_operation(world: World, before: int) -> tuple[str, str, str, SignedOperation]:
    rows = operations(world)
    assert len(rows) == before + 1, [r[:3] for r in rows[before:]]
    return rows[-1]


def test_spawn_agent_submits_one_agent_spawn_signed_by_the_operator(world: World):
    before = len(operations(world))
    app = world.app()

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "s", "type:planner", "enter")
        kind, principal, status, signed = new_operation(world, before)
        assert (kind, principal, status) == ("agent.spawn", "operator", "applied")
        assert isinstance(signed.op, ops.SpawnAgent) and signed.op.name == "planner"
        world.runtime.catch_up()
        spawned = [a for a in world.runtime.state.agents.values() if a.name == "planner"]
        assert len(spawned) == 1 and spawned[0].spawned_by == "operator"
        assert spawned[0].id in console(pilot).query_one("#agents", ResourceTable).row_data

    drive(app, scenario)


def test_schedule_task_goes_to_the_selected_agent(world: World):
    before = len(operations(world))

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "t", "fill:#description=rotate the keys", "enter")
        kind, principal, _, signed = new_operation(world, before)
        assert (kind, principal) == ("task.schedule", "operator")
        assert signed.op == ops.ScheduleTask(world.agents["scout"], "rotate the keys", None)
        stream = console(pilot).query_one(EventStream)
        assert stream.rows[-1].kind == "task.scheduled"

    drive(world.app(), scenario)


def test_emit_observation_parses_json_and_keeps_plain_text(world: World):
    before = len(operations(world))

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "o", 'fill:#data={"load": 2}', "enter")
        await press(pilot, "o", "fill:#data=all quiet", "enter")

    drive(world.app(), scenario)
    rows = operations(world)[before:]
    assert [r[0] for r in rows] == ["observation.emit", "observation.emit"]
    assert rows[0][3].op == ops.EmitObservation(world.agents["scout"], {"load": 2})
    assert rows[1][3].op == ops.EmitObservation(world.agents["scout"], "all quiet")


def test_pause_then_resume_the_selected_agent(world: World):
    scout = world.agents["scout"]
    before = len(operations(world))

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "z")
        assert console(pilot).query_one("#agents", ResourceTable).selected()[3] == "paused"
        await press(pilot, "u")

    drive(world.app(), scenario)
    rows = operations(world)[before:]
    assert [(r[0], r[1], r[3].op) for r in rows] == [
        ("agent.pause", "operator", ops.PauseAgent(scout)),
        ("agent.resume", "operator", ops.ResumeAgent(scout)),
    ]


def test_terminate_asks_first_and_cancelling_changes_nothing(world: World):
    before = len(operations(world))

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "K")
        assert isinstance(pilot.app.screen, Confirm)
        await press(pilot, "n")
        assert len(operations(world)) == before
        await press(pilot, "K", "y")

    drive(world.app(), scenario)
    kind, principal, _, signed = new_operation(world, before)
    assert (kind, principal) == ("agent.terminate", "operator")
    assert signed.op.agent == world.agents["scout"]  # type: ignore[union-attr]


def test_grant_form_sends_caps_ttl_budgets_and_approval(world: World):
    before = len(operations(world))

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "g", "fill:#caps=tool.invoke:tool/echo, task.schedule:*")
        await press(pilot, "fill:#ttl=2h", "fill:#max-ops=25", "fill:#max-tool-calls=5")
        await press(pilot, "tab", "tab", "tab", "tab", "tab", "space", "ctrl+s")

    drive(world.app(), scenario)
    kind, principal, _, signed = new_operation(world, before)
    assert (kind, principal) == ("cap.grant", "operator")
    op = signed.op
    assert isinstance(op, ops.GrantCapability)
    assert op.subject == world.agents["scout"]
    assert op.caps == ["tool.invoke:tool/echo", "task.schedule:*"]
    assert op.ttl_s == 7200
    assert (op.budgets.max_ops, op.budgets.max_tool_calls, op.budgets.max_fuel) == (25, 5, None)
    assert op.approve is True


def test_revoke_lists_the_cascade_and_revokes_it(world: World):
    before = len(operations(world))

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "3", "home", *["down"] * 4)
        assert console(pilot).query_one("#grants", ResourceTable).selected_key() == "gr-22"
        await press(pilot, "x")
        dialog = pilot.app.screen
        assert isinstance(dialog, Confirm)
        assert "gr-23" in str(dialog.query_one(".dialog-body", Static).render())
        await press(pilot, "y")
        grants = console(pilot).query_one("#grants", ResourceTable).row_data
        assert grants["gr-22"][5] == grants["gr-23"][5] == "revoked"

    drive(world.app(), scenario)
    kind, principal, _, signed = new_operation(world, before)
    assert (kind, principal, signed.op.jti) == ("cap.revoke", "operator", "gr-22")  # type: ignore[union-attr]


def test_invoke_tool_form_runs_the_tool_and_shows_the_result_in_place(world: World):
    before = len(operations(world))

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "4", "end", "i")
        form = pilot.app.screen
        assert isinstance(form, InvokeToolForm) and form.tool.name == "wordcount"
        await press(pilot, "fill:#arg-0=three small words", "enter")
        assert pilot.app.screen is form  # stays open for another call
        result = str(form.query_one("#result", Static).render())
        assert "ok" in result and '"words": 3' in result

    drive(world.app(), scenario)
    kind, principal, status, signed = new_operation(world, before)
    assert (kind, principal, status) == ("tool.invoke", "operator", "applied")
    assert signed.op == ops.InvokeTool("wordcount", {"text": "three small words"}, "1.0.0")
    assert world.runtime.log.query(kinds=["tool.succeeded"])[-1].principal == "operator"


def test_invoke_tool_form_collect_only_reads_the_arguments(world: World):
    before = len(operations(world))

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "4", "end", "i", "fill:#arg-0=two words")
        form = pilot.app.screen
        assert isinstance(form, InvokeToolForm)
        assert form.collect() == InvokeRequest("wordcount", "1.0.0", {"text": "two words"})
        await settle(pilot)
        assert len(operations(world)) == before

    drive(world.app(), scenario)


def test_a_refused_operation_changes_nothing_and_shows_the_kernels_reason(world: World):
    grants_before = dict(world.runtime.state.grants)
    before = len(operations(world))
    toasts: list = []

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "g", "fill:#caps=agent.fly:*", "enter")
        toasts.extend(pilot.app._notifications)

    drive(world.app(), scenario, notifications=True)
    world.runtime.catch_up()
    assert world.runtime.state.grants.keys() == grants_before.keys()
    kind, principal, status, _ = new_operation(world, before)
    assert (kind, principal, status) == ("cap.grant", "operator", "rejected")
    assert [t.severity for t in toasts] == ["error"]
    assert "unknown action 'agent.fly'" in toasts[0].message
    assert world.runtime.log.query(kinds=["operation.rejected"], newest_first=True)[
        0
    ].principal == ("operator")


def test_a_form_with_bad_input_submits_nothing(world: World):
    before = len(operations(world))

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "s", "enter")
        assert isinstance(pilot.app.screen, SpawnAgentForm)
        assert "give the agent a name" in str(
            pilot.app.screen.query_one("#form-error", Static).render()
        )
        await press(pilot, "escape", "t", "type:x", "fill:#payload={not json", "enter")
        assert "not valid JSON" in str(pilot.app.screen.query_one("#form-error", Static).render())

    drive(world.app(), scenario)
    assert len(operations(world)) == before


def test_time_travel_hides_every_mutating_action(world: World):

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "h", "ctrl+a", "ctrl+k", "type:17", "enter")
        past = pilot.app.screen
        assert isinstance(past, ConsoleScreen) and past.read_only and past.at_seq == 17
        assert len(past.query_one("#agents", ResourceTable).row_data) == 3
        assert past.query_one(EventStream).rows[-1].seq == 17
        for action in ("spawn_agent", "schedule_task", "grant_capability", "invoke_tool"):
            assert past.check_action(action, ()) is False
        await press(pilot, "s")
        assert pilot.app.screen is past  # no form opened
        await press(pilot, "escape")
        assert pilot.app.screen is console(pilot)

    drive(world.app(), scenario)


def test_actions_the_token_cannot_perform_are_dimmed(world: World):
    from toka.core.runtime.client import Client
    from toka.tui.app import make_app

    scout = world.agents["scout"]
    app = make_app(world.runtime, client=Client(world.runtime, scout), follow=False)

    async def scenario(pilot: Pilot) -> None:
        await settle(pilot)
        screen = console(pilot)
        assert screen.check_action("spawn_agent", ()) is None  # no agent.spawn capability
        assert screen.check_action("pause_agent", ()) is None  # not over itself either
        assert screen.check_action("grant_capability", ()) is True  # it holds cap.grant:*
        assert screen.check_action("schedule_task", ()) is None  # not task.schedule
        active = {b.binding.action: b.enabled for b in screen.active_bindings.values()}
        assert active["spawn_agent"] is False

    drive(app, scenario)


def test_palette_offers_only_what_is_allowed_here(world: World):
    from toka.tui.commands import ConsoleCommands

    async def scenario(pilot: Pilot) -> None:
        await settle(pilot)
        provider = ConsoleCommands(console(pilot))
        names = [name for name, _, _ in provider._available()]
        assert {"Spawn agent", "Schedule task", "Grant capability", "Verify log"} <= set(names)
        assert "Resume agent" not in names  # scout is running
        assert "Back to live" not in names
        await press(pilot, "ctrl+p", "type:spawn", "enter")
        await settle(pilot)
        assert isinstance(pilot.app.screen, SpawnAgentForm)

    drive(world.app(), scenario)


def test_help_opens_on_question_mark_and_q_quits(world: World):
    from toka.tui.screens.help import HelpScreen

    app = world.app()

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "question_mark")
        help_screen = pilot.app.screen
        assert isinstance(help_screen, HelpScreen)
        keys = {e.description: e.enabled for e in help_screen.entries}
        assert keys["spawn an agent"] is True and keys["resume the selected agent"] is False
        await press(pilot, "escape", "q")

    drive(app, scenario)
    assert app.return_code == 0


def test_accepted_actions_toast_what_the_kernel_recorded(world: World):
    toasts: list = []

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "t", "fill:#description=rotate the keys", "enter")
        await settle(pilot)
        await press(pilot, "g", "fill:#caps=task.schedule:*", "ctrl+s")
        await settle(pilot)
        await press(pilot, "3", "home", *["down"] * 4, "x", "y")
        await settle(pilot)
        toasts.extend(pilot.app._notifications)

    drive(world.app(), scenario, notifications=True)
    world.runtime.catch_up()
    state = world.runtime.state
    task = max(state.tasks.values(), key=lambda t: int(t.id.split("-")[1]))
    grant = max(state.grants.values(), key=lambda g: int(g.jti.split("-")[1]))
    messages = [t.message for t in toasts]
    assert [t.severity for t in toasts] == ["information"] * 3, messages
    assert messages[0].startswith(f"task {task.id} for {world.agents['scout']} at seq ")
    assert messages[1].startswith(f"granted {grant.jti} to {world.agents['scout']} at seq ")
    assert messages[2] == "revoked gr-22, gr-23"


def test_palette_collects_garbage_after_asking(world: World):
    orphan = world.runtime.home.blobs / f"{'ef' * 32}.wasm"
    orphan.write_bytes(b"\0asm\1\0\0\0")
    blobs = world.runtime.home.blobs
    kept = sorted(p.name for p in blobs.iterdir() if p not in (orphan, blobs / ".lock"))

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "ctrl+p", "type:collect garbage", "enter")
        assert isinstance(pilot.app.screen, Confirm)
        assert "1 module" in str(pilot.app.screen.body)
        await press(pilot, "n")
        assert orphan.exists()
        await press(pilot, "ctrl+p", "type:collect garbage", "enter", "y")
        assert not orphan.exists()

    drive(world.app(), scenario)
    assert sorted(p.name for p in blobs.iterdir() if p.name != ".lock") == kept
