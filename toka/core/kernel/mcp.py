"""MCP servers the operator registers, and the rules of tools imported from them.

``mcp.register`` records how to reach a server: a command run over stdio, or a URL
(streamable HTTP), and which secrets it gets, by name only (values stay in
``HOME/secrets/``). Registering and removing a server need ``mcp.register:mcp/<name>``,
which only the operator holds unless granted. A tool imported from a server is an
ordinary tool of kind ``mcp`` named ``<server>.<tool>``, registered with the server's
definition and its pin; the kernel checks that the pin is the definition's and that
the input schema is the one the definition gives, so what an agent's arguments are
checked against is what the operator saw.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from toka.core.errors import InvalidInput, InvalidOperation, NotFound
from toka.core.kernel.auth import authorize, required_caps
from toka.core.kernel.context import Ctx, Evolver, value_problem
from toka.core.model import events as ev
from toka.core.model import mcp, ops, places
from toka.core.model.state import McpServer, WorldState, table_drop, table_put

MAX_ARGV = 256
MAX_TEXT_BYTES = 4096
MAX_NAMED = 64
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
# An HTTP header name (RFC 9110 token), minus what HTTP itself or the transport owns.
HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}\Z")
_RESERVED_HEADERS = {"host", "content-length", "content-type", "accept", "mcp-session-id"}
_DEFINITION_BYTES = 128 * 1024


def find_server(state: WorldState, name: str) -> McpServer:
    server = state.mcp_table().get(name)
    if server is None:
        raise NotFound(f"unknown MCP server {name!r} (see `toka mcp list`)")
    return server


def _text(what: str, value: Any) -> str:
    if not isinstance(value, str) or not value or "\0" in value:
        raise InvalidOperation(f"{what} must be non-empty text without NUL")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        raise InvalidOperation(f"{what} is over {MAX_TEXT_BYTES} bytes")
    return value


def _named(what: str, table: dict[str, str], key_re: re.Pattern[str], secrets: bool) -> None:
    if len(table) > MAX_NAMED:
        raise InvalidOperation(f"{what}: more than {MAX_NAMED} entries")
    for key, value in table.items():
        if not key_re.match(key):
            raise InvalidOperation(f"{what}: {key!r} is not a valid name")
        if secrets and not places.SECRET_NAME_RE.match(value):
            raise InvalidOperation(f"{what}.{key}: {value!r} is not a secret name")
        if not secrets:
            _text(f"{what}.{key}", value)


def _check_transport(op: ops.RegisterMcpServer) -> None:
    if op.transport == "stdio":
        if op.url is not None or op.header_secrets:
            raise InvalidOperation("a stdio server has a command, not a URL or headers")
        if not op.command or len(op.command) > MAX_ARGV:
            raise InvalidOperation(f"command: a stdio server needs 1 to {MAX_ARGV} words")
        for i, word in enumerate(op.command):
            _text(f"command[{i}]", word)
        _named("env", op.env, ENV_NAME_RE, secrets=False)
        _named("env_secrets", op.env_secrets, ENV_NAME_RE, secrets=True)
        both = set(op.env) & set(op.env_secrets)
        if both:
            raise InvalidOperation(f"env: {', '.join(sorted(both))} set both plainly and secretly")
        return
    if op.transport != "http":
        raise InvalidOperation(
            f"transport {op.transport!r} is not one of {', '.join(mcp.TRANSPORTS)}"
        )
    if op.command is not None or op.env or op.env_secrets:
        raise InvalidOperation("an http server has a URL, not a command or environment")
    url = _text("url", op.url)
    if "@" in url.split("//", 1)[-1].split("/", 1)[0]:
        raise InvalidOperation("url: no credentials in the URL; give them as header secrets")
    try:
        places.parse_url(url)
    except InvalidInput as exc:
        raise InvalidOperation(f"url: {exc.message}") from None
    _named("header_secrets", op.header_secrets, HEADER_NAME_RE, secrets=True)
    reserved = {h for h in op.header_secrets if h.lower() in _RESERVED_HEADERS}
    if reserved:
        raise InvalidOperation(f"header_secrets: {', '.join(sorted(reserved))} is the transport's")


def register_server(state: WorldState, op: ops.RegisterMcpServer, ctx: Ctx) -> list[msgspec.Struct]:
    try:
        mcp.check_server_name(op.name)
    except InvalidInput as exc:
        raise InvalidOperation(exc.message) from None
    authorize(state, ctx, required_caps(state, op))
    _check_transport(op)
    if op.name in state.mcp_table():
        raise InvalidOperation(f"MCP server {op.name} exists; remove it first to change it")
    return [ev.McpServerRegistered(**msgspec.structs.asdict(op))]


def remove_server(state: WorldState, op: ops.RemoveMcpServer, ctx: Ctx) -> list[msgspec.Struct]:
    authorize(state, ctx, required_caps(state, op))
    find_server(state, op.name)
    return [ev.McpServerRemoved(op.name)]


def check_import(state: WorldState, op: ops.RegisterTool) -> None:
    """An imported MCP tool's registration: its server exists, its name is
    ``<server>.<tool>``, and its pin and input schema are its definition's."""
    binding = op.mcp
    if binding is msgspec.UNSET:
        raise InvalidOperation("mcp: an mcp tool names its server, tool, pin and definition")
    if op.module_sha256 is not None:
        raise InvalidOperation("module_sha256: an mcp tool has no module")
    find_server(state, binding.server)
    try:
        expected = mcp.tool_name(binding.server, binding.tool)
    except InvalidInput as exc:
        raise InvalidOperation(exc.message) from None
    if op.name != expected:
        raise InvalidOperation(f"name: the tool {binding.tool} of {binding.server} is {expected}")
    problem = value_problem(binding.definition)
    if problem is not None:
        raise InvalidOperation(f"mcp.definition {problem}")
    if len(msgspec.json.encode(binding.definition)) > _DEFINITION_BYTES:
        raise InvalidOperation(f"mcp.definition is over {_DEFINITION_BYTES} bytes")
    if binding.definition.get("name") != binding.tool:
        raise InvalidOperation("mcp.definition: its name is not the tool's")
    if binding.pin != mcp.definition_pin(binding.definition):
        raise InvalidOperation("mcp.pin: not the sha256 of the definition")
    if op.input_schema != binding.definition.get("inputSchema"):
        raise InvalidOperation("input_schema: must be the definition's inputSchema")


def check_not_imported(op: ops.RegisterTool) -> None:
    if op.mcp is not msgspec.UNSET:
        raise InvalidOperation(f"mcp: only an mcp tool comes from a server, not a {op.kind} one")
    if mcp.split_tool_name(op.name) is not None:
        raise InvalidOperation(
            f"name: {op.name!r}: a '.' in a tool name is for tools imported from MCP servers"
        )


# -- evolvers ----------------------------------------------------------------------


def _on_registered(state: WorldState, e: ev.McpServerRegistered, r: ev.EventRecord) -> None:
    server = McpServer(**msgspec.structs.asdict(e), added_by=r.principal, added_ms=r.ts)
    table_put(state, "mcp_servers", e.name, server)


def _on_removed(state: WorldState, e: ev.McpServerRemoved, r: ev.EventRecord) -> None:
    table_drop(state, "mcp_servers", e.name)


EVOLVERS: dict[str, Evolver] = {
    "mcp.registered": _on_registered,
    "mcp.removed": _on_removed,
}
