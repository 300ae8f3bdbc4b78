"""``echo``: completes each task with its description."""

from __future__ import annotations

from toka.core.agents.steps import TaskRun


class Echo:
    name = "echo"
    summary = "completes each task with its description"

    def check_ready(self) -> None:
        return None

    def run(self, task: TaskRun) -> None:
        task.complete(task.description)
