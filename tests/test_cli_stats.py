"""``toka stats``: the event and refusal rates over a window, as text charts or counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from snapshots.world import BUSY_END_S, T1, busy_world
from toka_cli import run_toka

from toka.cli.stats_cmds import chart, default_bucket_s, merged, sparkline
from toka.core.activity import Window, count
from toka.core.runtime import Runtime
from toka.core.runtime.home import Home


@pytest.fixture
def refused_home(tmp_path: Path) -> Path:
    """A fresh home where an agent was refused once (spawning, with no grant to)."""
    home = tmp_path / "home"
    assert run_toka("init", home=home).returncode == 0
    spawned = run_toka("agent", "spawn", "scout", "--json", home=home)
    agent = json.loads(spawned.stdout)["id"]
    assert run_toka("--as", agent, "agent", "spawn", "rogue", home=home).returncode == 3
    return home


def log_size(home: Path) -> int:
    with Runtime(Home(home)) as runtime:
        return runtime.log.count()


def test_json_gives_the_bucketed_counts_and_totals(refused_home: Path):
    result = run_toka("stats", "--since", "1h", "--bucket", "1m", "--json", home=refused_home)
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert (stats["since_s"], stats["bucket_s"], len(stats["buckets"])) == (3600, 60, 60)
    assert stats["events"] == sum(b["events"] for b in stats["buckets"]) == log_size(refused_home)
    assert stats["refusals"] == sum(b["refusals"] for b in stats["buckets"]) == 1
    starts = [b["start_ms"] for b in stats["buckets"]]
    assert starts == list(range(stats["start_ms"], stats["end_ms"], 60_000))


def test_text_shows_both_charts_with_their_totals(refused_home: Path):
    result = run_toka("stats", "--since", "10m", home=refused_home, env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    header, events, refusals = result.stdout.splitlines()
    assert "60 buckets of 10s" in header
    assert events.startswith("events") and f"total {log_size(refused_home)}," in events
    assert refusals.startswith("refusals") and "total 1," in refusals
    assert len(events.split()[1]) == 60  # one mark per bucket
    assert set(events.split()[1]) <= set("▁▂▃▄▅▆▇█") and "█" in events


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--since", "soon"), "--since: invalid duration 'soon'"),
        (("--since", "0"), "--since: must be longer than 0s"),
        (("--since", "1h", "--bucket", "-5"), "--bucket: invalid duration '-5'"),
        (("--since", "1h", "--bucket", "2h"), "bucket cannot be longer than the window"),
        (("--since", "4w", "--bucket", "1s"), "2419200 buckets is too many"),
    ],
)
def test_bad_window_is_refused_with_exit_4(tmp_path: Path, args, says):
    result = run_toka("stats", *args, home=tmp_path / "home")
    assert result.returncode == 4
    assert result.stdout == ""
    assert result.stderr.startswith("toka: error: ") and says in result.stderr


def test_default_bucket_gives_at_most_60_nice_buckets():
    assert default_bucket_s(3600) == 60
    assert default_bucket_s(600) == 10
    assert default_bucket_s(86400) == 1800
    assert default_bucket_s(90) == 5  # 18 buckets: 1s would give 90


def test_sparkline_scales_from_zero_and_keeps_zero_apart():
    assert sparkline([0, 1, 2, 4, 8]) == "▁▂▃▅█"
    assert sparkline([1, 1000]) == "▂█"  # the least activity is still more than none
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([5, 5]) == "██"  # a steady rate is drawn full, not as nothing
    assert sparkline([]) == ""


def test_merged_sums_neighbouring_buckets():
    assert merged((1, 2, 3, 4, 5), 2) == [3, 7, 5]


def test_chart_of_the_busy_hour(tmp_path: Path):
    with closing(busy_world(tmp_path / "home")) as world:
        window = Window.ending_at(int((T1 + BUSY_END_S - 5) * 1000), 3_600_000, 60_000)
        found = count(world.runtime.log, window)
    lines = chart(found, 200).splitlines()
    assert lines[0] == ("from 2026-01-01 01:01:00Z to 2026-01-01 02:01:00Z, 60 buckets of 1m")
    assert lines[1].startswith("events    ") and f"total {found.total_events}, " in lines[1]
    assert lines[2] == (
        "refusals  " + sparkline(list(found.refusals)) + "  total 10, peak 1 per 1m"
    )


def test_chart_merges_buckets_to_fit_a_narrow_terminal(tmp_path: Path):
    with closing(busy_world(tmp_path / "home")) as world:
        window = Window.ending_at(int((T1 + BUSY_END_S - 5) * 1000), 3_600_000, 60_000)
        found = count(world.runtime.log, window)
    lines = chart(found, 60).splitlines()
    assert lines[0].endswith("(one mark: 3 buckets)")
    assert len(lines[1].split()[1]) == len(lines[2].split()[1]) == 20
    peak = max(merged(found.events, 3))
    assert peak > max(found.events) and lines[1].endswith(f"peak {peak} per 3m")


def test_stats_never_loads_textual(refused_home: Path):
    probe = (
        "import sys; from toka.cli.main import main; rc = main(['stats']); "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'textual'); "
        "print('LOADED', loaded, file=sys.stderr); raise SystemExit(rc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env={**os.environ, "TOKA_HOME": str(refused_home)},
    )
    assert result.returncode == 0, result.stderr
    assert "events" in result.stdout
    assert result.stderr.strip().endswith("LOADED []")
