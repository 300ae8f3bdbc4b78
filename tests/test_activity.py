"""Events and refusals per time bucket (toka.core.activity), read from the log on both
backends: the counts are those of the log, read any way, at every boundary."""

from __future__ import annotations

from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest
from snapshots.world import BUSY_END_S, T1, World, busy_world, first_run_world

from toka.core.activity import (
    REFUSED,
    ActivityTracker,
    Window,
    count,
    first_seq_at,
    tally,
)
from toka.core.errors import InvalidInput
from toka.core.model import ops

pytestmark = pytest.mark.stores

NOW_MS = int((T1 + BUSY_END_S - 5) * 1000)
MINUTE = 60_000


@pytest.fixture
def busy(tmp_path: Path):
    with closing(busy_world(tmp_path / "home")) as w:
        yield w


def by_hand(world: World, window: Window, agent: str | None = None) -> tuple[list, list]:
    """Every event of the log, bucketed one by one."""
    events, refusals = Counter(), Counter()
    for record in world.runtime.log.records():
        if agent and record.principal != agent and agent.encode() not in record.payload:
            continue
        at = window.index(record.ts)
        if at is not None:
            events[at] += 1
            refusals[at] += record.kind == REFUSED
    return [events[i] for i in range(window.buckets)], [refusals[i] for i in range(window.buckets)]


def test_counts_match_the_log_bucket_by_bucket(busy: World):
    window = Window.ending_at(NOW_MS, 60 * MINUTE, MINUTE)
    found = count(busy.runtime.log, window)
    events, refusals = by_hand(busy, window)
    assert list(found.events) == events
    assert list(found.refusals) == refusals
    assert found.total_events > 500 and found.total_refusals == 10  # 8 over the hour, 2 late


def test_an_agents_activity_counts_what_it_signed_or_names_once_each(busy: World):
    courier = busy.agents["courier"]
    window = Window.ending_at(NOW_MS, 60 * MINUTE, 2 * MINUTE)
    found = count(busy.runtime.log, window, agent=courier)
    events, refusals = by_hand(busy, window, courier)
    assert list(found.refusals) == refusals
    assert list(found.events) == events
    refused = busy.runtime.log.query(kinds=[REFUSED], principal=courier, limit=100)
    assert all(courier.encode() in r.payload for r in refused)  # found by both queries
    # courier's refusals are all it did; the one of step 0 is before the window
    assert found.total_events == found.total_refusals == len(refused) - 1 == 9


def test_counts_stop_at_until(busy: World):
    until = 300
    window = Window.ending_at(NOW_MS, 60 * MINUTE, MINUTE)
    found = count(busy.runtime.log, window, until=until)
    expected = sum(
        1 for r in busy.runtime.log.records(until=until) if window.index(r.ts) is not None
    )
    assert found.total_events == expected < count(busy.runtime.log, window).total_events


def test_a_window_with_no_events_is_all_zeros(busy: World):
    before = Window.ending_at(int(T1 * 1000) - 10 * MINUTE, 5 * MINUTE, MINUTE)
    after = Window.ending_at(NOW_MS + 60 * MINUTE, 5 * MINUTE, MINUTE)
    for window in (before, after):
        found = count(busy.runtime.log, window)
        assert found.events == found.refusals == (0,) * 5


def test_an_empty_log_window_is_all_zeros(tmp_path: Path):
    with closing(first_run_world(tmp_path / "home")) as world:
        found = count(world.runtime.log, Window.ending_at(0, MINUTE, 10_000), until=0)
    assert found.events == (0,) * 6


def test_an_event_on_a_bucket_boundary_counts_in_the_bucket_it_starts(tmp_path: Path):
    with closing(first_run_world(tmp_path / "home")) as world:
        agent = world.spawn("edge")
        window = Window.ending_at(int(T1 * 1000) + 3 * MINUTE - 1, 3 * MINUTE, MINUTE)
        assert window.start_ms == T1 * 1000
        for at_ms in (window.start_ms, window.start_ms + MINUTE, window.end_ms):
            world.now = at_ms / 1000
            world.submit(ops.EmitObservation(agent, "tick"))
        found = count(world.runtime.log, window, agent=agent)
    # the spawn and its grant (at T1) and the first tick open bucket 0; the tick at the
    # second bucket's first millisecond is in it; the one at end_ms is after the window
    assert found.events == (3, 1, 0)


def test_first_seq_at_finds_the_first_event_stamped_then_or_later(busy: World):
    records = list(busy.runtime.log.records())
    head = records[-1].seq
    for ts in (0, records[40].ts, records[40].ts + 1, records[-1].ts, records[-1].ts + 1):
        expected = next((r.seq for r in records if r.ts >= ts), None)
        assert first_seq_at(busy.runtime.log, ts, head) == expected


def test_a_tracker_fed_as_events_arrive_agrees_with_reading_the_log(busy: World):
    log = busy.runtime.log
    tracker = ActivityTracker(5 * MINUTE, 10_000)
    tracker.load(log, NOW_MS, until=400)
    tracker.add(log.records(after=400))
    window = tracker.window(NOW_MS)
    assert tracker.activity(NOW_MS) == count(log, window)


def test_a_tracker_forgets_buckets_the_window_has_moved_past(busy: World):
    tracker = ActivityTracker(5 * MINUTE, 10_000)
    tracker.load(busy.runtime.log, NOW_MS)
    assert tracker.activity(NOW_MS).total_events > 0
    later = NOW_MS + 5 * MINUTE
    assert tracker.activity(later).total_events == 0
    assert tracker.activity(NOW_MS).total_events == 0  # gone, not just out of view


def test_a_window_is_aligned_and_ends_with_the_bucket_holding_now():
    window = Window.ending_at(125_000, 60_000, 10_000)
    assert window == Window(70_000, 10_000, 6)
    assert window.index(69_999) is None and window.index(70_000) == 0
    assert window.index(129_999) == 5 and window.index(130_000) is None
    # a span that is not a whole number of buckets is rounded up
    assert Window.ending_at(125_000, 65_000, 10_000).buckets == 7


@pytest.mark.parametrize(
    ("span_ms", "bucket_ms", "says"),
    [
        (0, 1000, "longer than 0s"),
        (60_000, 0, "longer than 0s"),
        (60_000, 120_000, "cannot be longer than the window"),
        (3_600_000, 100, "36000 buckets is too many"),
    ],
)
def test_a_window_that_cannot_be_drawn_is_refused(span_ms, bucket_ms, says):
    with pytest.raises(InvalidInput, match=says):
        Window.ending_at(0, span_ms, bucket_ms)


def test_tally_leaves_out_records_outside_the_window(busy: World):
    window = Window.ending_at(NOW_MS, MINUTE, 10_000)
    records = list(busy.runtime.log.records())
    inside = [r for r in records if window.index(r.ts) is not None]
    assert tally(window, records).total_events == len(inside) > 0
