"""What every rule needs: the operation's context, size limits, and lookups that refuse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from toka.core.errors import InvalidInput, InvalidOperation, NotFound
from toka.core.model.events import EventRecord
from toka.core.model.state import Agent, Task, WorldState

MAX_NAME_BYTES = 256
MAX_DESCRIPTION_BYTES = 4096
MAX_OBSERVATION_BYTES = 1024 * 1024
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_RESULT_BYTES = 256 * 1024
MAX_OPEN_TASKS = 10_000
MAX_TTL_S = 10 * 365 * 24 * 3600
MAX_LEASE_S = 3600
KERNEL = "kernel"
OPERATOR = "operator"
BASE_ACTIONS = ("task.start", "task.complete", "task.fail", "observation.emit")

_json = msgspec.json.Encoder(order="sorted")


class Ctx(msgspec.Struct, frozen=True):
    """What the runtime knows about one operation: log position, time, who, under which grant."""

    seq: int
    ts: int
    principal: str
    grant: str | None
    op_digest: str
    outcome: Any = None
    # The signed operation's canonical JSON (what an approval queue holds), and, when an
    # approved operation is being applied, the approval that released it.
    signed: bytes = b""
    approval: str | None = None
    # When approving: the held operation's signed JSON, read from the log by the runtime
    # (the state keeps only its digest).
    held: bytes = b""
    # Tool arguments checked against input schemas before the write lock, by tool
    # (name@version): None when they pass, else the refusal. None when nothing was
    # checked beforehand (a re-decision): the rule checks them itself.
    checked: dict[str, str | None] | None = None


def _json_size(value: Any) -> int:
    try:
        return len(_json.encode(value))
    except (TypeError, msgspec.EncodeError) as exc:
        raise InvalidInput(f"value is not JSON-encodable: {exc}") from exc


def check_text(label: str, value: str, limit: int, *, empty_ok: bool = False) -> None:
    size = len(value.encode())
    if size > limit:
        raise InvalidOperation(f"{label} is {size} bytes, over the {limit} byte limit")
    if not empty_ok and not value.strip():
        raise InvalidOperation(f"{label} must not be empty")


def check_json(label: str, value: Any, limit: int) -> None:
    size = _json_size(value)
    if size > limit:
        raise InvalidOperation(f"{label} is {size} bytes, over the {limit} byte limit")


def subject_resource(state: WorldState, subject: str) -> str:
    return f"agent/{subject}" if subject in state.agents else f"principal/{subject}"


def find_agent(state: WorldState, agent_id: str) -> Agent:
    agent = state.agents.get(agent_id)
    if agent is None:
        raise NotFound(f"unknown agent {agent_id!r}")
    return agent


def find_task(state: WorldState, task_id: str) -> Task:
    task = state.tasks.get(task_id)
    if task is None:
        raise NotFound(f"unknown task {task_id!r}")
    return task


Decider = Callable[[WorldState, Any, Ctx], list[msgspec.Struct]]
Evolver = Callable[[WorldState, Any, EventRecord], None]
