"""The peer workload's model for ``toka bench kernel --vs-eventsourcing``: an agent
aggregate and an application on the ``eventsourcing`` library. Imported only by
``toka.core.bench.peer``, after it has checked that the library is installed (the
aggregate's class must live at module level: the library stores its topic)."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event


class BenchAgent(Aggregate):
    """An agent, as Toka's spawn creates one; its scheduled tasks, as events."""

    @event("Spawned")
    def __init__(self, name: str) -> None:
        self.name = name
        self.tasks: list[str] = []

    @event("TaskScheduled")
    def schedule(self, description: str) -> None:
        self.tasks.append(description)


class BenchApp(Application):
    """Two commands, each one durable commit (``save``), with no authentication."""

    def spawn(self, name: str) -> UUID:
        agent = BenchAgent(name)
        self.save(agent)
        return agent.id

    def schedule(self, agent_id: UUID, description: str) -> None:
        agent: BenchAgent = self.repository.get(agent_id)
        agent.schedule(description)
        self.save(agent)
