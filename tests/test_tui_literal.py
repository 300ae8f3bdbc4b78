"""Whatever an agent writes into the log, the console shows it as written: never as
markup, never as terminal control, and nothing an agent writes can crash or steer it.

The world (``snapshots.world.hostile_world``) has agents named ``evil[/]`` (a closing
tag with nothing to close), ``PLAIN[bold]X[/bold]END`` (a style), ``[@click=app.quit]x[/]``
(an action on click) and ``[link=https://x]y[/link]`` (a link), and descriptions,
payloads, results, reasons, a tool and its output full of the same and of ESC sequences.
"""

from __future__ import annotations

import ast
import sys
import unicodedata
from contextlib import closing
from pathlib import Path

import pytest
import rich.console
import rich.markup
import textual.markup
from snapshots.world import CLICK, CONTROL, EVIL, HOSTILE, LINK, PLAIN, World, hostile_world
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Input, Select
from textual.widgets._toast import Toast
from tui_support import console, drive, press, screen_text, settle

from toka.core.model import ops
from toka.tui import view
from toka.tui.feed import NO_CHANGE, Batch
from toka.tui.literal import literal, visible
from toka.tui.screens.console import ConsoleScreen
from toka.tui.view import EventRow, TableDiff
from toka.tui.widgets import ResourceTable

# What is left of each hostile string if any part of it was read as markup.
MARKERS = ("evil[/", "PLAIN[bold", "[@click=app.quit", "[link=https://x")
TUI = Path(__file__).resolve().parents[1] / "toka" / "tui"


@pytest.fixture
def world(tmp_path: Path):
    with closing(hostile_world(tmp_path / "home")) as w:
        yield w


@pytest.fixture
def markup_parsed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every string Textual or Rich parses as markup while the test runs."""
    seen: list[str] = []

    def spy(module, name: str) -> None:
        original = getattr(module, name)

        def parse(markup, *args, **kwargs):
            seen.append(str(markup))
            return original(markup, *args, **kwargs)

        monkeypatch.setattr(module, name, parse)

    spy(textual.markup, "to_content")  # Content.from_markup: Static, Label, toasts, titles
    spy(rich.markup, "render")  # Text.from_markup: DataTable str cells
    spy(rich.console, "render_markup")  # Console.render_str: rich Table str cells
    return seen


def raw_controls(text: str) -> list[str]:
    return sorted({repr(c) for c in text if unicodedata.category(c) == "Cc" and c != "\n"})


# -- the helper ------------------------------------------------------------------------


def test_literal_text_is_never_markup_and_shows_control_characters_as_escapes():
    text = literal(f"{EVIL} {CONTROL}\n")
    assert text.plain == "evil[/] \\x1b[2J\\x1b]0;pwned\\x07\\n"
    assert [text.plain[s.start : s.end] for s in text.spans] == ["\\x1b", "\\x1b", "\\x07", "\\n"]
    assert literal("a\tb\nc", multiline=True).plain == "a\tb\nc"
    assert visible("\x9b2J\x7f\r") == "\\x9b2J\\x7f\\r"
    assert visible("line\none", multiline=True) == "line\none"


# -- start-up and the panes --------------------------------------------------------------


def test_the_console_starts_on_a_log_with_hostile_names(world: World):
    async def scenario(pilot: Pilot) -> None:
        screen = screen_text(pilot.app)
        assert pilot.app.is_running
        agents = console(pilot).query_one("#agents", ResourceTable)
        assert len(agents.row_data) == 4
        for name in HOSTILE:
            assert name in screen, name

    drive(world.app(), scenario, notifications=True)


def test_every_pane_and_detail_shows_log_text_literally_and_parses_none_of_it(
    world: World, markup_parsed: list[str]
):
    shown: list[str] = []

    async def look(pilot: Pilot, *keys: str) -> None:
        await press(pilot, *keys)
        shown.append(screen_text(pilot.app))

    async def scenario(pilot: Pilot) -> None:
        for row in range(4):  # each agent in the table and the detail pane, then in full
            await look(pilot, "1", "home", *["down"] * row)
            await look(pilot, "enter")
            await press(pilot, "escape")
        await look(pilot, "4", "home", "down")  # echo@2.0.0: its description and schema
        await look(pilot, "enter")
        await press(pilot, "escape")
        await look(pilot, "2", "home")  # summaries of tasks, results, reasons, tool output
        for _ in range(console(pilot).head_seq):  # each event in the detail pane, then in full
            await look(pilot, "enter")
            await press(pilot, "escape")
            await look(pilot, "down")
        await look(pilot, "slash", f"type:{EVIL}", "enter")  # the filter, in the title

    drive(world.app(), scenario, notifications=True)
    everything = "\n".join(shown)
    for text in (*HOSTILE, f"{PLAIN} \\x1b[2J\\x1b]0;pwned\\x07", f"{CLICK} \\x1b[2J"):
        assert text in everything, text
    assert f"filter: '{EVIL}'" in everything
    assert raw_controls(everything) == []
    assert [s for s in markup_parsed if any(m in s for m in MARKERS)] == []


def test_clicking_an_injected_action_or_link_does_nothing(world: World, monkeypatch):
    opened: list[str] = []
    monkeypatch.setattr(App, "open_url", lambda self, url, **kw: opened.append(url))

    async def scenario(pilot: Pilot) -> None:
        table = console(pilot).query_one("#agents", ResourceTable)
        for agent, name in ((world.agents[CLICK], CLICK), (world.agents[LINK], LINK)):
            lines = screen_text(pilot.app).splitlines()
            y = next(i for i, line in enumerate(lines) if agent in line)
            x = lines[y].index(agent) + len(agent) + 2  # the name cell's first character
            await pilot.click(offset=(x, y))
            await settle(pilot)
            assert pilot.app.is_running, f"clicking {name!r} ran its action"
            assert table.selected_key() == agent
        assert opened == []

    drive(world.app(), scenario, notifications=True)


def test_a_name_holding_terminal_control_reaches_the_screen_as_escapes(world: World):
    """The kernel refuses new names with control characters, but an old log may hold
    them: the rows the feed sends show them as escapes."""

    async def scenario(pilot: Pilot) -> None:
        screen = console(pilot)
        agent = world.agents[EVIL]
        row = screen.query_one("#agents", ResourceTable).row_data[agent]
        event = EventRow(99, "01:00:00.000", "agent.spawned", "ag-x", f"{agent} 'ctl{CONTROL}'")
        agents = TableDiff([(agent, row._replace(name=f"ctl{CONTROL}"))], [])
        screen.apply_batch(
            Batch(
                [event], False, screen.generation, agents, NO_CHANGE, NO_CHANGE, None, 99, None, 1
            )
        )
        await press(pilot, "2", "end")
        text = screen_text(pilot.app)
        assert text.count("ctl\\x1b[2J\\x1b]0;pwned\\x07") == 2  # the table, the stream
        assert raw_controls(text) == []

    drive(world.app(), scenario, notifications=True)


# -- forms, confirmations and toasts -------------------------------------------------------


def test_forms_dialogs_and_options_show_log_text_literally(world: World, markup_parsed):
    shown: list[str] = []

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "1", "home", "down")  # PLAIN
        await press(pilot, "t")  # schedule a task: the agent select names PLAIN
        shown.append(screen_text(pilot.app))
        select = pilot.app.screen.query_one("#agent", Select)
        select.expanded = True
        await settle(pilot)
        shown.append(screen_text(pilot.app))  # every agent in the options
        await press(pilot, "escape", "escape")
        await press(pilot, "K")  # terminate: the confirmation names the agent
        shown.append(screen_text(pilot.app))
        await press(pilot, "n")
        await press(pilot, "4", "home", "down", "i")  # invoke echo@2.0.0: fields from its schema
        shown.append(screen_text(pilot.app))
        enum = next(s for s in pilot.app.screen.query(Select) if s.id != "version")
        enum.expanded = True
        await settle(pilot)
        shown.append(screen_text(pilot.app))
        await press(pilot, "escape")
        pilot.app.screen.query_one("#arg-3", Input).value = ""  # "short": leave it out
        await press(pilot, "ctrl+s")  # runs: the output echoes the hostile arguments
        shown.append(screen_text(pilot.app))

    drive(world.app(), scenario, size=(160, 50), notifications=True)
    everything = "\n".join(shown)
    for text in (
        f"Terminate {PLAIN} ({world.agents[PLAIN]})?",
        f"{PLAIN} · {world.agents[PLAIN]}",
        f"{EVIL} · {world.agents[EVIL]}",
        f"{LINK} · {world.agents[LINK]}",
        f"{EVIL} *",  # the property named evil[/], required
        PLAIN,  # its description, the hint
        CLICK,  # the boolean's label, the default
        f'"{EVIL}": "{CLICK}"',  # the tool's output
    ):
        assert text in everything, text
    assert raw_controls(everything) == []
    assert [s for s in markup_parsed if any(m in s for m in MARKERS)] == []


def test_toasts_show_names_and_refusals_literally(world: World, markup_parsed):
    toasts: list[str] = []

    def shown(pilot: Pilot) -> list[str]:
        return [t.render().plain for t in pilot.app.screen.query(Toast)]

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "s", f"type:{EVIL}", "enter")  # accepted: the toast names it
        toasts.extend(shown(pilot))
        pilot.app.clear_notifications()
        await press(pilot, "4", "home", "down", "i", "ctrl+s")  # "short" is refused
        toasts.extend(shown(pilot))

    drive(world.app(), scenario, size=(160, 50), notifications=True)
    agent = next(
        a.id
        for a in world.runtime.state.agents.values()
        if a.name == EVIL and a.id not in world.agents.values()
    )
    assert toasts == [
        f"Spawn agent\nspawned {agent} ({EVIL}) at seq 34",
        f"Invoke tool: refused\narguments do not match the input schema of echo@2.0.0: '{EVIL}' is too long (at $.short)",
    ]
    assert [s for s in markup_parsed if any(m in s for m in MARKERS)] == []


# -- the code itself -----------------------------------------------------------------------

# Textual and Rich calls that read a str argument as markup.
MARKUP_READERS = {
    "Static",
    "Label",
    "Button",
    "Checkbox",
    "Option",
    "Hit",
    "DiscoveryHit",
    "update",
    "add_row",
    "update_cell",
}


def _built_str(node: ast.expr) -> bool:
    """A str built at run time (f-string with fields, + or % or .format of strs)."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return (
            _built_str(node.left) or _built_str(node.right) or isinstance(node.left, ast.Constant)
        )
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr == "format" and isinstance(node.func.value, ast.Constant)
    return False


def _markup_hazards(node: ast.AST) -> list[str]:
    """What in ``node`` could hand text to a markup parser: asking for markup, or a str
    built at run time given to a markup reader or a border title."""
    if isinstance(node, ast.keyword) and node.arg == "markup":
        asked = not (isinstance(node.value, ast.Constant) and node.value.value is False)
        return [f"markup={ast.unparse(node.value)}"] if asked else []
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in MARKUP_READERS:
            return [f"{name}({ast.unparse(a)})" for a in node.args if _built_str(a)]
    if isinstance(node, ast.Assign) and _built_str(node.value):
        return [
            f"{t.attr} = {ast.unparse(node.value)}"
            for t in node.targets
            if isinstance(t, ast.Attribute) and t.attr.startswith("border_")
        ]
    return []


def test_console_code_hands_no_built_string_to_a_markup_reader_and_never_asks_for_markup():
    found = [
        f"{path.relative_to(TUI)}:{getattr(node, 'lineno', 0)} {hazard}"
        for path in sorted(TUI.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        for hazard in _markup_hazards(node)
    ]
    assert found == []


def test_a_crashing_console_exits_non_zero(tmp_path: Path, monkeypatch):
    from toka.cli.main import main
    from toka.tui.app import TokaConsole

    def crash(self) -> None:
        raise RuntimeError("boom")

    def run_headless(self) -> None:
        App.run(self, headless=True, size=(80, 24))

    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(TokaConsole, "run", run_headless)
    monkeypatch.setattr(ConsoleScreen, "on_mount", crash)
    assert main(["--home", str(tmp_path / "home"), "tui", "--no-runner"]) == 1


def test_a_description_with_line_breaks_stays_on_its_tasks_line(world: World):
    agent = world.agents[LINK]
    world.submit(ops.ScheduleTask(agent, "real\ntk-99      completed  forged"))
    state = world.runtime.state
    detail = view.agent_detail(state, state.agents[agent], int(world.runtime.clock()))
    heading, lines = detail.sections[0]
    assert heading == "tasks (1)"
    assert lines.splitlines() == ["tk-33      scheduled  real\\ntk-99      completed  forged"]
