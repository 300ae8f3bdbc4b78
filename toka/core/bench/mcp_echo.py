"""A one-tool MCP server for ``toka bench tool``: ``echo {text}`` answers its text.

Run as ``python -m toka.core.bench.mcp_echo`` (stdio). Written with the official
SDK's low-level API, like any server an operator would register.
"""

from __future__ import annotations

import anyio
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
)

ECHO = Tool(
    name="echo",
    description="Answer the text given.",
    input_schema={"type": "object", "properties": {"text": {"type": "string"}}},
)


async def _list(
    ctx: ServerRequestContext, params: PaginatedRequestParams | None
) -> ListToolsResult:
    return ListToolsResult(tools=[ECHO])


async def _call(ctx: ServerRequestContext, params: CallToolRequestParams) -> CallToolResult:
    text = str((params.arguments or {}).get("text", ""))
    return CallToolResult(content=[TextContent(type="text", text=text)])


async def _serve() -> None:
    server = Server("toka-bench-echo", on_list_tools=_list, on_call_tool=_call)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(_serve)
