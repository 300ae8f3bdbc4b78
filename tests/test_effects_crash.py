"""kill -9 between a call's intent and its outcome, for each side-effect class.

A host (runner or approver) is a real ``toka`` process whose ``calls.record`` kills it
with SIGKILL: the effect has happened in the world, its intent is in the log, its
outcome is not. What must hold after: a call safe to repeat (read_only, idempotent) is
run again by the next runner and recorded once, its effect once in the world; a call
not safe to repeat (external, privileged) is never run again: it becomes
``tool.unknown``, the task waits, and the operator resolves it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from http_support import serving
from toka_cli import run_toka

# Runs the real CLI, but the host dies (SIGKILL) right before it records an outcome.
DYING_HOST = """
import os, signal, sys
from toka.core.tools import calls
def _die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
calls.record = _die
from toka.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def dying_toka(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKA_")}
    env["TOKA_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-c", DYING_HOST, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def toka_json(home: Path, *args: str) -> dict:
    result = run_toka(*args, "--json", home=home)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def events(home: Path, kind: str) -> list[dict]:
    return toka_json(home, "events", "list", "--kind", kind, "--limit", "1000")["events"]


@pytest.fixture
def world(tmp_path: Path):
    """A home with a rw mount, a planner agent allowed to use it and a local server."""
    home, docs = tmp_path / "home", tmp_path / "ws"
    docs.mkdir()
    (docs / "in.md").write_text("hello\n")
    toka_json(home, "init")
    toka_json(home, "mount", "add", "ws", str(docs), "--mode", "rw")
    agent = toka_json(home, "agent", "spawn", "worker", "--behaviour", "planner")["id"]
    with serving() as server:
        toka_json(home, "net", "allow", f"127.0.0.1:{server.port}")
        caps = [
            "tool.invoke:tool/*",
            "fs.read:mount/ws/**",
            "fs.write:mount/ws/out/**",
            f"net.http:*/http/127.0.0.1/{server.port}/**",
        ]
        # Unattended: the agent's external calls (a POST) run without an approval.
        toka_json(home, "grant", "issue", agent, *caps, "--ttl", "1h", "--unattended")
        yield home, docs, agent, server


def schedule(home: Path, agent: str, *steps: dict) -> str:
    plan = json.dumps({"steps": list(steps)})
    return toka_json(home, "task", "schedule", agent, "crash", "--payload", plan)["task"]


def register(home: Path, directory: Path, name: str, side_effect: str, **limits: int) -> None:
    """A new version of a native built-in with its own class or limits."""
    lines = [
        f'name = "{name}"',
        'version = "1.0.1"',
        f'description = "{name} as {side_effect}"',
        'kind = "native"',
        f'side_effect = "{side_effect}"',
        "[limits]",
        *(f"{k} = {v}" for k, v in limits.items()),
    ]
    manifest = directory / f"{name}-{side_effect}.toml"
    manifest.write_text("\n".join(lines) + "\n")
    toka_json(home, "tool", "register", str(manifest))


def task_status(home: Path, task: str) -> dict:
    tasks = toka_json(home, "task", "list")["tasks"]
    return next(t for t in tasks if t["id"] == task)


def killed_after_the_effect(home: Path, *args: str) -> str:
    """Run a dying host; returns the one call it left open (intent, no outcome)."""
    dead = dying_toka(home, *args)
    assert dead.returncode == -9, dead.stderr
    started = events(home, "tool.started")
    assert started, "the intent must be in the log before the effect"
    call = started[-1]["payload"]["call"]
    assert [c["call"] for c in toka_json(home, "effects", "list")["calls"]] == [call]
    ended = events(home, "tool.succeeded") + events(home, "tool.failed")
    assert all(e["payload"].get("call") != call for e in ended)
    return call


def outcomes_of(home: Path, call: str) -> list[dict]:
    ended = events(home, "tool.succeeded") + events(home, "tool.failed")
    return [e for e in ended if e["payload"].get("call") == call]


def test_a_read_only_call_is_run_again_by_the_next_runner_and_recorded_once(world):
    home, _docs, agent, server = world
    task = schedule(
        home,
        agent,
        {"tool": "http-fetch", "args": {"url": server.url("/status"), "timeout_ms": 500}},
    )
    call = killed_after_the_effect(home, "run", "--until-idle", "--lease", "1")
    assert len(server.received) == 1
    toka_json(home, "run", "--until-idle", "--lease", "1")
    assert task_status(home, task)["status"] == "completed"
    (ended,) = outcomes_of(home, call)
    assert ended["kind"] == "tool.succeeded" and ended["principal"] == "kernel"
    assert len(server.received) == 2  # a read is safe to repeat: it was
    assert toka_json(home, "effects", "list")["calls"] == []


def test_an_idempotent_write_is_run_again_and_happens_once_in_effect(world, tmp_path):
    home, docs, agent, _server = world
    register(
        home,
        tmp_path,
        "fs-write",
        "idempotent",
        timeout_ms=500,
        max_output_bytes=65536,
        max_bytes=1024,
    )
    step = {
        "tool": "fs-write",
        "version": "1.0.1",
        "args": {"mount": "ws", "path": "out/r.md", "content": "v1"},
    }
    task = schedule(home, agent, step)
    call = killed_after_the_effect(home, "run", "--until-idle", "--lease", "1")
    written = docs / "out" / "r.md"
    assert written.read_text() == "v1"
    inode = written.stat().st_ino
    toka_json(home, "run", "--until-idle", "--lease", "1")
    assert task_status(home, task)["status"] == "completed"
    (ended,) = outcomes_of(home, call)
    (effect,) = ended["payload"]["effects"]
    # The second run found the bytes in place: nothing was written again.
    assert effect["effect"] == "fs.written" and effect["changed"] is False
    assert written.read_text() == "v1" and written.stat().st_ino == inode
    assert toka_json(home, "verify", "--blobs")["ok"]


def test_an_external_call_is_never_run_again_it_becomes_unknown_until_resolved(world):
    home, _docs, agent, server = world
    post = {"url": server.url("/orders"), "method": "POST", "body": "one order", "timeout_ms": 500}
    task = schedule(
        home, agent, {"tool": "http-fetch", "args": post}, {"tool": "echo", "args": "after"}
    )
    call = killed_after_the_effect(home, "run", "--until-idle", "--lease", "1")
    assert [r.method for r in server.received] == ["POST"]
    toka_json(home, "run", "--until-idle", "--lease", "1")
    assert len(server.received) == 1  # not sent again
    (unknown,) = events(home, "tool.unknown")
    assert unknown["payload"]["call"] == call and unknown["principal"] == "kernel"
    (open_call,) = toka_json(home, "effects", "list")["calls"]
    assert (open_call["call"], open_call["status"]) == (call, "unknown")
    assert task_status(home, task)["status"] in ("scheduled", "started")

    note = "the order arrived: seen in the shop's admin page"
    resolved = toka_json(home, "effects", "resolve", call, "--as", "succeeded", "--note", note)
    assert resolved["outcome"] == "succeeded"
    (record,) = events(home, "tool.resolved")
    assert record["principal"] == "operator" and record["payload"]["note"] == note
    toka_json(home, "run", "--until-idle", "--lease", "1")
    assert task_status(home, task)["status"] == "completed"
    assert len(server.received) == 1
    assert toka_json(home, "verify")["ok"] and toka_json(home, "replay", "--check")["ok"]


def test_a_privileged_call_waits_for_approval_and_an_interrupted_one_is_never_rerun(
    world, tmp_path
):
    home, _docs, agent, server = world
    register(
        home,
        tmp_path,
        "http-fetch",
        "privileged",
        timeout_ms=500,
        max_output_bytes=65536,
        max_bytes=65536,
    )
    args = {"url": server.url("/launch"), "method": "POST", "body": "go"}
    task = schedule(home, agent, {"tool": "http-fetch", "version": "1.0.1", "args": args})
    # The agent's grant has no approve flag: a privileged tool is held all the same.
    toka_json(home, "run", "--until-idle", "--lease", "1")
    (pending,) = toka_json(home, "approvals", "list")["approvals"]
    assert pending["op"] == "tool.invoke" and server.received == []
    call = killed_after_the_effect(home, "approvals", "approve", pending["id"])
    assert len(server.received) == 1
    toka_json(home, "run", "--until-idle", "--lease", "1")
    assert len(server.received) == 1
    assert [e["payload"]["call"] for e in events(home, "tool.unknown")] == [call]
    toka_json(home, "effects", "resolve", call, "--as", "failed", "--note", "launch aborted")
    toka_json(home, "run", "--until-idle", "--lease", "1")
    failed = task_status(home, task)
    assert failed["status"] == "failed" and "launch aborted" in failed["error"]
    assert len(server.received) == 1


def test_an_open_call_cannot_be_resolved_while_it_may_still_be_running(world):
    home, _docs, agent, server = world
    post = {"url": server.url("/slow"), "method": "POST", "timeout_ms": 30_000}
    schedule(home, agent, {"tool": "http-fetch", "args": post})
    call = killed_after_the_effect(home, "run", "--until-idle", "--lease", "1")
    refused = run_toka("effects", "resolve", call, "--as", "failed", home=home)
    assert refused.returncode == 4 and "may still be running" in refused.stderr
