"""Capability patterns: matching, and the narrowing rule delegation relies on."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# Segment-aware globs: ``*`` stays inside one segment, a final ``**`` takes the rest.


def test_star_in_a_host_segment_does_not_reach_into_the_path():
    grant = "net.http:GET/https/*.github.com/443/*"
    assert caps.matches(grant, "net.http:GET/https/api.github.com/443/repos")
    assert not caps.matches(grant, "net.http:GET/https/evil.example/443/x.github.com/443/y")


def test_star_at_the_end_of_a_name_does_not_reach_a_sibling_directory():
    grant = "fs.read:mount/ws/docs*"
    assert caps.matches(grant, "fs.read:mount/ws/docs-private")
    assert not caps.matches(grant, "fs.read:mount/ws/docs-private/x")


@pytest.mark.parametrize(
    ("pattern", "required", "expected"),
    [
        ("fs.read:mount/ws/*", "fs.read:mount/ws/a", True),
        ("fs.read:mount/ws/*", "fs.read:mount/ws/a/b", False),
        ("fs.read:mount/ws/*", "fs.read:mount/ws", False),
        ("fs.read:mount/*/docs", "fs.read:mount/ws/docs", True),
        ("fs.read:mount/*/docs", "fs.read:mount/ws/x/docs", False),
        ("fs.read:mount/ws/a*b", "fs.read:mount/ws/ab", True),
        ("fs.read:mount/ws/a*b", "fs.read:mount/ws/axxb", True),
        ("fs.read:mount/ws/a*b", "fs.read:mount/ws/a/b", False),
        ("fs.read:mount/ws/a*b", "fs.read:mount/ws/axxbc", False),
        ("fs.read:mount/ws/a*b", "fs.read:mount/ws/ca-b", False),
    ],
)
def test_star_matches_within_one_segment(pattern, required, expected):
    assert caps.matches(pattern, required) is expected


@pytest.mark.parametrize(
    ("pattern", "required", "expected"),
    [
        ("fs.read:mount/ws/**", "fs.read:mount/ws", True),
        ("fs.read:mount/ws/**", "fs.read:mount/ws/a", True),
        ("fs.read:mount/ws/**", "fs.read:mount/ws/a/b/c", True),
        ("fs.read:mount/ws/**", "fs.read:mount/wsx", False),
        ("fs.read:mount/ws/**", "fs.read:mount/wsx/a", False),
        ("fs.read:mount/ws/**", "fs.read:mount", False),
        ("fs.read:mount/*/**", "fs.read:mount/ws/a", True),
        ("fs.read:mount/*/**", "fs.read:mount", False),
        ("fs.read:**", "fs.read:mount/ws/a", True),
    ],
)
def test_final_double_star_matches_zero_or_more_segments(pattern, required, expected):
    assert caps.matches(pattern, required) is expected


def test_lone_star_resource_matches_any_resource():
    assert caps.matches("agent.spawn:*", "agent.spawn:behaviour/echo")
    assert caps.matches("tool.invoke:*", "tool.invoke:tool/github.create_issue")
    assert caps.matches("fs.read:*", "fs.read:mount/ws/a/b/c")
    assert caps.matches("fs.read:*", "fs.read:mount/ws/**")
    assert not caps.matches("fs.read:*", "fs.write:mount/ws/a")


@pytest.mark.parametrize(
    ("parent", "child", "expected"),
    [
        ("fs.read:mount/ws/**", "fs.read:mount/ws/docs/**", True),
        ("fs.read:mount/ws/**", "fs.read:mount/ws/*/x", True),
        ("fs.read:mount/*/**", "fs.read:mount/ws/**", True),
        # The child's open end covers the mount root, which the parent's ``*`` does not.
        ("fs.read:mount/ws/*/**", "fs.read:mount/ws/**", False),
        ("fs.read:mount/ws/*", "fs.read:mount/ws/**", False),
        ("fs.read:mount/ws/docs/**", "fs.read:mount/ws/**", False),
        ("fs.read:mount/ws/a*", "fs.read:mount/ws/ab*", True),
        ("fs.read:mount/ws/ab*", "fs.read:mount/ws/a*", False),
        ("fs.read:**", "fs.read:*", False),
        ("fs.read:mount/**", "fs.read:*", False),
        ("fs.read:**", "fs.read:**", True),
        ("fs.read:**", "fs.read:mount/**", True),
        ("fs.read:mount/**", "fs.read:**", False),
    ],
)
def test_narrowing_reads_the_childs_wildcards_as_wider(parent, child, expected):
    assert caps.matches(parent, child) is expected


def test_action_star_does_not_cross_into_the_resource():
    assert not caps.matches("*:b/**", "x:y:b")
    assert caps.action_matches("task.*:agent/x", "task.fail")
    assert not caps.action_matches("task.*:agent/x", "agent.pause")
    assert caps.action_matches(caps.ROOT, "fs.read")


def test_percent_escapes_and_tilde_are_resource_characters():
    assert caps.parse("fs.read:mount/ws/a%20b~") == ("fs.read", "mount/ws/a%20b~")
    assert caps.matches("fs.read:mount/ws/*", "fs.read:mount/ws/a%2Fb")


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("fs.read:mount/**/x", "'**' may only be the whole last segment"),
        ("fs.read:mount/a**", "'**' may only be the whole last segment"),
        ("fs.read:**/x", "'**' may only be the whole last segment"),
        ("fs.read:mount//ws", "empty path segment"),
        ("fs.read:mount/ws/", "empty path segment"),
        ("fs.read:/mount", "empty path segment"),
        ("fs.read:mount/a%2a", "two uppercase hex digits"),
        ("fs.read:mount/a%2", "two uppercase hex digits"),
        ("fs.read:mount/a%", "two uppercase hex digits"),
        ("fs.read:mount/a%zz", "two uppercase hex digits"),
    ],
)
def test_malformed_globs_and_escapes_are_refused_with_the_reason(bad, says):
    with pytest.raises(InvalidInput) as refused:
        caps.parse(bad)
    assert says in refused.value.message and repr(bad) in refused.value.message


@pytest.mark.parametrize(
    "action",
    ["fs.read", "fs.write", "fs.list", "fs.mount", "net.http", "net.allow", "tool.resolve"],
)
def test_place_actions_are_known(action):
    assert caps.parse(f"{action}:*") == (action, "*")


# Properties over a small alphabet, so that patterns cover each other often.

NAMES = ["a", "b", "ab", "ba", "aab"]
GLOBS = ["*", "a*", "*b", "a*b", "*a*"]
ACTIONS = ["fs.read", "fs.write"]
ACTION_GLOBS = ["fs.*", "*", "fs.re*"]
FILLS = ["", "a", "b", "ab", "ba"]


def glob_match(glob: str, text: str) -> bool:
    """A ``*``-only glob, by dynamic programming: the reference the regexes must agree with."""
    reachable = {0}
    for ch in glob:
        if ch == "*":
            reachable = set(range(min(reachable), len(text) + 1)) if reachable else set()
        else:
            reachable = {i + 1 for i in reachable if i < len(text) and text[i] == ch}
    return len(text) in reachable


def reference_matches(pattern: str, concrete: str) -> bool:
    """The documented rule, segment by segment, for a concrete capability."""
    p_action, p_resource = pattern.split(":", 1)
    action, resource = concrete.split(":", 1)
    if not glob_match(p_action, action):
        return False
    if p_resource == "*":
        return True
    wanted, have = p_resource.split("/"), resource.split("/")
    if wanted[-1] == "**":
        wanted = wanted[:-1]
        have = have[: len(wanted)] if len(have) >= len(wanted) else None
    return (
        have is not None
        and len(have) == len(wanted)
        and all(glob_match(w, h) for w, h in zip(wanted, have, strict=True))
    )


@st.composite
def concretes(draw):
    action = draw(st.sampled_from(ACTIONS))
    return f"{action}:{'/'.join(draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=5)))}"


@st.composite
def patterns(draw):
    action = draw(st.sampled_from(ACTIONS + ACTION_GLOBS))
    if draw(st.integers(0, 9)) == 0:
        return f"{action}:*"
    fixed = draw(st.lists(st.sampled_from(NAMES + GLOBS), max_size=4))
    open_end = not fixed or draw(st.booleans())
    return f"{action}:{'/'.join(fixed + ['**'] * open_end)}"


def fill_in(draw, glob: str, choices: list[str]) -> str:
    """``glob`` with each ``*`` replaced by a drawn string."""
    first, *others = glob.split("*")
    return first + "".join(draw(st.sampled_from(choices)) + part for part in others)


@st.composite
def instances(draw, pattern: str):
    """A concrete capability ``pattern`` covers: each wildcard filled in."""
    action, resource = pattern.split(":", 1)
    action = fill_in(draw, action, ["", "read", "write", "x."])
    if resource == "*":
        return f"{action}:{draw(concretes()).split(':', 1)[1]}"
    segments = resource.split("/")
    rest = []
    if segments[-1] == "**":
        segments = segments[:-1]
        # At least one segment: a resource is never empty.
        rest = draw(st.lists(st.sampled_from(NAMES), min_size=0 if segments else 1, max_size=3))
    return f"{action}:{'/'.join([fill_in(draw, s, FILLS) for s in segments] + rest)}"


@st.composite
def generalizations(draw, pattern: str):
    """A pattern that covers everything ``pattern`` covers, by construction."""
    action, resource = pattern.split(":", 1)
    action = draw(st.sampled_from([action, "*", "fs.*" if action.startswith("fs.") else action]))
    if resource == "*" or draw(st.integers(0, 9)) == 0:
        return f"{action}:*"
    segments = resource.split("/")
    open_end = segments[-1] == "**"
    fixed = segments[:-1] if open_end else segments
    wider = []
    for segment in fixed:
        options = [segment, "*"]
        if "*" not in segment:
            options += [segment[0] + "*", "*" + segment[-1]]
        wider.append(draw(st.sampled_from(options)))
    cut = draw(st.integers(0, len(wider)))
    if open_end or cut < len(wider):
        wider = [*wider[:cut], "**"]
    return f"{action}:{'/'.join(wider)}"


@st.composite
def neighbours(draw, pattern: str):
    """A pattern one edit away from ``pattern``, often narrower: where an unsound rule
    would show (``a/*`` next to ``a/**``, one segment fewer or more)."""
    action, resource = pattern.split(":", 1)
    segments = [] if resource == "*" else resource.split("/")
    if segments and segments[-1] == "**":
        edit = draw(st.sampled_from([["*"], ["*", "**"], ["a"], []]))
        segments = segments[:-1] + edit
    else:
        edit = draw(st.sampled_from(["drop", "append", "replace"]))
        if edit == "drop":
            segments = segments[:-1]
        elif edit == "append":
            segments = [*segments, draw(st.sampled_from(NAMES + GLOBS))]
        elif segments:
            i = draw(st.integers(0, len(segments) - 1))
            segments[i] = draw(st.sampled_from(NAMES + GLOBS))
    return f"{action}:{'/'.join(segments) or '**'}"


def test_reference_glob_matcher_is_itself_right():
    assert glob_match("a*b", "ab") and glob_match("a*b", "axxb") and glob_match("*", "")
    assert not glob_match("a*b", "abc") and not glob_match("*a*", "bbb")


@settings(max_examples=300)
@given(st.data())
def test_generated_patterns_are_valid_and_cover_their_instances(data):
    pattern = data.draw(patterns())
    assert caps.parse(pattern)
    concrete = data.draw(instances(pattern))
    assert caps.matches(pattern, concrete)
    assert reference_matches(pattern, concrete)


@settings(max_examples=300)
@given(st.data())
def test_a_generalization_covers_the_pattern_it_came_from(data):
    child = data.draw(patterns())
    parent = data.draw(generalizations(child))
    assert caps.parse(parent)
    assert caps.matches(parent, child)


@settings(max_examples=500)
@given(patterns(), concretes())
def test_matching_a_concrete_capability_agrees_with_the_reference(pattern, concrete):
    assert caps.matches(pattern, concrete) is reference_matches(pattern, concrete)


def test_narrowing_is_sound_every_instance_of_a_covered_child_is_covered():
    covered_pairs = set()

    @settings(max_examples=1000, derandomize=True, database=None)
    @given(st.data())
    def check(data):
        child = data.draw(patterns())
        parent = data.draw(st.one_of(patterns(), generalizations(child), neighbours(child)))
        concrete = data.draw(st.one_of(instances(child), concretes()))
        if caps.matches(parent, child) and caps.matches(child, concrete):
            assert caps.matches(parent, concrete), (parent, child, concrete)
            if parent != child:
                covered_pairs.add((parent, child))

    check()
    # The implication above is vacuous unless covered pairs are actually generated.
    assert len(covered_pairs) >= 50
