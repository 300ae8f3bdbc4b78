"""Capabilities: ``action:resource`` patterns with segment-aware globs, and the narrowing rule.

The glob rules, which ``matches`` decides:

- In the action, ``*`` matches any run of characters (actions hold no ``:`` or ``/``).
- A resource that is exactly ``*`` matches any resource at all.
- Otherwise a resource is ``/``-separated segments. A ``*`` inside a segment matches any
  run of characters within that one segment and never crosses ``/``. A final segment that
  is exactly ``**`` matches zero or more further segments: ``mount/ws/**`` covers
  ``mount/ws`` itself and everything below it.

So ``net.http:GET/https/*.github.com/443/**`` does not cover
``net.http:GET/https/evil.example/443/x.github.com/443/y``, and ``fs.read:mount/ws/docs*``
does not cover ``fs.read:mount/ws/docs-private/x``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

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
    "tool.resolve",
    "cap.grant",
    "cap.revoke",
    "op.approve",
    "fs.read",
    "fs.write",
    "fs.list",
    "fs.mount",
    "net.http",
    "net.allow",
    "secret.use",
    "mcp.register",
)
ROOT = "*:*"
ANY_RESOURCE = "*"
REST = "**"
MAX_CAPS = 100
MAX_CAP_LEN = 256
_CAP_CHARS = re.compile(r"^[A-Za-z0-9_.*\-]+:[A-Za-z0-9_.*/@%~\-]+\Z")
# A percent sign that does not start a canonical escape: places.encode_segment only ever
# writes uppercase hex, so a pattern holding ``%2a`` could never match anything.
_BAD_ESCAPE = re.compile(r"%(?![0-9A-F]{2})")
# Never matches: what a pattern without ``:`` compiles to (no valid grant holds one).
_NOTHING = re.compile(r"(?!)")


class _Compiled(NamedTuple):
    """A pattern ready for matching; cached, because matching runs on every operation."""

    action: re.Pattern[str]
    whole: re.Pattern[str]
    any_resource: bool
    open_end: bool


def parse(pattern: str) -> tuple[str, str]:
    """Split and validate a capability pattern into ``(action, resource)``.

    Guarantees for a pattern it returns: a known action (or one with ``*``), resource
    characters from ``A-Z a-z 0-9 _ . - / @ % ~ *``, every ``%`` followed by two uppercase
    hex digits, no empty segment, and ``**`` only as the whole last segment.
    """
    if not isinstance(pattern, str) or len(pattern) > MAX_CAP_LEN or not _CAP_CHARS.match(pattern):
        raise InvalidInput(
            f"invalid capability {pattern!r}: expected ACTION:RESOURCE "
            "(letters, digits, . _ - / @ % ~ and * globs)"
        )
    action, resource = pattern.split(":", 1)
    if "*" not in action and action not in ACTIONS:
        raise InvalidInput(
            f"invalid capability {pattern!r}: unknown action {action!r} "
            f"(known: {', '.join(ACTIONS)})"
        )
    if _BAD_ESCAPE.search(resource):
        raise InvalidInput(
            f"invalid capability {pattern!r}: '%' must start an escape of two uppercase "
            "hex digits (like %20)"
        )
    if resource == ANY_RESOURCE:
        return action, resource
    segments = resource.split("/")
    if "" in segments:
        raise InvalidInput(
            f"invalid capability {pattern!r}: empty path segment "
            "(no leading, trailing or doubled '/')"
        )
    if any(REST in segment for segment in segments[:-1]) or (
        REST in segments[-1] and segments[-1] != REST
    ):
        raise InvalidInput(
            f"invalid capability {pattern!r}: '**' may only be the whole last segment "
            "(like mount/ws/**)"
        )
    return action, resource


def validate(patterns: list[str]) -> list[str]:
    """The patterns, checked with ``parse`` and deduplicated in order; at least one."""
    if not patterns:
        raise InvalidInput("a grant needs at least one capability")
    if len(patterns) > MAX_CAPS:
        raise InvalidInput(f"too many capabilities: {len(patterns)} > {MAX_CAPS}")
    for p in patterns:
        parse(p)
    return list(dict.fromkeys(patterns))


def _glob(text: str, star: str) -> str:
    return star.join(re.escape(part) for part in text.split("*"))


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> _Compiled:
    # Any string is compiled, valid or not: grants recorded under older, looser rules
    # still have to be matched. A malformed ``**`` compiles to two in-segment stars,
    # which is narrower than any reading of it, so never a widening.
    action, sep, resource = pattern.partition(":")
    action_re = re.compile(_glob(action, "[^:]*"))
    if not sep:
        return _Compiled(_NOTHING, _NOTHING, any_resource=False, open_end=False)
    any_resource = resource == ANY_RESOURCE
    segments = resource.split("/")
    open_end = not any_resource and segments[-1] == REST
    if any_resource or resource == REST:
        resource_re = ".*"
    else:
        fixed = segments[:-1] if open_end else segments
        resource_re = "/".join(_glob(s, "[^/]*") for s in fixed)
        if open_end:
            resource_re += "(?:/.*)?"
    whole = re.compile(f"{action_re.pattern}:{resource_re}", re.DOTALL)
    return _Compiled(action_re, whole, any_resource, open_end)


def matches(pattern: str, required: str) -> bool:
    """Does ``pattern`` cover the concrete or pattern capability ``required``?

    Sound for pattern-in-pattern narrowing: if ``matches(P, C)`` then every concrete
    capability ``C`` covers is covered by ``P``. ``required`` is read as a pattern (its
    wildcards widen it, never narrow it): each ``*`` in it must be absorbed by a ``*`` of
    ``pattern`` in the same segment, its trailing ``/**`` only by a trailing ``/**`` of
    ``pattern``, and its lone ``*`` resource only by a lone ``*`` resource.
    """
    if pattern in (ROOT, required):
        return True
    compiled = _compile(pattern)
    if compiled.any_resource:
        return compiled.whole.fullmatch(required) is not None
    action, sep, resource = required.partition(":")
    if not sep or resource == ANY_RESOURCE:
        return False
    if resource == REST or resource.endswith("/" + REST):
        if not compiled.open_end:
            return False
        # Both end open: the pattern's fixed segments must cover a prefix of the
        # required's fixed segments, and its open end then absorbs the rest.
        required = f"{action}:{resource[: -len(REST) - 1] if resource != REST else ''}"
    return compiled.whole.fullmatch(required) is not None


def action_matches(pattern: str, action: str) -> bool:
    """Does the action part of capability ``pattern`` name ``action`` (on some resource)?"""
    return _compile(pattern).action.fullmatch(action) is not None


def covers(granted: list[str], required: str) -> bool:
    """Does one of the ``granted`` patterns cover ``required`` (see ``matches``)?"""
    return any(matches(p, required) for p in granted)


def uncovered(granted: list[str], wanted: list[str]) -> list[str]:
    """The capabilities in ``wanted`` that ``granted`` does not cover."""
    return [w for w in wanted if not covers(granted, w)]
