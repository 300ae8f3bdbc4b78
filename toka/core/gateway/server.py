"""The MCP side: a low-level SDK ``Server`` over a ``Gateway``, on stdio or streamable HTTP.

Imported only once the SDK is known to be installed (``gateway.require_sdk``). The
handlers run the gateway's blocking work on worker threads, so one slow tool call
never stalls ``tools/list`` or another call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
    ToolAnnotations,
)

from toka import __version__
from toka.core.endpoints import host_for_url, is_loopback, listening_socket
from toka.core.gateway.bearer import BearerGate
from toka.core.gateway.facade import Gateway, OfferedTool, Reply

log = logging.getLogger(__name__)

PATH = "/mcp"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

# What a class of side effect lets us hint (hints only: MCP hosts must not trust them).
_READ_ONLY = ("none", "read_only")
_IDEMPOTENT = ("none", "read_only", "idempotent")


def mcp_tool(tool: OfferedTool) -> Tool:
    """A Toka tool as MCP publishes it. No output schema: Toka does not know one, and a
    2.x client validates results against any schema it is given."""
    return Tool(
        name=tool.name,
        description=f"{tool.description} (Toka tool {tool.name}@{tool.version}, "
        f"side effect: {tool.side_effect})",
        input_schema=tool.input_schema,
        annotations=ToolAnnotations(
            read_only_hint=tool.side_effect in _READ_ONLY,
            idempotent_hint=tool.side_effect in _IDEMPOTENT,
        ),
    )


def mcp_result(reply: Reply) -> CallToolResult:
    if reply.content is not None:  # an upstream server's answer, passed through
        return CallToolResult.model_validate(
            {
                "content": reply.content,
                "structuredContent": reply.structured,
                "isError": reply.is_error,
                "_meta": reply.meta or None,
            }
        )
    return CallToolResult(
        content=[TextContent(type="text", text=reply.text)],
        structured_content=reply.structured,
        is_error=reply.is_error,
        _meta=reply.meta or None,
    )


def build_server(gateway: Gateway) -> Server:
    """The MCP server for ``gateway``'s principal: ``tools/list`` and ``tools/call``."""

    async def list_tools(
        ctx: ServerRequestContext, params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        offered = await anyio.to_thread.run_sync(gateway.offered)
        # Never fresh for long: grants are issued and revoked while a host is connected.
        return ListToolsResult(tools=[mcp_tool(t) for t in offered], ttl_ms=0)

    async def call_tool(ctx: ServerRequestContext, params: CallToolRequestParams) -> CallToolResult:
        args: Any = dict(params.arguments) if params.arguments is not None else {}
        reply = await anyio.to_thread.run_sync(gateway.call, params.name, args)
        return mcp_result(reply)

    return Server(
        "toka",
        version=__version__,
        instructions=(
            f"Tools of a Toka runtime, called as {gateway.principal}. Every call is a "
            "signed, logged operation checked against that principal's grants: a refused "
            "call says why, and a call held for approval names the approval it waits for."
        ),
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        get_tool_input_schema=gateway.schema_of,
    )


async def serve_stdio(gateway: Gateway) -> None:
    """Serve one MCP host on stdin/stdout until it closes stdin."""
    server = build_server(gateway)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def transport_security(host: str, port: int) -> TransportSecuritySettings:
    """DNS-rebinding protection, on whatever the bind address: the Host header must name
    a loopback address or the bound one, and an Origin, if sent, the same."""
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    if not is_loopback(host):
        bound = f"{host_for_url(host)}:{port}"
        hosts.append(bound)
        origins += [f"http://{bound}", f"https://{bound}"]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


async def serve_http(
    gateway: Gateway, host: str, port: int, token: str, ready: Callable[[str], None]
) -> None:
    """Serve MCP hosts over streamable HTTP at ``http://HOST:PORT/mcp`` until stopped
    (SIGINT or SIGTERM); ``ready`` gets the URL once the socket listens."""
    import uvicorn

    if not is_loopback(host):
        log.warning(
            "%s is not a loopback address: anyone who can reach it and holds the token acts as %s",
            host,
            gateway.principal,
        )
    sock = listening_socket(host, port)
    port = sock.getsockname()[1]
    app = build_server(gateway).streamable_http_app(
        streamable_http_path=PATH, transport_security=transport_security(host, port)
    )
    config = uvicorn.Config(
        BearerGate(app, token),
        log_config=None,  # uvicorn's own config logs access lines to stdout
        access_log=False,
        log_level="warning",
        lifespan="on",
    )
    ready(f"http://{f'{host_for_url(host)}:{port}'}{PATH}")
    with sock:
        await uvicorn.Server(config).serve(sockets=[sock])
