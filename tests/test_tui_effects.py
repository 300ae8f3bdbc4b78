"""Tool calls that touch the world, in the console: each tool's side-effect class, what
an ended call touched, open calls that need the operator, resolving one through the
palette, and invoking the file tools from the form."""

from __future__ import annotations

from pathlib import Path

import pytest
from snapshots.world import World
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static, TextArea
from tui_support import console, drive, press, screen_text, settle

from toka.core.model import events as ev
from toka.core.model import ops
from toka.core.runtime.client import Client
from toka.tui.app import make_app
from toka.tui.commands import ConsoleCommands
from toka.tui.effect_view import CLASS_MEANING
from toka.tui.screens.detail import DetailScreen
from toka.tui.screens.invoke_form import InvokeRequest, InvokeToolForm
from toka.tui.screens.resolve_form import ResolveCallForm
from toka.tui.widgets import EventStream, ResourceTable, StatusLine


@pytest.fixture
def mounted(world: World, tmp_path: Path) -> Path:
    """A read-write mount ``ws`` on a real directory, holding two files."""
    directory = tmp_path / "ws"
    (directory / "docs").mkdir(parents=True)
    (directory / "docs" / "notes.md").write_text("# notes\nrotate the keys\n")
    (directory / "secret.txt").write_text("not for agents\n")
    world.submit(ops.AddMount("ws", str(directory), "rw"))
    return directory


def header(pilot: Pilot) -> str:
    return console(pilot).query_one(StatusLine).render().plain


async def select_tool(pilot: Pilot, key: str) -> None:
    await press(pilot, "4")
    table = console(pilot).query_one("#tools", ResourceTable)
    table.move_cursor(row=table.get_row_index(key))
    await settle(pilot)


async def select_event(pilot: Pilot, seq: int) -> None:
    """Select event ``seq`` in the Events pane (from the newest: the events these tests
    look at are the world's last ones)."""
    await press(pilot, "2", "end")
    stream = console(pilot).query_one(EventStream)
    while (row := stream.selected()) is not None and row.seq > seq:
        await press(pilot, "up")
    assert stream.selected() is not None and stream.selected().seq == seq


def arg(pilot: Pilot, name: str) -> str:
    """The selector of the invoke form's field for argument ``name``."""
    form = pilot.app.screen
    assert isinstance(form, InvokeToolForm) and form.arg_fields is not None
    return f"#arg-{[f.name for f in form.arg_fields].index(name)}"


def fill(pilot: Pilot, selector: str, value: str) -> None:
    widget = pilot.app.screen.query_one(selector)
    if isinstance(widget, TextArea):
        widget.text = value
    elif isinstance(widget, Select):
        widget.value = value
    else:
        assert isinstance(widget, Input)
        widget.value = value


def detail_text(pilot: Pilot) -> str:
    screen = pilot.app.screen
    assert isinstance(screen, DetailScreen)
    return screen.detail.plain()


def result_text(pilot: Pilot) -> str:
    return str(pilot.app.screen.query_one("#result", Static).render())


# -- the Tools pane ----------------------------------------------------------------------


def test_every_side_effect_class_has_a_meaning_to_show():
    from toka.core.model.state import SIDE_EFFECTS

    assert set(CLASS_MEANING) == set(SIDE_EFFECTS)


def test_the_tools_pane_shows_each_tools_side_effect_class(effects: World):
    async def scenario(pilot: Pilot) -> None:
        rows = console(pilot).query_one("#tools", ResourceTable).row_data
        classes = {key: row.side_effect for key, row in rows.items()}
        assert classes["echo@1.0.0"] == "none"
        assert classes["fs-read@1.0.0"] == classes["fs-list@1.0.0"] == "read_only"
        assert classes["fs-write@1.0.0"] == "idempotent"
        assert classes["fs-write@1.0.1"] == classes["http-fetch@1.0.0"] == "external"
        assert classes["wordcount@1.0.0"] == "none"
        assert "side effect" in screen_text(pilot.app)  # the column's heading
        await select_tool(pilot, "fs-write@1.0.1")
        await press(pilot, "enter")
        assert "side effect    external: acts where a repeat is another act" in detail_text(pilot)

    drive(effects.app(), scenario)


# -- event details -----------------------------------------------------------------------


def test_an_ended_calls_event_detail_lists_each_effect(effects: World):
    async def scenario(pilot: Pilot) -> None:
        await select_event(pilot, 35)  # http-fetch GET ended: one exchange
        await press(pilot, "enter")
        shown = detail_text(pilot)
        for line in (
            "effects (1)",
            "1  net.fetched  GET https://api.example.com/v1/items",
            "status    200",
            "size      2048 B",
            'etag: "v7"',
            f"blobs/{'cd' * 32}",
        ):
            assert line in shown, line
        await press(pilot, "escape")
        await select_event(pilot, 33)  # fs-write ended: before and after
        await press(pilot, "enter")
        shown = detail_text(pilot)
        assert "1  fs.written  shared:out/report.md" in shown
        assert f"before   {'ab' * 32}" in shown and "changed  yes" in shown

    drive(effects.app(), scenario)


def test_an_intents_event_detail_shows_what_the_call_may_touch(effects: World):
    started = effects.runtime.log.record(37)
    assert started is not None and started.kind == "tool.started"
    intent = started.data()

    async def scenario(pilot: Pilot) -> None:
        await select_event(pilot, 37)
        await press(pilot, "enter")
        shown = detail_text(pilot)
        for line in (
            "call             iv-37",
            "class            external: acts where a repeat is another act",
            "may touch        fs.write:mount/shared/out/ledger.csv",
            f"args sha256      {intent.args_sha256}",  # type: ignore[attr-defined]
            f"idempotency key  {intent.idempotency_key}",  # type: ignore[attr-defined]
            "deadline         2026-01-01 01:00:32.000Z (32s after the intent)",
        ):
            assert line in shown, line

    drive(effects.app(), scenario)


def test_an_effect_record_shows_a_newline_in_a_path_as_an_escape():
    from toka.tui.effect_view import effects_text

    forged = {"effect": "fs.read", "mount": "m", "path": "a\n2  fs.written  m:b", "size": 1}
    text = effects_text([forged])
    assert text.splitlines()[0] == "1  fs.read  m:a\\n2  fs.written  m:b"
    assert len([line for line in text.splitlines() if "fs.written" in line]) == 1


# -- open calls ----------------------------------------------------------------------------


def test_calls_that_need_the_operator_are_counted_in_the_header(effects: World, world: World):
    async def waiting(pilot: Pilot) -> None:
        assert "2 calls need you" in header(pilot)  # one unknown, one interrupted

    async def none_waiting(pilot: Pilot) -> None:
        assert "need you" not in header(pilot)

    drive(effects.app(), waiting)
    drive(world.app(), none_waiting)


def test_show_open_calls_lists_each_with_its_standing(effects: World):
    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "c")
        shown = detail_text(pilot)
        assert "iv-37 · fs-write@1.0.1 · external · unknown" in shown
        assert "iv-38 · http-fetch@1.0.0 · external · interrupted" in shown
        assert "reason     the runner stopped (test)" in shown
        assert "may touch  net.http:POST/https/api.example.com/443/v1/orders" in shown

    drive(effects.app(), scenario)


def test_resolve_call_is_offered_only_while_a_call_waits_for_the_operator(
    effects: World, world: World
):
    offered: dict[str, bool] = {}

    def look(name: str):
        async def scenario(pilot: Pilot) -> None:
            names = [n for n, _, _ in ConsoleCommands(console(pilot))._available()]
            offered[name] = "Resolve call" in names

        return scenario

    drive(effects.app(), look("effects"))
    drive(world.app(), look("quiet"))
    assert offered == {"effects": True, "quiet": False}


def test_resolve_call_is_dimmed_for_a_token_without_tool_resolve(effects: World):
    scout = effects.agents["scout"]  # holds tool.invoke:tool/* but not tool.resolve
    app = make_app(effects.runtime, client=Client(effects.runtime, scout), follow=False)

    async def scenario(pilot: Pilot) -> None:
        assert console(pilot).check_action("resolve_call", ()) is None
        effects.submit(ops.GrantCapability(scout, ["tool.resolve:tool/fs-write"], 600))
        pilot.app.refresh_feed()  # type: ignore[attr-defined]
        await settle(pilot)
        assert console(pilot).check_action("resolve_call", ()) is True

    drive(app, scenario)


def operations(world: World) -> list[tuple[str, str, str]]:
    rows = world.runtime.log.conn.execute(
        "SELECT kind, principal, status FROM operations ORDER BY rowid"
    )
    return [tuple(r) for r in rows]


def test_an_unknown_call_is_resolved_through_the_palette_form(effects: World):
    before = len(operations(effects))
    toasts: list = []

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "ctrl+p", "type:resolve call", "enter")
        form = pilot.app.screen
        assert isinstance(form, ResolveCallForm)
        assert list(form.calls) == ["iv-37", "iv-38"]  # only calls that wait for the operator
        assert form.query_one("#call", Select).value == "iv-37"
        assert "the runner stopped (test)" in str(form.query_one("#call-about", Static).render())
        await press(pilot, "ctrl+s")  # no outcome picked: nothing is sent
        assert "say whether the call succeeded or failed" in str(
            form.query_one("#form-error", Static).render()
        )
        fill(pilot, "#outcome", "failed")
        fill(pilot, "#note", "the ledger has no line for it")
        await press(pilot, "ctrl+s")
        await settle(pilot)
        assert "1 call needs you" in header(pilot)  # the interrupted POST still waits
        toasts.extend(pilot.app._notifications)

    drive(effects.app(), scenario, notifications=True)
    assert operations(effects)[before:] == [("tool.resolve", "operator", "applied")]
    resolved = effects.runtime.log.query(kinds=["tool.resolved"])
    assert [(r.principal, r.data()) for r in resolved] == [
        (
            "operator",
            ev.ToolResolved(
                "iv-37", "fs-write", "1.0.1", "failed", "the ledger has no line for it"
            ),
        )
    ]
    assert [t.message for t in toasts] == [
        f"iv-37 (fs-write) resolved as failed at seq {resolved[0].seq}"
    ]
    assert "iv-37" not in effects.runtime.state.call_table()


def test_a_refused_resolution_toasts_the_kernels_reason(effects: World):
    toasts: list = []

    async def scenario(pilot: Pilot) -> None:
        await press(pilot, "ctrl+p", "type:resolve call", "enter")
        effects.submit(ops.ResolveCall("iv-37", "succeeded", "resolved elsewhere"))
        fill(pilot, "#outcome", "failed")
        await press(pilot, "ctrl+s")
        await settle(pilot)
        toasts.extend(pilot.app._notifications)

    drive(effects.app(), scenario, notifications=True)
    assert [(t.severity, t.title) for t in toasts] == [("error", "Resolve call: refused")]
    assert "no open call 'iv-37'" in toasts[0].message


# -- invoking the file tools ---------------------------------------------------------------


def test_the_invoke_form_reads_a_file_on_a_mount_and_shows_its_content(world: World, mounted: Path):
    async def scenario(pilot: Pilot) -> None:
        await select_tool(pilot, "fs-read@1.0.0")
        await press(pilot, "i")
        form = pilot.app.screen
        assert isinstance(form, InvokeToolForm)
        fill(pilot, arg(pilot, "mount"), "ws")
        fill(pilot, arg(pilot, "path"), "docs/notes.md")
        await press(pilot, "ctrl+s")
        await settle(pilot)
        shown = result_text(pilot)
        assert "fs-read@1.0.0 ok · call iv-" in shown
        assert "read ws:docs/notes.md (24 B)" in shown  # what it touched
        assert "content:\n# notes\nrotate the keys\n" in shown

    drive(world.app(), scenario)
    started, ended = world.runtime.log.query(kinds=["tool.started", "tool.succeeded"])[-2:]
    assert (started.kind, started.principal) == ("tool.started", "operator")
    assert ended.data().effects == [  # type: ignore[attr-defined]
        ev.FileRead("ws", "docs/notes.md", 24, ended.data().output["sha256"])  # type: ignore[attr-defined]
    ]


def test_the_invoke_form_shows_a_call_refused_outside_the_grant(world: World, mounted: Path):
    scout = world.agents["scout"]
    world.submit(
        ops.GrantCapability(scout, ["tool.invoke:tool/fs-read", "fs.read:mount/ws/docs/*"], 600)
    )
    app = make_app(world.runtime, client=Client(world.runtime, scout), follow=False)

    async def scenario(pilot: Pilot) -> None:
        await select_tool(pilot, "fs-read@1.0.0")
        await press(pilot, "i")
        fill(pilot, arg(pilot, "mount"), "ws")
        fill(pilot, arg(pilot, "path"), "secret.txt")
        await press(pilot, "ctrl+s")
        await settle(pilot)
        shown = result_text(pilot)
        assert shown.startswith("✗ refused: ")
        assert "does not cover" in shown and "fs.read:mount/ws/secret.txt" in shown

    drive(app, scenario)
    assert world.runtime.log.query(kinds=["tool.started"]) == []  # nothing was attempted


def test_the_invoke_form_writes_text_content_as_typed(world: World, mounted: Path):
    async def scenario(pilot: Pilot) -> None:
        await select_tool(pilot, "fs-write@1.0.0")
        await press(pilot, "i")
        form = pilot.app.screen
        assert isinstance(form, InvokeToolForm)
        assert [f.name for f in form.arg_fields or []][:3] == ["mount", "path", "content"]
        assert isinstance(form.query_one(arg(pilot, "content")), TextArea)  # string or list
        assert isinstance(form.query_one(arg(pilot, "encoding")), Select)  # an enum, no type
        fill(pilot, arg(pilot, "mount"), "ws")
        fill(pilot, arg(pilot, "path"), "out/report.md")
        fill(pilot, arg(pilot, "content"), "line one\nline two\n")
        await press(pilot, "ctrl+s")
        await settle(pilot)
        assert "fs-write@1.0.0 ok" in result_text(pilot)

    drive(world.app(), scenario)
    assert (mounted / "out" / "report.md").read_text() == "line one\nline two\n"


def test_the_invoke_form_takes_object_arguments_as_json(world: World):
    async def scenario(pilot: Pilot) -> None:
        await select_tool(pilot, "http-fetch@1.0.0")
        await press(pilot, "i")
        form = pilot.app.screen
        assert isinstance(form, InvokeToolForm)
        fill(pilot, arg(pilot, "url"), "https://example.com/a")
        fill(pilot, arg(pilot, "headers"), '["not", "an object"]')
        await press(pilot, "ctrl+s")
        assert "headers must be a JSON object" in str(
            form.query_one("#form-error", Static).render()
        )
        fill(pilot, arg(pilot, "headers"), '{"accept": "text/plain"}')
        fill(pilot, arg(pilot, "follow_redirects"), "2")
        assert form.collect() == InvokeRequest(
            "http-fetch",
            "1.0.0",
            {
                "url": "https://example.com/a",
                "headers": {"accept": "text/plain"},
                "follow_redirects": 2,
            },
        )

    drive(world.app(), scenario)
