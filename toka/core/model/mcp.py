"""MCP servers and the tools imported from them: their names, and the pin of a definition.

A server is registered under a short name (``toka mcp add github ...``); a tool it
offers is imported as the Toka tool ``<server>.<tool>`` (``github.create_issue``), so
``tool.invoke:tool/github.*`` covers a whole server. The pin of a tool is the sha256 of
its canonical definition: the fields a model reads or a call depends on, in sorted
JSON. A server that changes any of them no longer matches the pin it was imported
with (a "rug pull" is refused, not followed).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from toka.core.errors import InvalidInput

TRANSPORTS = ("stdio", "http")
SERVER_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}\Z")
# The server's own name for a tool, as it may follow ``<server>.`` in a Toka tool name.
REMOTE_TOOL_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}\Z")
# What a pin covers, by the field names MCP uses on the wire.
DEFINITION_FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")

_canonical = msgspec.json.Encoder(order="sorted")


def canonical_definition(definition: Mapping[str, Any]) -> dict[str, Any]:
    """The pinned fields of a tool definition (wire names), absent ones left out."""
    return {k: definition[k] for k in DEFINITION_FIELDS if definition.get(k) is not None}


def definition_pin(definition: Mapping[str, Any]) -> str:
    """sha256 of the canonical definition's sorted JSON."""
    return hashlib.sha256(_canonical.encode(canonical_definition(definition))).hexdigest()


def check_server_name(name: str) -> str:
    if not isinstance(name, str) or not SERVER_NAME_RE.match(name):
        raise InvalidInput(
            f"{name!r} is not an MCP server name (a lowercase letter, then up to 31 of a-z 0-9 _ -)"
        )
    return name


def tool_name(server: str, remote: str) -> str:
    """The Toka name of the server's tool ``remote``: ``<server>.<remote>``."""
    if not REMOTE_TOOL_RE.match(remote):
        raise InvalidInput(
            f"MCP tool {remote!r} of {server} has a name Toka cannot import (up to 64 of "
            "A-Z a-z 0-9 _ -, not starting with -)"
        )
    return f"{server}.{remote}"


def split_tool_name(name: str) -> tuple[str, str] | None:
    """``("github", "create_issue")`` for ``github.create_issue``; None without a dot."""
    server, dot, remote = name.partition(".")
    return (server, remote) if dot else None
