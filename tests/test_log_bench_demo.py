"""``toka bench kernel|replay`` report their figures; ``toka demo`` seeds a sound log."""

from __future__ import annotations

import pytest
from log_support import make_home, run_toka, toka_json

from toka.cli.main import build_parser
from toka.core.runtime import Runtime
from toka.core.runtime.home import Home


@pytest.fixture
def home(tmp_path) -> Home:
    return make_home(tmp_path / "home", checkpoint_interval=25)


def test_bench_kernel_reports_single_and_concurrent_figures(tmp_path):
    data = toka_json("bench", "kernel", "--ops", "200", "--window", "3", home=tmp_path / "unused")
    assert data["durability"] == "full"
    assert data["ops"] == 200 and data["submitters"] == 4 and data["window"] == 3
    for prefix in ("", "sync_", "single_"):
        for key in ("ops_per_s", "p50_ms", "p99_ms"):
            assert data[prefix + key] > 0, prefix + key
        assert data[prefix + "p99_ms"] >= data[prefix + "p50_ms"]
    assert data["single_ops"] == 200
    assert not (tmp_path / "unused").exists()  # a scratch home, never the user's


def test_bench_replay_reports_replay_against_a_raw_scan(tmp_path):
    data = toka_json("bench", "replay", "--events", "2000", home=tmp_path / "unused")
    assert data["events"] >= 2000
    assert data["events_per_s"] > 0 and data["raw_scan_rows_per_s"] > 0
    assert data["ratio"] == pytest.approx(
        data["events_per_s"] / data["raw_scan_rows_per_s"], rel=0.01
    )


def test_bench_verify_times_the_default_and_the_quick_check(tmp_path):
    data = toka_json("bench", "verify", "--events", "500", home=tmp_path / "unused")
    assert data["events"] >= 500
    assert set(data["seconds"]) == {"default", "quick", "default_signatures", "quick_signatures"}
    assert all(s >= 0 for s in data["seconds"].values())
    assert run_toka("bench", "verify", "--events", "3", home=tmp_path).returncode == 4


def test_bench_defaults_are_the_real_sizes():
    parser = build_parser()
    assert parser.parse_args(["bench", "kernel"]).ops == 20_000
    assert parser.parse_args(["bench", "kernel"]).submitters == 4
    assert parser.parse_args(["bench", "kernel"]).window == 8
    assert parser.parse_args(["bench", "replay"]).events == 200_000
    assert parser.parse_args(["bench", "verify"]).events == 200_000


def test_bench_rejects_nonsense_sizes(tmp_path):
    result = run_toka("bench", "kernel", "--ops", "2", "--submitters", "4", home=tmp_path)
    assert result.returncode == 4
    assert "--ops" in result.stderr
    result = run_toka("bench", "kernel", "--ops", "20", "--window", "0", home=tmp_path)
    assert result.returncode == 4
    assert "--window" in result.stderr


def test_bench_tool_rejects_nonsense_sizes(tmp_path):
    for args in (["--calls", "0"], ["--warmup", "-1"]):
        result = run_toka("bench", "tool", *args, home=tmp_path / "unused")
        assert result.returncode == 4
        assert "--calls must be at least 1 and --warmup at least 0" in result.stderr
    assert not (tmp_path / "unused").exists()


def test_demo_seeds_the_scenario(home):
    summary = toka_json("demo", home=home.root)
    with Runtime(home) as rt:
        st = rt.state
        roles = summary["agents"]
        assert {st.agents[a].behaviour for a in roles.values()} == {
            "planner",
            "supervisor",
            "echo",
        }
        assert st.agents[roles["scratch"]].status == "paused"
        assert st.agents[roles["echo"]].status == "running"
        budget = st.grants[summary["grants"]["planner_budget"]]
        assert budget.budgets.max_ops == 50 and budget.usage.ops > 0
        assert st.grants[summary["grants"]["revoked"]].revoked
        statuses = {st.tasks[t].status for t in summary["tasks"].values()}
        assert statuses == {"completed", "failed", "scheduled"}
        assert st.agents[roles["echo"]].observations >= 2
        kinds = {r.kind for r in rt.log.query(limit=1000)}
        assert {"agent.paused", "agent.resumed", "capability.revoked"} <= kinds


def test_demo_twice_adds_a_second_batch_and_the_log_stays_sound(home):
    first = toka_json("demo", home=home.root)
    second = toka_json("demo", home=home.root)
    assert second["first_seq"] == first["last_seq"] + 1
    assert set(first["agents"].values()).isdisjoint(second["agents"].values())
    assert toka_json("verify", "--signatures", home=home.root)["checkpoints"] >= 2
    assert toka_json("replay", "--check", home=home.root)["ok"] is True


def test_demo_load_streams_paced_operations(home):
    data = toka_json("demo", "--load", "200", "--seconds", "1", home=home.root)
    assert data["sent"] == 200 and data["applied"] == 200 and data["refused"] == 0
    assert data["achieved_rate"] > 0
    with Runtime(home) as rt:
        kinds = {r.kind for r in rt.log.query(after=data["first_seq"] - 1, limit=10_000)}
        assert {"task.scheduled", "task.completed", "observation.emitted"} <= kinds
    assert toka_json("verify", home=home.root)["ok"] is True


def test_demo_load_rejects_a_non_positive_rate(home):
    result = run_toka("demo", "--load", "0", home=home.root)
    assert result.returncode == 4
    assert "positive" in result.stderr


def test_demo_seconds_without_load_is_refused(home):
    before = toka_json("state", home=home.root)["seq"]
    result = run_toka("demo", "--seconds", "3", home=home.root)
    assert result.returncode == 4
    assert "--load" in result.stderr
    assert toka_json("state", home=home.root)["seq"] == before
