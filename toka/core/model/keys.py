"""Ed25519 identities: key pairs, signatures, thumbprints and agent ids (no files)."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from typing import TYPE_CHECKING

import nacl.bindings
import nacl.exceptions

from toka.core.errors import BadSignature, InvalidInput

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# ``cryptography`` (key generation, PEM, signing) is imported by the methods that use
# it: importing its serialization costs more than a read-only command's whole query,
# and verifying (PyNaCl) needs none of it.

_PRINCIPAL = re.compile(r"^[a-z][a-z0-9\-]{1,63}\Z")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"not base64url: {text[:20]!r}") from exc


@functools.lru_cache(maxsize=4096)
def thumbprint(public_key: str) -> str:
    """The ``cnf`` binding of a token: sha256 of the raw public key, base64url."""
    return b64(hashlib.sha256(unb64(public_key)).digest())


def agent_id_for(public_key: str) -> str:
    """Agent ids derive from their key, so a client knows the id before it spawns."""
    digest = hashlib.sha256(unb64(public_key)).digest()
    return "ag-" + base64.b32encode(digest).decode().lower()[:10]


def check_principal(name: str) -> str:
    if not _valid_principal(name):
        raise InvalidInput(f"invalid principal id {name!r}")
    return name


@functools.lru_cache(maxsize=4096)
def _valid_principal(name: object) -> bool:
    # On every submission's path; a host has few principals, so the verdicts are cached.
    return isinstance(name, str) and _PRINCIPAL.match(name) is not None


class KeyPair:
    """An Ed25519 signing key and its public half."""

    def __init__(self, private: Ed25519PrivateKey):
        from cryptography.hazmat.primitives import serialization

        self._private = private
        raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public_key = b64(raw)

    @classmethod
    def generate(cls) -> KeyPair:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        """Deterministic keys, for tests and reproducible demos."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest()))

    @classmethod
    def from_pem(cls, data: bytes) -> KeyPair:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"not a PEM Ed25519 private key: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise InvalidInput("the private key is not an Ed25519 key")
        return cls(key)

    def to_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def sign(self, data: bytes) -> str:
        return b64(self._private.sign(data))


# An unencrypted Ed25519 private key in PKCS #8 (RFC 8410), as ``to_pem`` writes it:
# this DER prefix, then the 32-byte seed.
_PKCS8_ED25519_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_PEM_BEGIN, _PEM_END = b"-----BEGIN PRIVATE KEY-----", b"-----END PRIVATE KEY-----"


def public_key_from_pem(data: bytes) -> str:
    """The public half of the PEM private key ``data`` (as ``KeyPair.from_pem(data)
    .public_key``), for a reader that only checks signatures: the key as ``to_pem``
    writes it is derived with PyNaCl, without importing ``cryptography``; any other
    encoding goes through ``KeyPair.from_pem`` (and its errors)."""
    lines = data.strip().splitlines()
    if len(lines) > 2 and lines[0] == _PEM_BEGIN and lines[-1] == _PEM_END:
        try:
            der = base64.b64decode(b"".join(line.strip() for line in lines[1:-1]), validate=True)
        except binascii.Error:
            der = b""
        if len(der) == 48 and der.startswith(_PKCS8_ED25519_PREFIX):
            public, _ = nacl.bindings.crypto_sign_seed_keypair(der[16:])
            return b64(public)
    return KeyPair.from_pem(data).public_key


def verify_signature(public_key: str, signature: str, data: bytes) -> None:
    """Raise :class:`BadSignature` unless ``signature`` is the key's signature of ``data``.

    Verification goes through libsodium (PyNaCl): about twice as fast as OpenSSL's
    Ed25519 here, it lets go of the GIL while it works, and it refuses non-canonical
    signatures and small-order keys. Keys and signing stay with ``cryptography``."""
    try:
        nacl.bindings.crypto_sign_open(raw_signature(signature) + data, raw_public_key(public_key))
    except (nacl.exceptions.CryptoError, ValueError, TypeError, InvalidInput) as exc:
        raise BadSignature("the operation's signature does not verify") from exc


def raw_signature(signature: str) -> bytes:
    """The 64 bytes of a base64url signature (ValueError or InvalidInput if it is not one)."""
    sig = unb64(signature)
    if len(sig) != 64:
        raise ValueError("an Ed25519 signature is 64 bytes")
    return sig


@functools.lru_cache(maxsize=4096)
def raw_public_key(public_key: str) -> bytes:
    """The 32 bytes of a base64url public key (ValueError or InvalidInput if it is not one)."""
    # Decoded keys are immutable; caching them takes base64 off the hot path.
    raw = unb64(public_key)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return raw
