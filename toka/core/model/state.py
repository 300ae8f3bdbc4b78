"""WorldState: everything the kernel knows, rebuilt by folding the event log."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

_encoder = msgspec.msgpack.Encoder(order="deterministic")

AGENT_STATUSES = ("running", "paused", "terminated")
TASK_STATUSES = ("scheduled", "started", "completed", "failed", "cancelled")
OPEN_TASK_STATUSES = ("scheduled", "started")
# What calling a tool may do to the world, least to most (``Tool.side_effect``):
# ``none`` computes only; ``read_only`` reads; ``idempotent`` may write, and doing it
# twice is doing it once; ``external`` acts where a repeat is another act;
# ``privileged`` is external and always waits for the operator's approval.
SIDE_EFFECTS = ("none", "read_only", "idempotent", "external", "privileged")
# Classes a runner may run again when the one that started a call died before its end.
SAFE_TO_REPEAT = ("read_only", "idempotent")
MOUNT_MODES = ("ro", "rw")


class Budgets(msgspec.Struct, frozen=True, omit_defaults=True):
    max_ops: int | None = None
    max_tool_calls: int | None = None
    max_fuel: int | None = None

    def is_empty(self) -> bool:
        return self.max_ops is None and self.max_tool_calls is None and self.max_fuel is None

    def remaining(self, usage: Usage) -> dict[str, int]:
        """What is left of each budget that is set, by field: ``{"max_ops": 7}``."""
        used = {"max_ops": usage.ops, "max_tool_calls": usage.tool_calls, "max_fuel": usage.fuel}
        limits = msgspec.structs.asdict(self)
        return {field: limit - used[field] for field, limit in limits.items() if limit is not None}


class Usage(msgspec.Struct):
    ops: int = 0
    tool_calls: int = 0
    fuel: int = 0


class Grant(msgspec.Struct):
    jti: str
    subject: str
    caps: list[str]
    issuer: str
    parent: str | None
    iat: int
    exp: int
    budgets: Budgets = Budgets()
    approve: bool = False
    revoked: bool = False
    revoked_at: int | None = None
    usage: Usage = msgspec.field(default_factory=Usage)
    # Set (True) on a grant whose external calls need no approval (``--unattended``);
    # absent otherwise, so grants from before it encode as they did.
    unattended: bool | UnsetType = UNSET


class Agent(msgspec.Struct):
    id: str
    name: str
    behaviour: str
    status: str
    public_key: str
    spawned_by: str
    parent: str | None
    created_ms: int
    open_tasks: int = 0
    observations: int = 0


class Task(msgspec.Struct):
    id: str
    agent: str
    description: str
    status: str
    scheduled_by: str
    created_ms: int
    updated_ms: int
    payload: Any = None
    result: Any = None
    error: str | None = None
    runner: str | None = None
    lease_until: int | None = None


class ToolFiles(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Directories a WASM tool gets staged, named by its arguments: ``input`` names an
    argument ``{"mount", "path"}`` whose file or tree is copied into a read-only ``/in``;
    ``output`` names one whose directory receives what the tool leaves in ``/out``
    (collected without following links, written like ``fs-write``)."""

    input: str | None = None
    output: str | None = None


class McpBinding(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where an imported MCP tool comes from: the server (by its registered name), the
    server's name for the tool, and the definition it was imported with and its pin
    (``model.mcp.definition_pin``)."""

    server: str
    tool: str
    pin: str
    definition: dict[str, Any]


class Tool(msgspec.Struct):
    name: str
    version: str
    description: str
    kind: str
    module_sha256: str | None
    capabilities: list[str]
    limits: dict[str, int]
    input_schema: dict[str, Any] | None
    registered_by: str
    registered_ms: int
    # Absent (UNSET) in tools registered before side-effect classes: they are "none".
    side_effect: str | UnsetType = UNSET
    files: ToolFiles | UnsetType = UNSET
    mcp: McpBinding | UnsetType = UNSET

    @property
    def binding(self) -> McpBinding | None:
        """The MCP server and definition of an imported MCP tool (kind ``mcp``)."""
        return None if self.mcp is UNSET else self.mcp

    @property
    def staged(self) -> ToolFiles | None:
        return None if self.files is UNSET else self.files

    @property
    def effect_class(self) -> str:
        return "none" if self.side_effect is UNSET else self.side_effect


class Approval(msgspec.Struct):
    id: str
    principal: str
    grant: str
    op_kind: str
    signed: bytes
    status: str
    created_ms: int
    decided_by: str | None = None
    reason: str | None = None
    op_digest: str = ""
    decided_seq: int | None = None


class Mount(msgspec.Struct):
    """A host directory the operator lent to tools under a name (``toka mount add``)."""

    name: str
    path: str
    mode: str  # "ro" or "rw"
    added_by: str
    added_ms: int


class AllowedHost(msgspec.Struct):
    """A host and port ``http-fetch`` may reach although it resolves to a private,
    loopback or link-local address (``toka net allow``)."""

    host: str
    port: int
    added_by: str
    added_ms: int


class McpServer(msgspec.Struct):
    """An MCP server the operator registered (``toka mcp add``): how to reach it, and the
    names (never the values) of the secrets given to it, as environment variables
    (``stdio``) or as request headers (``http``)."""

    name: str
    transport: str  # "stdio" or "http"
    command: list[str] | None
    url: str | None
    env: dict[str, str]
    env_secrets: dict[str, str]  # variable -> secret name
    header_secrets: dict[str, str]  # header -> secret name
    legacy: bool  # a 2025-era server: connect with the initialize handshake
    added_by: str
    added_ms: int


class OpenCall(msgspec.Struct):
    """A tool call with an effect, between its intent (``tool.started``) and its end.

    ``status`` is ``started`` while it may still be running, ``unknown`` once its
    runner is known to have stopped before recording an outcome (only for classes that
    are not safe to repeat). ``op_seq`` is where the signed ``tool.invoke`` (its
    arguments) is in the log: the first seq of that operation's own row."""

    id: str
    tool: str
    version: str
    side_effect: str
    principal: str
    grant: str | None
    task: str | None
    caps: list[str]
    op_digest: str
    op_seq: int
    started_ms: int
    deadline_ms: int
    status: str = "started"
    reason: str = ""

    def standing(self, now_ms: int) -> str:
        """``started``, ``interrupted`` (still started past its deadline: whoever started
        it stopped; a call outside any task waits for the operator) or ``unknown``."""
        if self.status == "started" and now_ms >= self.deadline_ms:
            return "interrupted"
        return self.status


class WorldState(msgspec.Struct):
    home_id: str = ""
    seq: int = 0
    ts: int = 0
    principals: dict[str, str] = msgspec.field(default_factory=dict)
    agents: dict[str, Agent] = msgspec.field(default_factory=dict)
    tasks: dict[str, Task] = msgspec.field(default_factory=dict)
    grants: dict[str, Grant] = msgspec.field(default_factory=dict)
    tools: dict[str, dict[str, Tool]] = msgspec.field(default_factory=dict)
    approvals: dict[str, Approval] = msgspec.field(default_factory=dict)
    counters: dict[str, int] = msgspec.field(default_factory=dict)
    # Tables added after the first logs were written: UNSET while empty, so a state
    # without them encodes (and hashes) exactly as it did before they existed.
    mounts: dict[str, Mount] | UnsetType = UNSET
    allowed_hosts: dict[str, AllowedHost] | UnsetType = UNSET
    open_calls: dict[str, OpenCall] | UnsetType = UNSET
    mcp_servers: dict[str, McpServer] | UnsetType = UNSET

    def encode(self) -> bytes:
        return _encoder.encode(self)

    def state_hash(self) -> str:
        """sha256 of the deterministic encoding: equal states, equal hashes."""
        return hashlib.sha256(self.encode()).hexdigest()

    @classmethod
    def decode(cls, data: bytes) -> WorldState:
        return msgspec.msgpack.decode(data, type=cls)

    def copy(self) -> WorldState:
        return WorldState.decode(self.encode())

    def grant_chain(self, jti: str) -> list[Grant]:
        """The grant and its ancestors, nearest first."""
        # On every operation's hot path (authorization, budgets, usage): no set for cycle
        # detection. A parent always exists before its child, so a chain longer than the
        # number of grants can only be a corrupted state; it stops there.
        grants = self.grants
        grant = grants.get(jti)
        if grant is None:
            return []
        chain = [grant]
        limit = len(grants)
        while grant.parent is not None and len(chain) < limit:
            grant = grants.get(grant.parent)
            if grant is None:
                break
            chain.append(grant)
        return chain

    def descendants(self, jti: str) -> list[str]:
        """Every grant derived from ``jti`` (not including it), in issue order."""
        children: dict[str, list[str]] = {}
        for g in self.grants.values():
            if g.parent is not None:
                children.setdefault(g.parent, []).append(g.jti)
        out: list[str] = []
        stack = list(reversed(children.get(jti, [])))
        while stack:
            current = stack.pop()
            out.append(current)
            stack.extend(reversed(children.get(current, [])))
        return out

    def active_grants(self, subject: str, now_s: int) -> list[Grant]:
        return [
            g
            for g in self.grants.values()
            if g.subject == subject
            and not g.revoked
            and g.exp > now_s
            and not any(a.revoked for a in self.grant_chain(g.jti))
        ]

    def mount_table(self) -> dict[str, Mount]:
        return {} if self.mounts is UNSET else self.mounts

    def host_table(self) -> dict[str, AllowedHost]:
        return {} if self.allowed_hosts is UNSET else self.allowed_hosts

    def call_table(self) -> dict[str, OpenCall]:
        return {} if self.open_calls is UNSET else self.open_calls

    def mcp_table(self) -> dict[str, McpServer]:
        return {} if self.mcp_servers is UNSET else self.mcp_servers

    def find_tool(self, name: str, version: str | None) -> Tool | None:
        """That version of tool ``name``, or its newest when ``version`` is None."""
        if version is not None:
            return self.tools.get(name, {}).get(version)
        return self.latest_tool(name)

    def latest_tool(self, name: str) -> Tool | None:
        versions = self.tools.get(name)
        if not versions:
            return None
        return max(versions.values(), key=lambda t: version_key(t.version))


def table_put(state: WorldState, table: str, key: str, value: Any) -> None:
    """Set ``state.<table>[key]``, making the table when it was UNSET."""
    current = getattr(state, table)
    if current is UNSET:
        current = {}
        setattr(state, table, current)
    current[key] = value


def table_drop(state: WorldState, table: str, key: str) -> None:
    """Remove ``state.<table>[key]``; an emptied table goes back to UNSET (see WorldState)."""
    current = getattr(state, table)
    if current is UNSET:
        return
    current.pop(key, None)
    if not current:
        setattr(state, table, UNSET)


def version_key(version: str) -> tuple:
    parts: list[tuple[int, Any]] = []
    for piece in version.replace("-", ".").split("."):
        parts.append((0, int(piece)) if piece.isdigit() else (1, piece))
    return tuple(parts)
