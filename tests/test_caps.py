"""Capability patterns: matching, and the narrowing rule delegation relies on."""

import pytest

from toka.core.errors import InvalidInput
from toka.core.model import caps


@pytest.mark.parametrize(
    ("pattern", "required", "expected"),
    [
        ("*:*", "task.schedule:agent/ag-1", True),
        ("task.schedule:agent/*", "task.schedule:agent/ag-1", True),
        ("task.schedule:agent/ag-1", "task.schedule:agent/ag-2", False),
        ("task.*:agent/ag-1", "task.fail:agent/ag-1", True),
        ("task.*:agent/ag-1", "agent.pause:agent/ag-1", False),
        ("tool.invoke:tool/echo", "tool.invoke:tool/echo2", False),
    ],
)
def test_pattern_matching(pattern, required, expected):
    assert caps.matches(pattern, required) is expected


def test_narrower_pattern_is_covered_by_wider_one():
    assert caps.covers(["task.schedule:agent/*"], "task.schedule:agent/ag-*")
    assert caps.covers(["*:*"], "task.*:*")


def test_wider_pattern_is_not_covered_by_narrower_one():
    assert not caps.covers(["task.schedule:agent/ag-1"], "task.schedule:agent/*")
    assert not caps.covers(["task.schedule:*"], "task.*:*")
    assert caps.uncovered(["task.schedule:*"], ["task.schedule:x", "agent.pause:x"]) == [
        "agent.pause:x"
    ]


@pytest.mark.parametrize(
    "bad", ["", "nocolon", "task.schedule:", "frobnicate:x", "task.schedule:a b", "a?:b", "x" * 300]
)
def test_malformed_capabilities_are_refused(bad):
    with pytest.raises(InvalidInput):
        caps.validate([bad])


def test_a_grant_needs_a_capability():
    with pytest.raises(InvalidInput):
        caps.validate([])
