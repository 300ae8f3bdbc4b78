"""Calls with an effect: what they may touch, their intent, and how they end.

A tool whose side-effect class is not ``none`` is called in two phases, each in the
log before the next thing happens:

1. The signed ``tool.invoke`` is decided with no outcome. The kernel derives from the
   call's arguments the capabilities it needs (``derive``: a mount and a path, a method
   and a URL), checks them with the tool's own, charges the tool-call budget, and
   records the intent ``tool.started``. Nothing has touched the world yet.
2. The host that performed the call states how it ended, in an operation signed with
   the kernel's key (``tool.record``): ``tool.succeeded`` or ``tool.failed`` with an
   effect record for each file read, listed or written and each URL fetched. Every
   effect must be covered by the intent's capabilities (or, for a redirect's later
   hops and a staged tool's outputs, by its grant), and a write by a read-write mount.

A call whose runner died in between stays open. A runner may run it again if its
class is safe to repeat; otherwise, once its deadline has passed, a host states that
its outcome is unknown (``tool.abandon`` -> ``tool.unknown``) and the operator
resolves it (``tool.resolve`` -> ``tool.resolved``). Host statements carry no token:
only the kernel's signature (checked by the runtime) lets them in.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec

from toka.core.errors import InvalidOperation
from toka.core.kernel.approvals import pending_seq
from toka.core.kernel.auth import authorize, required_caps
from toka.core.kernel.context import (
    KERNEL,
    MAX_DESCRIPTION_BYTES,
    Ctx,
    Evolver,
    check_text,
    find_call,
    value_problem,
)
from toka.core.kernel.derive import (
    NATIVE_CLASSES,
    Derived,
    call_timeout_ms,
    check_writable,
    class_rank,
)
from toka.core.model import caps, ops, places
from toka.core.model import events as ev
from toka.core.model.events import TOOL_FAILURE_KINDS
from toka.core.model.state import (
    SAFE_TO_REPEAT,
    SIDE_EFFECTS,
    OpenCall,
    Tool,
    WorldState,
    table_drop,
    table_put,
)

# The error kind of an outcome that its host lost (``tool.record`` then states the call
# unknown): for calls not safe to repeat.
UNKNOWN_OUTCOME = "unknown"
# A call's deadline is its time limit plus this: time to record its outcome.
DEADLINE_GRACE_MS = 2000
MAX_MESSAGE = 2000
_json = msgspec.json.Encoder(order="sorted")


def intent(
    state: WorldState, op: ops.InvokeTool, ctx: Ctx, tool: Tool, derived: Derived
) -> ev.ToolStarted:
    """The ``tool.started`` event of an accepted call with an effect (see the module)."""
    args_sha256 = hashlib.sha256(_json.encode(op.args)).hexdigest()
    return ev.ToolStarted(
        call=f"iv-{ctx.seq}",
        tool=tool.name,
        version=tool.version,
        side_effect=derived.side_effect,
        caps=derived.caps,
        args_sha256=args_sha256,
        idempotency_key=ctx.op_digest,
        # Released by an approval: the arguments are in the held operation's own row.
        op_seq=ctx.seq if ctx.approval is None else (pending_seq(ctx.approval) or ctx.seq),
        deadline_ms=ctx.ts + call_timeout_ms(tool, op.args) + DEADLINE_GRACE_MS,
        task=op.task,
    )


def _host_only(ctx: Ctx, what: str) -> None:
    if ctx.principal != KERNEL or ctx.grant is not None:
        raise InvalidOperation(f"{what} is a host statement: only the kernel's key signs it")


def effect_capability(effect: ev.Effect) -> str:
    """The capability an effect record needed: what the kernel checks it against."""
    match effect:
        case ev.FileRead():
            return places.fs_resource("fs.read", effect.mount, effect.path)
        case ev.DirListed():
            return places.fs_resource("fs.list", effect.mount, effect.path)
        case ev.FileWritten():
            return places.fs_resource("fs.write", effect.mount, effect.path)
        case ev.UrlFetched():
            return places.http_resource(effect.method, effect.url)
        case ev.McpCalled():
            return f"tool.invoke:tool/{effect.server}.{effect.tool}"
    raise InvalidOperation(f"unknown effect {type(effect).__name__}")


def covers(state: WorldState, call: OpenCall, needed: str) -> bool:
    """Is ``needed`` within what ``call`` may touch: its intent's capabilities, or (for a
    redirect's later hop, a staged tool's output) the grant it was made under?"""
    if caps.covers(call.caps, needed):
        return True
    grant = state.grants.get(call.grant) if call.grant is not None else None
    return grant is not None and caps.covers(grant.caps, needed)


def _check_effects(state: WorldState, call: OpenCall, effects: list[Any]) -> None:
    tool = state.tools[call.tool][call.version]
    for effect in effects:
        if isinstance(effect, ev.McpCalled) != (tool.kind == "mcp"):
            raise InvalidOperation(f"call {call.id} records an effect its tool cannot have")
        if isinstance(effect, ev.McpCalled):
            binding = tool.binding
            assert binding is not None
            if (effect.server, effect.tool, effect.pin) != (
                binding.server,
                binding.tool,
                binding.pin,
            ):
                raise InvalidOperation(
                    f"call {call.id} records an MCP call that is not its tool's, as pinned"
                )
        needed = effect_capability(effect)
        if not covers(state, call, needed):
            raise InvalidOperation(
                f"call {call.id} records an effect its capabilities do not cover: {needed}"
            )
        if isinstance(effect, ev.FileWritten):
            check_writable(state, effect.mount)


def still_allowed(state: WorldState, call: OpenCall, now_ms: int) -> str | None:
    """Why an open call must no longer be performed (its grant, or an ancestor, was
    revoked or has expired, or its agent was terminated since its intent), or None.
    A host asks just before it touches the world; revocation takes effect there too."""
    chain = state.grant_chain(call.grant) if call.grant is not None else []
    if not chain:
        return f"call {call.id} has no grant to run under"
    for link in chain:
        if link.revoked:
            return f"grant {link.jti} was revoked after call {call.id} started; it was not run"
    if chain[0].exp * 1000 <= now_ms:
        return f"grant {chain[0].jti} expired before call {call.id} ran; it was not run"
    agent = state.agents.get(call.principal)
    if agent is not None and agent.status == "terminated":
        return f"agent {agent.id} was terminated before call {call.id} ran; it was not run"
    return None


def record(state: WorldState, op: ops.RecordOutcome, ctx: Ctx) -> list[msgspec.Struct]:
    """How an open call ended, as the host that performed it states it."""
    _host_only(ctx, "tool.record")
    call = find_call(state, op.call)
    out = op.outcome
    problem = value_problem(out.output)
    if problem is not None:
        raise InvalidOperation(f"the output of call {call.id} {problem}")
    if out.fuel_used < 0 or out.wall_ms < 0:
        raise InvalidOperation("fuel and time used must not be negative")
    _check_effects(state, call, out.effects)
    if not out.ok and out.error_kind == UNKNOWN_OUTCOME:
        return [_unknown_now(call, out)]
    if out.ok:
        if out.error_kind is not None:
            raise InvalidOperation("a successful outcome has no error kind")
        return [
            ev.ToolSucceeded(
                call.tool,
                call.version,
                out.output,
                out.fuel_used,
                out.wall_ms,
                call.task,
                call=call.id,
                effects=list(out.effects),
            )
        ]
    if out.error_kind not in TOOL_FAILURE_KINDS:
        raise InvalidOperation(f"unknown failure kind {out.error_kind!r}")
    return [
        ev.ToolFailed(
            tool=call.tool,
            version=call.version,
            error_kind=out.error_kind,
            message=out.message[:MAX_MESSAGE],
            fuel_used=out.fuel_used,
            wall_ms=out.wall_ms,
            task=call.task,
            call=call.id,
            effects=list(out.effects),
        )
    ]


def _unknown_now(call: OpenCall, out: ops.CallOutcome) -> ev.ToolUnknown:
    """The host that performed a call lost its outcome (the server went away, or did not
    answer in time): a call not safe to repeat is then unknown, not failed."""
    if call.side_effect in SAFE_TO_REPEAT:
        raise InvalidOperation(
            f"call {call.id} is {call.side_effect}: a lost outcome is a failure to record"
        )
    if not out.message.strip():
        raise InvalidOperation("an unknown outcome says why it is unknown")
    return ev.ToolUnknown(
        call.id,
        call.tool,
        call.version,
        out.message[:MAX_MESSAGE],
        call.task,
        effects=list(out.effects) if out.effects else msgspec.UNSET,
    )


def abandon(state: WorldState, op: ops.AbandonCall, ctx: Ctx) -> list[msgspec.Struct]:
    """A call not safe to repeat whose runner is gone: its outcome becomes unknown."""
    _host_only(ctx, "tool.abandon")
    call = find_call(state, op.call)
    if call.status != "started":
        raise InvalidOperation(f"call {call.id} is already {call.status}")
    if call.side_effect in SAFE_TO_REPEAT:
        raise InvalidOperation(
            f"call {call.id} is {call.side_effect}: run it again instead of abandoning it"
        )
    if ctx.ts < call.deadline_ms:
        raise InvalidOperation(f"call {call.id} may still be running (until its deadline)")
    check_text("reason", op.reason, MAX_DESCRIPTION_BYTES)
    return [ev.ToolUnknown(call.id, call.tool, call.version, op.reason, call.task)]


def resolve(state: WorldState, op: ops.ResolveCall, ctx: Ctx) -> list[msgspec.Struct]:
    """The operator's word on a call whose outcome is unknown (or whose runner is gone)."""
    call = find_call(state, op.call)
    authorize(state, ctx, required_caps(state, op))
    if op.outcome not in ("succeeded", "failed"):
        raise InvalidOperation(f"outcome must be 'succeeded' or 'failed', not {op.outcome!r}")
    if call.status == "started" and ctx.ts < call.deadline_ms:
        raise InvalidOperation(
            f"call {call.id} may still be running; it can be resolved once its outcome is "
            "unknown or its deadline has passed"
        )
    check_text("note", op.note, MAX_DESCRIPTION_BYTES, empty_ok=True)
    return [ev.ToolResolved(call.id, call.tool, call.version, op.outcome, op.note, call.task)]


ARG_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


def check_side_effect(name: str, kind: str, side_effect: Any, files: Any = msgspec.UNSET) -> None:
    """A registration's class: known, for a built-in never below its own, and for a tool
    with staged files at least what they do (reading, or writing as ``fs-write`` does)."""
    if side_effect is msgspec.UNSET:
        side_effect = "none"
    if side_effect not in SIDE_EFFECTS:
        raise InvalidOperation(
            f"side_effect: {side_effect!r} is not one of {', '.join(SIDE_EFFECTS)}"
        )
    least = NATIVE_CLASSES.get(name, "none") if kind == "native" else "none"
    if kind == "mcp":
        least = "read_only"  # another process: every call is logged before it is sent
    if files is not msgspec.UNSET:
        if kind != "wasm":
            raise InvalidOperation("files: only a wasm tool gets staged directories")
        if files.input is None and files.output is None:
            raise InvalidOperation("files: name an input or an output argument")
        for arg in (files.input, files.output):
            if arg is not None and not ARG_NAME_RE.match(arg):
                raise InvalidOperation(f"files: {arg!r} is not an argument name")
        if files.input is not None and files.input == files.output:
            raise InvalidOperation("files: input and output must be different arguments")
        least = "idempotent" if files.output is not None else "read_only"
    if class_rank(side_effect) < class_rank(least):
        raise InvalidOperation(
            f"side_effect: {name} is at least {least} (it may be raised, never lowered)"
        )


# -- evolvers ----------------------------------------------------------------------


def charge_tool_use(state: WorldState, grant: str | None, calls: int, fuel: int) -> None:
    """Count tool calls and fuel against ``grant`` and its ancestors."""
    if grant is None:
        return
    for link in state.grant_chain(grant):
        link.usage.tool_calls += calls
        link.usage.fuel += fuel


def _on_started(state: WorldState, e: ev.ToolStarted, r: ev.EventRecord) -> None:
    call = OpenCall(
        id=e.call,
        tool=e.tool,
        version=e.version,
        side_effect=e.side_effect,
        principal=r.principal,
        grant=r.grant,
        task=e.task,
        caps=list(e.caps),
        op_digest=e.idempotency_key,  # the signed invoke's digest, approved or not
        op_seq=e.op_seq,
        started_ms=r.ts,
        deadline_ms=e.deadline_ms,
    )
    table_put(state, "open_calls", e.call, call)
    charge_tool_use(state, r.grant, 1, 0)


def on_ended(state: WorldState, e: ev.ToolSucceeded | ev.ToolFailed) -> None:
    """A call with an effect ended: it is no longer open, and its fuel is charged to
    the grant of its intent (the ending event is the host's, under no grant)."""
    call = state.call_table()[e.call]  # type: ignore[index]
    charge_tool_use(state, call.grant, 0, e.fuel_used)
    table_drop(state, "open_calls", call.id)


def _on_unknown(state: WorldState, e: ev.ToolUnknown, r: ev.EventRecord) -> None:
    call = state.call_table()[e.call]
    call.status = "unknown"
    call.reason = e.reason


def _on_resolved(state: WorldState, e: ev.ToolResolved, r: ev.EventRecord) -> None:
    table_drop(state, "open_calls", e.call)


EVOLVERS: dict[str, Evolver] = {
    "tool.started": _on_started,
    "tool.unknown": _on_unknown,
    "tool.resolved": _on_resolved,
}
