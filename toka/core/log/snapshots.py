"""Snapshots of the world state at signed checkpoints, and when to write them.

A snapshot is only ever trusted through the signed checkpoint at its seq: start-up
loads the newest one whose state hash and head hash match that checkpoint, and folds
the tail of the log after it.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from toka.core.errors import IntegrityFailure
from toka.core.log.checkpoints import Checkpoint
from toka.core.log.store import GENESIS_PREV, Store
from toka.core.model.keys import KeyPair
from toka.core.model.state import WorldState

KEEP_SNAPSHOTS = 3

_snapshot_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(WorldState)


def encode_snapshot(state: WorldState) -> bytes:
    """Snapshot bytes keep dict insertion order (the state hash sorts keys; iteration
    order must survive a snapshot so the kernel decides identically after a restart)."""
    return _snapshot_encoder.encode(state)


def decode_snapshot(data: bytes) -> WorldState:
    return _snapshot_decoder.decode(data)


def write_checkpoint(
    log: Store,
    state: WorldState,
    head_hash: str,
    key: KeyPair,
    *,
    snapshot: bool = True,
    keep: int = KEEP_SNAPSHOTS,
) -> Checkpoint:
    """Sign and store a checkpoint of ``state`` (folded through ``head_hash``), with a
    snapshot of the state if ``snapshot``, keeping the newest ``keep`` snapshots. Call
    inside the write transaction that appended the events, so the checkpoint commits
    with them or not at all."""
    cp = Checkpoint(state.home_id, state.seq, state.ts, head_hash, state.state_hash()).signed(key)
    log.record_checkpoint(cp)
    if snapshot:
        log.save_snapshot(state.seq, encode_snapshot(state), keep)
    return cp


def load_snapshot(
    log: Store, public_key: str | None, until: int | None = None
) -> tuple[WorldState, str] | None:
    """The newest snapshot at or before ``until`` that checks out against its signed
    checkpoint, as (state, head hash); None if there is none. A snapshot that does not
    check out is skipped with a warning, never trusted."""
    if public_key is None:
        return None
    for seq in log.snapshot_seqs(until):
        try:
            found = log.checkpoints(after=seq - 1, until=seq)
            if not found:
                raise IntegrityFailure(f"snapshot at seq {seq} has no checkpoint", seq)
            cp = found[0]
            cp.check_signature(public_key)
            state = decode_snapshot(log.snapshot(seq) or b"")
            if state.seq != seq or state.state_hash() != cp.state_hash:
                raise IntegrityFailure(f"snapshot at seq {seq} does not match its checkpoint", seq)
            record = log.record(seq)
            if record is None or record.hash != cp.head_hash:
                raise IntegrityFailure(f"checkpoint at seq {seq} does not match the log", seq)
        except Exception as exc:
            import logging  # here: a command that reads the state has no other use for it

            logging.getLogger(__name__).warning("ignoring snapshot at seq %d: %s", seq, exc)
            continue
        return state, cp.head_hash
    return None


def load_state(log: Store, public_key: str | None) -> tuple[WorldState, str]:
    """The state at the log's head, and the head's hash: the newest snapshot that checks
    out, with the log after it folded onto it (without one, the whole log folded onto
    an empty state). What a runtime starts from, and what a listing command reads."""
    loaded = load_snapshot(log, public_key)
    state, head = loaded if loaded is not None else (WorldState(), GENESIS_PREV)
    if log.head()[0] == state.seq:
        return state, head
    from toka.core.log.fold import fold_log  # the kernel's evolvers: only for a tail

    return fold_log(log, state, head)


class CheckpointSchedule:
    """Signs a checkpoint each time the log crosses a multiple of ``interval``, with a
    snapshot at every ``snapshot_every``-th one. The kernel key is loaded on first need."""

    def __init__(
        self,
        interval: int,
        snapshot_every: int,
        kernel_key: Callable[[], KeyPair],
        last_seq: int,
    ):
        self.interval = interval
        self.snapshot_every = snapshot_every
        self._kernel_key = kernel_key
        self._key: KeyPair | None = None
        self._last_seq = last_seq

    def _due(self, seq: int) -> bool:
        return seq // self.interval > self._last_seq // self.interval

    def maybe_write(self, log: Store, state: WorldState, head_hash: str) -> None:
        """Call inside the write transaction that appended up to ``state.seq``."""
        if not self._due(state.seq):
            return
        # Another process may have written it while folding the same events.
        self._last_seq = log.last_checkpoint_seq()
        if not self._due(state.seq):
            return
        if self._key is None:
            self._key = self._kernel_key()
        number = state.seq // self.interval
        write_checkpoint(
            log, state, head_hash, self._key, snapshot=number % self.snapshot_every == 0
        )
        self._last_seq = state.seq
