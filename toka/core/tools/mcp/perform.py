"""Performing one call of an imported MCP tool, after its intent is in the log.

In order: the server must still be registered; its definition of the tool now must
match the pin the tool was imported with (else ``definition_changed``, and nothing is
sent); the arguments are stored as a blob; the call goes out with the call's
idempotency key in ``_meta`` (``io.toka/idempotency-key``, for servers that honour
one); the result is stored as a blob, and the outcome carries an ``mcp.called``
record naming both.

A server that goes away mid-call, or does not answer within the tool's time limit,
leaves the outcome unknown: the server may have acted. A call not safe to repeat
(``external``, ``privileged``) is then stated unknown, for the operator to resolve; it
is never sent again. A ``read_only`` or ``idempotent`` call is stated failed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec

from toka.core.errors import TokaError
from toka.core.kernel.context import value_problem
from toka.core.kernel.derive import call_timeout_ms
from toka.core.kernel.effects import UNKNOWN_OUTCOME
from toka.core.model import events as ev
from toka.core.model.mcp import definition_pin
from toka.core.model.ops import CallOutcome
from toka.core.model.state import SAFE_TO_REPEAT, McpBinding, OpenCall, Tool, WorldState
from toka.core.tools.effects.blobs import blob_ref, store_blob
from toka.core.tools.mcp.connection import Listing, Lost, Pool, ProtocolError

IDEMPOTENCY_META = "io.toka/idempotency-key"
CALL_META = "io.toka/call"
MAX_ERROR_TEXT = 1000

_json = msgspec.json.Encoder(order="sorted")


def _failed(kind: str, message: str, effects: list[Any] | None = None) -> CallOutcome:
    return CallOutcome(ok=False, error_kind=kind, message=message, effects=effects or [])


def check_pin(listing: Listing, binding: McpBinding, tool: str) -> str | None:
    """Why the server's definition of the tool no longer matches its pin, or None."""
    current = listing.tools.get(binding.tool)
    server = binding.server
    if current is None:
        return f"MCP server {server} no longer offers {binding.tool}; nothing was sent"
    pin = definition_pin(current)
    if pin != binding.pin:
        return (
            f"the definition of {binding.tool} on {server} changed since {tool} was imported "
            f"(pinned {binding.pin[:12]}, now {pin[:12]}); nothing was sent. See "
            f"`toka mcp tools {server}`; importing the new definition makes a new version"
        )
    return None


def result_text(result: dict[str, Any]) -> str:
    """The text parts of a result's content, joined (what an error result says)."""
    parts = [c.get("text", "") for c in result.get("content", []) if c.get("type") == "text"]
    text = "\n".join(p for p in parts if p) or "(no text)"
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 3] + "..."


def output_of(result: dict[str, Any], data: bytes, sha256: str, limit: int) -> dict[str, Any]:
    """The call's recorded output: the result's content and structured content, or,
    past the tool's ``max_output_bytes``, a reference to the result's blob."""
    output = {"content": result.get("content", [])}
    if result.get("structuredContent") is not None:
        output["structured_content"] = result["structuredContent"]
    if len(data) > limit or value_problem(output) is not None:
        return {"result": blob_ref(sha256, data)}
    return output


def perform(
    state: WorldState, call: OpenCall, tool: Tool, args: Any, blobs: Path, pool: Pool
) -> CallOutcome:
    """Send one open call of an MCP tool and return the outcome to state (see module)."""
    binding = tool.binding
    assert binding is not None
    server = state.mcp_table().get(binding.server)
    if server is None:
        return _failed("refused", f"MCP server {binding.server} was removed; nothing was sent")
    timeout_s = call_timeout_ms(tool, args) / 1000
    try:
        connection, listing = pool.listing(server)
        changed = check_pin(listing, binding, tool.name)
    except (TokaError, Lost, ProtocolError) as exc:  # not reached, or no SDK here
        return _failed("unavailable", f"{_message(exc)}; nothing was sent")
    if changed is not None:
        return _failed("definition_changed", changed)
    arguments = args if isinstance(args, dict) else {}
    sent = _json.encode(arguments)
    args_sha256 = store_blob(blobs, sent)
    meta = {IDEMPOTENCY_META: call.op_digest, CALL_META: call.id}
    started = time.monotonic()

    def record(result_sha256: str | None, is_error: bool | None) -> ev.McpCalled:
        ms = round((time.monotonic() - started) * 1000, 3)
        return ev.McpCalled(
            server=binding.server,
            tool=binding.tool,
            pin=binding.pin,
            args_sha256=args_sha256,
            result_sha256=result_sha256,
            is_error=is_error,
            protocol=connection.protocol,
            ms=ms,
        )

    try:
        result = connection.call_tool(binding.tool, arguments, timeout_s, meta)
    except Lost as exc:
        if exc.timed_out:
            pool.restart_if_idle(server.name)
        effect = record(None, None)
        if call.side_effect in SAFE_TO_REPEAT:
            return _failed("timeout" if exc.timed_out else "network", exc.message, [effect])
        return _failed(
            UNKNOWN_OUTCOME,
            f"{exc.message}: whether the server acted is unknown; it is not sent again "
            f"(see `toka effects show {call.id}`)",
            [effect],
        )
    except ProtocolError as exc:
        return _failed("protocol", f"MCP server {server.name}: {exc}", [record(None, None)])
    data = _json.encode(result)
    result_sha256 = store_blob(blobs, data)
    is_error = bool(result.get("isError"))
    effect = record(result_sha256, is_error)
    if is_error:
        return _failed("tool_error", result_text(result), [effect])
    output = output_of(result, data, result_sha256, tool.limits["max_output_bytes"])
    return CallOutcome(ok=True, output=output, effects=[effect], wall_ms=effect.ms)


def _message(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc)
