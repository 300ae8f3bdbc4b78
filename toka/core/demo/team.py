"""A small team of agents, one per behaviour, with the grants and tasks to show them work.

``seed(client)`` is what a demo calls (``toka demo``, the console's demo scenario):
after it, a runner (``toka run``, or the console's own) has something of each kind to
do: an echo, a plan, a plan that is denied, a fan-out to children, a tool call that
waits for the operator's approval, and one that runs out of budget. An ``llm`` agent
joins only when a model endpoint is configured.
"""

from __future__ import annotations

from typing import Any

from toka.core import tools
from toka.core.agents.behaviours.llm import LlmConfig
from toka.core.errors import InvalidInput
from toka.core.model import events as ev
from toka.core.model.state import Budgets
from toka.core.runtime.client import Client

TTL_S = 24 * 3600
TEXT = "Toka agents act only through signed operations, and every one lands in the log."


def seed(client: Client) -> dict[str, Any]:
    """Spawn the team as ``client``'s principal.

    Returns ``{"agents": {name: agent id}, "tasks": {label: task id}}``."""
    tools.register_builtins(client)
    agents: dict[str, str] = {}
    tasks: dict[str, str] = {}

    def agent(name: str, behaviour: str, caps: list[str] | None = None, **grant) -> str:
        agent_id, _ = client.spawn_agent(name, behaviour)
        if caps:
            client.grant(agent_id, caps, TTL_S, **grant)
        agents[name] = agent_id
        return agent_id

    def task(label: str, agent_id: str, description: str, payload: Any = None) -> None:
        outcome = client.schedule(agent_id, description, payload)
        tasks[label] = outcome.first(ev.TaskScheduled).task

    herald = agent("herald", "echo")
    task("announce", herald, "announce: the demo has started")

    analyst = agent("analyst", "planner", ["tool.invoke:tool/echo", "tool.invoke:tool/wordcount"])
    task(
        "count-words",
        analyst,
        "count the words of the motto",
        {
            "steps": [
                {"tool": "echo", "args": {"text": TEXT}},
                {"tool": "wordcount", "args": {"text": "$prev.text"}},
            ]
        },
    )
    task(
        "denied-plan",
        analyst,
        "shout the motto (not granted)",
        {"steps": [{"tool": "upper", "args": {"text": TEXT}}]},
    )

    foreman = agent(
        "foreman",
        "supervisor",
        ["agent.spawn:behaviour/echo", "task.schedule:agent/*", "cap.grant:agent/*"],
    )
    task(
        "fan-out",
        foreman,
        "split the survey",
        {"fan_out": ["survey north", "survey south", "survey east"]},
    )

    cautious = agent("cautious", "planner", ["tool.invoke:tool/upper"], approve=True)
    task(
        "approval",
        cautious,
        "shout, once the operator agrees",
        {"steps": [{"tool": "upper", "args": {"text": "approved!"}}]},
    )

    frugal = agent(
        "frugal", "planner", ["tool.invoke:tool/echo"], budgets=Budgets(max_tool_calls=1)
    )
    task(
        "budget",
        frugal,
        "two calls on a one-call budget",
        {"steps": [{"tool": "echo", "args": {"n": 1}}, {"tool": "echo", "args": {"n": 2}}]},
    )

    try:
        LlmConfig.from_env()
    except InvalidInput:
        pass
    else:
        thinker = agent("thinker", "llm", ["tool.invoke:tool/wordcount"])
        task("llm", thinker, f"How many words are in this sentence? {TEXT}")
    return {"agents": agents, "tasks": tasks}
