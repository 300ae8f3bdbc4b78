"""Domain events: what the kernel decided, as stored in the log."""

from __future__ import annotations

from typing import Any

import msgspec

from toka.core.model.state import Budgets

_encoder = msgspec.json.Encoder(order="sorted")


class Genesis(msgspec.Struct, frozen=True):
    home_id: str
    operator: str
    operator_key: str
    created_ms: int


class CapabilityGranted(msgspec.Struct, frozen=True):
    jti: str
    subject: str
    caps: list[str]
    issuer: str
    parent: str | None
    iat: int
    exp: int
    budgets: Budgets = Budgets()
    approve: bool = False


class CapabilityRevoked(msgspec.Struct, frozen=True):
    jti: str
    revoked: list[str]
    reason: str = ""


class AgentSpawned(msgspec.Struct, frozen=True):
    agent: str
    name: str
    behaviour: str
    public_key: str
    parent: str | None = None


class AgentPaused(msgspec.Struct, frozen=True):
    agent: str


class AgentResumed(msgspec.Struct, frozen=True):
    agent: str


class AgentTerminated(msgspec.Struct, frozen=True):
    agent: str
    reason: str = ""


class TaskScheduled(msgspec.Struct, frozen=True):
    task: str
    agent: str
    description: str
    payload: Any = None


class TaskStarted(msgspec.Struct, frozen=True):
    task: str
    runner: str = ""
    lease_until: int | None = None


class TaskReleased(msgspec.Struct, frozen=True):
    task: str
    runner: str


class TaskCompleted(msgspec.Struct, frozen=True):
    task: str
    result: Any = None


class TaskFailed(msgspec.Struct, frozen=True):
    task: str
    reason: str


class TaskCancelled(msgspec.Struct, frozen=True):
    task: str
    reason: str


class ObservationEmitted(msgspec.Struct, frozen=True):
    agent: str
    data: Any


class OperationRejected(msgspec.Struct, frozen=True):
    code: str
    reason: str
    op: str
    nonce: str
    authenticated: bool
    suppressed: int = 0


class ToolRegistered(msgspec.Struct, frozen=True):
    name: str
    version: str
    description: str
    kind: str
    module_sha256: str | None
    capabilities: list[str]
    limits: dict[str, int]
    input_schema: dict[str, Any] | None = None


# How a tool call can fail, as ``tool.failed`` records it.
TOOL_FAILURE_KINDS = frozenset(
    {"timeout", "out_of_fuel", "memory", "trap", "exit", "bad_output", "output_too_large"}
)


class ToolSucceeded(msgspec.Struct, frozen=True):
    tool: str
    version: str
    output: Any
    fuel_used: int
    wall_ms: float
    task: str | None = None


class ToolFailed(msgspec.Struct, frozen=True):
    tool: str
    version: str
    error_kind: str
    message: str
    fuel_used: int
    wall_ms: float
    exit_code: int | None = None
    task: str | None = None


class OperationPending(msgspec.Struct, frozen=True):
    approval: str
    op_kind: str
    grant: str
    signed: bytes


class OperationApproved(msgspec.Struct, frozen=True):
    """Logged by the approver; the approved operation's own events follow it in the same
    operation, each under its author's principal and grant (see ``Attributed``).
    ``digest`` is the digest of the held operation its author signed."""

    approval: str
    principal: str = ""
    op_kind: str = ""
    digest: str = ""


class OperationDenied(msgspec.Struct, frozen=True):
    approval: str
    reason: str = ""
    principal: str = ""
    op_kind: str = ""


class BudgetCharged(msgspec.Struct, frozen=True):
    """The operation also counts against these grants' operations budgets: grants of its
    principal that cover it besides the presented token's chain (which every operation
    counts against anyway)."""

    grants: list[str]


class Attributed(msgspec.Struct, frozen=True):
    """A decided event logged under another principal and grant than the operation's own:
    an approved operation's effects stay its author's (who also pays for them)."""

    principal: str
    grant: str | None
    payload: Any


EVENT_TYPES: dict[str, type[msgspec.Struct]] = {
    "log.genesis": Genesis,
    "capability.granted": CapabilityGranted,
    "capability.revoked": CapabilityRevoked,
    "agent.spawned": AgentSpawned,
    "agent.paused": AgentPaused,
    "agent.resumed": AgentResumed,
    "agent.terminated": AgentTerminated,
    "task.scheduled": TaskScheduled,
    "task.started": TaskStarted,
    "task.released": TaskReleased,
    "task.completed": TaskCompleted,
    "task.failed": TaskFailed,
    "task.cancelled": TaskCancelled,
    "observation.emitted": ObservationEmitted,
    "operation.rejected": OperationRejected,
    "tool.registered": ToolRegistered,
    "tool.succeeded": ToolSucceeded,
    "tool.failed": ToolFailed,
    "operation.pending": OperationPending,
    "operation.approved": OperationApproved,
    "operation.denied": OperationDenied,
    "budget.charged": BudgetCharged,
}
KIND_OF: dict[type, str] = {cls: kind for kind, cls in EVENT_TYPES.items()}
_decoders = {kind: msgspec.json.Decoder(cls) for kind, cls in EVENT_TYPES.items()}


def kind_matches(pattern: str, kind: str) -> bool:
    """``task.completed`` matches itself, ``task.*`` and ``task.``: a prefix ends at a dot."""
    if pattern.endswith("*") or pattern.endswith("."):
        return kind.startswith(pattern.rstrip("*").rstrip(".") + ".")
    return kind == pattern


def kind_of(payload: msgspec.Struct) -> str:
    return KIND_OF[type(payload)]


def encode_payload(payload: msgspec.Struct) -> bytes:
    return _encoder.encode(payload)


def decode_payload(kind: str, data: bytes) -> msgspec.Struct:
    return _decoders[kind].decode(data)


class EventRecord(msgspec.Struct, frozen=True):
    """One row of the log, decoded."""

    seq: int
    ts: int
    kind: str
    principal: str
    grant: str | None
    op_digest: str
    part: int
    payload: bytes
    prev_hash: str
    hash: str

    def data(self) -> msgspec.Struct:
        return decode_payload(self.kind, self.payload)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
            "principal": self.principal,
            "grant": self.grant,
            "op_digest": self.op_digest,
            "payload": msgspec.json.decode(self.payload),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }
