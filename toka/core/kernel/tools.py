"""Tools: what a registration must hold, and every check of an invocation.

The kernel never runs a tool. For a pure tool (side-effect class ``none``) the tool
runner (``toka.core.tools``) plans an invocation with ``plan_invocation`` against the
current state, runs it outside the kernel, and submits the operation with the run
(``ToolRun``) as ``ctx.outcome``; ``invoke`` checks everything again and records
``tool.succeeded`` or ``tool.failed``. A tool with an effect is called in two phases,
intent first (``toka.core.kernel.effects``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec

from toka.core.errors import BudgetExhausted, InvalidInput, InvalidOperation, NotFound
from toka.core.kernel import effects, mcp
from toka.core.kernel.auth import authorize, required_caps
from toka.core.kernel.context import MAX_DESCRIPTION_BYTES, Ctx, Evolver, value_problem
from toka.core.kernel.derive import NATIVE_CLASSES, Derived, derive
from toka.core.kernel.schemas import check_input_schema, first_error
from toka.core.model import caps, ops
from toka.core.model import events as ev
from toka.core.model.events import TOOL_FAILURE_KINDS
from toka.core.model.state import Grant, Tool, WorldState

KINDS = ("wasm", "native", "mcp")
# A tool imported from an MCP server is named ``<server>.<tool>`` (``model.mcp``).
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}(\.[A-Za-z0-9_][A-Za-z0-9_-]{0,63})?\Z")
VERSION_RE = re.compile(r"^(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\Z")
SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")
# Sane maxima: a tool may not take the host down by asking for more.
MAX_LIMITS = {
    "fuel": 100_000_000_000,
    "memory_mb": 512,
    "timeout_ms": 60_000,
    "max_output_bytes": 1024 * 1024,
    "max_bytes": 64 * 1024 * 1024,
}
# The native built-ins a registration may name (the tool runner has their code), and the
# limits that apply to each: the effect tools' time limit bounds the whole call, and
# ``max_bytes`` the data a call reads, writes or fetches.
NATIVE_TOOLS = tuple(NATIVE_CLASSES)
_EFFECT_LIMITS = ("max_output_bytes", "timeout_ms", "max_bytes")
NATIVE_LIMITS = {name: _EFFECT_LIMITS for name in NATIVE_TOOLS} | {"echo": ("max_output_bytes",)}
WASM_LIMITS = ("fuel", "memory_mb", "timeout_ms", "max_output_bytes")
# An MCP call's time limit bounds the call (a server that does not answer in time has an
# unknown outcome); ``max_output_bytes`` the result kept.
MCP_LIMITS = ("timeout_ms", "max_output_bytes")
MAX_ARGS_BYTES = 256 * 1024
# The time limit of checking arguments for a tool without its own (a native tool).
DEFAULT_CHECK_MS = 1000
MAX_MESSAGE = 2000

_json = msgspec.json.Encoder(order="sorted")


def check_spec(
    name: str,
    version: str,
    description: str,
    kind: str,
    capabilities: list[str],
    limits: dict[str, int],
    input_schema: dict[str, Any] | None,
    side_effect: Any = msgspec.UNSET,
    files: Any = msgspec.UNSET,
) -> None:
    """Validate a tool's registration fields (shared by manifests and the kernel)."""
    if not NAME_RE.match(name):
        raise InvalidOperation(
            f"name: {name!r} is not a tool name (lowercase letter, then up to 63 of a-z 0-9 _ -; "
            "an MCP tool's is <server>.<tool>)"
        )
    if not VERSION_RE.match(version):
        raise InvalidOperation(
            f"version: {version!r} is not MAJOR.MINOR.PATCH (numbers without leading zeros)"
        )
    size = len(description.encode())
    if not description.strip() or size > MAX_DESCRIPTION_BYTES:
        raise InvalidOperation(
            f"description: must be non-empty and at most {MAX_DESCRIPTION_BYTES} bytes"
        )
    if kind not in KINDS:
        raise InvalidOperation(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    if kind == "native" and name not in NATIVE_TOOLS:
        raise InvalidOperation(
            f"name: there is no native tool {name!r} (native tools: {', '.join(NATIVE_TOOLS)})"
        )
    if len(capabilities) > caps.MAX_CAPS:
        raise InvalidOperation(f"capabilities: more than {caps.MAX_CAPS}")
    for cap in capabilities:
        try:
            caps.parse(cap)
        except InvalidInput as exc:
            raise InvalidOperation(f"capabilities: {exc.message}") from None
    _check_limits(name, kind, limits)
    effects.check_side_effect(name, kind, side_effect, files)
    if input_schema is not None:
        check_input_schema(input_schema)


def limits_of(name: str, kind: str) -> tuple[str, ...]:
    """The limits a tool of this name and kind has (each one required)."""
    if kind == "native":
        return NATIVE_LIMITS.get(name, ())
    return MCP_LIMITS if kind == "mcp" else WASM_LIMITS


def _check_limits(name: str, kind: str, limits: dict[str, int]) -> None:
    allowed = limits_of(name, kind)
    for key in limits:
        if key not in allowed:
            raise InvalidOperation(f"limits.{key}: unknown or not applicable to a {kind} tool")
    for key in allowed:
        if key not in limits:
            raise InvalidOperation(f"limits.{key}: missing")
        value = limits[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidOperation(f"limits.{key}: must be an integer")
        if not 1 <= value <= MAX_LIMITS[key]:
            raise InvalidOperation(f"limits.{key}: {value} is outside 1..{MAX_LIMITS[key]}")


def check_args(tool: Tool, args: Any, expired: Callable[[], bool] | None = None) -> None:
    """Arguments must be JSON, within the size limit, and match the tool's input schema.

    The check costs a bounded amount of work whatever the schema (``schemas``);
    ``expired`` adds a time limit (the runtime's, which checks before the write lock)."""
    problem = value_problem(args)
    if problem is not None:
        raise InvalidOperation(f"tool arguments {problem}")
    try:
        size = len(_json.encode(args))
    except (TypeError, msgspec.EncodeError, RecursionError) as exc:
        raise InvalidOperation(f"tool arguments are not JSON-encodable: {exc}") from None
    if size > MAX_ARGS_BYTES:
        raise InvalidOperation(
            f"tool arguments are {size} bytes, over the {MAX_ARGS_BYTES} byte limit"
        )
    if tool.input_schema is None:
        return
    try:
        error = first_error(tool.input_schema, args, expired)
    except InvalidOperation as exc:
        raise InvalidOperation(f"arguments of {tool.name}@{tool.version}: {exc.message}") from None
    if error is not None:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise InvalidOperation(
            f"arguments do not match the input schema of {tool.name}@{tool.version}: "
            f"{_shorten(error.message)} (at $" + where + ")"
        )


def tool_key(tool: Tool) -> str:
    return f"{tool.name}@{tool.version}"


def args_verdict(tool: Tool, args: Any, expired: Callable[[], bool] | None = None) -> str | None:
    """What ``check_args`` says: None when the arguments pass, else the refusal's message."""
    try:
        check_args(tool, args, expired)
    except InvalidOperation as exc:
        return exc.message
    return None


class ArgsToCheck(NamedTuple):
    """A tool version and the arguments to check against its input schema."""

    tool: Tool
    args: Any


def tool_to_check(state: WorldState, op: ops.InvokeTool, prepared: Any) -> Tool | None:
    """The tool version whose input schema deciding ``op`` checks its arguments against."""
    ran = prepared.version if isinstance(prepared, ToolRun) else None
    return resolve(state, op.tool, op.version or ran)


def _checked_args(tool: Tool, args: Any, ctx: Ctx) -> None:
    """The arguments' verdict: checked before the commit (``ctx.checked``), or now."""
    if ctx.checked is None:  # decided without the runtime's check (a re-decision)
        check_args(tool, args)
        return
    key = tool_key(tool)
    if key not in ctx.checked:
        raise InvalidOperation(
            f"tool {key} was registered after the arguments were checked (against the "
            "version then the newest); submit the operation again"
        )
    message = ctx.checked[key]
    if message is not None:
        raise InvalidOperation(message)


def _shorten(text: str, limit: int = 300) -> str:
    """Schema errors quote the offending value, which may be as big as the arguments."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ToolRun(msgspec.Struct, frozen=True):
    """What running a tool did, computed outside the kernel and handed to it as ``ctx.outcome``."""

    tool: str
    version: str
    ok: bool
    output: Any
    error_kind: str | None
    message: str
    exit_code: int | None
    fuel_used: int
    wall_ms: float
    stderr: str = ""


class Plan(msgspec.Struct, frozen=True):
    """What an accepted invocation will run: the tool version, the fuel it may burn,
    and what its arguments let it touch (empty and ``none`` for a pure tool)."""

    tool: Tool
    fuel: int
    effect: Derived = Derived([], "none")


def resolve(state: WorldState, name: str, version: str | None) -> Tool | None:
    return state.find_tool(name, version)


def fuel_left(state: WorldState, grant: str | None, tool: Tool) -> int:
    """The fuel a run of ``tool`` may burn: its limit, or less where a fuel budget of
    ``grant`` or an ancestor has less left (never below 0)."""
    fuel = tool.limits.get("fuel", 0)
    if tool.kind != "wasm" or grant is None:
        return fuel
    for link in state.grant_chain(grant):
        if link.budgets.max_fuel is not None:
            fuel = min(fuel, link.budgets.max_fuel - link.usage.fuel)
    return max(0, fuel)


def _tool_budget(state: WorldState, grant: Grant, tool: Tool) -> int:
    """Refuse past the tool-call and fuel budgets; returns the fuel this call may use."""
    for link in state.grant_chain(grant.jti):
        calls = link.budgets.max_tool_calls
        if calls is not None and link.usage.tool_calls >= calls:
            raise BudgetExhausted(
                f"budget: grant {link.jti} has used {link.usage.tool_calls} of {calls} tool calls"
            )
        limit = link.budgets.max_fuel
        if limit is not None and tool.kind == "wasm" and limit - link.usage.fuel <= 0:
            raise BudgetExhausted(
                f"budget: grant {link.jti} has used {link.usage.fuel} of {limit} fuel"
            )
    return fuel_left(state, grant.jti, tool)


def plan_invocation(
    state: WorldState, op: ops.InvokeTool, ctx: Ctx, ran_version: str | None = None
) -> Plan:
    """Every check of a ``tool.invoke`` that needs no run: capability, tool, task, args, budget.

    The runner calls this read-only before running anything; the decider calls it again
    at commit time with the version that actually ran.
    """
    required = required_caps(state, op)
    tool = resolve(state, op.tool, op.version or ran_version)
    if tool is not None:
        required += [c for c in tool.capabilities if c not in required]
    grant = authorize(state, ctx, required)
    if tool is None:
        if op.version is not None and op.tool in state.tools:
            raise NotFound(f"tool {op.tool} has no version {op.version}")
        raise NotFound(f"unknown tool {op.tool!r}")
    if op.task is not None:
        task = state.tasks.get(op.task)
        if task is None:
            raise NotFound(f"unknown task {op.task!r}")
        if task.status not in ("scheduled", "started"):
            raise InvalidOperation(f"task {task.id} is already {task.status}")
    _checked_args(tool, op.args, ctx)
    # Where the call may reach is in ``required`` already when the arguments name a
    # place (``auth.required_caps``); deriving it here refuses, with the specific
    # reason, arguments that do not.
    derived = derive(state, tool, op.args)
    return Plan(tool, _tool_budget(state, grant, tool), derived)


def check_registration(op: ops.RegisterTool) -> None:
    """``check_spec`` on a ``tool.register``'s fields."""
    check_spec(
        op.name,
        op.version,
        op.description,
        op.kind,
        op.capabilities,
        op.limits,
        op.input_schema,
        op.side_effect,
        op.files,
    )


def register(state: WorldState, op: ops.RegisterTool, ctx: Ctx) -> list[msgspec.Struct]:
    authorize(state, ctx, required_caps(state, op))
    check_registration(op)
    if op.kind == "mcp":
        mcp.check_import(state, op)
    else:
        mcp.check_not_imported(op)
    if op.kind == "wasm":
        if op.module_sha256 is None or not SHA256_RE.match(op.module_sha256):
            raise InvalidOperation("module_sha256: a wasm tool needs its module's sha256 (64 hex)")
    elif op.module_sha256 is not None:
        raise InvalidOperation(f"module_sha256: a {op.kind} tool has no module")
    versions = state.tools.get(op.name, {})
    if op.version in versions:
        raise InvalidOperation(
            f"tool {op.name}@{op.version} is already registered; a changed tool needs a new version"
        )
    kinds = {t.kind for t in versions.values()}
    if kinds and op.kind not in kinds:
        raise InvalidOperation(
            f"tool {op.name} is a {kinds.pop()} tool; a {op.kind} tool cannot take its name"
        )
    # The event is the operation's fields: same names, same encoding.
    return [ev.ToolRegistered(**msgspec.structs.asdict(op))]


def invoke(state: WorldState, op: ops.InvokeTool, ctx: Ctx) -> list[msgspec.Struct]:
    run = ctx.outcome
    if run is not None and not isinstance(run, ToolRun):
        raise InvalidOperation("tool.invoke: the prepared outcome is not a tool run")
    if run is not None and op.version is not None and run.version != op.version:
        raise InvalidOperation(f"tool.invoke: ran version {run.version}, not {op.version}")
    plan = plan_invocation(state, op, ctx, run.version if run is not None else None)
    if plan.effect.side_effect != "none":
        if run is not None:
            raise InvalidOperation(
                f"tool.invoke: {op.tool} has an effect: its outcome is recorded after its "
                "intent, by the host that performs it"
            )
        return [effects.intent(state, op, ctx, plan.tool, plan.effect)]
    if run is None:
        raise InvalidOperation(
            "tool invocations go through the tool runner (`toka tool invoke`, or "
            "toka.core.tools.invoke), which runs the tool and records its outcome"
        )
    if run.tool != op.tool:
        raise InvalidOperation(f"tool.invoke: the run is of {run.tool}, not {op.tool}")
    if run.fuel_used > plan.fuel:
        raise BudgetExhausted(
            f"budget: the run used {run.fuel_used} fuel; only {plan.fuel} remain in the grant"
        )
    tool = plan.tool
    if run.ok:
        return [
            ev.ToolSucceeded(
                tool.name, tool.version, run.output, run.fuel_used, run.wall_ms, op.task
            )
        ]
    kind = run.error_kind if run.error_kind in TOOL_FAILURE_KINDS else "trap"
    return [
        ev.ToolFailed(
            tool=tool.name,
            version=tool.version,
            error_kind=kind,
            message=run.message[:MAX_MESSAGE],
            fuel_used=run.fuel_used,
            wall_ms=run.wall_ms,
            exit_code=run.exit_code,
            task=op.task,
        )
    ]


# -- evolvers ----------------------------------------------------------------------


def _on_tool(state: WorldState, e: ev.ToolRegistered, r: ev.EventRecord) -> None:
    state.tools.setdefault(e.name, {})[e.version] = Tool(
        **msgspec.structs.asdict(e), registered_by=r.principal, registered_ms=r.ts
    )


def _on_tool_ended(
    state: WorldState, e: ev.ToolSucceeded | ev.ToolFailed, r: ev.EventRecord
) -> None:
    if e.call is msgspec.UNSET:  # a pure call: counted when it ends, in one operation
        effects.charge_tool_use(state, r.grant, 1, e.fuel_used)
    else:  # counted at its intent; ends under no grant
        effects.on_ended(state, e)


EVOLVERS: dict[str, Evolver] = {
    "tool.registered": _on_tool,
    "tool.succeeded": _on_tool_ended,
    "tool.failed": _on_tool_ended,
}
