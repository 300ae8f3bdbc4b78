"""Signed checkpoints: (seq, head hash, state hash) signed with the kernel's Ed25519 key.

A checkpoint binds the log prefix up to ``seq`` (through the head hash of the chain)
and the world state it folds to (through the state hash). An operator who keeps the
latest exported checkpoint elsewhere can detect a rewritten, truncated or rolled-back
log with nothing but the kernel's public key.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from toka.core.errors import BadSignature, IntegrityFailure, InvalidInput
from toka.core.model.keys import KeyPair, verify_signature

EXPORT_FORMAT = "toka-checkpoint/1"

_canonical = msgspec.json.Encoder(order="sorted")


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
