"""The runtime: checks signed operations, runs the kernel and appends to the log.

Concurrent submissions in one process are group-committed: each caller's checks
that need no state (token HMAC, Ed25519 signature) run in the caller's thread in
parallel, then one leader commits everything queued in one transaction.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import msgspec

from toka.core import kernel
from toka.core.errors import (
    ReplayedNonce,
    TokaError,
    TokenInvalid,
    error_from_code,
)
from toka.core.kernel import approvals as approval_rules
from toka.core.log import shared_blobs, snapshots
from toka.core.log.fold import fold
from toka.core.log.store import GENESIS_PREV, OperationRow
from toka.core.model import events as ev
from toka.core.model import ops as opmod
from toka.core.model.events import EventRecord
from toka.core.model.keys import thumbprint
from toka.core.model.ops import SignedOperation
from toka.core.model.state import Approval, WorldState
from toka.core.runtime import admission
from toka.core.runtime.admission import Pending
from toka.core.runtime.history import History
from toka.core.runtime.home import Home
from toka.core.runtime.outcome import Outcome
from toka.core.runtime.pipeline import CommitPipeline, settle
from toka.core.runtime.refusals import RefusalAudit
from toka.core.runtime.signatures import SignatureStage
from toka.core.runtime.tokens import TokenAuthority

log = logging.getLogger(__name__)

# submit_many checks signatures on a small pool once a batch is this large.
_PARALLEL_PRECHECK_MIN = 64
# How long a commit leader waits for submitters still checking their signatures.
GATHER_S = 0.001
_PRECHECK_WORKERS = max(2, min(8, os.cpu_count() or 2))


class Runtime(History):
    """An embedded kernel on one Toka home."""

    def __init__(
        self, home: Home, *, durability: str | None = None, clock: Callable[[], float] = time.time
    ):
        home.require()
        self.home = home
        self.config = home.config()
        self.durability = durability or self.config.durability
        self.clock = clock
        self.log = home.open_store(self.durability)
        self.state = WorldState()
        self.head_hash = GENESIS_PREV
        self._lock = threading.RLock()
        self._queue: list[Pending] = []
        self._queue_lock = threading.Lock()
        self._gather = threading.Condition(self._queue_lock)  # a leader waiting for its batch
        self._leading = False
        self._checking = 0  # submitters between entering submit() and joining the queue
        self._refusals = RefusalAudit(self.log)
        self._arguments = admission.ArgumentChecks()
        self._subscribers: list[Callable[[list[EventRecord]], None]] = []
        # Called with (operations, seconds) after each commit (toka.core.metrics); must not raise.
        self.commit_observer: Callable[[int, float], None] | None = None
        self._pipeline: CommitPipeline | None = None
        self._signatures: SignatureStage  # set with the pipeline
        self._pipeline_lock = threading.Lock()
        self._closed = False
        self._stale = False  # the state may be ahead of the log: rebuild before using it
        self._closers: list[Callable[[], None]] = []
        self._checkpoints = snapshots.CheckpointSchedule(
            self.config.checkpoint_interval,
            self.config.snapshot_every,
            home.kernel_key,
            self.log.last_checkpoint_seq(),
        )
        shared_blobs.share(home.blobs, self.log)  # a shared log keeps blobs for every host
        self._start_from_snapshot()
        self.catch_up()
        self.authority = TokenAuthority(home.secret(), self.state.home_id)

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on close (what a layer above holds open: MCP connections)."""
        self._closers.append(callback)

    def close(self) -> None:
        for callback in self._closers:
            try:
                callback()
            except Exception:  # what a layer above holds must not keep the log open
                log.exception("closing %r failed", callback)
        self._closers.clear()
        with self._pipeline_lock:
            pipeline, self._pipeline = self._pipeline, None
            self._closed = True
        if pipeline is not None:
            self._signatures.close()  # hands on what it holds first
            pipeline.close()
        shared_blobs.unshare(self.home.blobs, self.log)
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

    # -- tokens --------------------------------------------------------------------------

    def token_for(self, principal: str, required: list[str] | None = None) -> str:
        """Mint the token of ``principal``'s best active grant for ``required``."""
        return self.authority.token_for(self.state, principal, required or [], int(self.clock()))

    # -- submitting ----------------------------------------------------------------------

    def submit(self, signed: SignedOperation, prepared: Any = None) -> Outcome:
        """Check and apply one signed operation. Raises the kernel's specific error if refused.

        Resubmitting an operation that was already applied returns its original outcome
        with ``replayed=True``; it is never applied twice.
        """
        with self._queue_lock:
            self._checking += 1
        try:
            pending = Pending(signed, prepared)
            self._precheck(pending)
        finally:
            with self._queue_lock:
                self._checking -= 1
                self._gather.notify()
        if not self._commit_in_place(pending):
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

        The token and freshness are checked in the calling thread; the signature, in
        batches by the signature stage (``runtime.signatures``) on its way to the
        commit thread. A refusal still comes through the future, after it is logged
        like any other. Subscribers are called on the committing
        thread: one must not wait on a future there (the thread would wait for itself)."""
        pending = Pending(signed, prepared)
        self._precheck(pending, defer_signature=True)
        pending.future = Future()
        # Running from now on: a queued operation cannot be called back by cancel().
        pending.future.set_running_or_notify_cancel()
        if self._commit_in_place(pending):
            settle(pending)
            return pending.future
        with self._pipeline_lock:
            if self._closed:
                raise TokaError("the runtime is closed; the operation was not submitted")
            if self._pipeline is None:
                self._pipeline = CommitPipeline(self._commit_locked)
                self._signatures = SignatureStage(self._pipeline.put_many)
            stage = self._signatures
        stage.put(pending)
        return pending.future

    def _commit_in_place(self, pending: Pending) -> bool:
        """Commit ``pending`` now if this thread already holds the state lock (a subscriber
        reacting inside a commit, a dry-run decision): waiting for a leader or for the
        pipeline would be waiting for ourselves. Returns whether it did."""
        if not self._lock._is_owned():  # type: ignore[attr-defined]
            return False
        with self._lock:
            self._commit([pending])
        return True

    def _commit_locked(self, batch: list[Pending]) -> None:
        with self._lock:
            self._commit(batch)  # looked up on each call: tests replace it

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

    def held_operation(self, approval: Approval) -> SignedOperation:
        """The signed operation ``approval`` holds, read back from the log and checked."""
        return approval_rules.held_operation(approval, self._held_bytes(approval))

    def _held_bytes(self, approval: Approval | None) -> bytes:
        """The held operation's signed JSON from its own row (b"" if the state has it)."""
        if approval is None or approval.signed or approval.status != "pending":
            return b""
        seq = approval_rules.pending_seq(approval.id)
        row = self.log.operation_at(seq) if seq is not None else None
        return row.signed if row is not None else b""

    def _held_for(self, op: opmod.Operation) -> bytes:
        if not isinstance(op, opmod.ApproveOperation):
            return b""
        return self._held_bytes(self.state.approvals.get(op.approval))

    def dry_run(
        self, signed: SignedOperation, decide: Callable[[WorldState, kernel.Ctx], Any]
    ) -> Any:
        """Check ``signed`` as ``submit`` would and return ``decide(state, ctx)``; writes nothing.

        For flows that work outside the kernel before submitting (running a tool): it
        raises what ``submit`` would refuse with, but records nothing, so submit the
        operation to record a refusal. A nonce already in the log raises ReplayedNonce.
        """
        pending = Pending(signed)
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
                admission.check_key(signed, pending.claims, key, pending.body)
            if self.log.operation(signed.principal, signed.nonce) is not None:
                raise ReplayedNonce(f"nonce {signed.nonce} was already used")
            ts = max(self.now_ms(), self.state.ts)
            ctx = kernel.Ctx(
                self.state.seq + 1,
                ts,
                signed.principal,
                pending.claims.jti,
                pending.digest,
                signed=signed.to_json(),
                held=self._held_for(signed.op),
                checked=pending.checked,
            )
            return decide(self.state, ctx)

    def submit_many(self, ops: list[SignedOperation]) -> list[Outcome | TokaError]:
        """Apply many operations in one transaction; each gets its own outcome or error."""
        batch = [Pending(s) for s in ops]
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

    def _precheck(self, p: Pending, *, defer_signature: bool = False) -> None:
        # Only a host statement needs the kernel's key: nothing else loads it.
        key = self.host_key.public_key if p.signed.principal == kernel.KERNEL else None
        now_s = int(self.clock())
        principals, authority = self.state.principals, self.authority
        admission.precheck(p, authority, principals, self.config, now_s, key, defer_signature)
        if p.error is not None:
            return
        target = None
        if kernel.invokes_tool(p.signed.op):
            with self._lock:
                self.catch_up()  # the tool may have been registered by another process
                target = kernel.arguments_to_check(
                    self.state, p.signed.op, p.prepared, self._held_for(p.signed.op)
                )
        # Outside every lock: a costly schema holds up nobody but this submitter.
        self._arguments.check(p, target)

    def _commit(self, batch: list[Pending]) -> None:
        new: list[EventRecord] = []
        start = self.state.seq
        observe = self.commit_observer
        began = time.perf_counter() if observe is not None else 0.0
        try:
            if self._stale:
                self._rebuild()
            with self.log.write():
                caught = list(self.log.records(after=self.state.seq))
                self.state, self.head_hash = fold(caught, self.state, self.head_hash)
                new.extend(caught)
                ts = max(self.now_ms(), self.state.ts)
                # One query for the whole batch; _process adds what the batch records.
                known = self.log.operations_by_nonce(
                    [(p.signed.principal, p.signed.nonce) for p in batch if p.error is None]
                )
                for p in batch:
                    new.extend(self._process(p, ts, known))
                self._checkpoints.maybe_write(self.log, self.state, self.head_hash)
        except Exception as exc:
            if isinstance(exc, TokaError):  # the log's database: reported to each caller
                log.info("commit failed (%s); reloading state from the log", exc.message)
            else:
                log.exception("commit failed; reloading state from the log")
            for p in batch:
                if p.outcome is not None or p.error is None:
                    p.outcome = None
                    p.error = TokaError(f"the log could not be written: {exc}")
            new = self._recover(batch, start, exc)
        finally:
            for p in batch:
                p.done = True
        if observe is not None:
            observe(len(batch), time.perf_counter() - began)
        self._publish(new)

    def _process(
        self, p: Pending, ts: int, known: dict[tuple[str, str], OperationRow]
    ) -> list[EventRecord]:
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
                    admission.check_key(s, p.claims, key, p.body)
                    p.authenticated = True
                seen = known.get((s.principal, s.nonce))
                if seen is not None:
                    if seen.digest != digest:
                        raise ReplayedNonce(
                            f"nonce {s.nonce} was already used by another operation"
                        )
                    self._replay_outcome(p, seen)
                    return []
            except TokaError as exc:
                p.error = exc
        grant = p.claims.jti if p.claims is not None else None  # None: a host statement
        if p.error is None:
            signed_json = s.to_json()
            ctx = kernel.Ctx(
                self.state.seq + 1,
                ts,
                s.principal,
                grant,
                digest,
                p.prepared,
                signed_json,
                held=self._held_for(s.op),
                checked=p.checked,
            )
            try:
                payloads = kernel.apply(self.state, s.op, ctx)
            except TokaError as exc:
                p.error = exc
            except Exception as exc:
                log.exception("kernel error on %s", s.kind)
                p.error = TokaError(f"internal kernel error on {s.kind}: {exc}")
        if p.error is not None:
            return self._reject(p, ts, known)
        records = self._append(s.principal, grant, digest, ts, payloads)
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
        known[(s.principal, s.nonce)] = row
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
        self, p: Pending, ts: int, known: dict[tuple[str, str], OperationRow]
    ) -> list[EventRecord]:
        logged = self._refusals.record(p, ts, known)
        if logged is None:
            return []
        principal, payload = logged
        return self._append(principal, None, p.digest, ts, [payload])

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

    def _replay_outcome(self, p: Pending, seen: OperationRow) -> None:
        if seen.status == "rejected":
            p.error = error_from_code(seen.error_code or "", seen.error or "rejected")
            p.done = True
            return
        assert seen.first_seq is not None and seen.last_seq is not None
        records = list(self.log.records(after=seen.first_seq - 1, until=seen.last_seq))
        p.outcome = self._outcome(p.signed, seen.digest, records, replayed=True)
