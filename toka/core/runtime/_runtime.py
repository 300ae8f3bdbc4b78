"""The runtime: checks signed operations, runs the kernel and appends to the log.

Concurrent submissions in one process are group-committed: each caller's checks
that need no state (token HMAC, Ed25519 signature) run in the caller's thread in
parallel, then one leader commits everything queued in one transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import msgspec

from toka.core import kernel
from toka.core.errors import (
    BindingMismatch,
    Denied,
    IntegrityFailure,
    ReplayedNonce,
    StaleOperation,
    TokaError,
    TokenInvalid,
    error_from_code,
)
from toka.core.log import checkpoints, snapshots
from toka.core.log.store import GENESIS_PREV, EventLog, OperationRow
from toka.core.model import events as ev
from toka.core.model.events import EventRecord
from toka.core.model.keys import check_principal, thumbprint, verify_signature
from toka.core.model.ops import SignedOperation
from toka.core.model.state import WorldState
from toka.core.runtime.home import Home
from toka.core.runtime.outcome import Outcome
from toka.core.runtime.tokens import Claims, TokenAuthority

log = logging.getLogger(__name__)

REJECTIONS_PER_PRINCIPAL_PER_MIN = 20
REJECTIONS_PER_MIN = 200
# submit_many checks signatures on a small pool once a batch is this large.
_PARALLEL_PRECHECK_MIN = 64
# How long a commit leader waits for submitters still checking their signatures.
GATHER_S = 0.001
_PRECHECK_WORKERS = max(2, min(8, os.cpu_count() or 2))


class _Pending:
    __slots__ = (
        "authenticated",
        "body",
        "claims",
        "digest",
        "done",
        "error",
        "future",
        "outcome",
        "prepared",
        "signed",
        "wake",
    )

    def __init__(self, signed: SignedOperation, prepared: Any = None):
        self.signed = signed
        self.prepared = prepared
        # Held until the submitter should wake: its outcome is ready, or it leads next.
        self.wake = threading.Lock()
        self.wake.acquire()
        # The signed bytes are encoded once: the signature check and the digest share them.
        self.body = signed.signing_bytes()
        self.digest = hashlib.sha256(self.body).hexdigest()
        self.claims: Claims | None = None
        self.authenticated = False
        self.error: TokaError | None = None
        self.outcome: Outcome | None = None
        self.done = False
        self.future: Future[Outcome] | None = None


def fold(
    records, state: WorldState | None = None, head: str = GENESIS_PREV
) -> tuple[WorldState, str]:
    """Rebuild state by folding records; checks that each links to the one before."""
    state = state or WorldState()
    for r in records:
        if r.prev_hash != head:
            raise IntegrityFailure(f"event {r.seq}: prev_hash does not link to the chain", r.seq)
        try:
            kernel.evolve(state, r)
        except Exception as exc:
            # A row that cannot be folded was altered or reordered: report where.
            raise IntegrityFailure(
                f"event {r.seq}: cannot be folded into the state ({exc}); run `toka verify`",
                r.seq,
            ) from exc
        head = r.hash
    return state, head


class _Pipeline:
    """Commits what ``Runtime.submit_async`` queues, on a thread of its own.

    The thread commits everything queued in one transaction and resolves each
    operation's future, then takes what arrived meanwhile: a client may so keep many
    operations in flight, each still checked, committed and (with ``full``) synced
    before its future says so, and the longer the disk takes, the larger the next
    batch that one sync serves.
    """

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Pending] = []
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="toka-commit", daemon=True)
        self._thread.start()

    def put(self, pending: _Pending) -> None:
        with self._cond:
            if self._closing:
                raise TokaError("the runtime is closing; the operation was not submitted")
            self._queue.append(pending)
            self._cond.notify()

    def _run(self) -> None:
        rt = self.runtime
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:  # closing, and nothing left to commit
                    return
                batch, self._queue = self._queue, []
            try:
                with rt._lock:
                    rt._commit(batch)
            except Exception as exc:  # _commit reports its own failures; not this
                log.exception("commit thread failed")
                for p in batch:
                    p.outcome, p.error = None, TokaError(f"internal error while committing: {exc}")
            for p in batch:
                rt._settle(p)

    def close(self) -> None:
        """Commit everything queued, then stop."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()


class Runtime:
    """An embedded kernel on one Toka home."""

    def __init__(
        self, home: Home, *, durability: str | None = None, clock: Callable[[], float] = time.time
    ):
        home.require()
        self.home = home
        self.config = home.config()
        self.durability = durability or self.config.durability
        self.clock = clock
        self.log = EventLog(home.db_path, self.durability)
        self.state = WorldState()
        self.head_hash = GENESIS_PREV
        self._lock = threading.RLock()
        self._queue: list[_Pending] = []
        self._queue_lock = threading.Lock()
        self._gather = threading.Condition(self._queue_lock)  # a leader waiting for its batch
        self._leading = False
        self._checking = 0  # submitters between entering submit() and joining the queue
        self._suppressed: dict[str, int] = {}
        self._subscribers: list[Callable[[list[EventRecord]], None]] = []
        self._pipeline: _Pipeline | None = None
        self._pipeline_lock = threading.Lock()
        self._closed = False
        self._checkpoints = snapshots.CheckpointSchedule(
            self.config.checkpoint_interval,
            self.config.snapshot_every,
            home.kernel_key,
            self.log.last_checkpoint_seq(),
        )
        self._start_from_snapshot()
        self.catch_up()
        self.authority = TokenAuthority(home.secret(), self.state.home_id)

    def _start_from_snapshot(self, until: int | None = None) -> None:
        """Load the newest valid snapshot (at or before ``until``); the tail is folded
        by catch-up. Without one, state starts empty and the whole log is folded."""
        loaded = snapshots.load_snapshot(self.log, self.home.kernel_public_key(), until)
        if loaded is None:
            self.state, self.head_hash = WorldState(), GENESIS_PREV
        else:
            self.state, self.head_hash = loaded

    def close(self) -> None:
        with self._pipeline_lock:
            pipeline, self._pipeline = self._pipeline, None
            self._closed = True
        if pipeline is not None:
            pipeline.close()
        with self._lock:
            self.log.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- time ----------------------------------------------------------------------------

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- following -----------------------------------------------------------------------

    def subscribe(self, callback: Callable[[list[EventRecord]], None]) -> Callable[[], None]:
        """Call ``callback`` with each batch of new events this runtime sees; returns unsubscribe."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def _publish(self, records: list[EventRecord]) -> None:
        if not records:
            return
        for callback in list(self._subscribers):
            try:
                callback(records)
            except Exception:
                log.exception("event subscriber failed")

    def catch_up(self) -> list[EventRecord]:
        """Fold events other processes appended since we last looked."""
        with self._lock:
            new = list(self.log.records(after=self.state.seq))
            self.state, self.head_hash = fold(new, self.state, self.head_hash)
        self._publish(new)
        return new

    def _rebuild(self) -> None:
        self._start_from_snapshot()
        self.state, self.head_hash = fold(
            self.log.records(after=self.state.seq), self.state, self.head_hash
        )

    # -- tokens --------------------------------------------------------------------------

    def token_for(self, principal: str, required: list[str] | None = None) -> str:
        """Mint the token of ``principal``'s best active grant for ``required``."""
        now_s = int(self.clock())
        grants = self.state.active_grants(principal, now_s)
        if not grants:
            raise Denied(f"{principal} holds no active grant")
        covering = [
            g for g in grants if all(kernel.capmod.covers(g.caps, c) for c in required or [])
        ]
        grant = (covering or grants)[-1]
        return self.authority.mint(grant, thumbprint(self.state.principals[principal]))

    # -- submitting ----------------------------------------------------------------------

    def submit(self, signed: SignedOperation, prepared: Any = None) -> Outcome:
        """Check and apply one signed operation. Raises the kernel's specific error if refused.

        Resubmitting an operation that was already applied returns its original outcome
        with ``replayed=True``; it is never applied twice.
        """
        with self._queue_lock:
            self._checking += 1
        try:
            pending = _Pending(signed, prepared)
            self._precheck(pending)
        finally:
            with self._queue_lock:
                self._checking -= 1
                self._gather.notify()
        if self._lock._is_owned():  # type: ignore[attr-defined]
            # This thread already holds the state lock (a subscriber reacting inside a
            # commit, a dry-run decision): waiting for a leader would wait for ourselves.
            with self._lock:
                self._commit([pending])
        else:
            # Group commit. Whoever finds no leader becomes it and commits everything
            # queued; the others sleep on their own wake-up lock until their outcome is
            # ready, or until the leader hands leadership over to them.
            with self._queue_lock:
                self._queue.append(pending)
                leading = not self._leading
                self._leading = True
            if not leading:
                pending.wake.acquire()
            if not pending.done:
                self._lead()
        if pending.error is not None:
            raise pending.error
        assert pending.outcome is not None
        return pending.outcome

    def submit_async(self, signed: SignedOperation, prepared: Any = None) -> Future[Outcome]:
        """Check ``signed`` now and queue it; the future gives what ``submit`` would
        return (or raise) once the operation is committed and, with ``full``
        durability, on disk. One client can so keep many operations in flight.

        The checks that need no state (token, signature, freshness) run in the
        calling thread, as in ``submit``; a refusal still comes through the future,
        after it is logged like any other. Subscribers are called on the committing
        thread: one must not wait on a future there (the thread would wait for itself)."""
        pending = _Pending(signed, prepared)
        self._precheck(pending)
        pending.future = Future()
        # Running from now on: a queued operation cannot be called back by cancel().
        pending.future.set_running_or_notify_cancel()
        if self._lock._is_owned():  # type: ignore[attr-defined]
            # Called while this thread holds the state lock (from a subscriber): the
            # pipeline would wait for this thread, so commit in place.
            with self._lock:
                self._commit([pending])
            self._settle(pending)
            return pending.future
        with self._pipeline_lock:
            if self._closed:
                raise TokaError("the runtime is closed; the operation was not submitted")
            if self._pipeline is None:
                self._pipeline = _Pipeline(self)
            pipeline = self._pipeline
        pipeline.put(pending)
        return pending.future

    @staticmethod
    def _settle(p: _Pending) -> None:
        assert p.future is not None
        if p.error is not None:
            p.future.set_exception(p.error)
        else:
            p.future.set_result(p.outcome)  # type: ignore[arg-type]

    def _lead(self) -> None:
        """Commit the queued batch, then hand leadership on and wake the batch."""
        with self._queue_lock:
            # Submitters still checking their signatures arrive within a fraction of a
            # millisecond: waiting for them makes one commit and one sync serve them all.
            deadline = time.monotonic() + GATHER_S
            while self._checking and (left := deadline - time.monotonic()) > 0:
                self._gather.wait(left)
            batch, self._queue = self._queue, []
        try:
            with self._lock:
                self._commit(batch)
        finally:
            with self._queue_lock:
                successor = self._queue[0] if self._queue else None
                self._leading = successor is not None
            if successor is not None:
                successor.wake.release()
            for p in batch:
                p.wake.release()

    def dry_run(
        self, signed: SignedOperation, decide: Callable[[WorldState, kernel.Ctx], Any]
    ) -> Any:
        """Check ``signed`` as ``submit`` would and return ``decide(state, ctx)``; writes nothing.

        For flows that work outside the kernel before submitting (running a tool): it
        raises what ``submit`` would refuse with, but records nothing, so submit the
        operation to record a refusal. A nonce already in the log raises ReplayedNonce.
        """
        pending = _Pending(signed)
        self._precheck(pending)
        if pending.error is not None:
            raise pending.error
        assert pending.claims is not None
        self.catch_up()
        with self._lock:
            key = self.state.principals.get(signed.principal)
            if key is None:
                raise TokenInvalid(f"unknown principal {signed.principal!r}")
            if not pending.authenticated:
                self._check_key(signed, pending.claims, key, pending.body)
            if self.log.operation(signed.nonce) is not None:
                raise ReplayedNonce(f"nonce {signed.nonce} was already used")
            ts = max(self.now_ms(), self.state.ts)
            ctx = kernel.Ctx(
                self.state.seq + 1,
                ts,
                signed.principal,
                pending.claims.jti,
                pending.digest,
                signed=signed.to_json(),
            )
            return decide(self.state, ctx)

    def submit_many(self, ops: list[SignedOperation]) -> list[Outcome | TokaError]:
        """Apply many operations in one transaction; each gets its own outcome or error."""
        batch = [_Pending(s) for s in ops]
        if len(batch) >= _PARALLEL_PRECHECK_MIN:
            # Signature checks release the GIL: spread them over the cores.
            chunk = -(-len(batch) // _PRECHECK_WORKERS)
            with ThreadPoolExecutor(_PRECHECK_WORKERS, thread_name_prefix="toka-check") as pool:
                for _ in pool.map(
                    lambda part: [self._precheck(p) for p in part],
                    [batch[i : i + chunk] for i in range(0, len(batch), chunk)],
                ):
                    pass
        else:
            for p in batch:
                self._precheck(p)
        with self._lock:
            self._commit(batch)
        return [p.error if p.error is not None else p.outcome for p in batch]  # type: ignore[misc]

    def _precheck(self, p: _Pending) -> None:
        s = p.signed
        now_s = int(self.clock())
        try:
            check_principal(s.principal)
            claims = self.authority.verify(s.token, now_s)
            p.claims = claims
            if claims.sub != s.principal:
                raise BindingMismatch(
                    f"token {claims.jti} was issued to {claims.sub}, not {s.principal}"
                )
            key = self.state.principals.get(s.principal)
            if key is not None:
                self._check_key(s, claims, key, p.body)
                p.authenticated = True
            self._check_fresh(s, now_s)
        except TokaError as exc:
            p.error = exc

    def _check_key(
        self, s: SignedOperation, claims: Claims, public_key: str, body: bytes | None = None
    ) -> None:
        if thumbprint(public_key) != claims.jkt:
            raise BindingMismatch(f"token {claims.jti} is bound to another key (cnf mismatch)")
        verify_signature(public_key, s.sig, s.signing_bytes() if body is None else body)

    def _check_fresh(self, s: SignedOperation, now_s: int) -> None:
        age = now_s - s.ts // 1000
        if age > self.config.op_max_age_s:
            raise StaleOperation(
                f"operation signed {age} s ago; the limit is {self.config.op_max_age_s} s"
            )
        if -age > self.config.op_max_skew_s:
            raise StaleOperation(f"operation timestamp is {-age} s in the future")

    def _commit(self, batch: list[_Pending]) -> None:
        new: list[EventRecord] = []
        try:
            with self.log.write():
                caught = list(self.log.records(after=self.state.seq))
                self.state, self.head_hash = fold(caught, self.state, self.head_hash)
                new.extend(caught)
                ts = max(self.now_ms(), self.state.ts)
                # One query for the whole batch; _process adds what the batch records.
                known = self.log.operations_by_nonce(
                    [p.signed.nonce for p in batch if p.error is None]
                )
                for p in batch:
                    new.extend(self._process(p, ts, known))
                self._checkpoints.maybe_write(self.log, self.state, self.head_hash)
        except Exception as exc:
            log.exception("commit failed; reloading state from the log")
            self._rebuild()
            for p in batch:
                if p.outcome is not None or p.error is None:
                    p.outcome = None
                    p.error = TokaError(f"the log could not be written: {exc}")
            new = []
        finally:
            for p in batch:
                p.done = True
        self._publish(new)

    def _process(self, p: _Pending, ts: int, known: dict[str, OperationRow]) -> list[EventRecord]:
        """Decide and append one operation. ``known`` holds the recorded operations
        among the batch's nonces, and gains each one this records."""
        s = p.signed
        digest = p.digest
        if p.error is None:
            try:
                if not p.authenticated:
                    key = self.state.principals.get(s.principal)
                    if key is None:
                        raise TokenInvalid(f"unknown principal {s.principal!r}")
                    assert p.claims is not None
                    self._check_key(s, p.claims, key, p.body)
                    p.authenticated = True
                seen = known.get(s.nonce)
                if seen is not None:
                    if seen.digest != digest:
                        raise ReplayedNonce(
                            f"nonce {s.nonce} was already used by another operation"
                        )
                    self._replay_outcome(p, seen)
                    return []
            except TokaError as exc:
                p.error = exc
        if p.error is None:
            assert p.claims is not None
            signed_json = s.to_json()
            ctx = kernel.Ctx(
                self.state.seq + 1, ts, s.principal, p.claims.jti, digest, p.prepared, signed_json
            )
            try:
                payloads = kernel.apply(self.state, s.op, ctx)
            except TokaError as exc:
                p.error = exc
            except Exception as exc:
                log.exception("kernel error on %s", s.kind)
                p.error = TokaError(f"internal kernel error on {s.kind}: {exc}")
        if p.error is not None:
            return self._reject(p, ts, digest, known)
        records = self._append(s.principal, p.claims.jti, digest, ts, payloads)  # type: ignore[union-attr]
        row = OperationRow(
            s.nonce,
            digest,
            s.principal,
            s.kind,
            signed_json,
            "applied",
            records[0].seq,
            records[-1].seq,
            None,
            None,
        )
        self.log.record_operation(row)
        known[s.nonce] = row
        p.outcome = self._outcome(s, digest, records)
        return records

    def _append(
        self,
        principal: str,
        grant: str | None,
        digest: str,
        ts: int,
        payloads: list[msgspec.Struct],
    ) -> list[EventRecord]:
        records = []
        for part, item in enumerate(payloads):
            who, via, payload = principal, grant, item
            if isinstance(item, ev.Attributed):  # an approved operation's effects
                who, via, payload = item.principal, item.grant, item.payload
            seq = self.state.seq + 1
            kind = ev.kind_of(payload)
            data = ev.encode_payload(payload)
            prev = self.head_hash
            h = self.log.append(prev, seq, ts, kind, who, via, digest, part, data)
            record = EventRecord(seq, ts, kind, who, via, digest, part, data, prev, h)
            kernel.evolve(self.state, record)
            self.head_hash = h
            records.append(record)
        return records

    def _reject(
        self, p: _Pending, ts: int, digest: str, known: dict[str, OperationRow]
    ) -> list[EventRecord]:
        s, err = p.signed, p.error
        assert err is not None
        if p.authenticated and not isinstance(err, ReplayedNonce):
            row = OperationRow(
                s.nonce,
                digest,
                s.principal,
                s.kind,
                s.to_json(),
                "rejected",
                None,
                None,
                err.code,
                err.message,
            )
            self.log.record_operation(row)
            known[s.nonce] = row
        try:
            principal = check_principal(s.principal)
        except TokaError:
            principal = "unknown"
        window = ts - 60_000
        if (
            self.log.recent_rejections(principal, window) >= REJECTIONS_PER_PRINCIPAL_PER_MIN
            or self.log.recent_rejections(None, window) >= REJECTIONS_PER_MIN
        ):
            self._suppressed[principal] = self._suppressed.get(principal, 0) + 1
            return []
        payload = ev.OperationRejected(
            code=err.code,
            reason=err.message[:1000],
            op=s.kind,
            nonce=s.nonce[:64],
            authenticated=p.authenticated,
            suppressed=self._suppressed.pop(principal, 0),
        )
        return self._append(principal, None, digest, ts, [payload])

    def _outcome(
        self, s: SignedOperation, digest: str, records: list[EventRecord], replayed: bool = False
    ) -> Outcome:
        outcome = Outcome.of(s.kind, s.nonce, digest, records, replayed=replayed)
        for granted in outcome.all(ev.CapabilityGranted):
            grant = self.state.grants.get(granted.jti)
            key = self.state.principals.get(granted.subject)
            if grant is not None and key is not None:
                outcome.tokens[grant.jti] = self.authority.mint(grant, thumbprint(key))
        return outcome

    def _replay_outcome(self, p: _Pending, seen: OperationRow) -> None:
        if seen.status == "rejected":
            p.error = error_from_code(seen.error_code or "", seen.error or "rejected")
            p.done = True
            return
        assert seen.first_seq is not None and seen.last_seq is not None
        records = list(self.log.records(after=seen.first_seq - 1, until=seen.last_seq))
        p.outcome = self._outcome(p.signed, seen.digest, records, replayed=True)

    # -- integrity -----------------------------------------------------------------------

    def verify(
        self, *, signatures: bool = False, progress: Callable[[int, int], None] | None = None
    ) -> dict[str, Any]:
        """Check the chain, checkpoints, snapshots and operations table (see ``audit``).

        Reads one consistent snapshot of the log on a connection of its own, so
        submissions go on while a long log is verified."""
        from toka.core.log import audit

        with self._reader() as reader:
            return audit.verify_log(
                reader, self.home.kernel_public_key(), signatures=signatures, progress=progress
            )

    def verify_against(self, exported: checkpoints.ExportedCheckpoint) -> dict[str, Any]:
        """Detect truncation or rollback against a checkpoint kept outside the log."""
        from toka.core.log import audit

        with self._reader() as reader:
            return audit.check_against(reader, exported, self.home.kernel_public_key())

    @contextlib.contextmanager
    def _reader(self) -> Iterator[EventLog]:
        reader = EventLog(self.home.db_path, readonly=True)
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
            state, _ = fold(self.log.records(until=until))
        return state

    def state_at(self, seq: int) -> WorldState:
        """The world as it was at ``seq``: the nearest valid snapshot, then the events after."""
        with self._lock, self.log.read():
            loaded = snapshots.load_snapshot(self.log, self.home.kernel_public_key(), seq)
            state, head = loaded if loaded is not None else (WorldState(), GENESIS_PREV)
            state, _ = fold(self.log.records(after=state.seq, until=seq), state, head)
        return state

    def replay_check(self, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Rebuild from genesis ignoring snapshots; the state hash must match every
        checkpoint and, at the head, this runtime's live state (snapshot + tail)."""
        from toka.core.log import audit

        self.catch_up()
        with self._lock:
            live = self.state.copy()
        with self._reader() as reader:
            return audit.replay_check(reader, live, progress)
