"""Several processes writing one store at once: all succeed, one linear history."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import pytest
from toka_cli import run_toka

from toka.core.runtime import Runtime
from toka.core.runtime.home import Home

# The writers inherit this process's environment, so on PostgreSQL they share the
# test's schema (TOKA_STORE, TOKA_STORE_SCHEMA).
pytestmark = pytest.mark.stores

WRITER = textwrap.dedent(
    """
    import sys
    from toka.core.runtime.client import Client
    from toka.core.runtime.home import Home
    from toka.core.runtime import Runtime

    rt = Runtime(Home(sys.argv[1]))
    client = Client(rt)
    agent, _ = client.spawn_agent(f"writer-{sys.argv[2]}")
    for i in range(int(sys.argv[3])):
        client.schedule(agent, f"task {i} from writer {sys.argv[2]}")
        client.observe(agent, {"writer": sys.argv[2], "i": i})
    print(agent)
    """
)


def test_concurrent_processes_append_one_linear_history(home):
    writers, per_writer = 4, 25
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(home.root), str(n), str(per_writer)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(writers)
    ]
    agents = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        agents.append(out.strip())

    rt = Runtime(home)
    try:
        records = list(rt.log.records())
        assert [r.seq for r in records] == list(range(1, len(records) + 1))
        for prev, cur in itertools.pairwise(records):
            assert cur.prev_hash == prev.hash
        assert len(records) == 2 + writers * (2 + 2 * per_writer)
        for agent in agents:
            assert rt.state.agents[agent].open_tasks == per_writer
        assert rt.verify()["ok"]
        assert rt.replay_check()["ok"]
    finally:
        rt.close()
    assert run_toka("verify", home=home.root).returncode == 0


def test_runtime_catches_up_with_writes_from_another_process(home):
    rt = Runtime(Home(home.root))
    try:
        seen = []
        rt.subscribe(seen.extend)
        result = subprocess.run(
            [sys.executable, "-c", WRITER, str(home.root), "x", "1"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        new = rt.catch_up()
        assert [r.kind for r in new] == [
            "agent.spawned",
            "capability.granted",
            "task.scheduled",
            "observation.emitted",
        ]
        assert seen == new
        assert result.stdout.strip() in rt.state.agents
    finally:
        rt.close()
