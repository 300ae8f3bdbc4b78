"""Helpers shared by the event-log tests (tests/test_log_*.py)."""

from __future__ import annotations

import json
from pathlib import Path

import apsw
from toka_cli import run_toka

from toka.core.model import events as ev
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.runtime.home import Home


def make_home(root: Path, checkpoint_interval: int = 10, snapshot_every: int = 1) -> Home:
    home = Home(root)
    home.init()
    home.config_path.write_text(
        f"checkpoint_interval = {checkpoint_interval}\nsnapshot_every = {snapshot_every}\n"
    )
    return home


def populate(home: Home, tasks: int = 20) -> dict[str, str]:
    """Some realistic history: two agents, tasks scheduled and completed, observations,
    a revoked grant. Returns the agent ids."""
    with Runtime(home) as rt:
        operator = Client(rt)
        worker, _ = operator.spawn_agent("worker", "echo")
        helper, _ = operator.spawn_agent("helper", "manual")
        as_worker = Client(rt, worker)
        for i in range(tasks):
            task = operator.schedule(worker, f"task {i}", {"i": i}).first(ev.TaskScheduled)
            if i % 2 == 0:
                as_worker.complete(task.task, {"done": i})
            as_worker.observe(worker, {"step": i, "note": "working"})
        grant = operator.grant(helper, [f"observation.emit:agent/{worker}"], 3600)
        operator.revoke(grant.first(ev.CapabilityGranted).jti, "no longer needed")
    return {"worker": worker, "helper": helper}


def toka_json(*args: str, home: Path, expect: int = 0) -> dict:
    result = run_toka(*args, "--json", home=home)
    assert result.returncode == expect, result.stderr
    return json.loads(result.stdout)


def tamper(home: Home, sql: str, args: tuple = ()) -> None:
    """Change the database behind the runtime's back, as an attacker with file access."""
    conn = apsw.Connection(str(home.db_path))
    try:
        conn.execute(sql, args)
    finally:
        conn.close()


def scalar(home: Home, sql: str, args: tuple = ()):
    conn = apsw.Connection(str(home.db_path))
    try:
        return conn.execute(sql, args).fetchone()[0]
    finally:
        conn.close()
