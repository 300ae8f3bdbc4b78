"""The official ``mcp`` SDK, imported on first use with a clear error when missing."""

from __future__ import annotations

from types import ModuleType

from toka.core.errors import MissingExtra

INSTALL_HINT = "pip install 'toka[mcp]'"


def require() -> ModuleType:
    """The ``mcp`` package, or MissingExtra saying how to install it."""
    try:
        import mcp
    except ImportError:
        raise MissingExtra(
            f"MCP support is not installed: {INSTALL_HINT} (the official MCP SDK, 2.x)"
        ) from None
    return mcp
