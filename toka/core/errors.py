"""Errors the core raises; the CLI maps each family to an exit code."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    DENIED = 3
    INVALID = 4
    INTEGRITY = 5


class TokaError(Exception):
    """Base of every error Toka reports to a user."""

    exit_code = ExitCode.FAILED
    code = "failed"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    @property
    def reason(self) -> str:
        """``code: message``, as a task's failure reason or a log line says it."""
        return with_code(self.code, self.message)


def with_code(code: str, message: str) -> str:
    """``code: message``, the code said once: some messages already start with it
    (``budget: grant gr-4 has used 3 of 3 operations``)."""
    return message if message.startswith(f"{code}:") else f"{code}: {message}"


class Denied(TokaError):
    """The operation was refused by the security checks."""

    exit_code = ExitCode.DENIED
    code = "denied"


class TokenInvalid(Denied):
    code = "token_invalid"


class TokenExpired(Denied):
    code = "token_expired"


class BindingMismatch(Denied):
    code = "binding_mismatch"


class BadSignature(Denied):
    code = "bad_signature"


class ReplayedNonce(Denied):
    code = "replayed_nonce"


class StaleOperation(Denied):
    code = "stale_operation"


class Revoked(Denied):
    code = "revoked"


class NotCovered(Denied):
    code = "not_covered"


class BudgetExhausted(Denied):
    code = "budget"


class AgentNotRunning(Denied):
    """The acting agent is paused or terminated: it cannot act at all right now."""

    code = "agent_not_running"


class ApprovalDenied(Denied):
    """The operation waited for approval and an approver denied it."""

    code = "approval_denied"


class AwaitingApproval(TokaError):
    """Not a failure: the operation was accepted into the approval queue, not applied.

    The CLI reports it as ``pending approval <id>`` with exit code 0."""

    exit_code = ExitCode.OK
    code = "pending"

    def __init__(self, approval: str):
        super().__init__(f"pending approval {approval}")
        self.approval = approval


class InvalidInput(TokaError):
    """Malformed or out-of-range input; nothing was changed."""

    exit_code = ExitCode.INVALID
    code = "invalid"


class InvalidOperation(InvalidInput):
    code = "invalid_operation"


class NotFound(InvalidInput):
    code = "not_found"


class IntegrityFailure(TokaError):
    """The log or a checkpoint does not verify."""

    exit_code = ExitCode.INTEGRITY
    code = "integrity"

    def __init__(self, message: str, seq: int | None = None):
        super().__init__(message)
        self.seq = seq


class HomeError(TokaError):
    """The Toka home is missing, unreadable or inconsistent."""

    code = "home"


DENIAL_CODES: dict[str, type[Denied]] = {
    cls.code: cls
    for cls in (
        Denied,
        TokenInvalid,
        TokenExpired,
        BindingMismatch,
        BadSignature,
        ReplayedNonce,
        StaleOperation,
        Revoked,
        NotCovered,
        BudgetExhausted,
        AgentNotRunning,
        ApprovalDenied,
    )
}


def error_from_code(code: str, message: str) -> TokaError:
    """Rebuild a recorded refusal (for idempotent resubmission) as the same error class."""
    if code in DENIAL_CODES:
        return DENIAL_CODES[code](message)
    for cls in (InvalidOperation, NotFound, InvalidInput):
        if cls.code == code:
            return cls(message)
    return TokaError(message)


class MissingExtra(TokaError):
    """A feature needs an optional dependency that is not installed."""

    code = "missing_extra"


class Unavailable(TokaError):
    """Something outside Toka (an MCP server) could not be reached or did not answer."""

    code = "unavailable"


class StoreUnavailable(Unavailable):
    """The log's database could not be reached, or refused the write; nothing was written."""

    code = "store_unavailable"


class CommitUnknown(StoreUnavailable):
    """The connection was lost while the database committed: the batch may or may not be
    in the log. Look its operations up by nonce (a resubmission does exactly that)."""

    code = "commit_unknown"
