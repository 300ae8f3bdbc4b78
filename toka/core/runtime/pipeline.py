"""The commit pipeline: operations in flight, committed on a thread of their own."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from toka.core.errors import TokaError
from toka.core.runtime.admission import Pending

log = logging.getLogger(__name__)


class CommitPipeline:
    """Commits what ``Runtime.submit_async`` queues, on a thread of its own.

    The thread commits everything queued in one transaction (``commit``) and resolves
    each operation's future (``settle``), then takes what arrived meanwhile: a client
    may so keep many operations in flight, each still checked, committed and (with
    ``full``) synced before its future says so, and the longer the disk takes, the
    larger the next batch that one sync serves.
    """

    def __init__(self, commit: Callable[[list[Pending]], None]):
        self._commit = commit
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[Pending] = []
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="toka-commit", daemon=True)
        self._thread.start()

    def put(self, pending: Pending) -> None:
        self.put_many([pending])

    def put_many(self, batch: list[Pending]) -> None:
        with self._cond:
            if self._closing:
                raise TokaError("the runtime is closing; the operation was not submitted")
            self._queue.extend(batch)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:  # closing, and nothing left to commit
                    return
                batch, self._queue = self._queue, []
            try:
                self._commit(batch)
            except Exception as exc:  # commit reports its own failures; not this
                log.exception("commit thread failed")
                for p in batch:
                    p.outcome, p.error = None, TokaError(f"internal error while committing: {exc}")
            for p in batch:
                settle(p)

    def close(self) -> None:
        """Commit everything queued, then stop."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()


def settle(p: Pending) -> None:
    """Resolve ``p``'s future with its outcome or its error."""
    assert p.future is not None
    if p.error is not None:
        p.future.set_exception(p.error)
    else:
        p.future.set_result(p.outcome)  # type: ignore[arg-type]
