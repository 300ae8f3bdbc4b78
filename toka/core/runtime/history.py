"""The log's history as a runtime offers it: verify, replay, time travel, export.

Each reads the log on a connection of its own (one consistent snapshot), or under the
runtime's lock, so submissions go on while a long log is checked.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any

from toka.core.errors import CommitUnknown, TokaError
from toka.core.kernel.context import KERNEL
from toka.core.log import audit, checkpoints, replay, snapshots
from toka.core.log.fold import fold, fold_log
from toka.core.log.store import GENESIS_PREV, OperationRow, Store
from toka.core.model import ops
from toka.core.model.events import EventRecord
from toka.core.model.keys import KeyPair
from toka.core.model.state import WorldState
from toka.core.runtime.admission import Pending
from toka.core.runtime.home import Config, Home

log = logging.getLogger(__name__)


class History:
    """What ``Runtime`` offers on its log's past: loading the state from it, verify,
    replay, time travel, and the kernel's key that signs checkpoints and host
    statements; mixed into ``Runtime``."""

    home: Home
    config: Config
    log: Store
    state: WorldState
    head_hash: str
    _lock: threading.RLock
    _stale: bool
    now_ms: Callable[[], int]
    _publish: Callable[[list[EventRecord]], None]
    _replay_outcome: Callable[[Pending, OperationRow], None]

    def _start_from_snapshot(self) -> None:
        """Load the newest valid snapshot and fold the log after it; without one, fold
        the whole log onto an empty state."""
        self.state, self.head_hash = snapshots.load_state(self.log, self.home.kernel_public_key())

    def catch_up(self) -> list[EventRecord]:
        """Fold events other processes (and hosts) appended since we last looked."""
        with self._lock:
            if self._stale:
                self._rebuild()
            new = list(self.log.records(after=self.state.seq))
            self.state, self.head_hash = fold(new, self.state, self.head_hash)
        self._publish(new)
        return new

    def _rebuild(self) -> None:
        self._stale = True
        self._start_from_snapshot()
        self._stale = False

    def _recover(self, batch: list[Pending], start: int, exc: Exception) -> list[EventRecord]:
        """After a failed commit: reload the state from the log and, if the commit's
        outcome is unknown (the connection was lost during COMMIT), give each operation
        of the batch that the log holds its recorded outcome. Returns the events after
        ``start`` (what subscribers have not seen); [] while the log is unreachable."""
        try:
            self._rebuild()
            if not isinstance(exc, CommitUnknown):
                return []
            keys = [(p.signed.principal, p.signed.nonce) for p in batch]
            recorded = self.log.operations_by_nonce(keys)
            for p, key in zip(batch, keys, strict=True):
                seen = recorded.get(key)
                if seen is not None and seen.digest == p.digest:
                    p.outcome, p.error = None, None
                    self._replay_outcome(p, seen)
                else:
                    p.outcome = None
                    p.error = TokaError(
                        f"{exc}; the operation is not in the log, so it was not applied: "
                        "submit it again"
                    )
            return list(self.log.records(after=start))
        except TokaError:
            log.exception("the log is unreachable; the state reloads before the next commit")
            return []

    @cached_property
    def host_key(self) -> KeyPair:
        """The kernel's key, loaded on the first host statement only."""
        return self.home.kernel_key()

    def host_sign(self, op: ops.Operation, nonce: str) -> ops.SignedOperation:
        """A host statement (``admission.HOST_STATEMENTS``) signed with the kernel's key."""
        return ops.sign(op, KERNEL, "", self.host_key, self.now_ms(), nonce)

    def verify(
        self,
        *,
        signatures: bool = False,
        progress: Callable[[int, int], None] | None = None,
        quick: bool = False,
    ) -> dict[str, Any]:
        """Check the chain, checkpoints, snapshots and operations table (see ``audit``),
        and unless ``quick``, that every event is what its signed operation decides and
        that no checkpoint due at the head is missing.

        Reads one consistent snapshot of the log on a connection of its own, so
        submissions go on while a long log is verified."""
        with self._reader() as reader:
            return audit.verify_log(
                reader,
                self.home.kernel_public_key(),
                signatures=signatures,
                progress=progress,
                decisions=not quick,
                checkpoint_interval=None if quick else self.config.checkpoint_interval,
            )

    def verify_against(self, exported: checkpoints.ExportedCheckpoint) -> dict[str, Any]:
        """Detect truncation or rollback against a checkpoint kept outside the log."""
        with self._reader() as reader:
            return audit.check_against(reader, exported, self.home.kernel_public_key())

    @contextlib.contextmanager
    def _reader(self) -> Iterator[Store]:
        reader = self.home.open_store(readonly=True)
        try:
            with reader.read():
                yield reader
        finally:
            reader.close()

    def export_checkpoint(self) -> checkpoints.ExportedCheckpoint:
        """A checkpoint of the current head, signed now with the kernel key, plus that
        key's public half: the operator keeps it elsewhere to detect a later rollback."""
        self.catch_up()
        key = self.home.kernel_key()
        with self._lock:
            st = self.state
            cp = checkpoints.Checkpoint(
                st.home_id, st.seq, st.ts, self.head_hash, st.state_hash()
            ).signed(key)
        return checkpoints.ExportedCheckpoint(checkpoints.EXPORT_FORMAT, cp, key.public_key)

    def replay(self, until: int | None = None) -> WorldState:
        """Rebuild state from genesis (ignoring anything cached), up to ``until``."""
        with self._lock:
            state, _ = fold_log(self.log, until=until)
        return state

    def state_at(self, seq: int) -> WorldState:
        """The world as it was at ``seq``: the nearest valid snapshot, then the events after."""
        with self._lock, self.log.read():
            loaded = snapshots.load_snapshot(self.log, self.home.kernel_public_key(), seq)
            state, head = loaded if loaded is not None else (WorldState(), GENESIS_PREV)
            state, _ = fold_log(self.log, state, head, until=seq)
        return state

    def replay_check(self, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Rebuild from genesis ignoring snapshots; the state hash must match every
        checkpoint and, at the head, this runtime's live state (snapshot + tail)."""
        self.catch_up()
        with self._lock:
            live = self.state.copy()
        with self._reader() as reader:
            return replay.replay_check(reader, live, progress)
