"""Folding log records into a world state: the one check that a record links to the chain.

``toka verify`` (``audit.verify_log``) checks more: each hash against its row, the
operation records, checkpoints. Folding checks what every reader of the log must:
each record follows the one before, and folds into the state.

Two ways in, one result. ``fold``/``folding`` take ``EventRecord`` objects, for the
few records a runtime catches up on. ``fold_log``/``fold_rows`` take the store's plain
rows a page at a time (``Store.row_pages``), for rebuilds that fold a whole log: no
object per record but the one each evolver is handed, the links checked a page at a
time, and the kernel's ``evolve_rows`` instead of ``evolve`` per record.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterable, Iterator, Sequence
from operator import itemgetter

from toka.core import kernel
from toka.core.errors import IntegrityFailure
from toka.core.log.store import GENESIS_PREV, Store
from toka.core.model.events import EventRecord
from toka.core.model.state import WorldState

# Where a row (a tuple in EventRecord field order) holds its seq and its hash.
_seq_of = itemgetter(0)
_hash_of = itemgetter(9)


def _not_folded(seq: int, exc: Exception) -> IntegrityFailure:
    return IntegrityFailure(
        f"event {seq}: cannot be folded into the state ({exc}); run `toka verify`", seq
    )


def _unlinked(seq: int) -> IntegrityFailure:
    return IntegrityFailure(f"event {seq}: prev_hash does not link to the chain", seq)


def fold_one(state: WorldState, record: EventRecord) -> None:
    """Fold one record into ``state``; a row that cannot be folded was altered or reordered."""
    try:
        kernel.evolve(state, record)
    except Exception as exc:
        raise _not_folded(record.seq, exc) from exc


def folding(
    records: Iterable[EventRecord], state: WorldState, head: str = GENESIS_PREV
) -> Iterator[EventRecord]:
    """Fold each record into ``state`` (in place), checking it links to ``head`` and then
    to the record before; yields each record once it is folded."""
    for r in records:
        if r.prev_hash != head:
            raise _unlinked(r.seq)
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


def fold_log(
    log: Store,
    state: WorldState | None = None,
    head: str = GENESIS_PREV,
    until: int | None = None,
) -> tuple[WorldState, str]:
    """Fold the log's records after ``state.seq`` (through ``until``) onto ``state`` (a
    fresh one by default), ``head`` being the hash of the record at ``state.seq``; returns
    the state and the hash of the last record folded. The same as ``fold`` over
    ``log.records(...)``, at a fraction of the cost per record."""
    state = state or WorldState()
    with _collector_paused():
        for rows in log.row_pages(after=state.seq, until=until):
            head = fold_rows(rows, state, head)
    return state, head


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off for a rebuild. A rebuild allocates a whole state,
    which holds no cycles and stays alive; left on, the collector would walk that
    growing state again and again (measured: about 7% of a rebuild's time)."""
    if not gc.isenabled():  # someone else paused it: theirs to turn back on
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def fold_rows(rows: Sequence[tuple], state: WorldState, head: str = GENESIS_PREV) -> str:
    """Fold ``rows`` (tuples in ``EventRecord`` field order, as ``Store.row_pages`` gives
    them) into ``state``, checking each links to ``head`` and then to the row before, as
    ``folding`` does; returns the hash of the last row. Fails as ``folding`` would: on the
    first row that does not link or cannot be folded, after folding the rows before it."""
    broken = _first_unlinked(rows, head)
    linked = rows if broken is None else rows[:broken]
    try:
        kernel.evolve_rows(state, linked)
    except Exception as exc:
        # evolve_rows leaves state.seq at the last row folded: the next one failed.
        raise _not_folded(_next_seq(linked, state.seq), exc) from exc
    if broken is not None:
        raise _unlinked(rows[broken][0])
    return _hash_of(rows[-1]) if rows else head


def _first_unlinked(rows: Sequence[tuple], head: str) -> int | None:
    """The index of the first row whose prev_hash is not the hash before it (``head``
    for the first), or None when they all link."""
    for i, row in enumerate(rows):
        if row[8] != head:
            return i
        head = row[9]
    return None


def _next_seq(rows: Sequence[tuple], folded: int) -> int:
    """The seq of the first of ``rows`` after ``folded``."""
    return next((seq for seq in map(_seq_of, rows) if seq > folded), folded + 1)
