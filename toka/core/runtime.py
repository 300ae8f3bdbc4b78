"""The runtime: checks signed operations, runs the kernel and appends to the log.

Concurrent submissions in one process are group-committed: each caller's checks
that need no state (token HMAC, Ed25519 signature) run in the caller's thread in
parallel, then one leader commits everything queued in one transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec

from toka.core import events as ev
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
from toka.core.events import EventRecord
from toka.core.home import Home
from toka.core.identity import check_principal, thumbprint
from toka.core.ops import SignedOperation
from toka.core.state import WorldState
from toka.core.store import GENESIS_PREV, EventLog, OperationRow
from toka.core.tokens import Claims, TokenAuthority

log = logging.getLogger(__name__)

REJECTIONS_PER_PRINCIPAL_PER_MIN = 20
REJECTIONS_PER_MIN = 200


class Outcome(msgspec.Struct):
    """What one accepted operation did."""

    op: str
    nonce: str
    digest: str
    first_seq: int
    last_seq: int
    events: list[dict[str, Any]]
    tokens: dict[str, str] = msgspec.field(default_factory=dict)
    replayed: bool = False

    def first(self, kind: str) -> dict[str, Any]:
        for e in self.events:
            if e["kind"] == kind:
                return e["payload"]
        raise KeyError(kind)


class _Pending:
    __slots__ = ("authenticated", "claims", "done", "error", "outcome", "prepared", "signed")

    def __init__(self, signed: SignedOperation, prepared: Any = None):
        self.signed = signed
        self.prepared = prepared
        self.claims: Claims | None = None
        self.authenticated = False
        self.error: TokaError | None = None
        self.outcome: Outcome | None = None
        self.done = False


def fold(
    records, state: WorldState | None = None, head: str = GENESIS_PREV
) -> tuple[WorldState, str]:
    """Rebuild state by folding records; checks that each links to the one before."""
    state = state or WorldState()
    for r in records:
        if r.prev_hash != head:
            raise IntegrityFailure(f"event {r.seq}: prev_hash does not link to the chain", r.seq)
        kernel.evolve(state, r)
        head = r.hash
    return state, head


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
        self._suppressed: dict[str, int] = {}
        self._subscribers: list[Callable[[list[EventRecord]], None]] = []
        self.catch_up()
        self.authority = TokenAuthority(home.secret(), self.state.home_id)

    def close(self) -> None:
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
        self.state, self.head_hash = fold(self.log.records())

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
        pending = _Pending(signed, prepared)
        self._precheck(pending)
        with self._queue_lock:
            self._queue.append(pending)
        with self._lock:
            if not pending.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit(batch)
        if pending.error is not None:
            raise pending.error
        assert pending.outcome is not None
        return pending.outcome

    def submit_many(self, ops: list[SignedOperation]) -> list[Outcome | TokaError]:
        """Apply many operations in one transaction; each gets its own outcome or error."""
        batch = [_Pending(s) for s in ops]
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
                self._check_key(s, claims, key)
                p.authenticated = True
            self._check_fresh(s, now_s)
        except TokaError as exc:
            p.error = exc

    def _check_key(self, s: SignedOperation, claims: Claims, public_key: str) -> None:
        if thumbprint(public_key) != claims.jkt:
            raise BindingMismatch(f"token {claims.jti} is bound to another key (cnf mismatch)")
        s.verify(public_key)

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
                for p in batch:
                    new.extend(self._process(p, ts))
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

    def _process(self, p: _Pending, ts: int) -> list[EventRecord]:
        s = p.signed
        digest = s.digest
        if p.error is None:
            try:
                if not p.authenticated:
                    key = self.state.principals.get(s.principal)
                    if key is None:
                        raise TokenInvalid(f"unknown principal {s.principal!r}")
                    assert p.claims is not None
                    self._check_key(s, p.claims, key)
                    p.authenticated = True
                seen = self.log.operation(s.nonce)
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
            ctx = kernel.Ctx(self.state.seq + 1, ts, s.principal, p.claims.jti, digest, p.prepared)
            try:
                payloads = kernel.apply(self.state, s.op, ctx)
            except TokaError as exc:
                p.error = exc
            except Exception as exc:
                log.exception("kernel error on %s", s.kind)
                p.error = TokaError(f"internal kernel error on {s.kind}: {exc}")
        if p.error is not None:
            return self._reject(p, ts, digest)
        records = self._append(s.principal, p.claims.jti, digest, ts, payloads)  # type: ignore[union-attr]
        self.log.record_operation(
            OperationRow(
                s.nonce,
                digest,
                s.principal,
                s.kind,
                s.to_json(),
                "applied",
                records[0].seq,
                records[-1].seq,
                None,
                None,
            )
        )
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
        for part, payload in enumerate(payloads):
            seq = self.state.seq + 1
            kind = ev.kind_of(payload)
            data = ev.encode_payload(payload)
            prev = self.head_hash
            h = self.log.append(prev, seq, ts, kind, principal, grant, digest, part, data)
            record = EventRecord(seq, ts, kind, principal, grant, digest, part, data, prev, h)
            kernel.evolve(self.state, record)
            self.head_hash = h
            records.append(record)
        return records

    def _reject(self, p: _Pending, ts: int, digest: str) -> list[EventRecord]:
        s, err = p.signed, p.error
        assert err is not None
        if p.authenticated and not isinstance(err, ReplayedNonce):
            self.log.record_operation(
                OperationRow(
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
            )
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
        evs = []
        tokens = {}
        for r in records:
            payload = msgspec.json.decode(r.payload)
            evs.append({"seq": r.seq, "kind": r.kind, "payload": payload})
            if r.kind == "capability.granted":
                grant = self.state.grants.get(payload["jti"])
                key = self.state.principals.get(payload["subject"])
                if grant is not None and key is not None:
                    tokens[grant.jti] = self.authority.mint(grant, thumbprint(key))
        return Outcome(
            s.kind, s.nonce, digest, records[0].seq, records[-1].seq, evs, tokens, replayed
        )

    def _replay_outcome(self, p: _Pending, seen: OperationRow) -> None:
        if seen.status == "rejected":
            p.error = error_from_code(seen.error_code or "", seen.error or "rejected")
            p.done = True
            return
        assert seen.first_seq is not None and seen.last_seq is not None
        records = list(self.log.records(after=seen.first_seq - 1, until=seen.last_seq))
        p.outcome = self._outcome(p.signed, seen.digest, records, replayed=True)

    # -- integrity -----------------------------------------------------------------------

    def verify(self, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        with self._lock:
            n = self.log.verify_chain(progress)
            head_seq, head_hash, _ = self.log.head()
        return {"ok": True, "events": n, "head_seq": head_seq, "head_hash": head_hash}

    def replay(self, until: int | None = None) -> WorldState:
        """Rebuild state from genesis (ignoring anything cached), up to ``until``."""
        with self._lock:
            state, _ = fold(self.log.records(until=until))
        return state

    def replay_check(self) -> dict[str, Any]:
        self.catch_up()
        with self._lock:
            rebuilt = self.replay()
            live = self.state.state_hash()
            fresh = rebuilt.state_hash()
            if rebuilt.seq != self.state.seq or fresh != live:
                raise IntegrityFailure(
                    f"replay diverged: rebuilt state at seq {rebuilt.seq} has hash {fresh[:16]}, "
                    f"live state at seq {self.state.seq} has {live[:16]}",
                    rebuilt.seq,
                )
        return {"ok": True, "seq": rebuilt.seq, "state_hash": fresh}
