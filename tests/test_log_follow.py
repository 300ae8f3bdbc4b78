"""Following the log across processes: LogFollower and ``toka events tail -f``."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from log_support import make_home

from toka.core.errors import HomeError
from toka.core.log.follow import LogFollower
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.runtime.home import Home

pytestmark = pytest.mark.stores


@pytest.fixture
def home(tmp_path) -> Home:
    return make_home(tmp_path / "home", checkpoint_interval=1000)


@pytest.fixture
def rt(home):
    with Runtime(home) as runtime:
        yield runtime


def after_commit(follower: LogFollower, store_backend: str) -> list:
    """What ``follower`` reads once a commit has returned. SQLite's data_version shows
    the commit to the very next poll; PostgreSQL's notification reaches the follower's
    connection asynchronously, an instant later (at worst the head check a second on)."""
    if store_backend == "sqlite":
        return follower.poll()
    return follower.wait(5)


def toka_env(home: Home) -> dict[str, str]:
    """The environment of a `toka` subprocess on ``home``: no TOKA_ variable of this
    process but the log's backend (TOKA_STORE, TOKA_STORE_SCHEMA, set for PostgreSQL)."""
    keep = ("TOKA_STORE", "TOKA_STORE_SCHEMA")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKA_") or k in keep}
    env["TOKA_HOME"] = str(home.root)
    return env


def test_follower_returns_new_events_once_in_order(home, rt, store_backend):
    operator = Client(rt)
    with LogFollower(home, after_seq=rt.state.seq) as follower:
        assert follower.poll() == []
        agent, spawned = operator.spawn_agent("followed")
        observed = operator.observe(agent, {"n": 1})
        got = after_commit(follower, store_backend)
        assert [r.seq for r in got] == list(range(spawned.first_seq, observed.last_seq + 1))
        assert follower.poll() == []
        assert follower.position == observed.last_seq


def test_an_idle_poll_does_not_query_the_events(home, rt, monkeypatch, store_backend):
    with LogFollower(home) as follower:
        follower.poll()
        reads: list[int] = []
        store_class = type(follower.log)  # SqliteStore or PostgresStore
        original = store_class.records

        def spy(self, *args, **kwargs):
            reads.append(1)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(store_class, "records", spy)
        # (PostgreSQL's data_version also reads the head once a second, by design: one
        # index lookup, never the events themselves.)
        for _ in range(5):
            assert follower.poll() == []
        assert reads == []
        Client(rt).spawn_agent("wakes it")
        assert len(after_commit(follower, store_backend)) == 2
        assert reads


def test_follower_filters_by_kind_principal_agent_and_text(home, rt):
    operator = Client(rt)
    alpha, _ = operator.spawn_agent("alpha")
    beta, _ = operator.spawn_agent("beta")
    start = rt.state.seq
    operator.schedule(alpha, "for alpha")
    Client(rt, alpha).observe(alpha, {"mood": "curious"})
    Client(rt, beta).observe(beta, {"mood": "sleepy"})
    operator.schedule(beta, "for beta")

    def kinds(**filters) -> list[tuple[str, str]]:
        with LogFollower(home, after_seq=start, **filters) as f:
            return [(r.kind, r.principal) for r in f.poll()]

    assert kinds(kinds=["task.*"]) == [
        ("task.scheduled", "operator"),
        ("task.scheduled", "operator"),
    ]
    assert kinds(kinds=["observation.emitted"], principal=beta) == [("observation.emitted", beta)]
    assert kinds(agent=alpha) == [("task.scheduled", "operator"), ("observation.emitted", alpha)]
    assert kinds(text="sleepy") == [("observation.emitted", beta)]


def test_follower_skips_filtered_events_for_good(home, rt, store_backend):
    operator = Client(rt)
    agent, _ = operator.spawn_agent("skipper")
    with LogFollower(home, after_seq=rt.state.seq, kinds=["task.scheduled"]) as f:
        operator.observe(agent, "ignored")
        assert f.poll() == []
        scheduled = operator.schedule(agent, "wanted")
        assert [r.seq for r in after_commit(f, store_backend)] == [scheduled.first_seq]


def test_follower_pages_through_a_large_backlog(home, rt):
    operator = Client(rt)
    agent, _ = operator.spawn_agent("bulk")
    from toka.core.model import ops

    rt.submit_many([operator.sign(ops.EmitObservation(agent, i)) for i in range(250)])
    with LogFollower(home, batch=100) as f:
        assert [r.seq for r in f.poll()] == list(range(1, rt.state.seq + 1))


def _lines(stream, sink: queue.Queue) -> None:
    for line in stream:
        sink.put(line)


def test_events_tail_follow_shows_an_event_written_by_another_process(home, rt):
    operator = Client(rt)
    agent, _ = operator.spawn_agent("tailed")
    env = toka_env(home)
    proc = subprocess.Popen(
        [sys.executable, "-m", "toka", "events", "tail", "-f", "--json", "-n", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    try:
        # The last existing event comes first: the follower is running after that.
        assert json.loads(lines.get(timeout=30))["seq"] == rt.state.seq
        outcome = operator.observe(agent, {"hello": "from the test process"})
        event = json.loads(lines.get(timeout=10))
        assert event["seq"] == outcome.first_seq
        assert event["payload"]["data"] == {"hello": "from the test process"}
    finally:
        proc.kill()
        proc.wait(10)


def test_events_tail_follow_applies_filters(home, rt):
    operator = Client(rt)
    agent, _ = operator.spawn_agent("picky")
    before = operator.schedule(agent, "already there")
    env = toka_env(home)
    proc = subprocess.Popen(
        [sys.executable, "-m", "toka", "events", "tail", "-f", "--json", "--kind", "task.*"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    try:
        assert json.loads(lines.get(timeout=30))["seq"] == before.first_seq
        operator.observe(agent, "not a task event")
        scheduled = operator.schedule(agent, "a task event")
        assert json.loads(lines.get(timeout=10))["seq"] == scheduled.first_seq
        with pytest.raises(queue.Empty):
            lines.get(timeout=0.3)
    finally:
        proc.kill()
        proc.wait(10)


def test_following_a_missing_log_says_so(tmp_path, store_backend):
    # SQLite: the path of a file that is not there; PostgreSQL: the test's fresh schema,
    # where no home was ever made.
    if store_backend == "sqlite":
        missing: Home | Path = tmp_path / "nowhere" / "toka.db"
    else:
        missing = Home(tmp_path / "nowhere")
    with pytest.raises(HomeError, match="no Toka log"):
        LogFollower(missing)
