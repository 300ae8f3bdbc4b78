"""Behaviours: what drives an agent. One module per behaviour; the registry is by name.

A behaviour decides, for one task at a time, what its agent does; it acts only
through the steps of a :class:`toka.core.agents.steps.TaskRun`, so every decision is a
signed Operation in the log and a crashed runner's work is replayed, not redone.
A behaviour must decide the same way when its steps are replayed: it reads the task,
the step results and the world state, never the clock or randomness.

``manual`` agents are driven by nobody: a person (or another program) completes
their tasks, e.g. ``toka --as AGENT task complete``.
"""

from __future__ import annotations

from typing import Protocol

from toka.core.agents.steps import TaskRun
from toka.core.errors import InvalidInput

MANUAL = "manual"


class Behaviour(Protocol):
    name: str
    summary: str

    def check_ready(self) -> None:
        """Raise InvalidInput if this behaviour cannot run here (missing configuration)."""

    def run(self, task: TaskRun) -> None:
        """Advance ``task``: end with ``task.complete``/``task.fail``, or ``task.wait``."""


def drivers() -> dict[str, Behaviour]:
    """Every behaviour a runner can drive, by name."""
    from toka.core.agents.behaviours.echo import Echo
    from toka.core.agents.behaviours.llm import Llm
    from toka.core.agents.behaviours.planner import Planner
    from toka.core.agents.behaviours.supervisor import Supervisor

    return {b.name: b for b in (Echo(), Planner(), Supervisor(), Llm())}


def names() -> list[str]:
    return [MANUAL, *sorted(drivers())]


def check_spawnable(name: str) -> None:
    """Refuse to spawn an agent whose behaviour is unknown or cannot run here."""
    if name == MANUAL:
        return
    behaviour = drivers().get(name)
    if behaviour is None:
        raise InvalidInput(f"unknown behaviour {name!r} (known: {', '.join(names())})")
    behaviour.check_ready()
