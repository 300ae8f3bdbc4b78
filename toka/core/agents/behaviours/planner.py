"""``planner``: runs a plan of tool calls, in order, as its agent.

The task payload is the plan::

    {"steps": [{"tool": "echo", "args": {"text": "hi"}},
               {"tool": "wordcount", "args": {"text": "$prev.text"}}]}

Each step is a ``tool.invoke`` by the agent (so its grants decide what it may run).
An argument value that is a string starting with ``$`` refers to an earlier output:

- ``$prev`` is the previous step's output, ``$steps.N`` the output of step ``N``
  (counting from 1);
- a path may follow: ``$prev.count``, ``$steps.1.items.0`` (object keys, list indexes);
- ``$$`` starts a literal string that begins with ``$``.

References may sit anywhere inside the arguments (nested objects and lists); only a
whole string value is replaced. The task completes with the list of every step's
output as the log records it (what a file read or a fetch returned is named there by
its blob, so the result stays small), or fails at the first step that cannot run,
naming it: a refused capability fails with ``denied: ...``, a tool failure with its
kind (``timeout``, ``trap``, ``refused``, ...).

A plan that reads a file, fetches a URL and writes a report (``fs-write`` joins a list
of strings)::

    {"steps": [{"tool": "fs-read", "args": {"mount": "ws", "path": "docs/notes.md"}},
               {"tool": "http-fetch", "args": {"url": "http://127.0.0.1:8765/status.json"}},
               {"tool": "fs-write", "args": {"mount": "ws", "path": "out/report.md",
                "content": ["# Report\n", "$steps.1.content", "$steps.2.body"]}}]}
"""

from __future__ import annotations

from typing import Any

import msgspec

from toka.core.agents.steps import TaskRun
from toka.core.errors import Denied, TokaError

MAX_STEPS = 100


class PlanStep(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tool: str
    args: Any = None
    version: str | None = None


class Plan(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    steps: list[PlanStep]


class PlanError(ValueError):
    """A plan that cannot run as written."""


def parse_plan(payload: Any) -> Plan:
    try:
        plan = msgspec.convert(payload, Plan)
    except msgspec.ValidationError as exc:
        raise PlanError(
            f'{exc} (expected {{"steps": [{{"tool": NAME, "args": ...}}, ...]}})'
        ) from None
    if not 1 <= len(plan.steps) <= MAX_STEPS:
        raise PlanError(f"a plan has 1 to {MAX_STEPS} steps, not {len(plan.steps)}")
    return plan


def resolve(value: Any, outputs: list[Any]) -> Any:
    """``value`` with every ``$prev``/``$steps.N`` reference replaced by that output."""
    if isinstance(value, dict):
        return {k: resolve(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, outputs) for v in value]
    if not isinstance(value, str) or not value.startswith("$"):
        return value
    if value.startswith("$$"):
        return value[1:]
    head, *path = value[1:].split(".")
    if head == "prev":
        if not outputs:
            raise PlanError(f"{value}: there is no previous step")
        current, where = outputs[-1], "$prev"
    elif head == "steps":
        if not path or not path[0].isdigit() or not 1 <= int(path[0]) <= len(outputs):
            raise PlanError(f"{value}: $steps.N must name an earlier step (1 to {len(outputs)})")
        current, where = outputs[int(path[0]) - 1], f"$steps.{path[0]}"
        path = path[1:]
    else:
        raise PlanError(f"{value}: unknown reference (use $prev, $steps.N, or $$ for a literal $)")
    for key in path:
        if isinstance(current, dict) and key in current:
            current = current[key]
        elif isinstance(current, list) and key.isdigit() and int(key) < len(current):
            current = current[int(key)]
        else:
            raise PlanError(f"{value}: {where} has no {key!r}")
        where += f".{key}"
    return current


class Planner:
    name = "planner"
    summary = "runs the plan in its task payload: tool calls in order, $prev feeds the next"

    def check_ready(self) -> None:
        return None

    def run(self, task: TaskRun) -> None:
        try:
            plan = parse_plan(task.payload)
        except PlanError as exc:
            task.fail(f"invalid plan: {exc}")
        outputs: list[Any] = []
        recorded: list[Any] = []
        for n, step in enumerate(plan.steps, start=1):
            label = f"step {n} ({step.tool})"
            try:
                args = resolve(step.args, outputs)
            except PlanError as exc:
                task.fail(f"{label}: {exc}")
            try:
                result = task.invoke(step.tool, args, version=step.version)
            except Denied as exc:
                task.fail(f"{label}: denied: {exc.message}")
            except TokaError as exc:
                task.fail(f"{label}: {exc.reason}")
            if not result.ok:
                error = result.error
                assert error is not None
                task.fail(f"{label} failed: {error.kind}: {error.message}")
            outputs.append(result.output)
            recorded.append(result.recorded)
        task.complete(recorded)
