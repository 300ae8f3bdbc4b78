"""``toka bench cli`` times the real read-only commands in fresh processes."""

from __future__ import annotations

import json

from toka_cli import run_toka

from toka.core.bench.cli import parse_importtime

LABELS = {
    "python -c pass",
    "toka --version",
    "toka agent list",
    "toka task list",
    "toka events list --limit 50",
}


def test_bench_cli_times_each_command_on_a_built_home(tmp_path):
    result = run_toka(
        "bench", "cli", "--events", "200", "--runs", "1", "--json", home=tmp_path / "unused"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["events"] >= 200
    assert data["runs"] == 1
    assert set(data["commands"]) == LABELS
    for figures in data["commands"].values():
        assert figures["exit_codes"] == [0]
        assert figures["median_ms"] > 0 and figures["min_ms"] > 0
    assert set(data["breakdown_ms"]) == {
        "interpreter_start",
        "cli_import_and_parser",
        "agent_list_beyond_version",
    }
    imports = data["importtime"]
    assert imports["exit_code"] == 0
    assert 0 < len(imports["top_cumulative"]) <= 10
    assert any(m["module"].startswith("toka") for m in imports["top_cumulative"])
    assert not (tmp_path / "unused").exists()


def test_bench_cli_rejects_nonsense_sizes(tmp_path):
    for args in (("--events", "9"), ("--runs", "0")):
        result = run_toka("bench", "cli", *args, home=tmp_path / "unused")
        assert result.returncode == 4, result.stderr
        assert "must be at least" in result.stderr


def test_importtime_parsing_takes_the_top_cumulative():
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       100 |        100 |   child\n"
        "import time:       300 |        400 | parent\n"
        "import time:        50 |         50 | other\n"
        "some other line\n"
    )
    top = parse_importtime(stderr, top=2)
    assert [m["module"] for m in top] == ["parent", "child"]
    assert top[0]["cumulative_ms"] == 0.4 and top[1]["depth"] == 1
