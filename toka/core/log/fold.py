"""Folding log records into a world state: the one check that a record links to the chain.

``toka verify`` (``audit.verify_log``) checks more: each hash against its row, the
operation records, checkpoints. Folding checks what every reader of the log must:
each record follows the one before, and folds into the state.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from toka.core import kernel
from toka.core.errors import IntegrityFailure
from toka.core.log.store import GENESIS_PREV
from toka.core.model.events import EventRecord
from toka.core.model.state import WorldState


def fold_one(state: WorldState, record: EventRecord) -> None:
    """Fold one record into ``state``; a row that cannot be folded was altered or reordered."""
    try:
        kernel.evolve(state, record)
    except Exception as exc:
        raise IntegrityFailure(
            f"event {record.seq}: cannot be folded into the state ({exc}); run `toka verify`",
            record.seq,
        ) from exc


def folding(
    records: Iterable[EventRecord], state: WorldState, head: str = GENESIS_PREV
) -> Iterator[EventRecord]:
    """Fold each record into ``state`` (in place), checking it links to ``head`` and then
    to the record before; yields each record once it is folded."""
    for r in records:
        if r.prev_hash != head:
            raise IntegrityFailure(f"event {r.seq}: prev_hash does not link to the chain", r.seq)
        fold_one(state, r)
        head = r.hash
        yield r


def fold(
    records: Iterable[EventRecord], state: WorldState | None = None, head: str = GENESIS_PREV
) -> tuple[WorldState, str]:
    """Rebuild state by folding records onto ``state`` (a fresh one by default); returns
    the state and the hash of the last record folded."""
    state = state or WorldState()
    for r in folding(records, state, head):
        head = r.hash
    return state, head
