"""Signed checkpoints: (seq, head hash, state hash) signed with the kernel's Ed25519 key.

A checkpoint binds the log prefix up to ``seq`` (through the head hash of the chain)
and the world state it folds to (through the state hash). An operator who keeps the
latest exported checkpoint elsewhere can detect a rewritten, truncated or rolled-back
log with nothing but the kernel's public key.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from toka.core.errors import BadSignature, IntegrityFailure, InvalidInput
from toka.core.identity import KeyPair, verify_signature
from toka.core.state import WorldState

if TYPE_CHECKING:
    from toka.core.store import EventLog

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "toka-checkpoint/1"
KEEP_SNAPSHOTS = 3

_canonical = msgspec.json.Encoder(order="sorted")
_snapshot_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(WorldState)


class Checkpoint(msgspec.Struct, frozen=True):
    """The signed claim "the log of home ``home_id`` up to ``seq`` is this"."""

    home_id: str
    seq: int
    ts: int
    head_hash: str
    state_hash: str
    sig: str = ""

    def signing_bytes(self) -> bytes:
        return _canonical.encode(
            ["toka-checkpoint", self.home_id, self.seq, self.ts, self.head_hash, self.state_hash]
        )

    def signed(self, key: KeyPair) -> Checkpoint:
        return msgspec.structs.replace(self, sig=key.sign(self.signing_bytes()))

    def check_signature(self, public_key: str) -> None:
        """Raise :class:`IntegrityFailure` naming the seq unless the kernel key signed this."""
        try:
            verify_signature(public_key, self.sig, self.signing_bytes())
        except BadSignature as exc:
            raise IntegrityFailure(
                f"checkpoint at seq {self.seq}: the kernel signature does not verify", self.seq
            ) from exc


class ExportedCheckpoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The file ``toka checkpoint export`` writes: a checkpoint plus the key to check it."""

    format: str
    checkpoint: Checkpoint
    public_key: str

    def to_json(self) -> bytes:
        return msgspec.json.format(_canonical.encode(self), indent=2) + b"\n"

    @classmethod
    def load(cls, path: Path) -> ExportedCheckpoint:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc
        try:
            exported = msgspec.json.decode(data, type=cls)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidInput(f"{path} is not an exported Toka checkpoint: {exc}") from exc
        if exported.format != EXPORT_FORMAT:
            raise InvalidInput(
                f"{path}: unknown checkpoint format {exported.format!r} (expected {EXPORT_FORMAT})"
            )
        return exported


def encode_snapshot(state: WorldState) -> bytes:
    """Snapshot bytes keep dict insertion order (the state hash sorts keys; iteration
    order must survive a snapshot so the kernel decides identically after a restart)."""
    return _snapshot_encoder.encode(state)


def decode_snapshot(data: bytes) -> WorldState:
    return _snapshot_decoder.decode(data)


def write_checkpoint(
    log: EventLog,
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
    log: EventLog, public_key: str | None, until: int | None = None
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
            logger.warning("ignoring snapshot at seq %d: %s", seq, exc)
            continue
        return state, cp.head_hash
    return None
