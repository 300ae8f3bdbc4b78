"""Runner processes: killed mid-task, racing each other, stopped with Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import msgspec
import pytest
from toka_cli import run_toka

from toka.core.model import events as ev
from toka.core.runtime import Runtime
from toka.core.runtime.home import Home

pytestmark = pytest.mark.stores

WAIT_S = 60


def toka_json(home: Path, *args: str) -> dict:
    done = run_toka(*args, "--json", home=home)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def start_runner(home: Path, *args: str) -> subprocess.Popen:
    # No TOKA_ variable of this process but the log's backend (set for PostgreSQL).
    keep = ("TOKA_STORE", "TOKA_STORE_SCHEMA")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKA_") or k in keep}
    env["TOKA_HOME"] = str(home)
    return subprocess.Popen(
        [sys.executable, "-m", "toka", "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for(rt: Runtime, condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        rt.catch_up()
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"gave up waiting for {what}")


def payloads(rt: Runtime, kind: str) -> list[dict]:
    return [
        {"principal": r.principal, **msgspec.json.decode(r.payload)}
        for r in rt.log.query(kinds=[kind], limit=100_000)
    ]


def test_a_runner_killed_mid_task_is_replaced_and_no_step_runs_twice(tmp_path: Path):
    home = tmp_path / "home"
    toka_json(home, "init")
    agent = toka_json(home, "agent", "spawn", "steady", "--behaviour", "planner")["id"]
    toka_json(home, "grant", "issue", agent, "tool.invoke:tool/echo")
    plan = {"steps": [{"tool": "echo", "args": {"i": i}} for i in (1, 2, 3)]}
    task = toka_json(home, "task", "schedule", agent, "three", "--payload", json.dumps(plan))[
        "task"
    ]

    with Runtime(Home(home)) as rt:
        # The pace opens a wide window between steps; the kill lands after step 1.
        doomed = start_runner(home, "--pace", "1.5", "--lease", "2s", "--runner-id", "runner-a")
        try:
            wait_for(rt, lambda: payloads(rt, "tool.succeeded"), "the first step")
        finally:
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(WAIT_S)
        rt.catch_up()
        assert rt.state.tasks[task].status == "started"
        assert rt.state.tasks[task].runner == "runner-a"

        heir = run_toka(
            "run", "--until-idle", "--lease", "2s", "--runner-id", "runner-b", home=home
        )
        assert heir.returncode == 0, heir.stderr
        rt.catch_up()
        t = rt.state.tasks[task]
        assert (t.status, t.result) == ("completed", [{"i": 1}, {"i": 2}, {"i": 3}])
        ran = [p["output"] for p in payloads(rt, "tool.succeeded") if p["task"] == task]
        assert ran == [{"i": 1}, {"i": 2}, {"i": 3}]  # each side effect exactly once
        assert [p["task"] for p in payloads(rt, "task.completed")] == [task]
        runners = [p["runner"] for p in payloads(rt, "task.started")]
        assert runners[0] == "runner-a" and runners[-1] == "runner-b"
        assert rt.replay_check()["ok"] is True
    assert toka_json(home, "verify")["ok"] is True


def test_several_runner_processes_never_run_a_task_twice(tmp_path: Path):
    home = tmp_path / "home"
    toka_json(home, "init")
    agents = [
        toka_json(home, "agent", "spawn", f"echo-{n}", "--behaviour", "echo")["id"]
        for n in range(2)
    ]
    with Runtime(Home(home)) as rt:
        from toka.core.runtime.client import Client

        operator = Client(rt)
        scheduled = {
            operator.schedule(agents[i % 2], f"job {i}").first(ev.TaskScheduled).task: i
            for i in range(30)
        }
        runners = [
            start_runner(home, "--until-idle", "--runner-id", f"runner-{n}", "--json")
            for n in range(3)
        ]
        finished_by: list[str] = []
        for p in runners:
            out, err = p.communicate(timeout=WAIT_S)
            assert p.returncode == 0, err
            finished_by += [f["task"] for f in json.loads(out)["finished"]]
        assert sorted(finished_by) == sorted(scheduled)  # each task by exactly one runner
        rt.catch_up()
        completed = Counter(p["task"] for p in payloads(rt, "task.completed"))
        assert completed == Counter(dict.fromkeys(scheduled, 1))
        for task_id, i in scheduled.items():
            t = rt.state.tasks[task_id]
            assert t.result == f"job {i}"
        by_agent = {p["task"]: p["principal"] for p in payloads(rt, "task.completed")}
        assert all(by_agent[t] == rt.state.tasks[t].agent for t in scheduled)
        assert rt.replay_check()["ok"] is True
    assert toka_json(home, "verify")["ok"] is True


def test_toka_run_follows_the_log_until_interrupted(tmp_path: Path):
    home = tmp_path / "home"
    toka_json(home, "init")
    agent = toka_json(home, "agent", "spawn", "e", "--behaviour", "echo")["id"]
    runner = start_runner(home)
    try:
        task = toka_json(home, "task", "schedule", agent, "late arrival")["task"]
        with Runtime(Home(home)) as rt:
            wait_for(rt, lambda: rt.state.tasks[task].status == "completed", "the task")
    finally:
        runner.send_signal(signal.SIGINT)
        out, err = runner.communicate(timeout=WAIT_S)
    assert runner.returncode == 0, err
    assert f"{task} completed by {agent}: late arrival" in out
