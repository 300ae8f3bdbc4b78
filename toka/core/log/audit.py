"""Auditing a log: the hash chain, signed checkpoints, the operations table. (A replay
checked against the checkpoints is ``replay.py``'s.)

Every check walks the log once in sequence order, so the first failure found is
the first bad sequence number; each failure raises :class:`IntegrityFailure`
carrying that seq.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from toka.core.errors import BadSignature, IntegrityFailure, InvalidInput
from toka.core.log.checkpoints import Checkpoint, ExportedCheckpoint
from toka.core.log.fold import fold_one
from toka.core.log.redecide import redecide
from toka.core.log.snapshots import decode_snapshot
from toka.core.log.store import GENESIS_PREV, OperationRow, Store, chain_hash
from toka.core.model.events import EventRecord
from toka.core.model.keys import verify_signature
from toka.core.model.ops import SignedOperation
from toka.core.model.state import WorldState

Progress = Callable[[int, int], None]

# Events that no operation record covers: the genesis pair and audited refusals.
_UNRECORDED_DIGESTS = ("genesis",)
_UNRECORDED_KINDS = ("operation.rejected",)
_SIGNATURE_CHUNK = 512


class _SignatureChecks:
    """Ed25519 checks queued in log order and run on a thread pool (the library
    releases the GIL), reporting the lowest bad seq."""

    def __init__(self, kernel_key: str | None = None) -> None:
        self.kernel_key = kernel_key  # the signer of host statements
        self.pending: list[tuple[int, str, str, bytes]] = []
        self.checked = 0
        self._pool: ThreadPoolExecutor | None = None

    def add(self, seq: int, public_key: str, sig: str, body: bytes) -> None:
        self.pending.append((seq, public_key, sig, body))
        if len(self.pending) >= _SIGNATURE_CHUNK * 4:
            self.flush()

    def add_signed(
        self, state: WorldState, signed: SignedOperation, seq: int | None, unknown: str
    ) -> None:
        """Queue ``signed`` against its signer's key as the log knows it (``unknown``
        is the failure when the log has no such key)."""
        key = state.principals.get(signed.principal)
        if key is None and signed.principal == "kernel":
            key = self.kernel_key
        if key is None:
            raise IntegrityFailure(unknown, seq)
        self.add(seq or 0, key, signed.sig, signed.signing_bytes())

    def flush(self) -> None:
        if not self.pending:
            return
        work, self.pending = self.pending, []
        chunks = [work[i : i + _SIGNATURE_CHUNK] for i in range(0, len(work), _SIGNATURE_CHUNK)]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="toka-verify")
        for bad in self._pool.map(_first_bad_signature, chunks):
            if bad is not None:
                raise IntegrityFailure(
                    f"event {bad}: the operation's signature does not verify with the "
                    "signer's public key recorded in the log",
                    bad,
                )
        self.checked += len(work)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()


def _first_bad_signature(chunk: list[tuple[int, str, str, bytes]]) -> int | None:
    for seq, public_key, sig, body in chunk:
        try:
            verify_signature(public_key, sig, body)
        except BadSignature:
            return seq
    return None


def _decode_signed(row: OperationRow, seq: int | None) -> SignedOperation:
    try:
        return SignedOperation.from_json(row.signed)
    except InvalidInput as exc:
        raise IntegrityFailure(
            f"operation {row.nonce}: its stored signed operation does not decode", seq
        ) from exc


def _check_operation_row(row: OperationRow, seq: int | None) -> SignedOperation:
    """The stored signed JSON must hash to the recorded digest and match its columns."""
    signed = _decode_signed(row, seq)
    where = f"event {seq}" if seq is not None else f"operation {row.nonce}"
    if signed.digest != row.digest:
        raise IntegrityFailure(
            f"{where}: the stored signed operation hashes to {signed.digest[:16]}, "
            f"not the recorded digest {row.digest[:16]}",
            seq,
        )
    if (signed.nonce, signed.principal, signed.kind) != (row.nonce, row.principal, row.kind):
        raise IntegrityFailure(
            f"{where}: operation record {row.nonce} does not match its signed operation", seq
        )
    return signed


def _check_genesis(r: EventRecord) -> None:
    """The only events no signed operation made, but refusals, are the first two: the
    genesis and the operator's root grant, by the kernel. Anywhere else, or saying
    anything else, such an event was forged (it would escape deciding again)."""
    expected = {1: "log.genesis", 2: "capability.granted"}.get(r.seq)
    if expected is None or r.kind != expected or r.principal != "kernel" or r.grant is not None:
        raise IntegrityFailure(
            f"event {r.seq}: a {r.kind} event claims to be part of the genesis, which is "
            "events 1 and 2 only",
            r.seq,
        )
    if r.seq == 2:
        root = msgspec.json.decode(r.payload)
        if (root.get("jti"), root.get("subject"), root.get("issuer"), root.get("parent")) != (
            "gr-2",
            "operator",
            "kernel",
            None,
        ):
            raise IntegrityFailure("event 2: the genesis root grant is not the operator's", 2)


def _operation_cursor(log: Store) -> tuple[Iterator[OperationRow], list[OperationRow]]:
    """Applied operations in log order, and the refused ones."""
    applied: list[OperationRow] = []
    refused: list[OperationRow] = []
    for row in log.operations():
        (applied if row.status == "applied" else refused).append(row)
    return iter(applied), refused


def verify_log(
    log: Store,
    public_key: str | None,
    *,
    signatures: bool = False,
    progress: Progress | None = None,
    decisions: bool = False,
    checkpoint_interval: int | None = None,
) -> dict[str, Any]:
    """Check the chain, every checkpoint (signature, head hash, state hash by replay),
    the snapshots, and the operations table; with ``signatures`` every op signature;
    with ``decisions`` that every event is what its signed operation decides
    (``redecide``); with ``checkpoint_interval`` that no checkpoint it makes due at
    the head is missing."""
    total = log.count()
    checkpoints = iter(log.checkpoints())
    cp = next(checkpoints, None)
    if cp is not None and public_key is None:
        raise IntegrityFailure(
            f"checkpoint at seq {cp.seq} exists but the kernel key that signs checkpoints "
            "is missing from the home",
            cp.seq,
        )
    applied, refused = _operation_cursor(log)
    # Where each refused operation's rejection event is, found on the walk.
    refused_at: dict[str, int | None] = {row.digest: None for row in refused}
    op: OperationRow | None = None
    sigs = _SignatureChecks(public_key)
    held: set[str] = set()
    state = WorldState()
    prev = GENESIS_PREV
    n = n_checkpoints = n_ops = 0
    state_hash = state.state_hash()
    op_signed: SignedOperation | None = None
    buffered: list[EventRecord] = []  # the current operation's events, until re-decided
    last_cp = 0

    def held_bytes(first_seq: int) -> bytes:
        row = log.operation_at(first_seq)
        return row.signed if row is not None else b""

    def folded(rec: EventRecord) -> None:
        nonlocal cp, n_checkpoints, state_hash, last_cp
        fold_one(state, rec)
        while cp is not None and cp.seq == rec.seq:
            state_hash = _check_checkpoint(cp, state, rec.hash, public_key)
            n_checkpoints += 1
            last_cp = cp.seq
            cp = next(checkpoints, None)
        if cp is not None and cp.seq < rec.seq:
            raise IntegrityFailure(f"checkpoint at seq {cp.seq} is out of order", cp.seq)

    try:
        for r in log.records():
            seq = r.seq
            try:
                n += 1
                if seq != n:
                    raise IntegrityFailure(
                        f"event {n} is missing (the next stored event is {seq})", n
                    )
                if r.prev_hash != prev:
                    raise IntegrityFailure(
                        f"event {seq}: prev_hash does not match event {seq - 1}", seq
                    )
                if r.hash != chain_hash(
                    prev, seq, r.ts, r.kind, r.principal, r.grant, r.op_digest, r.part, r.payload
                ):
                    raise IntegrityFailure(f"event {seq}: hash does not match its contents", seq)
                prev = r.hash
                if r.op_digest in _UNRECORDED_DIGESTS:
                    _check_genesis(r)
                covered = r.op_digest not in _UNRECORDED_DIGESTS and r.kind not in _UNRECORDED_KINDS
                if op is not None and seq <= (op.last_seq or 0) and not covered:
                    raise IntegrityFailure(
                        f"event {seq}: operation record {op.nonce} claims it, but it is a "
                        f"{r.kind} event",
                        seq,
                    )
                if covered:
                    if op is None or seq > (op.last_seq or 0):
                        op = next(applied, None)
                        if op is None or op.first_seq != seq:
                            raise IntegrityFailure(
                                f"event {seq}: no operation record covers this {r.kind} event",
                                seq,
                            )
                        n_ops += 1
                        signed = op_signed = _check_operation_row(op, seq)
                        if signatures:
                            sigs.add_signed(
                                state,
                                signed,
                                seq,
                                f"event {seq}: signer {signed.principal} has no public key "
                                "in the log before this event",
                            )
                    assert op.first_seq is not None
                    # An approved operation's effects keep the digest of the operation
                    # that was held, inside the range of the approval that released them.
                    theirs = r.op_digest == op.digest or r.op_digest in held
                    if not theirs or r.part != seq - op.first_seq:
                        raise IntegrityFailure(
                            f"event {seq}: does not belong to operation {op.nonce} "
                            f"(digest {r.op_digest[:16]}, part {r.part})",
                            seq,
                        )
                if r.kind == "operation.pending":
                    held.add(r.op_digest)
                elif r.kind == "operation.rejected" and r.op_digest in refused_at:
                    refused_at[r.op_digest] = refused_at[r.op_digest] or seq
                if decisions and covered:
                    buffered.append(r)
                    assert op is not None and op_signed is not None
                    if seq == op.last_seq:
                        redecide(state, op_signed, op.signed, op.digest, buffered, held_bytes)
                        for rec in buffered:
                            folded(rec)
                        buffered = []
                else:
                    folded(r)
            except IntegrityFailure:
                sigs.flush()
                raise
            if progress is not None and n % 2000 == 0:
                progress(n, total)
        head = n
        if buffered:
            raise IntegrityFailure(
                f"event {buffered[0].seq}: its operation's events end after the log", head + 1
            )
        if (
            checkpoint_interval is not None
            and head // checkpoint_interval > last_cp // checkpoint_interval
        ):
            due = (last_cp // checkpoint_interval + 1) * checkpoint_interval
            raise IntegrityFailure(
                f"the checkpoint due once the log passed seq {due} is missing "
                f"(every {checkpoint_interval} events; the last one is at seq {last_cp}): "
                "checkpoints were deleted",
                due,
            )
        if cp is not None:
            raise IntegrityFailure(
                f"checkpoint at seq {cp.seq} is beyond the end of the log (seq {head}): "
                f"events from seq {head + 1} on were removed",
                head + 1,
            )
        if (op is not None and (op.last_seq or 0) > head) or next(applied, None) is not None:
            raise IntegrityFailure(
                f"an operation record refers to events after the end of the log (seq {head})",
                head + 1,
            )
        sigs.flush()
        for row in refused:
            seq = refused_at[row.digest]
            if not row.signed and row.status == "rejected":
                continue  # an oversize refusal, kept by digest and size only
            signed = _check_operation_row(row, seq)
            if signatures:
                sigs.add_signed(
                    state,
                    signed,
                    seq,
                    f"operation {row.nonce}: signer {signed.principal} is unknown",
                )
        sigs.flush()
    finally:
        sigs.close()
    n_snapshots = _check_snapshots(log)
    if progress is not None:
        progress(n, total)
    return {
        "ok": True,
        "events": n,
        "head_seq": n,
        "head_hash": prev,
        "checkpoints": n_checkpoints,
        "snapshots": n_snapshots,
        "operations": n_ops + len(refused),
        "signatures_checked": sigs.checked,
        "decisions_checked": n_ops if decisions else 0,
        "last_checkpoint_state_hash": state_hash if n_checkpoints else None,
    }


def _check_checkpoint(
    cp: Checkpoint, state: WorldState, head_hash: str, public_key: str | None
) -> str:
    assert public_key is not None
    cp.check_signature(public_key)
    if cp.head_hash != head_hash:
        raise IntegrityFailure(
            f"checkpoint at seq {cp.seq}: the log's hash at that seq is {head_hash[:16]}, "
            f"the signed checkpoint says {cp.head_hash[:16]}",
            cp.seq,
        )
    actual = state.state_hash()
    if cp.state_hash != actual:
        raise IntegrityFailure(
            f"checkpoint at seq {cp.seq}: replay gives state hash {actual[:16]}, "
            f"the checkpoint says {cp.state_hash[:16]}",
            cp.seq,
        )
    return actual


def _check_snapshots(log: Store) -> int:
    by_seq = {cp.seq: cp for cp in log.checkpoints()}
    n = 0
    for seq in sorted(log.snapshot_seqs()):
        cp = by_seq.get(seq)
        data = log.snapshot(seq)
        if cp is None or data is None:
            raise IntegrityFailure(f"snapshot at seq {seq} has no signed checkpoint", seq)
        try:
            actual = decode_snapshot(data).state_hash()
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise IntegrityFailure(f"snapshot at seq {seq} does not decode: {exc}", seq) from exc
        if actual != cp.state_hash:
            raise IntegrityFailure(
                f"snapshot at seq {seq} does not match the state hash of its checkpoint", seq
            )
        n += 1
    return n


def check_against(
    log: Store, exported: ExportedCheckpoint, home_public_key: str | None
) -> dict[str, Any]:
    """Detect truncation, rollback or a swapped kernel key against a checkpoint the
    operator kept elsewhere."""
    cp = exported.checkpoint
    cp.check_signature(exported.public_key)
    if home_public_key != exported.public_key:
        raise IntegrityFailure(
            "the home's kernel key is not the key that signed the exported checkpoint "
            f"(seq {cp.seq})",
            cp.seq,
        )
    home_id = log.meta("home_id")
    if home_id != cp.home_id:
        raise IntegrityFailure(
            f"the exported checkpoint belongs to home {cp.home_id}, this log is {home_id}",
            cp.seq,
        )
    head_seq = log.head()[0]
    if head_seq < cp.seq:
        raise IntegrityFailure(
            f"the log ends at seq {head_seq} but the exported checkpoint covers seq {cp.seq}: "
            f"events from seq {head_seq + 1} on were truncated or rolled back",
            head_seq + 1,
        )
    record = log.record(cp.seq)
    if record is None or record.hash != cp.head_hash:
        raise IntegrityFailure(
            f"event {cp.seq}: its hash differs from the exported checkpoint: the log was "
            "rewritten or rolled back",
            cp.seq,
        )
    return {"against_seq": cp.seq, "against_head_hash": cp.head_hash}


def effect_records(log: Store) -> Iterator[tuple[EventRecord, Any]]:
    """Every effect record in the log, in log order, with the event that holds it."""
    ended = ["tool.succeeded", "tool.failed", "tool.unknown"]
    for r in log.query(kinds=ended, limit=max(1, log.count())):
        effects = getattr(r.data(), "effects", msgspec.UNSET)
        if effects is not msgspec.UNSET:
            for effect in effects:
                yield r, effect


def check_blobs(log: Store, blobs: Path, progress: Progress | None = None) -> dict[str, Any]:
    """Hash again every blob an effect record names (``HOME/blobs/<sha256>``): the bytes
    a call read, wrote or fetched must still be the bytes the log's hash chain covers.
    Raises :class:`IntegrityFailure` at the first event naming a missing or altered one."""
    seen: set[str] = set()
    total = log.count()
    n_effects = 0
    for r, effect in effect_records(log):
        n_effects += 1
        if progress is not None:
            progress(r.seq, total)
        for sha256 in effect.blobs():
            if sha256 in seen:
                continue
            try:
                data: bytes | None = (blobs / sha256).read_bytes()
            except FileNotFoundError:
                data = log.get_blob(sha256)  # kept in a shared log for every host
            if data is None:
                raise IntegrityFailure(
                    f"event {r.seq}: blob {sha256} named by its {effect.__struct_config__.tag} "
                    f"record is missing from {blobs}",
                    r.seq,
                )
            if hashlib.sha256(data).hexdigest() != sha256:
                raise IntegrityFailure(
                    f"event {r.seq}: blob {sha256} was altered: its bytes no longer hash "
                    "to the sha256 the log records",
                    r.seq,
                )
            seen.add(sha256)
    return {"blobs_checked": len(seen), "effects": n_effects}
