"""The demo team: one agent per behaviour, each showing its behaviour under the runner."""

from __future__ import annotations

from toka.core import approvals
from toka.core.agents.runner import Runner
from toka.core.demo import team as showcase
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client


def test_the_showcase_team_shows_every_behaviour_at_work(runtime: Runtime):
    seeded = showcase.seed(Client(runtime))
    assert "thinker" not in seeded["agents"]  # no model endpoint configured here
    Runner(runtime).run(until_idle=True)
    tasks = {label: runtime.state.tasks[t] for label, t in seeded["tasks"].items()}
    assert {label: t.status for label, t in tasks.items()} == {
        "announce": "completed",
        "count-words": "completed",
        "denied-plan": "failed",
        "fan-out": "completed",
        "approval": "started",
        "budget": "failed",
    }
    assert tasks["count-words"].result[1]["words"] == len(showcase.TEXT.split())
    assert tasks["denied-plan"].error.startswith("step 1 (upper): denied: ")
    assert "budget: " in tasks["budget"].error
    assert len(tasks["fan-out"].result) == 3
    [waiting] = approvals.pending(runtime.state)
    assert waiting.principal == seeded["agents"]["cautious"]
    approvals.approve(Client(runtime), waiting.id)
    Runner(runtime).run(until_idle=True)
    assert runtime.state.tasks[seeded["tasks"]["approval"]].result == [{"text": "APPROVED!"}]
    assert runtime.replay_check()["ok"] is True
