"""Admission: the checks an operation passes before the kernel sees it.

Token (HMAC, claims, expiry), binding to the signer's key (``cnf``), the Ed25519
signature and freshness need no state but the signer's public key, so they run in
the submitter's own thread, in parallel with other submitters (the signatures of
operations in flight are checked in batches instead, ``runtime.signatures``); the
kernel then decides under the write lock. So do the checks of tool arguments against input
schemas (``ArgumentChecks``): they need only a registered tool version, which never
changes, and they are the one costly part of deciding, so no other writer waits on
them. The kernel takes their verdict from ``Ctx.checked``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from toka.core.errors import BindingMismatch, Denied, StaleOperation, TokaError, TokenInvalid
from toka.core.kernel import tools as tool_rules
from toka.core.kernel.context import KERNEL
from toka.core.model import ops
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
        "checked",
        "claims",
        "digest",
        "done",
        "error",
        "future",
        "outcome",
        "prepared",
        "signed",
        "signer_key",
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
        # Set when the signature check was left to the signature stage: the key to use.
        self.signer_key: str | None = None
        self.checked: dict[str, str | None] | None = None
        self.error: TokaError | None = None
        self.outcome: Outcome | None = None
        self.done = False
        self.future: Future[Outcome] | None = None


# What the host states in the kernel's name, signed with the kernel's key and no token.
HOST_STATEMENTS = (ops.RecordOutcome, ops.AbandonCall)


def precheck(
    p: Pending,
    authority: TokenAuthority,
    principals: Mapping[str, str],
    config: Config,
    now_s: int,
    kernel_key: str | None = None,
    defer_signature: bool = False,
) -> None:
    """Run the stateless checks on ``p``; a refusal is kept in ``p.error``, not raised.

    The signature is checked now when the signer's key is already known; a principal
    spawned in the same batch is authenticated by the kernel pass instead. A host
    statement (principal ``kernel``) is checked against ``kernel_key``. With
    ``defer_signature``, the token's binding to the key is checked now and the key is
    left in ``p.signer_key`` for the signature stage (``runtime.signatures``)."""
    s = p.signed
    try:
        if s.principal == KERNEL:
            check_host_statement(s, kernel_key, p.body)
            p.authenticated = True
            check_fresh(s, now_s, config)
            return
        check_principal(s.principal)
        claims = authority.verify(s.token, now_s)
        p.claims = claims
        if claims.sub != s.principal:
            raise BindingMismatch(
                f"token {claims.jti} was issued to {claims.sub}, not {s.principal}"
            )
        key = principals.get(s.principal)
        if key is not None and defer_signature:
            check_binding(claims, key)
            p.signer_key = key
        elif key is not None:
            check_key(s, claims, key, p.body)
            p.authenticated = True
        check_fresh(s, now_s, config)
    except TokaError as exc:
        p.error = exc
        if p.signer_key is not None:
            # A refusal records whether its signer was proven: prove it now, as
            # without the deferral (a refused operation goes to no signature stage).
            p.authenticated = signature_holds(s, p.signer_key, p.body)
            p.signer_key = None


def check_host_statement(s: SignedOperation, kernel_key: str | None, body: bytes) -> None:
    """The kernel signs only host statements, with no token, and its key must verify."""
    if not isinstance(s.op, HOST_STATEMENTS):
        raise Denied(f"the kernel does not sign {s.kind} operations (only host statements)")
    if s.token:
        raise TokenInvalid("a host statement carries no token")
    if kernel_key is None:
        raise TokenInvalid("this home has no kernel key to check a host statement with")
    verify_signature(kernel_key, s.sig, body)


def check_key(
    s: SignedOperation, claims: Claims, public_key: str, body: bytes | None = None
) -> None:
    """The token must be bound to this key, and the key must have signed the operation."""
    check_binding(claims, public_key)
    verify_signature(public_key, s.sig, s.signing_bytes() if body is None else body)


def check_binding(claims: Claims, public_key: str) -> None:
    """The token must be bound to this key (``cnf``)."""
    if thumbprint(public_key) != claims.jkt:
        raise BindingMismatch(f"token {claims.jti} is bound to another key (cnf mismatch)")


def signature_holds(s: SignedOperation, public_key: str, body: bytes) -> bool:
    try:
        verify_signature(public_key, s.sig, body)
    except TokaError:
        return False
    return True


def check_fresh(s: SignedOperation, now_s: int, config: Config) -> None:
    age = now_s - s.ts // 1000
    if age > config.op_max_age_s:
        raise StaleOperation(f"operation signed {age} s ago; the limit is {config.op_max_age_s} s")
    if -age > config.op_max_skew_s:
        raise StaleOperation(f"operation timestamp is {-age} s in the future")


class ArgumentChecks:
    """Tool arguments checked against input schemas, each within the tool's time limit.

    Verdicts are kept by operation digest and tool version, so the dry run of an
    invocation and its submission check the arguments once, a refusal included."""

    def __init__(self, kept: int = 256, clock: Callable[[], float] = time.monotonic):
        self._kept = kept
        self._clock = clock
        self._verdicts: OrderedDict[tuple[str, str], str | None] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, p: Pending, target: tool_rules.ArgsToCheck | None) -> None:
        """Set ``p.checked``: the verdict on ``target`` (``kernel.arguments_to_check``)."""
        p.checked = {}
        if target is None:
            return
        tool, name = target.tool, tool_rules.tool_key(target.tool)
        key = (p.digest, name)
        with self._lock:
            known = key in self._verdicts
            verdict = self._verdicts.get(key)
        if not known:
            limit_ms = tool.limits.get("timeout_ms", tool_rules.DEFAULT_CHECK_MS)
            deadline = self._clock() + limit_ms / 1000
            verdict = tool_rules.args_verdict(tool, target.args, lambda: self._clock() > deadline)
            with self._lock:
                self._verdicts[key] = verdict
                while len(self._verdicts) > self._kept:
                    self._verdicts.popitem(last=False)
        p.checked[name] = verdict
