"""A tally kept current: the whole log folded once, then followed on a connection of its own."""

from __future__ import annotations

import contextlib
import logging
import threading

from toka.core.errors import StoreUnavailable
from toka.core.log.follow import HasLog, LogFollower
from toka.core.metrics.tally import LogTally

log = logging.getLogger(__name__)

# Records read per query while folding the log from genesis (memory stays bounded).
_BATCH = 2000


class LiveTally:
    """A ``LogTally`` of the log of ``source`` (a home), folded from seq 0 by ``start``
    and kept current by ``catch_up`` (which ``follow`` calls on a thread of its own).

    Hold ``lock`` to read ``tally`` while it may be following."""

    def __init__(self, source: HasLog):
        self.source = source
        self.follower = LogFollower(source, 0)
        self.tally = LogTally(self.follower.log)
        self.lock = threading.Lock()
        self._head = 0
        self._rewind = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Fold the whole log as it is now (no counter starts from zero after a restart)."""
        with self.lock:
            self.tally.prime()
            while True:
                rows = list(self.follower.log.records(after=self.tally.seq, limit=_BATCH))
                self.tally.fold(rows)
                if len(rows) < _BATCH:
                    break
            self.follower.position = self.tally.seq

    def catch_up(self) -> None:
        """Fold what was committed since the last look (on any host)."""
        with self.lock:
            if self._rewind:
                fresh = LogFollower(self.source, self.tally.seq)
                self.follower.close()
                self.follower, self.tally.log, self._rewind = fresh, fresh.log, False
            try:
                self.tally.fold(self.follower.poll())
            except StoreUnavailable:
                # The follower has read past what was counted: follow again from there.
                self._rewind = True
                raise

    def head(self) -> int:
        """The log's last sequence number now (the last one seen if it cannot be read).
        Call with ``lock`` held."""
        with contextlib.suppress(StoreUnavailable):
            self._head = self.follower.head()
        return max(self._head, self.tally.seq)

    def follow(self, interval: float) -> None:
        """Catch up every ``interval`` seconds on a daemon thread, until ``close``."""
        self._thread = threading.Thread(
            target=self._run, args=(interval,), name="toka-metrics", daemon=True
        )
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.catch_up()
            except StoreUnavailable as exc:
                log.warning("metrics: the log is unavailable (%s); retrying", exc.message)
            except Exception:  # a log that cannot be folded: the lag gauge shows it stopped
                log.exception("metrics: following the log failed; counters stop here")
                return

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self.lock:
            self.follower.close()
