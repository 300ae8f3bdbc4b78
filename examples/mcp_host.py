"""Act as an MCP host would: start ``toka mcp serve --as AGENT`` and call its tools.

    python3 examples/mcp_host.py AGENT                 # list the tools the agent may call
    python3 examples/mcp_host.py AGENT TOOL '{"k": "v"}'

Uses ``$TOKA_HOME`` like every ``toka`` command. Prints what the model would read.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import anyio
from mcp import Client, StdioServerParameters


async def main(agent: str, tool: str | None, args: dict) -> None:
    toka = shutil.which("toka") or "toka"
    env = {k: os.environ[k] for k in ("TOKA_HOME", "PATH") if k in os.environ}
    params = StdioServerParameters(command=toka, args=["mcp", "serve", "--as", agent], env=env)
    async with Client(params) as client:
        if tool is None:
            for t in (await client.list_tools()).tools:
                print(f"{t.name}: {t.description}")
            return
        result = await client.call_tool(tool, args)
        label = "error" if result.is_error else "result"
        for block in result.content:
            print(f"{label}: {getattr(block, 'text', block)}")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 4):
        sys.exit(__doc__)
    tool, args = (sys.argv[2], json.loads(sys.argv[3])) if len(sys.argv) == 4 else (None, {})
    anyio.run(main, sys.argv[1], tool, args)
