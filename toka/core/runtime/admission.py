"""Admission: the checks an operation passes before the kernel sees it.

Token (HMAC, claims, expiry), binding to the signer's key (``cnf``), the Ed25519
signature and freshness need no state but the signer's public key, so they run in
the submitter's own thread, in parallel with other submitters; the kernel then
decides under the write lock.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from toka.core.errors import BindingMismatch, StaleOperation, TokaError
from toka.core.model.keys import check_principal, thumbprint, verify_signature
from toka.core.model.ops import SignedOperation
from toka.core.runtime.home import Config
from toka.core.runtime.outcome import Outcome
from toka.core.runtime.tokens import Claims, TokenAuthority


class Pending:
    """One submitted operation on its way through admission, the kernel and the commit."""

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


def precheck(
    p: Pending,
    authority: TokenAuthority,
    principals: Mapping[str, str],
    config: Config,
    now_s: int,
) -> None:
    """Run the stateless checks on ``p``; a refusal is kept in ``p.error``, not raised.

    The signature is checked now when the signer's key is already known; a principal
    spawned in the same batch is authenticated by the kernel pass instead."""
    s = p.signed
    try:
        check_principal(s.principal)
        claims = authority.verify(s.token, now_s)
        p.claims = claims
        if claims.sub != s.principal:
            raise BindingMismatch(
                f"token {claims.jti} was issued to {claims.sub}, not {s.principal}"
            )
        key = principals.get(s.principal)
        if key is not None:
            check_key(s, claims, key, p.body)
            p.authenticated = True
        check_fresh(s, now_s, config)
    except TokaError as exc:
        p.error = exc


def check_key(
    s: SignedOperation, claims: Claims, public_key: str, body: bytes | None = None
) -> None:
    """The token must be bound to this key, and the key must have signed the operation."""
    if thumbprint(public_key) != claims.jkt:
        raise BindingMismatch(f"token {claims.jti} is bound to another key (cnf mismatch)")
    verify_signature(public_key, s.sig, s.signing_bytes() if body is None else body)


def check_fresh(s: SignedOperation, now_s: int, config: Config) -> None:
    age = now_s - s.ts // 1000
    if age > config.op_max_age_s:
        raise StaleOperation(f"operation signed {age} s ago; the limit is {config.op_max_age_s} s")
    if -age > config.op_max_skew_s:
        raise StaleOperation(f"operation timestamp is {-age} s in the future")
