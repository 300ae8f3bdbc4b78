"""One principal's face toward an MCP host: the tools it may call, and each call's answer.

Nothing here knows MCP: ``Gateway`` answers in Toka's terms (``OfferedTool``, ``Reply``)
and ``server`` turns them into MCP frames. Every call is a signed ``tool.invoke`` by
the principal, through the same runner as ``toka tool invoke``; the kernel decides it.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from toka.core.errors import Denied, InvalidInput, TokaError
from toka.core.model import caps
from toka.core.model.state import Grant, Tool, WorldState
from toka.core.runtime.client import Client
from toka.core.tools import Invocation, invoke_as

# ``_meta`` keys on an answer (a prefix of our own, as MCP asks of extensions).
META = "toka"


class OfferedTool(msgspec.Struct, frozen=True):
    """A tool as an MCP host sees it: the newest version, with its argument schema."""

    name: str
    version: str
    description: str
    input_schema: dict[str, Any]
    side_effect: str


class Reply(msgspec.Struct, frozen=True):
    """What one ``tools/call`` came to: the text the model reads, whether it is an
    error, the output when it is an object, and where the log holds it."""

    text: str
    is_error: bool
    structured: dict[str, Any] | None = None
    meta: dict[str, Any] = msgspec.field(default_factory=dict)
    # An imported MCP tool's answer as its server gave it (content blocks, wire form):
    # a gateway passes it through rather than describing it as JSON text.
    content: list[dict[str, Any]] | None = None


def needed_caps(tool: Tool) -> list[str]:
    """What a grant must cover before any call of ``tool`` can be accepted. Arguments
    may need more (a file tool's path): the kernel checks those on each call."""
    return [f"tool.invoke:tool/{tool.name}", *tool.capabilities]


def input_schema(tool: Tool) -> dict[str, Any] | None:
    """The schema to publish: the registered one, or any object (MCP requires an object
    schema). None for a tool whose arguments are not an object: MCP cannot call it."""
    schema = tool.input_schema
    if not schema:
        return {"type": "object"}
    if schema.get("type", "object") != "object":
        return None
    return {"type": "object", **schema}


class Gateway:
    """Serves ``client``'s principal: lists what its grants cover, calls as it.

    Blocking (it reads and writes the log): an event loop calls it from a worker
    thread. Thread-safe, as the runtime and the tool runner are."""

    def __init__(self, client: Client):
        self.client = client
        # A held call is an answer here ("waiting for approval"), not an exception.
        client.raise_pending = False

    @property
    def principal(self) -> str:
        return self.client.principal

    def check(self) -> None:
        """Fail now, not on the first call, if the principal is unknown or its private
        key does not load (``HomeError``)."""
        rt = self.client.runtime
        rt.catch_up()
        if self.principal not in rt.state.principals:
            raise InvalidInput(f"unknown principal {self.principal!r}: see `toka agent list`")
        _ = self.client.key  # loaded once, here

    def offered(self) -> list[OfferedTool]:
        """The tools some active grant of the principal covers (one grant must cover all
        of a tool's capabilities: a call presents one token), sorted by name."""
        rt = self.client.runtime
        rt.catch_up()
        state = rt.state
        grants = self._grants(state, int(rt.clock()))
        out = []
        for name in sorted(state.tools):
            tool = state.latest_tool(name)
            if tool is None:
                continue
            schema = input_schema(tool)
            needed = needed_caps(tool)
            if schema is not None and any(
                all(caps.covers(g.caps, c) for c in needed) for g in grants
            ):
                out.append(
                    OfferedTool(
                        tool.name, tool.version, tool.description, schema, tool.effect_class
                    )
                )
        return out

    def _grants(self, state: WorldState, now_s: int) -> list[Grant]:
        """The grants a call may present: the one of a fixed token (TOKA_TOKEN), or
        every active grant of the principal (the client picks one per call)."""
        active = state.active_grants(self.principal, now_s)
        token = self.client.token
        if token is None:
            return active
        try:
            jti = self.client.runtime.authority.verify(token, now_s).jti
        except TokaError:
            return []
        return [g for g in active if g.jti == jti]

    def schema_of(self, name: str) -> dict[str, Any] | None:
        """The published schema of tool ``name`` (no catch-up: cheap enough for the
        event loop); None if there is no such tool."""
        tool = self.client.runtime.state.latest_tool(name)
        return input_schema(tool) if tool is not None else None

    def call(self, name: str, args: Any) -> Reply:
        """Invoke ``name`` as the principal; every outcome is a ``Reply``, a refusal
        included (with the kernel's reason). Only a bug raises."""
        self.client.runtime.catch_up()  # grants, tools and approvals from other processes
        try:
            result = invoke_as(self.client, name, args)
        except TokaError as exc:
            return refusal(exc)
        reply = answer(result)
        tool = self.client.runtime.state.find_tool(result.tool, result.version or None)
        if tool is not None and tool.kind == "mcp" and result.ok:
            return passed_through(reply, result.output)
        return reply


def refusal(exc: TokaError) -> Reply:
    """A call the kernel (or admission) refused: nothing ran."""
    if isinstance(exc, Denied):
        label = "refused"
    elif isinstance(exc, InvalidInput):
        label = "invalid"
    else:
        label = "error"
    return Reply(f"{label}: {exc.message}", True, meta={f"{META}/refused": exc.code})


def answer(result: Invocation) -> Reply:
    """A call the kernel accepted, as it stands: ended, held, or still open."""
    meta: dict[str, Any] = {
        f"{META}/seq": result.seq,
        f"{META}/tool": f"{result.tool}@{result.version}" if result.version else result.tool,
        f"{META}/status": result.status,
    }
    if result.call is not None:
        meta[f"{META}/call"] = result.call
    if result.pending is not None:
        meta[f"{META}/approval"] = result.pending
        return Reply(held_text(result.pending), True, meta=meta)
    if result.status in ("started", "unknown"):
        return Reply(open_text(result), True, meta=meta)
    if result.error is not None:
        return Reply(f"{result.error.kind}: {result.error.message}", True, meta=meta)
    out = result.output
    text = json.dumps(out, ensure_ascii=False, sort_keys=True)
    return Reply(text, False, out if isinstance(out, dict) else None, meta)


def passed_through(reply: Reply, output: Any) -> Reply:
    """``reply`` with an imported MCP tool's content and structured content as its
    server answered (its output holds them, or names the blob of the whole result)."""
    if isinstance(output, dict) and isinstance(output.get("result"), str):
        try:  # a result over the tool's output limit, put back from its blob
            output = json.loads(output["result"])
        except ValueError:
            return reply
        output = {
            "content": output.get("content"),
            "structured_content": output.get("structuredContent"),
        }
    if not isinstance(output, dict) or not isinstance(output.get("content"), list):
        return reply
    structured = output.get("structured_content")
    return msgspec.structs.replace(
        reply,
        content=output["content"],
        structured=structured if isinstance(structured, dict) else None,
    )


def held_text(approval: str) -> str:
    """What the model reads about a call held for approval; true of ``approvals.approve``:
    releasing the held call runs it once, in the approver's process, and only the log
    hears its result."""
    return (
        f"waiting for approval {approval}: this call has not run. An approver must "
        f"release it (toka approvals approve {approval}) or deny it; if released, it "
        "runs once and its result is recorded in the Toka log (toka approvals show "
        f"{approval}; toka events list), not sent back here. Calling the tool again "
        "submits a new, separate call."
    )


def open_text(result: Invocation) -> str:
    """A call with an effect whose outcome is not known here."""
    call = result.call or f"seq {result.seq}"
    return (
        f"outcome not known: call {call} is {result.status}; it may or may not have "
        f"taken effect. See toka effects show {call}; an operator resolves it."
    )
