"""A real MCP server for the tests, written with the official SDK's low-level API.

    python notes_server.py            # stdio
    python notes_server.py --http PORT

Its tools, and what the tests read back from the world:

- ``wordcount {text}``: counts words (annotated read-only).
- ``send_note {text}``: appends one line to ``$NOTES_FILE`` (an act a repeat would do
  twice). Its description is the content of ``$DRIFT_FILE`` when that file exists,
  read at every ``tools/list``: the tests change a definition under a running server.
- ``whoami``: the sha256 of the secret it was given (``$NOTES_TOKEN``, or the
  ``X-Notes-Token`` header over HTTP): a test sees the secret arrive, and can look for
  the secret itself in the log and blobs.
- ``fail {reason}``: answers with an error result.
- ``slow {seconds}``: sleeps, then appends ``slow`` to ``$NOTES_FILE``.
- ``crash``: appends ``crash`` to ``$NOTES_FILE``, then the process exits mid-call.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import anyio
from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from mcp.types import (
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
    ToolAnnotations,
)

TEXT = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
NOTHING = {"type": "object", "properties": {}}


def _note(line: str) -> None:
    with open(os.environ["NOTES_FILE"], "a") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _tools() -> list[Tool]:
    drift = os.environ.get("DRIFT_FILE")
    send_doc = "Append a note to the notebook."
    if drift and Path(drift).exists():
        send_doc = Path(drift).read_text()
    return [
        Tool(
            name="wordcount",
            description="Count the words of a text.",
            input_schema=TEXT,
            output_schema={
                "type": "object",
                "properties": {"words": {"type": "integer"}},
                "required": ["words"],
            },
            annotations=ToolAnnotations(read_only_hint=True),
        ),
        Tool(name="send_note", description=send_doc, input_schema=TEXT),
        Tool(name="whoami", description="Whose token this server holds.", input_schema=NOTHING),
        Tool(
            name="fail",
            description="Always answers with an error.",
            input_schema={"type": "object", "properties": {"reason": {"type": "string"}}},
        ),
        Tool(
            name="slow",
            description="Sleep, then note it.",
            input_schema={
                "type": "object",
                "properties": {"seconds": {"type": "number"}},
                "required": ["seconds"],
            },
        ),
        Tool(name="crash", description="Exit in the middle of the call.", input_schema=NOTHING),
    ]


def _text(value: object, is_error: bool = False) -> CallToolResult:
    text = value if isinstance(value, str) else json.dumps(value)
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=is_error)


async def list_tools(
    ctx: ServerRequestContext, params: PaginatedRequestParams | None
) -> ListToolsResult:
    return ListToolsResult(tools=_tools())


async def call_tool(ctx: ServerRequestContext, params: CallToolRequestParams) -> CallToolResult:
    args = params.arguments or {}
    match params.name:
        case "wordcount":
            words = len(str(args.get("text", "")).split())
            result = _text({"words": words})
            result.structured_content = {"words": words}
            return result
        case "send_note":
            _note(str(args.get("text", "")))
            return _text("noted")
        case "whoami":
            token = os.environ.get("NOTES_TOKEN", "")
            if ctx.request is not None:
                token = ctx.request.headers.get("x-notes-token", "")
            return _text(hashlib.sha256(token.encode()).hexdigest())
        case "fail":
            return _text(f"cannot: {args.get('reason', 'no reason')}", is_error=True)
        case "slow":
            await anyio.sleep(float(args.get("seconds", 0)))
            _note("slow")
            return _text("done")
        case "crash":
            _note("crash")
            os._exit(3)
    raise MCPError(INVALID_PARAMS, f"Unknown tool: {params.name}")


server = Server("notes", on_list_tools=list_tools, on_call_tool=call_tool)


async def _stdio() -> None:
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def main() -> None:
    print(f"notes server {os.getpid()} starting", file=sys.stderr, flush=True)
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        import uvicorn

        app = server.streamable_http_app()
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
    else:
        anyio.run(_stdio)


if __name__ == "__main__":
    main()
