"""A small MCP server to try Toka's MCP bridge with (the official SDK, high-level API).

    toka mcp add notes --env NOTES_FILE=$PWD/notes.txt -- python3 examples/mcp_notes.py

Its tools: ``add_note {text}`` appends a line to ``$NOTES_FILE`` (an act: import it as
``external``), ``read_notes`` returns them (``read_only``).
"""

from __future__ import annotations

import os
from pathlib import Path

from mcp.server import MCPServer

server = MCPServer("notes")


def _notes() -> Path:
    return Path(os.environ.get("NOTES_FILE", "notes.txt"))


@server.tool()
def add_note(text: str) -> str:
    """Append a note to the notebook."""
    with _notes().open("a", encoding="utf-8") as fh:
        fh.write(text.replace("\n", " ") + "\n")
    return "noted"


@server.tool()
def read_notes() -> list[str]:
    """Every note in the notebook, oldest first."""
    path = _notes()
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


if __name__ == "__main__":
    server.run()
