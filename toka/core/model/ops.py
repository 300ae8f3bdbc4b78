"""Operations (the verbs of Toka) and SignedOperation, their signed envelope."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from toka.core.errors import InvalidInput
from toka.core.model.events import AnyEffect
from toka.core.model.keys import KeyPair, verify_signature
from toka.core.model.state import Budgets, McpBinding, ToolFiles

MAX_SIGNED_BYTES = 2 * 1024 * 1024

_canonical = msgspec.json.Encoder(order="sorted")


class Operation(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, frozen=True):
    """A request to change the world. ``type`` is also the capability action."""


class SpawnAgent(Operation, tag="agent.spawn"):
    name: str
    public_key: str
    behaviour: str = "manual"
    parent: str | None = None


class PauseAgent(Operation, tag="agent.pause"):
    agent: str


class ResumeAgent(Operation, tag="agent.resume"):
    agent: str


class TerminateAgent(Operation, tag="agent.terminate"):
    agent: str
    reason: str = ""


class ScheduleTask(Operation, tag="task.schedule"):
    agent: str
    description: str
    payload: Any = None


class StartTask(Operation, tag="task.start"):
    """Take (or renew) a task's lease: no other runner may start it for ``lease_s``."""

    task: str
    runner: str = ""
    lease_s: int = 60


class ReleaseTask(Operation, tag="task.release"):
    """Give up a task's lease (the task stays open), so another runner may take it now."""

    task: str
    runner: str


class CompleteTask(Operation, tag="task.complete"):
    task: str
    result: Any = None


class FailTask(Operation, tag="task.fail"):
    task: str
    reason: str


class EmitObservation(Operation, tag="observation.emit"):
    agent: str
    data: Any


class GrantCapability(Operation, tag="cap.grant"):
    subject: str
    caps: list[str]
    ttl_s: int
    budgets: Budgets = Budgets()
    approve: bool = False
    # True: external tool calls under this grant run without an approval. Absent (and
    # for grants signed before it): an agent's external calls wait for one.
    unattended: bool | UnsetType = UNSET


class RevokeCapability(Operation, tag="cap.revoke"):
    jti: str
    reason: str = ""


class RegisterTool(Operation, tag="tool.register"):
    name: str
    version: str
    description: str
    kind: str
    module_sha256: str | None
    capabilities: list[str]
    limits: dict[str, int]
    input_schema: dict[str, Any] | None = None
    # UNSET means "none": registrations signed before side-effect classes carry none.
    side_effect: str | UnsetType = UNSET
    files: ToolFiles | UnsetType = UNSET
    mcp: McpBinding | UnsetType = UNSET


class InvokeTool(Operation, tag="tool.invoke"):
    tool: str
    args: Any = None
    version: str | None = None
    task: str | None = None


class AddMount(Operation, tag="fs.mount"):
    """Lend the host directory ``path`` (absolute) to tools as mount ``name``."""

    name: str
    path: str
    mode: str = "ro"


class RemoveMount(Operation, tag="fs.unmount"):
    name: str


class AllowHost(Operation, tag="net.allow"):
    """Let ``http-fetch`` reach ``host:port`` although it resolves to a private address."""

    host: str
    port: int


class RevokeHost(Operation, tag="net.revoke"):
    host: str
    port: int


class RegisterMcpServer(Operation, tag="mcp.register"):
    """Register an MCP server as ``name``: a command to run (``stdio``) or a URL
    (``http``), and the secrets to give it by name (values stay in ``HOME/secrets``)."""

    name: str
    transport: str
    command: list[str] | None = None
    url: str | None = None
    env: dict[str, str] = msgspec.field(default_factory=dict)
    env_secrets: dict[str, str] = msgspec.field(default_factory=dict)
    header_secrets: dict[str, str] = msgspec.field(default_factory=dict)
    legacy: bool = False


class RemoveMcpServer(Operation, tag="mcp.remove"):
    name: str


class CallOutcome(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What performing a tool call with an effect did, as its host states it."""

    ok: bool
    output: Any = None
    error_kind: str | None = None
    message: str = ""
    effects: list[AnyEffect] = msgspec.field(default_factory=list)
    fuel_used: int = 0
    wall_ms: float = 0.0


class RecordOutcome(Operation, tag="tool.record"):
    """A host statement (signed with the kernel's key): how call ``call`` ended."""

    call: str
    outcome: CallOutcome


class AbandonCall(Operation, tag="tool.abandon"):
    """A host statement: the runner that started ``call`` stopped before its end, so
    whether its effect happened is unknown (only for calls not safe to repeat)."""

    call: str
    reason: str


class ResolveCall(Operation, tag="tool.resolve"):
    """The operator's word on a call whose outcome is unknown: it ``succeeded`` or
    ``failed``, as they found out in the world."""

    call: str
    outcome: str
    note: str = ""


class ApproveOperation(Operation, tag="op.approve"):
    approval: str


class DenyOperation(Operation, tag="op.deny"):
    approval: str
    reason: str = ""


AnyOperation = (
    SpawnAgent
    | PauseAgent
    | ResumeAgent
    | TerminateAgent
    | ScheduleTask
    | StartTask
    | ReleaseTask
    | CompleteTask
    | FailTask
    | EmitObservation
    | GrantCapability
    | RevokeCapability
    | RegisterTool
    | InvokeTool
    | ApproveOperation
    | DenyOperation
    | AddMount
    | RemoveMount
    | AllowHost
    | RevokeHost
    | RecordOutcome
    | AbandonCall
    | ResolveCall
    | RegisterMcpServer
    | RemoveMcpServer
)

OPERATION_TYPES: dict[str, type[Operation]] = {
    cls.__struct_config__.tag: cls  # type: ignore[attr-defined]
    for cls in AnyOperation.__args__  # type: ignore[attr-defined]
}


def op_type(op: Operation) -> str:
    return op.__struct_config__.tag  # type: ignore[attr-defined,return-value]


class Unsigned(msgspec.Struct, frozen=True):
    op: AnyOperation
    principal: str
    token: str
    nonce: str
    ts: int


class SignedOperation(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``{op, principal, token, nonce, ts}`` and the principal's Ed25519 signature of it."""

    op: AnyOperation
    principal: str
    token: str
    nonce: str
    ts: int
    sig: str

    def signing_bytes(self) -> bytes:
        return _canonical.encode(Unsigned(self.op, self.principal, self.token, self.nonce, self.ts))

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.signing_bytes()).hexdigest()

    @property
    def kind(self) -> str:
        return op_type(self.op)

    def verify(self, public_key: str) -> None:
        verify_signature(public_key, self.sig, self.signing_bytes())

    def to_json(self) -> bytes:
        return _canonical.encode(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> SignedOperation:
        if isinstance(data, str):
            data = data.encode()
        if len(data) > MAX_SIGNED_BYTES:
            raise InvalidInput(
                f"signed operation is {len(data)} bytes, over the {MAX_SIGNED_BYTES} byte limit"
            )
        try:
            return msgspec.json.decode(data, type=cls)
        except msgspec.DecodeError as exc:
            raise InvalidInput(f"malformed signed operation: {exc}") from exc
        except RecursionError:  # a value nested thousands deep
            raise InvalidInput("malformed signed operation: a value nests too deeply") from None


def new_nonce(ts_ms: int) -> str:
    """32 hex digits: the signing time in ms, then 80 random bits.

    Time first, so nonces signed later sort later: the log's nonce index then grows
    at its right edge instead of dirtying a random page for every operation."""
    return f"{ts_ms & 0xFFFFFFFFFFFF:012x}{secrets.token_hex(10)}"


def sign(
    op: Operation, principal: str, token: str, key: KeyPair, ts_ms: int, nonce: str | None = None
) -> SignedOperation:
    nonce = nonce or new_nonce(ts_ms)
    unsigned = Unsigned(op, principal, token, nonce, ts_ms)  # type: ignore[arg-type]
    try:
        sig = key.sign(_canonical.encode(unsigned))
    except UnicodeEncodeError as exc:  # a lone surrogate: what undecodable bytes become
        raise InvalidInput(
            f"the {op_type(op)} operation holds text that is not valid Unicode ({exc.reason})"
        ) from None
    return SignedOperation(op, principal, token, nonce, ts_ms, sig)  # type: ignore[arg-type]


def decode_operation(data: bytes | str) -> Operation:
    """Parse an operation given as JSON with a ``type`` tag (for ``toka op sign``)."""
    if isinstance(data, str):
        data = data.encode()
    try:
        return msgspec.json.decode(data, type=AnyOperation)
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"malformed operation: {exc}") from exc
    except RecursionError:  # a value nested thousands deep
        raise InvalidInput("malformed operation: a value nests too deeply") from None
