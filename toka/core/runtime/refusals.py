"""Refusals on record: every refused operation is audited, and a flood cannot fill the disk.

An authenticated refusal is kept in the operations table (so resubmitting the same
operation gives the same refusal, and ``verify`` can check it); the log gets an
``operation.rejected`` event, at most ``REJECTIONS_PER_PRINCIPAL_PER_MIN`` per
principal and ``REJECTIONS_PER_MIN`` in all; the next one that is logged says how
many were suppressed.
"""

from __future__ import annotations

from toka.core.errors import ReplayedNonce, TokaError
from toka.core.log.store import OperationRow, Store
from toka.core.model import events as ev
from toka.core.model.keys import check_principal
from toka.core.model.ops import MAX_SIGNED_BYTES
from toka.core.runtime.admission import Pending

REJECTIONS_PER_PRINCIPAL_PER_MIN = 20
REJECTIONS_PER_MIN = 200


class RefusalAudit:
    """Records refusals in one log; call inside its write transaction."""

    def __init__(self, log: Store):
        self.log = log
        self._suppressed: dict[str, int] = {}

    def record(
        self, p: Pending, ts: int, known: dict[tuple[str, str], OperationRow]
    ) -> tuple[str, ev.OperationRejected] | None:
        """Keep ``p``'s refusal; returns (principal, event) to log, or None when rate-limited.

        ``known`` (the batch's recorded operations by nonce) gains the refusal's row."""
        s, err = p.signed, p.error
        assert err is not None
        if p.authenticated and not isinstance(err, ReplayedNonce):
            signed, message = s.to_json(), err.message
            if len(signed) > MAX_SIGNED_BYTES:
                # Over what any reader decodes: kept by digest and size, never truncated
                # (a cut operation would neither decode nor hash to its digest).
                message += f" [the {len(signed)}-byte operation is kept by its digest only]"
                signed = b""
            row = OperationRow(
                s.nonce,
                p.digest,
                s.principal,
                s.kind,
                signed,
                "rejected",
                None,
                None,
                err.code,
                message,
            )
            self.log.record_operation(row)
            known[(s.principal, s.nonce)] = row
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
            return None
        return principal, ev.OperationRejected(
            code=err.code,
            reason=err.message[:1000],
            op=s.kind,
            nonce=s.nonce[:64],
            authenticated=p.authenticated,
            suppressed=self._suppressed.pop(principal, 0),
        )
