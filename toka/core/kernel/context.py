"""What every rule needs: the operation's context, size limits, and lookups that refuse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from toka.core.errors import InvalidInput, InvalidOperation, NotFound
from toka.core.model.events import EventRecord
from toka.core.model.state import Agent, OpenCall, Task, WorldState
from toka.core.model.text import first_unprintable

MAX_NAME_BYTES = 256
MAX_DESCRIPTION_BYTES = 4096
MAX_OBSERVATION_BYTES = 1024 * 1024
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_RESULT_BYTES = 256 * 1024
MAX_OPEN_TASKS = 10_000
# Values nest at most this deep: deeper ones would recurse through every encoder, the
# state hash and the faces' printing (Python's limit is about 1000 frames).
MAX_JSON_DEPTH = 64
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


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (a scalar is 0); walked without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            break  # deep enough to refuse; no need to walk the rest
        stack.extend((child, depth + 1) for child in children)
    return deepest


# The integers the state's encoding (MessagePack) holds: a larger one would make every
# later state hash, checkpoint and snapshot fail.
MIN_INT, MAX_INT = -(2**63), 2**64 - 1


def value_problem(value: Any) -> str | None:
    """Why ``value`` cannot live in the log and the state, or None.

    A value is JSON (objects with string keys, arrays, strings, finite numbers, true,
    false, null) that nests at most MAX_JSON_DEPTH deep, whose integers fit in 64 bits
    and whose strings are valid Unicode. Walked without recursion."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, int):
            if not MIN_INT <= item <= MAX_INT:
                shown = str(item) if item.bit_length() < 200 else f"of {item.bit_length()} bits"
                return f"holds the integer {shown}, outside the 64 bits a value may use"
        elif isinstance(item, float):
            if item != item or item in (float("inf"), float("-inf")):
                return f"holds {item}, which is not a finite number"
        elif isinstance(item, str):
            if first_surrogate(item) is not None:
                return "holds a string that is not valid Unicode (a lone surrogate)"
        elif isinstance(item, (dict, list, tuple)):
            if depth >= MAX_JSON_DEPTH:
                return f"nests deeper than {MAX_JSON_DEPTH} levels"
            if isinstance(item, dict):
                if not all(isinstance(k, str) for k in item):
                    return "has an object key that is not a string"
                stack.extend((k, depth + 1) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
        else:
            return f"holds a {type(item).__name__}, which is not JSON"
    return None


def first_surrogate(text: str) -> int | None:
    for i, ch in enumerate(text):
        if "\ud800" <= ch <= "\udfff":
            return i
    return None


def check_text(label: str, value: str, limit: int, *, empty_ok: bool = False) -> None:
    try:
        size = len(value.encode())
    except UnicodeEncodeError as exc:
        raise InvalidOperation(
            f"{label} is not valid text: it holds a lone surrogate at character {exc.start}"
        ) from None
    if size > limit:
        raise InvalidOperation(f"{label} is {size} bytes, over the {limit} byte limit")
    if not empty_ok and not value.strip():
        raise InvalidOperation(f"{label} must not be empty")


def check_name(label: str, value: str, limit: int) -> None:
    """A name (of an agent, a behaviour, a runner): text that a terminal shows as it is."""
    bad = first_unprintable(value)
    if bad is not None:
        raise InvalidOperation(
            f"{label} must not hold control or other unprintable characters (it holds {bad})"
        )
    check_text(label, value, limit)


def check_json(label: str, value: Any, limit: int) -> None:
    problem = value_problem(value)
    if problem is not None:
        raise InvalidOperation(f"{label} {problem}")
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


def find_call(state: WorldState, call_id: str) -> OpenCall:
    call = state.call_table().get(call_id)
    if call is None:
        raise NotFound(f"no open call {call_id!r} (it ended, or never started)")
    return call


Decider = Callable[[WorldState, Any, Ctx], list[msgspec.Struct]]
Evolver = Callable[[WorldState, Any, EventRecord], None]
