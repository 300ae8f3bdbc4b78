"""Following the log from any process, on any host: poll by sequence number, cheaply.

The store's ``data_version`` changes only when someone commits (SQLite: ``PRAGMA
data_version``; PostgreSQL: a notification, a reconnect, or a new head found by the
check it makes once a second), so an idle poll reads no rows.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

from toka.core.errors import HomeError, StoreUnavailable
from toka.core.log.store import Store
from toka.core.model.events import EventRecord, kind_matches


class HasLog(Protocol):
    """Anything that opens its log (a ``Home``)."""

    def open_store(
        self, durability: str = "full", *, readonly: bool = False, listen: bool = False
    ) -> Store: ...


class LogFollower:
    """New events after ``after_seq`` in the log of ``source`` (a home, or the path of
    its database), optionally filtered, read on a connection of its own.

    ``kinds`` holds exact kinds or prefixes (``task.*``); ``principal`` keeps events
    signed by that principal; ``agent`` keeps events by or about that agent; ``text``
    keeps events whose payload contains it. The
    position advances past filtered-out events too, so each event is seen once.
    """

    def __init__(
        self,
        source: HasLog | Path | str,
        after_seq: int = 0,
        *,
        kinds: list[str] | None = None,
        principal: str | None = None,
        agent: str | None = None,
        text: str | None = None,
        batch: int = 1000,
    ):
        if isinstance(source, Path | str):
            from toka.core.log.sqlite import SqliteStore

            path = Path(source)
            if not path.exists():
                raise HomeError(f"no Toka log at {path}: run `toka init` first")
            self.log: Store = SqliteStore(path, readonly=True)
        else:
            self.log = source.open_store(readonly=True, listen=True)
        self.position = after_seq
        self.kinds = list(kinds) if kinds else None
        self.principal = principal
        self.agent = agent
        self._text = text.encode() if text else None
        self.batch = batch
        self._version: int | None = None

    def close(self) -> None:
        self.log.close()

    def __enter__(self) -> LogFollower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def head(self) -> int:
        return self.log.head()[0]

    def poll(self) -> list[EventRecord]:
        """Matching events committed since the last poll (oldest first); [] if none.

        A log that cannot be reached now (a PostgreSQL server restarting, a connection
        killed) gives [] and is read again, from the same position, once it is back."""
        version = self.log.data_version()
        if version == self._version:
            return []
        out: list[EventRecord] = []
        while True:
            try:
                rows = list(self.log.records(after=self.position, limit=self.batch))
            except StoreUnavailable:
                return out  # the version stays old: the next poll reads again
            if not rows:
                break
            self.position = rows[-1].seq
            out.extend(r for r in rows if self.matches(r))
            if len(rows) < self.batch:
                break
        # Record the version only after reading: a commit that lands in between bumps it
        # again, so the next poll looks once more instead of missing it.
        self._version = version
        return out

    def wait(self, timeout: float, interval: float = 0.02) -> list[EventRecord]:
        """Poll until something matches or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.poll()
            if found or time.monotonic() >= deadline:
                return found
            time.sleep(interval)

    def matches(self, r: EventRecord) -> bool:
        if self.principal is not None and r.principal != self.principal:
            return False
        if (
            self.agent is not None
            and r.principal != self.agent
            and self.agent.encode() not in r.payload
        ):
            return False
        if self._text is not None and self._text not in r.payload:
            return False
        if self.kinds is not None:
            return any(kind_matches(k, r.kind) for k in self.kinds)
        return True
