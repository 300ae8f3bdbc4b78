"""Replaying a log from genesis, checked: the rebuilt state hash against every stored
checkpoint on the way and, at the head, against the live state (`toka replay --check`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import Any

from toka.core.errors import IntegrityFailure
from toka.core.log.checkpoints import Checkpoint
from toka.core.log.fold import fold_rows
from toka.core.log.store import GENESIS_PREV, Store
from toka.core.model.state import WorldState

Progress = Callable[[int, int], None]


def replay_check(log: Store, live: WorldState, progress: Progress | None = None) -> dict[str, Any]:
    """Rebuild from genesis (no snapshots) and compare the state hash at every stored
    checkpoint and, at the head, with ``live``."""
    total = log.count()
    checkpoints = log.checkpoints(until=live.seq)
    stops = [cp.seq for cp in checkpoints]
    pending = iter(checkpoints)
    cp = next(pending, None)
    state, head = WorldState(), GENESIS_PREV
    matched = 0
    for page in log.row_pages(until=live.seq):
        for rows in _cut_after(page, stops):
            head = fold_rows(rows, state, head)
            while cp is not None and cp.seq == state.seq:
                _check_replayed(cp, state)
                matched += 1
                cp = next(pending, None)
        if progress is not None and state.seq // 2000 > (state.seq - len(page)) // 2000:
            progress(state.seq, total)
    if state.seq != live.seq:
        raise IntegrityFailure(
            f"replay reaches seq {state.seq}, the live state is at seq {live.seq}",
            state.seq + 1,
        )
    fresh, current = state.state_hash(), live.state_hash()
    if fresh != current:
        raise IntegrityFailure(
            f"replay diverged at seq {live.seq}: rebuilt state hash {fresh[:16]}, "
            f"live state hash {current[:16]}",
            live.seq,
        )
    return {"ok": True, "seq": state.seq, "state_hash": fresh, "checkpoints": matched}


def _cut_after(rows: list[tuple], stops: list[int]) -> Iterator[list[tuple]]:
    """``rows`` (in seq order) in pieces, each ending at a row whose seq is in ``stops``
    (sorted) or at the last row."""
    seqs = [row[0] for row in rows]
    start = 0
    for stop in stops[bisect.bisect_left(stops, seqs[0]) :]:
        end = bisect.bisect_right(seqs, stop)
        if end >= len(rows):
            break
        if end > start:
            yield rows[start:end]
            start = end
    yield rows[start:]


def _check_replayed(cp: Checkpoint, state: WorldState) -> None:
    actual = state.state_hash()
    if actual != cp.state_hash:
        raise IntegrityFailure(
            f"replay diverged at seq {cp.seq}: rebuilt state hash {actual[:16]}, "
            f"the checkpoint says {cp.state_hash[:16]}",
            cp.seq,
        )
