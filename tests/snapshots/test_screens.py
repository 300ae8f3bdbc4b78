"""Snapshot tests of the operator console: every pane, form, dialog and mode.

Each screen is built from a seeded world (fixed keys, nonces, clock and home id), at a
fixed size, with the log not followed, so each SVG is byte-for-byte reproducible.
Keys are pressed in ``run_before`` and every worker is awaited after each key, so the
capture never races a detail load or a submission.

Update with ``pytest tests/snapshots --snapshot-update`` and look at every changed SVG.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest
from snapshots.world import (
    EVIL,
    World,
    busy_world,
    first_run_world,
    hostile_world,
    mcp_world,
    notes_offers,
)
from textual.pilot import Pilot
from textual.widgets import Input, TextArea
from tui_support import settle

from toka.cli.tui_cmds import demo_loader
from toka.core.model import ops

WIDE = (120, 40)


@pytest.fixture(autouse=True)
def _steady_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """No blinking cursors; no theme or colour settings from the environment."""
    monkeypatch.setattr(Input, "_toggle_cursor", lambda self: None)
    monkeypatch.setattr(TextArea, "_toggle_cursor_blink_visible", lambda self: None)
    for var in ("NO_COLOR", "TEXTUAL_THEME", "COLORTERM"):
        monkeypatch.delenv(var, raising=False)


def keys(*presses: str):
    """A ``run_before`` that waits for the first load, then presses each key and lets
    every worker it started finish before the next."""

    async def run(pilot: Pilot) -> None:
        await settle(pilot)
        for key in presses:
            if key.startswith("type:"):
                await pilot.press(*key[len("type:") :])
            else:
                await pilot.press(key)
            await settle(pilot)

    return run


@pytest.fixture
def fresh(tmp_path: Path):
    with closing(first_run_world(tmp_path / "home")) as w:
        yield w


@pytest.fixture
def mcp(tmp_path: Path):
    with closing(mcp_world(tmp_path / "home")) as w:
        yield w


@pytest.fixture
def busy(tmp_path: Path):
    with closing(busy_world(tmp_path / "home")) as w:
        yield w


@pytest.fixture
def hostile(tmp_path: Path):
    with closing(hostile_world(tmp_path / "home")) as w:
        yield w


class TestPanes:
    def test_agents_pane_focused(self, snap_compare, world: World):
        assert snap_compare(world.app(), terminal_size=WIDE, run_before=keys())

    def test_events_pane_focused(self, snap_compare, world: World):
        assert snap_compare(world.app(), terminal_size=WIDE, run_before=keys("2", "up"))

    def test_grants_pane_focused(self, snap_compare, world: World):
        assert snap_compare(world.app(), terminal_size=WIDE, run_before=keys("3", "down"))

    def test_tools_pane_focused(self, snap_compare, world: World):
        assert snap_compare(world.app(), terminal_size=WIDE, run_before=keys("4", "end"))

    def test_first_run_explains_what_to_press(self, snap_compare, fresh: World):
        app = fresh.app(demo=demo_loader())
        assert snap_compare(app, terminal_size=WIDE, run_before=keys())

    def test_compact_at_80x24(self, snap_compare, world: World):
        assert snap_compare(world.app(), terminal_size=(80, 24), run_before=keys("2"))

    def test_wide_at_200x60(self, snap_compare, world: World):
        assert snap_compare(world.app(), terminal_size=(200, 60), run_before=keys())


class TestDetail:
    def test_event_detail(self, snap_compare, world: World):
        # the delegated grant scout issued to archivist: signer, token, hashes, payload
        press = ("2", "home", *["down"] * 22, "enter")
        assert snap_compare(world.app(), terminal_size=WIDE, run_before=keys(*press))

    def test_agent_detail(self, snap_compare, world: World):
        assert snap_compare(world.app(), terminal_size=WIDE, run_before=keys("enter"))


class TestActivity:
    """An hour of work: scout observing in slow waves, then in a fast one over the last
    five minutes; courier refused now and then, twice in the last five minutes."""

    def test_header_strip_plots_events_and_refusals(self, snap_compare, busy: World):
        assert snap_compare(busy.app(), terminal_size=WIDE, run_before=keys("2"))

    def test_header_strip_at_80x24(self, snap_compare, busy: World):
        assert snap_compare(busy.app(), terminal_size=(80, 24), run_before=keys("2"))

    def test_agent_detail_pane_plots_its_hour(self, snap_compare, busy: World):
        assert snap_compare(busy.app(), terminal_size=WIDE, run_before=keys())

    def test_agent_detail_screen_plots_its_hour(self, snap_compare, busy: World):
        press = ("down", "enter")  # courier: refused now and then
        assert snap_compare(busy.app(), terminal_size=WIDE, run_before=keys(*press))


class TestForms:
    def test_spawn_agent_form(self, snap_compare, world: World):
        assert snap_compare(world.app(), terminal_size=WIDE, run_before=keys("s", "type:planner"))

    def test_schedule_task_form(self, snap_compare, world: World):
        assert snap_compare(world.app(), terminal_size=WIDE, run_before=keys("t"))

    def test_emit_observation_form(self, snap_compare, world: World):
        assert snap_compare(world.app(), terminal_size=WIDE, run_before=keys("o"))

    def test_grant_capability_form(self, snap_compare, world: World):
        assert snap_compare(world.app(), terminal_size=WIDE, run_before=keys("g"))

    def test_invoke_tool_form_from_schema(self, snap_compare, world: World):
        press = ("4", "end", "i", "type:two words")
        assert snap_compare(world.app(), terminal_size=WIDE, run_before=keys(*press))

    def test_invoke_tool_form_raw_json(self, snap_compare, world: World):
        assert snap_compare(world.app(), terminal_size=WIDE, run_before=keys("4", "i"))

    def test_time_travel_form(self, snap_compare, world: World):
        assert snap_compare(world.app(), terminal_size=WIDE, run_before=keys("h"))

    def test_form_error_is_shown_inline(self, snap_compare, world: World):
        press = ("g", "type:tool.invoke:tool/echo", "tab", "ctrl+a", "ctrl+k", "type:soon", "enter")
        assert snap_compare(world.app(), terminal_size=WIDE, run_before=keys(*press))


class TestDialogs:
    def test_revoke_confirmation_lists_the_cascade(self, snap_compare, world: World):
        # scout's delegated grant: revoking it also revokes what scout gave archivist
        press = ("3", "home", *["down"] * 4, "x")
        assert snap_compare(world.app(), terminal_size=WIDE, run_before=keys(*press))

    def test_terminate_confirmation(self, snap_compare, world: World):
        assert snap_compare(world.app(), terminal_size=WIDE, run_before=keys("K"))

    def test_refused_operation_toast(self, snap_compare, world: World):
        press = ("g", "type:agent.fly:*", "enter")
        assert snap_compare(world.app(), terminal_size=WIDE, run_before=keys(*press))

    def test_help_lists_the_keys_valid_here(self, snap_compare, world: World):
        assert snap_compare(world.app(), terminal_size=WIDE, run_before=keys("question_mark"))

    def test_command_palette(self, snap_compare, world: World):
        press = ("ctrl+p", "type:agent")
        assert snap_compare(world.app(), terminal_size=WIDE, run_before=keys(*press))

    def test_verify_log(self, snap_compare, world: World):
        assert snap_compare(world.app(), terminal_size=WIDE, run_before=keys("v"))


class TestModes:
    def test_time_travel_is_read_only_and_marked(self, snap_compare, world: World):
        press = ("h", "ctrl+a", "ctrl+k", "type:17", "enter")
        assert snap_compare(world.app(), terminal_size=WIDE, run_before=keys(*press))

    def test_filtered_events(self, snap_compare, world: World):
        press = ("slash", "type:kind:task", "enter")
        assert snap_compare(world.app(), terminal_size=WIDE, run_before=keys(*press))

    def test_paused_events_count_what_is_held_back(self, snap_compare, world: World):
        app = world.app()

        async def run(pilot: Pilot) -> None:
            await keys("2", "p")(pilot)
            world.submit(ops.EmitObservation(world.agents["scout"], "held back"))
            app.refresh_feed()
            await settle(pilot)

        assert snap_compare(app, terminal_size=WIDE, run_before=run)


class TestEffects:
    """Calls that touch the world: a mount, three ended calls (a file read, a file
    written, a fetch), one whose outcome is unknown and one interrupted, so the header
    says that two calls need the operator."""

    def test_tools_pane_shows_side_effect_classes(self, snap_compare, effects: World):
        assert snap_compare(effects.app(), terminal_size=WIDE, run_before=keys("4", "end"))

    def test_event_detail_lists_effects(self, snap_compare, effects: World):
        press = ("2", "end", *["up"] * 4, "enter")  # seq 35: the fetch, its exchange
        assert snap_compare(effects.app(), terminal_size=WIDE, run_before=keys(*press))

    def test_intent_detail(self, snap_compare, effects: World):
        press = ("2", "end", *["up"] * 2, "enter")  # seq 37: the write whose runner died
        assert snap_compare(effects.app(), terminal_size=WIDE, run_before=keys(*press))

    def test_open_calls(self, snap_compare, effects: World):
        assert snap_compare(effects.app(), terminal_size=WIDE, run_before=keys("c"))

    def test_resolve_call_form(self, snap_compare, effects: World):
        pick = ("tab", "enter", "down", "down", "enter")  # the outcome: failed
        press = ("ctrl+p", "type:resolve call", "enter", *pick, "tab", "type:no ledger line")
        assert snap_compare(effects.app(), terminal_size=WIDE, run_before=keys(*press))


class TestMcp:
    """MCP servers and their imported tools: notes.wordcount (its last call ok) and
    notes.send_note (its last call refused: the definition changed) from server notes,
    and server tracker with nothing imported yet."""

    SEND_NOTE = ("4", "end", "up")  # the Tools pane, send_note's row

    def test_tools_pane_with_mcp_tools(self, snap_compare, mcp: World):
        assert snap_compare(mcp.app(), terminal_size=WIDE, run_before=keys(*self.SEND_NOTE))

    def test_tools_pane_with_mcp_tools_at_80x24(self, snap_compare, mcp: World):
        press = ("4", "end")  # tracker's row: send_note's last call keeps its colour
        assert snap_compare(mcp.app(), terminal_size=(80, 24), run_before=keys(*press))

    def test_tool_detail_with_a_changed_definition(self, snap_compare, mcp: World):
        press = (*self.SEND_NOTE, "enter")
        assert snap_compare(mcp.app(), terminal_size=WIDE, run_before=keys(*press))

    def test_add_mcp_server_form(self, snap_compare, mcp: World):
        fill = ("type:github", "tab", "type:npx -y github-mcp", "tab", "tab")
        press = ("ctrl+p", "type:add mcp server", "enter", *fill, "type:TOKEN=gh-token", "enter")
        assert snap_compare(mcp.app(), terminal_size=WIDE, run_before=keys(*press))

    def test_import_mcp_tools_form_with_offers(self, snap_compare, mcp: World):
        app = mcp.app(mcp_offers=lambda runtime, server: notes_offers())
        press = (*self.SEND_NOTE, "ctrl+p", "type:import mcp tools", "enter")
        assert snap_compare(app, terminal_size=WIDE, run_before=keys(*press))


class TestHostileNames:
    """Names, descriptions, payloads, reasons, a tool and its output written as markup
    (``evil[/]``, ``PLAIN[bold]X[/bold]END``, ``[@click=app.quit]x[/]``, a link) and as
    terminal control: every screen shows them as written, control characters as escapes."""

    def test_agents_table_and_detail_pane(self, snap_compare, hostile: World):
        assert snap_compare(hostile.app(), terminal_size=WIDE, run_before=keys())

    def test_events_feed(self, snap_compare, hostile: World):
        assert snap_compare(hostile.app(), terminal_size=WIDE, run_before=keys("2"))

    def test_agent_detail(self, snap_compare, hostile: World):
        press = ("down", "enter")  # PLAIN[bold]X[/bold]END: its tasks, behaviour, grants
        assert snap_compare(hostile.app(), terminal_size=WIDE, run_before=keys(*press))

    def test_event_detail(self, snap_compare, hostile: World):
        press = ("2", "home", *["down"] * 18, "enter")  # the task with a hostile payload
        assert snap_compare(hostile.app(), terminal_size=WIDE, run_before=keys(*press))

    def test_tool_detail(self, snap_compare, hostile: World):
        press = ("4", "home", "down", "enter")
        assert snap_compare(hostile.app(), terminal_size=WIDE, run_before=keys(*press))

    def test_invoke_form_from_a_hostile_schema(self, snap_compare, hostile: World):
        press = ("4", "home", "down", "i")
        assert snap_compare(hostile.app(), terminal_size=WIDE, run_before=keys(*press))

    def test_agent_options_in_a_form(self, snap_compare, hostile: World):
        press = ("t", "shift+tab", "enter")  # the agent select, opened
        assert snap_compare(hostile.app(), terminal_size=WIDE, run_before=keys(*press))

    def test_terminate_confirmation(self, snap_compare, hostile: World):
        press = ("down", "K")
        assert snap_compare(hostile.app(), terminal_size=WIDE, run_before=keys(*press))

    def test_refusal_toast_quotes_the_schema(self, snap_compare, hostile: World):
        press = ("4", "home", "down", "i", "ctrl+s")  # its default for "short" is too long
        assert snap_compare(hostile.app(), terminal_size=WIDE, run_before=keys(*press))

    def test_filter_in_the_events_title(self, snap_compare, hostile: World):
        press = ("slash", f"type:{EVIL}", "enter")
        assert snap_compare(hostile.app(), terminal_size=WIDE, run_before=keys(*press))
