"""The console's parts that need no screen: stylesheet lookup, filters, rows, permissions,
the feed, and how ``toka tui`` starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from snapshots.world import World

from toka.core.errors import TokaError
from toka.core.model import ops
from toka.core.model.events import EventRecord
from toka.core.model.state import Tool, WorldState
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.tui import tool_view, view
from toka.tui.event_filter import EventFilter
from toka.tui.feed import Feed
from toka.tui.host import ConsoleHost
from toka.tui.permissions import Permissions
from toka.tui.stylesheet import stylesheet_path
from toka.tui.view import TableDiff

# -- the stylesheet ----------------------------------------------------------------------


def make_package(root: Path, name: str, *, with_sheet: bool) -> None:
    package = root / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    if with_sheet:
        (package / "styles").mkdir()
        (package / "styles" / "app.tcss").write_text("/* packaged */")


def test_stylesheet_is_found_inside_an_installed_package(tmp_path, monkeypatch):
    make_package(tmp_path / "site", "wheelpkg", with_sheet=True)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    found = stylesheet_path("wheelpkg", tmp_path / "repo-styles")
    assert found == tmp_path / "site" / "wheelpkg" / "styles" / "app.tcss"


def test_stylesheet_falls_back_to_the_repository_for_an_editable_install(tmp_path, monkeypatch):
    make_package(tmp_path / "site", "editablepkg", with_sheet=False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    (tmp_path / "styles").mkdir()
    (tmp_path / "styles" / "app.tcss").write_text("/* repo */")
    assert stylesheet_path("editablepkg", tmp_path / "styles") == tmp_path / "styles" / "app.tcss"


def test_a_missing_stylesheet_is_a_clear_error(tmp_path, monkeypatch):
    make_package(tmp_path / "site", "barepkg", with_sheet=False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(TokaError, match="stylesheet is missing"):
        stylesheet_path("barepkg", tmp_path / "nowhere")


def test_this_checkout_finds_the_repository_stylesheet():
    assert stylesheet_path().read_text().startswith("/* Toka operator console")


# -- filters -----------------------------------------------------------------------------


def record(kind: str, principal: str, payload: bytes, seq: int = 1) -> EventRecord:
    return EventRecord(seq, 0, kind, principal, None, "d", 0, payload, "p", "h")


def test_filter_reads_keys_and_keeps_other_words_as_text():
    f = EventFilter.parse("kind:task kind:tool.failed agent:ag-1 principal:operator disk full")
    assert f.kinds == ("task.*", "tool.failed")
    assert (f.agent, f.principal, f.text) == ("ag-1", "operator", "disk full")
    assert EventFilter.parse("url:http://x") == EventFilter(text="url:http://x")
    assert not EventFilter.parse("   ")


def test_filter_matches_kind_prefixes_principal_agent_and_payload_text():
    f = EventFilter.parse("kind:task agent:ag-1")
    assert f.matches(record("task.scheduled", "operator", b'{"agent":"ag-1"}'))
    assert f.matches(record("task.completed", "ag-1", b"{}"))
    assert not f.matches(record("taskforce.x", "ag-1", b"{}"))
    assert not f.matches(record("task.scheduled", "operator", b'{"agent":"ag-2"}'))
    assert EventFilter.parse("full").matches(record("x.y", "a", b'"disk full"'))
    assert not EventFilter.parse("Full").matches(record("x.y", "a", b'"disk full"'))


# -- rows --------------------------------------------------------------------------------


def test_sizes_and_spans_are_short_and_exact():
    assert [view.span(s) for s in (5, 59 * 60, 3 * 3600, 12 * 86400, 9 * 365 * 86400)] == [
        "5s",
        "59m",
        "3h",
        "12d",
        "9y",
    ]
    assert tool_view.limits_text(
        {"fuel": 100_000_000, "memory_mb": 16, "timeout_ms": 1500, "max_output_bytes": 65536}
    ) == ("fuel 100M · 16 MiB · 1500 ms · out 64 KiB")


def test_rows_show_status_budget_use_and_grant_expiry(world: World):
    state = world.runtime.state
    now_s = int(world.runtime.clock())
    agents = view.agent_rows(state, now_s)
    scout, archivist, courier = (world.agents[n] for n in ("scout", "archivist", "courier"))
    assert agents[scout][3:] == ("running", "1", "ops 1/500 calls 0/40")
    assert agents[archivist][3] == "paused"
    assert agents[courier][3:] == ("terminated", "0", "-")
    grants = view.grant_rows(state, now_s)
    assert grants["gr-22"][3:] == ("2h", "gr-2", "active")
    assert grants["gr-16"][5] == "revoked"
    assert grants["gr-23"][3] == "30m"
    assert view.grant_rows(state, now_s + 1800)["gr-23"][3:] == ("-", "gr-22", "expired")


def test_event_detail_names_the_signer_token_and_hashes(world: World):
    rec = world.runtime.log.record(23)
    assert rec is not None
    detail = view.event_detail(world.runtime.state, rec)
    fields = dict(detail.fields)
    assert fields["signer"].startswith(world.agents["scout"])
    assert fields["token"] == "gr-22"
    assert fields["hash"] == rec.hash and fields["prev hash"] == rec.prev_hash
    assert '"jti": "gr-23"' in detail.sections[0][1]


def test_tool_detail_lists_versions_oldest_first_by_number_not_by_text():
    def tool(version: str) -> Tool:
        return Tool("count", version, "counts", "wasm", None, [], {}, None, "operator", 0)

    newer, older = tool("1.10.0"), tool("1.9.0")
    state = WorldState(tools={"count": {"1.10.0": newer, "1.9.0": older}})
    fields = dict(tool_view.tool_detail(state, older, None, 0).fields)
    assert fields["versions"] == "1.9.0 1.10.0"


# -- permissions -------------------------------------------------------------------------


def test_permissions_mirror_the_kernels_required_capabilities(world: World):
    state = world.runtime.state
    now_s = int(world.runtime.clock())
    scout, archivist = world.agents["scout"], world.agents["archivist"]
    root = Permissions.of(state, "operator", now_s)
    assert root.allows(ops.PauseAgent(scout)) and root.allows_action("cap.grant")
    agent = Permissions.of(state, scout, now_s)
    assert agent.allows(ops.InvokeTool("wordcount"))
    assert agent.allows(ops.RevokeCapability("gr-23"))  # delegated by scout itself
    assert not agent.allows(ops.PauseAgent(archivist))
    assert not agent.allows(ops.SpawnAgent("x", "k"))
    assert not agent.allows(ops.RevokeCapability("gr-2"))
    assert (
        Permissions.of(state, world.agents["courier"], now_s).allows_action("agent.spawn") is False
    )


# -- the feed ----------------------------------------------------------------------------


def test_the_feed_sends_only_what_changed(world: World):
    # the feed owns its runtime: writes through another one are what it follows
    feed = Feed(Runtime(world.home, clock=world.runtime.clock), "operator", buffer=10)
    try:
        first = feed.start()
        assert first.reset_events and [e.seq for e in first.events] == list(range(19, 29))
        assert len(first.agents.upserts) == 3 and not first.agents.removed
        assert feed.poll() is None
        Client(world.runtime).observe(world.agents["scout"], "ping")
        batch = feed.poll()
        assert batch is not None and [e.kind for e in batch.events] == ["observation.emitted"]
        assert [k for k, _ in batch.agents.upserts] == []  # observations are not a column
        assert not batch.grants.removed
    finally:
        feed.close()


def test_table_diffs_list_changed_and_removed_rows():
    diff = TableDiff.between({"a": ("1",), "b": ("2",)}, {"a": ("1",), "b": ("3",), "c": ("4",)})
    assert diff.upserts == [("b", ("3",)), ("c", ("4",))] and diff.removed == []
    assert TableDiff.between({"a": ("1",)}, {}).removed == ["a"]


def test_the_app_provides_every_service_its_screens_use(world: World):
    app = world.app()
    members = [*ConsoleHost.__annotations__]
    members += [n for n, v in vars(ConsoleHost).items() if callable(v) and not n.startswith("_")]
    assert "show_past" in members
    assert [m for m in members if not hasattr(app, m)] == []


# -- starting ----------------------------------------------------------------------------


def test_headless_commands_do_not_import_textual():
    code = (
        "import sys; from toka.cli.main import build_parser; build_parser(); "
        "print('textual' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_tui_needs_a_terminal(tmp_path):
    from toka_cli import run_toka

    done = run_toka("tui", home=tmp_path / "home")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "toka: error: toka tui needs a terminal; for scripts use the headless commands"
    )
    assert not (tmp_path / "home").exists()


def test_tui_on_a_new_home_initializes_it_like_init(tmp_path, monkeypatch):
    from toka.cli.main import main
    from toka.core.runtime.home import Home
    from toka.tui.app import TokaConsole

    started: list[TokaConsole] = []
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(TokaConsole, "run", lambda self: started.append(self))
    assert main(["--home", str(tmp_path / "home"), "tui", "--no-runner"]) == 0
    assert len(started) == 1 and started[0].run_agents is False
    assert "Created a new Toka home" in (started[0].greeting or "")
    assert started[0].demo is not None  # the palette offers "Load demo scenario"
    assert main(["--home", str(tmp_path / "home"), "tui"]) == 0
    assert started[1].run_agents is True and started[1].greeting is None
    with Runtime(Home(tmp_path / "home")) as rt:
        assert {"echo", "wordcount"} <= set(rt.state.tools)


def test_rows_loaded_into_an_empty_stream_show_the_newest_row():
    # The console lays its Events pane out empty, then loads the log into it: with no
    # rows there was nothing to scroll, and until the next layout the pane still says
    # so. The view must end on the newest row (the cursor's), not at the top of the
    # log with the cursor off screen.
    import asyncio

    from textual.app import App, ComposeResult

    from toka.tui.widgets import EventStream

    rows = [view.EventRow(i, "00:00:00", "observation.emitted", "ag", f"#{i}") for i in range(500)]

    class Holder(App):
        def compose(self) -> ComposeResult:
            yield EventStream(capacity=1000)

    async def scroll_after_load() -> tuple[int, float, int]:
        async with Holder().run_test(size=(80, 20)) as pilot:
            await pilot.pause()  # laid out, empty
            stream = pilot.app.query_one(EventStream)
            stream.replace(rows)
            await pilot.pause()
            return stream.cursor, stream.scroll_y, stream.max_scroll_y

    cursor, scroll_y, bottom = asyncio.run(scroll_after_load())
    assert cursor == 499
    assert bottom > 0 and scroll_y == bottom
