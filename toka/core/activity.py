"""Activity over time: how many events, and how many refusals, fell in each bucket of a window.

One place for ``toka stats`` and the console's plots. Buckets are aligned to multiples of
their length (epoch milliseconds), the newest one holding "now", so a window computed at
any moment and one kept up to date event by event (``ActivityTracker``) agree. Reading a
window costs a binary search for its first event plus the events inside it: the runtime
stamps each event ``max(now, last ts)``, so ``ts`` never decreases along the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

from toka.core.errors import InvalidInput
from toka.core.log.store import Store
from toka.core.model.events import EventRecord

REFUSED = "operation.rejected"
PAGE = 1000
MAX_BUCKETS = 10_000


class Window(NamedTuple):
    """``buckets`` buckets of ``bucket_ms`` each, from ``start_ms`` on."""

    start_ms: int
    bucket_ms: int
    buckets: int

    @classmethod
    def ending_at(cls, now_ms: int, span_ms: int, bucket_ms: int) -> Window:
        """The aligned buckets covering at least ``span_ms``, the newest holding ``now_ms``
        (raises InvalidInput as ``check`` does)."""
        buckets = cls.check(span_ms, bucket_ms)
        newest = now_ms - now_ms % bucket_ms
        return cls(newest - (buckets - 1) * bucket_ms, bucket_ms, buckets)

    @staticmethod
    def check(span_ms: int, bucket_ms: int) -> int:
        """How many buckets of ``bucket_ms`` cover ``span_ms``. Raises InvalidInput for a
        span or bucket that is not positive, a bucket longer than the span, or more than
        MAX_BUCKETS buckets."""
        if span_ms <= 0 or bucket_ms <= 0:
            raise InvalidInput("the window and its buckets must be longer than 0s")
        if bucket_ms > span_ms:
            raise InvalidInput("a bucket cannot be longer than the window")
        buckets = -(-span_ms // bucket_ms)
        if buckets > MAX_BUCKETS:
            raise InvalidInput(
                f"{buckets} buckets is too many (at most {MAX_BUCKETS}): use longer buckets"
            )
        return buckets

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.buckets * self.bucket_ms

    def index(self, ts: int) -> int | None:
        """The bucket holding ``ts``, or None outside the window."""
        if self.start_ms <= ts < self.end_ms:
            return (ts - self.start_ms) // self.bucket_ms
        return None

    def starts(self) -> list[int]:
        """Each bucket's first millisecond."""
        return [self.start_ms + i * self.bucket_ms for i in range(self.buckets)]


class Activity(NamedTuple):
    """Events and refusals (``operation.rejected``) per bucket of ``window``, oldest first."""

    window: Window
    events: tuple[int, ...]
    refusals: tuple[int, ...]

    @property
    def total_events(self) -> int:
        return sum(self.events)

    @property
    def total_refusals(self) -> int:
        return sum(self.refusals)


def tally(window: Window, records: Iterable[EventRecord]) -> Activity:
    """Count ``records`` into the buckets of ``window``; records outside it are left out."""
    events = [0] * window.buckets
    refusals = [0] * window.buckets
    for record in records:
        at = window.index(record.ts)
        if at is not None:
            events[at] += 1
            refusals[at] += record.kind == REFUSED
    return Activity(window, tuple(events), tuple(refusals))


def count(
    store: Store, window: Window, *, until: int | None = None, agent: str | None = None
) -> Activity:
    """The activity in ``window`` of the log up to seq ``until`` (default: its head);
    with ``agent``, only events by or about it (it signed them, or its id is in them)."""
    head = store.head()[0] if until is None else until
    first = first_seq_at(store, window.start_ms, head)
    if first is None:
        return tally(window, ())
    if agent is None:
        return tally(window, _until_end(store.records(after=first - 1, until=head), window))
    return tally(window, _about(store, agent, first, head))


def first_seq_at(store: Store, ts_ms: int, until: int) -> int | None:
    """The seq of the first event up to ``until`` stamped at or after ``ts_ms``, if any."""
    low, high, found = 1, until, None
    while low <= high:
        middle = (low + high) // 2
        page = store.query(after=middle - 1, before=until + 1, limit=1)
        if not page:
            high = middle - 1
            continue
        record = page[0]
        if record.ts >= ts_ms:
            found, high = record.seq, middle - 1
        else:
            low = record.seq + 1
    return found


def _until_end(records: Iterable[EventRecord], window: Window) -> Iterator[EventRecord]:
    for record in records:
        if record.ts >= window.end_ms:
            return  # every later event is later still
        yield record


def _about(store: Store, agent: str, first: int, head: int) -> Iterator[EventRecord]:
    """Events from ``first`` to ``head`` signed by ``agent`` or naming it, each once."""
    seen: set[int] = set()
    for filters in ({"principal": agent}, {"text": agent}):
        after = first - 1
        while True:
            page = store.query(after=after, before=head + 1, limit=PAGE, **filters)
            for record in page:
                if record.seq not in seen:
                    seen.add(record.seq)
                    yield record
            if len(page) < PAGE:
                break
            after = page[-1].seq


class ActivityTracker:
    """A moving window of activity, kept up to date as records arrive (no re-reading)."""

    def __init__(self, span_ms: int, bucket_ms: int):
        self.span_ms = span_ms
        self.bucket_ms = bucket_ms
        self._events: dict[int, int] = {}  # by bucket start
        self._refusals: dict[int, int] = {}

    def load(self, store: Store, now_ms: int, until: int | None = None) -> None:
        """Start over from the log: the window ending at ``now_ms``, up to seq ``until``."""
        activity = count(store, self.window(now_ms), until=until)
        starts = activity.window.starts()
        self._events = {s: n for s, n in zip(starts, activity.events, strict=True) if n}
        self._refusals = {s: n for s, n in zip(starts, activity.refusals, strict=True) if n}

    def window(self, now_ms: int) -> Window:
        return Window.ending_at(now_ms, self.span_ms, self.bucket_ms)

    def add(self, records: Iterable[EventRecord]) -> None:
        """Count records appended since the last load or add."""
        for record in records:
            start = record.ts - record.ts % self.bucket_ms
            self._events[start] = self._events.get(start, 0) + 1
            if record.kind == REFUSED:
                self._refusals[start] = self._refusals.get(start, 0) + 1

    def activity(self, now_ms: int) -> Activity:
        """The window ending at ``now_ms``; buckets older than it are forgotten."""
        window = self.window(now_ms)
        for counts in (self._events, self._refusals):
            for start in [s for s in counts if s < window.start_ms]:
                del counts[start]
        starts = window.starts()
        return Activity(
            window,
            tuple(self._events.get(s, 0) for s in starts),
            tuple(self._refusals.get(s, 0) for s in starts),
        )
