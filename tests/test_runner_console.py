"""The console drives agents with the runner in a worker thread, and says so in its header."""

from __future__ import annotations

import asyncio

import pytest

from toka.core.model import events as ev
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client


@pytest.mark.parametrize("run_agents", [True, False])
def test_the_console_runs_the_agent_runner_unless_told_not_to(runtime: Runtime, run_agents):
    from toka.tui.app import make_app

    agent, _ = Client(runtime).spawn_agent("e", "echo")
    task = Client(runtime).schedule(agent, "from the console").first(ev.TaskScheduled).task
    app = make_app(runtime, home_label="~/toka", run_agents=run_agents)
    seen: list[str] = []

    async def drive() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in range(300 if run_agents else 25):
                await pilot.pause(0.02)
                seen.append(app.runner)
                runtime.catch_up()
                if run_agents and runtime.state.tasks[task].status == "completed":
                    break
            if run_agents:
                for _ in range(100):  # the header settles on idle once the work is done
                    if app.runner == "idle":
                        break
                    await pilot.pause(0.02)
                seen.append(app.runner)

    asyncio.run(drive())
    if run_agents:
        assert runtime.state.tasks[task].result == "from the console"
        assert seen[-1] == "idle"
    else:
        assert runtime.state.tasks[task].status == "scheduled"
        assert set(seen) == {"off"}
