"""What one accepted operation did: its events, decoded into their typed structs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec

from toka.core.model import events as ev
from toka.core.model.events import EventRecord

E = TypeVar("E", bound=msgspec.Struct)


class Recorded(msgspec.Struct, frozen=True):
    """One event an operation produced: where it sits in the log, and what it says."""

    seq: int
    kind: str
    payload: Any  # the event's struct from toka.core.model.events

    @classmethod
    def of(cls, record: EventRecord) -> Recorded:
        return cls(record.seq, record.kind, record.data())


class Outcome(msgspec.Struct):
    """What one accepted operation did."""

    op: str
    nonce: str
    digest: str
    first_seq: int
    last_seq: int
    events: list[Recorded]
    tokens: dict[str, str] = msgspec.field(default_factory=dict)
    replayed: bool = False

    @classmethod
    def of(
        cls,
        op: str,
        nonce: str,
        digest: str,
        records: Sequence[EventRecord],
        *,
        tokens: dict[str, str] | None = None,
        replayed: bool = False,
    ) -> Outcome:
        """The outcome of the operation that appended ``records`` (at least one)."""
        return cls(
            op,
            nonce,
            digest,
            records[0].seq,
            records[-1].seq,
            [Recorded.of(r) for r in records],
            tokens or {},
            replayed,
        )

    def first(self, kind: type[E]) -> E:
        """The first event of type ``kind`` (``ev.TaskScheduled``); KeyError if none."""
        for e in self.events:
            if type(e.payload) is kind:
                return e.payload
        raise KeyError(ev.KIND_OF.get(kind, kind.__name__))

    def all(self, kind: type[E]) -> list[E]:
        """Every event of type ``kind``, in log order."""
        return [e.payload for e in self.events if type(e.payload) is kind]

    @property
    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    @property
    def pending(self) -> str | None:
        """The approval id when the operation was queued for approval instead of applied."""
        if self.events and isinstance(self.events[0].payload, ev.OperationPending):
            return self.events[0].payload.approval
        return None
