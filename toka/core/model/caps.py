"""Capabilities: ``action:resource`` patterns with ``*`` globs, and the narrowing rule."""

from __future__ import annotations

import re
from functools import lru_cache

from toka.core.errors import InvalidInput

ACTIONS = (
    "agent.spawn",
    "agent.pause",
    "agent.resume",
    "agent.terminate",
    "task.schedule",
    "task.start",
    "task.complete",
    "task.fail",
    "observation.emit",
    "tool.register",
    "tool.invoke",
    "cap.grant",
    "cap.revoke",
    "op.approve",
)
ROOT = "*:*"
MAX_CAPS = 100
MAX_CAP_LEN = 256
_CAP_CHARS = re.compile(r"^[A-Za-z0-9_.*\-]+:[A-Za-z0-9_.*/@\-]+\Z")


def parse(pattern: str) -> tuple[str, str]:
    """Split and validate a capability pattern; only ``*`` is a wildcard."""
    if not isinstance(pattern, str) or len(pattern) > MAX_CAP_LEN or not _CAP_CHARS.match(pattern):
        raise InvalidInput(
            f"invalid capability {pattern!r}: expected ACTION:RESOURCE "
            "(letters, digits, . _ - / @ and * globs)"
        )
    action, resource = pattern.split(":", 1)
    if "*" not in action and action not in ACTIONS:
        raise InvalidInput(
            f"invalid capability {pattern!r}: unknown action {action!r} "
            f"(known: {', '.join(ACTIONS)})"
        )
    return action, resource


def validate(patterns: list[str]) -> list[str]:
    if not patterns:
        raise InvalidInput("a grant needs at least one capability")
    if len(patterns) > MAX_CAPS:
        raise InvalidInput(f"too many capabilities: {len(patterns)} > {MAX_CAPS}")
    for p in patterns:
        parse(p)
    return list(dict.fromkeys(patterns))


@lru_cache(maxsize=4096)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(part) for part in pattern.split("*")) + r"\Z")


def matches(pattern: str, required: str) -> bool:
    """Does ``pattern`` cover the concrete or pattern capability ``required``?

    ``required`` is read literally, so a ``*`` in it must be absorbed by a ``*`` of
    ``pattern``: that makes this also the sound test for pattern-in-pattern narrowing.
    """
    if pattern in (ROOT, required):
        return True
    return _regex(pattern).match(required) is not None


def covers(granted: list[str], required: str) -> bool:
    return any(matches(p, required) for p in granted)


def uncovered(granted: list[str], wanted: list[str]) -> list[str]:
    """The capabilities in ``wanted`` that ``granted`` does not cover."""
    return [w for w in wanted if not covers(granted, w)]
