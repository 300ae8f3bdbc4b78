"""Toka as an MCP server (``toka mcp serve``): any MCP host acts as one principal.

``tools/list`` shows the tools that principal's grants cover, with their schemas;
every ``tools/call`` is a signed ``tool.invoke`` by it, so grants, budgets,
approvals, effects and the log apply exactly as to ``toka tool invoke``. A refusal,
a failure or a call held for approval is a tool error the model can read.

- ``facade``: the Toka side, in Toka's terms (``Gateway``, ``OfferedTool``, ``Reply``).
- ``bearer``: the token that guards the HTTP transport, and its ASGI gate.
- ``server``: the MCP side (the official ``mcp`` SDK): stdio and streamable HTTP.

The SDK is an optional extra (``toka[mcp]``) and only ``server`` imports it, once
``require_sdk`` has said it is there.
"""

from __future__ import annotations

from collections.abc import Callable

from toka.core.errors import TokaError
from toka.core.gateway.facade import Gateway, OfferedTool, Reply


class SDKMissing(TokaError):
    """The MCP SDK is not installed."""

    code = "mcp_missing"


def require_sdk() -> None:
    """Raise ``SDKMissing`` (with the command that fixes it) unless ``mcp`` imports."""
    try:
        import mcp.server  # noqa: F401
    except ImportError as exc:
        raise SDKMissing(f"the MCP SDK is not installed ({exc}): pip install 'toka[mcp]'") from None


def serve_stdio(gateway: Gateway) -> None:
    """Serve one MCP host on stdin/stdout until it closes stdin (blocks)."""
    require_sdk()
    import anyio

    from toka.core.gateway import server

    anyio.run(server.serve_stdio, gateway)


def serve_http(
    gateway: Gateway, host: str, port: int, token: str, ready: Callable[[str], None]
) -> None:
    """Serve MCP hosts over streamable HTTP until SIGINT or SIGTERM (blocks)."""
    require_sdk()
    import anyio

    from toka.core.gateway import server

    anyio.run(server.serve_http, gateway, host, port, token, ready)


__all__ = [
    "Gateway",
    "OfferedTool",
    "Reply",
    "SDKMissing",
    "require_sdk",
    "serve_http",
    "serve_stdio",
]
