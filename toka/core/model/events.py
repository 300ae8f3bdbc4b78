"""Domain events: what the kernel decided, as stored in the log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from toka.core.model.state import Budgets, McpBinding, ToolFiles

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
    unattended: bool | UnsetType = UNSET


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


class ObservationCounted(msgspec.Struct, frozen=True):
    """``observation.emitted`` as folding reads it (``FOLD_TYPES``): the state counts an
    agent's observations, so the rest (the data, however large) is only checked to be
    well-formed JSON, never built."""

    agent: str


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
    side_effect: str | UnsetType = UNSET  # absent: "none" (and in logs from before it)
    files: ToolFiles | UnsetType = UNSET
    mcp: McpBinding | UnsetType = UNSET


# How a tool call can fail, as ``tool.failed`` records it. The second line is the
# effect tools': refused by a check at run time (a link, a private address, a redirect
# the grant does not cover), a missing file, a compare-and-swap that did not match,
# too much data, a failed connection, another I/O error. The third is MCP tools': the
# server's definition no longer matches the pin, the server answered with an error
# result, or with a protocol error, or could not be reached (nothing was sent).
TOOL_FAILURE_KINDS = frozenset(
    {"timeout", "out_of_fuel", "memory", "trap", "exit", "bad_output", "output_too_large"}
    | {"refused", "not_found", "conflict", "too_large", "network", "io"}
    | {"definition_changed", "tool_error", "protocol", "unavailable"}
)


class Effect(msgspec.Struct, tag_field="effect", frozen=True, forbid_unknown_fields=True):
    """One thing a call did in the world. The bytes it read, wrote or fetched are in
    content-addressed blobs (``HOME/blobs/<sha256>``) named here, so the hash chain
    covers them: ``blobs()`` lists them."""

    def blobs(self) -> list[str]:
        return []


class FileRead(Effect, tag="fs.read"):
    mount: str
    path: str
    size: int
    sha256: str

    def blobs(self) -> list[str]:
        return [self.sha256]


class DirListed(Effect, tag="fs.listed"):
    mount: str
    path: str
    entries: int
    sha256: str  # of the listing's canonical JSON

    def blobs(self) -> list[str]:
        return [self.sha256]


class FileWritten(Effect, tag="fs.written"):
    mount: str
    path: str
    before_sha256: str | None  # None: the file did not exist
    after_sha256: str
    size: int
    changed: bool  # False: it already held these bytes (a retried write)

    def blobs(self) -> list[str]:
        return [self.after_sha256]


class UrlFetched(Effect, tag="net.fetched"):
    """One HTTP exchange (a redirect is one per hop). ``url`` is canonical and has no
    query; the query and, for a request that carried secret headers, the body are
    logged only as an HMAC under the kernel secret (``*_hmac``), never in clear."""

    method: str
    url: str
    query_hmac: str | None
    status: int
    headers: dict[str, str]
    request_sha256: str | None
    request_hmac: str | None
    response_sha256: str
    size: int
    address: str
    ms: float

    def blobs(self) -> list[str]:
        return [self.response_sha256] + ([self.request_sha256] if self.request_sha256 else [])


class McpCalled(Effect, tag="mcp.called"):
    """One call sent to an MCP server: the tool as pinned, the arguments sent and the
    result received as blobs (``result_sha256`` is None when no result came: the server
    went away or did not answer in time), whether the server called it an error."""

    server: str
    tool: str
    pin: str
    args_sha256: str
    result_sha256: str | None
    is_error: bool | None
    protocol: str
    ms: float

    def blobs(self) -> list[str]:
        return [self.args_sha256] + ([self.result_sha256] if self.result_sha256 else [])


AnyEffect = FileRead | DirListed | FileWritten | UrlFetched | McpCalled


class ToolStarted(msgspec.Struct, frozen=True):
    """The intent of a call with an effect, committed before anything touches the world.

    ``caps`` are the capabilities derived from its arguments (what it may touch);
    ``idempotency_key`` is the signed operation's digest; ``op_seq`` is where that
    operation's row starts (its arguments); a runner that finds the call open after
    ``deadline_ms`` knows its first runner stopped."""

    call: str
    tool: str
    version: str
    side_effect: str
    caps: list[str]
    args_sha256: str
    idempotency_key: str
    op_seq: int
    deadline_ms: int
    task: str | None = None


class ToolSucceeded(msgspec.Struct, frozen=True):
    tool: str
    version: str
    output: Any
    fuel_used: int
    wall_ms: float
    task: str | None = None
    # Set for a call with an effect (its intent's ``call``), absent for a pure one.
    call: str | UnsetType = UNSET
    effects: list[AnyEffect] | UnsetType = UNSET


class ToolFailed(msgspec.Struct, frozen=True):
    tool: str
    version: str
    error_kind: str
    message: str
    fuel_used: int
    wall_ms: float
    exit_code: int | None = None
    task: str | None = None
    call: str | UnsetType = UNSET
    effects: list[AnyEffect] | UnsetType = UNSET


class ToolUnknown(msgspec.Struct, frozen=True):
    """The runner of ``call`` stopped before its end; its effect may or may not have
    happened. It is not run again: the operator resolves it (``tool.resolved``)."""

    call: str
    tool: str
    version: str
    reason: str
    task: str | None = None
    # What its host knows was done before the outcome was lost (an MCP call sent to a
    # server that then went away); absent when its runner stopped.
    effects: list[AnyEffect] | UnsetType = UNSET


class ToolResolved(msgspec.Struct, frozen=True):
    call: str
    tool: str
    version: str
    outcome: str  # "succeeded" or "failed"
    note: str = ""
    task: str | None = None


class MountAdded(msgspec.Struct, frozen=True):
    name: str
    path: str
    mode: str


class MountRemoved(msgspec.Struct, frozen=True):
    name: str


class HostAllowed(msgspec.Struct, frozen=True):
    host: str
    port: int


class HostRevoked(msgspec.Struct, frozen=True):
    host: str
    port: int


class McpServerRegistered(msgspec.Struct, frozen=True):
    name: str
    transport: str
    command: list[str] | None
    url: str | None
    env: dict[str, str]
    env_secrets: dict[str, str]
    header_secrets: dict[str, str]
    legacy: bool


class McpServerRemoved(msgspec.Struct, frozen=True):
    name: str


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
    "tool.started": ToolStarted,
    "tool.unknown": ToolUnknown,
    "tool.resolved": ToolResolved,
    "mount.added": MountAdded,
    "mount.removed": MountRemoved,
    "host.allowed": HostAllowed,
    "host.revoked": HostRevoked,
    "mcp.registered": McpServerRegistered,
    "mcp.removed": McpServerRemoved,
    "operation.pending": OperationPending,
    "operation.approved": OperationApproved,
    "operation.denied": OperationDenied,
    "budget.charged": BudgetCharged,
}
KIND_OF: dict[type, str] = {cls: kind for kind, cls in EVENT_TYPES.items()}
_decoders = {kind: msgspec.json.Decoder(cls) for kind, cls in EVENT_TYPES.items()}
# What the kernel's evolvers are handed: the payloads, but with what no evolver reads
# left undecoded (an observation's data is most of a busy log's bytes).
FOLD_TYPES: dict[str, type[msgspec.Struct]] = {
    **EVENT_TYPES,
    "observation.emitted": ObservationCounted,
}
_fold_decoders = {kind: msgspec.json.Decoder(cls) for kind, cls in FOLD_TYPES.items()}


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


def fold_decoder(kind: str) -> Callable[[bytes], msgspec.Struct]:
    """What decodes a ``kind`` payload for folding, as a ``FOLD_TYPES`` struct."""
    return _fold_decoders[kind].decode


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
