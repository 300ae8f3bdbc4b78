"""``toka mcp``: Toka and the Model Context Protocol."""

from __future__ import annotations

from toka.cli.mcp_serve_cmd import add_serve_parser


def register(sub, common) -> None:
    mcp = sub.add_parser("mcp", help="MCP: serve Toka's tools to MCP hosts")
    m = mcp.add_subparsers(dest="mcp_command", metavar="ACTION", required=True)
    add_serve_parser(m, common)
