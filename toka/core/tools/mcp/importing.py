"""What a registered MCP server offers, compared with what was imported, and importing.

``offers`` lists the server's tools now, each with its pin and how it stands: ``new``
(never imported), ``imported`` (a version of the Toka tool has this very pin),
``changed`` (imported, but the server's definition is no longer any imported one's:
calls fail as ``definition_changed``) or ``unnamable`` (a name Toka cannot give a
tool). ``import_tools`` registers the chosen ones as tools of kind ``mcp``; a changed
definition is imported only when the operator says so, as a new version.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from toka.core.errors import InvalidInput, InvalidOperation, NotFound, Unavailable
from toka.core.kernel.context import MAX_DESCRIPTION_BYTES
from toka.core.kernel.mcp import find_server
from toka.core.kernel.tools import check_registration
from toka.core.model import mcp, ops
from toka.core.model.state import McpBinding, Tool, version_key
from toka.core.runtime import Runtime
from toka.core.runtime.client import Client
from toka.core.tools.mcp.connection import Lost, ProtocolError
from toka.core.tools.runner import runner_for

DEFAULT_SIDE_EFFECT = "external"
DEFAULT_TIMEOUT_MS = 30_000
DEFAULT_MAX_OUTPUT_BYTES = 256 * 1024
FIRST_VERSION = "1.0.0"
OFFER_STATUSES = ("new", "imported", "changed", "unnamable")


class Offer(NamedTuple):
    """One tool a server offers now, and how it stands against what was imported."""

    remote: str  # the server's name for it
    name: str | None  # its Toka name, None when it has none (``unnamable``)
    pin: str
    definition: dict[str, Any]  # canonical (the pinned fields), wire names
    status: str
    version: str | None  # the imported version with this pin, else the newest imported


class Imported(NamedTuple):
    name: str
    version: str
    pin: str
    status: str  # "imported", "new version", "unchanged"
    seq: int | None


def imported_versions(runtime: Runtime, name: str) -> list[Tool]:
    versions = runtime.state.tools.get(name, {}).values()
    return sorted(versions, key=lambda t: version_key(t.version))


def offers(runtime: Runtime, server_name: str) -> list[Offer]:
    """What ``server_name`` offers now (it is reached, or started), in name order."""
    server = find_server(runtime.state, server_name)
    try:
        _, listing = runner_for(runtime).mcp_pool.listing(server)
    except (Lost, ProtocolError) as exc:
        raise Unavailable(f"MCP server {server.name}: {exc}") from None
    found = []
    for remote in sorted(listing.tools):
        definition = mcp.canonical_definition(listing.tools[remote])
        pin = mcp.definition_pin(definition)
        try:
            name: str | None = mcp.tool_name(server.name, remote)
        except InvalidInput:
            found.append(Offer(remote, None, pin, definition, "unnamable", None))
            continue
        versions = imported_versions(runtime, name)
        same = [t for t in versions if t.binding is not None and t.binding.pin == pin]
        if same:
            found.append(Offer(remote, name, pin, definition, "imported", same[-1].version))
        elif versions:
            found.append(Offer(remote, name, pin, definition, "changed", versions[-1].version))
        else:
            found.append(Offer(remote, name, pin, definition, "new", None))
    return found


def _description(offer: Offer, server: str) -> str:
    text = (offer.definition.get("description") or offer.definition.get("title") or "").strip()
    first = text.splitlines()[0].strip() if text else ""
    if not first:
        first = f"{offer.remote}, a tool of MCP server {server}"
    while len(first.encode()) > MAX_DESCRIPTION_BYTES:
        first = first[: len(first) * 3 // 4]
    return first


def _next_version(version: str) -> str:
    major, minor, _ = (int(p) for p in version.split("."))
    return f"{major}.{minor + 1}.0"


def registration(
    offer: Offer, server: str, version: str, side_effect: str, timeout_ms: int, max_output: int
) -> ops.RegisterTool:
    """The ``tool.register`` that imports ``offer`` as ``version``."""
    assert offer.name is not None
    return ops.RegisterTool(
        name=offer.name,
        version=version,
        description=_description(offer, server),
        kind="mcp",
        module_sha256=None,
        capabilities=[],
        limits={"timeout_ms": timeout_ms, "max_output_bytes": max_output},
        input_schema=offer.definition.get("inputSchema"),
        side_effect=side_effect,
        mcp=McpBinding(server, offer.remote, offer.pin, offer.definition),
    )


def import_tools(
    client: Client,
    server_name: str,
    names: list[str] | None = None,
    *,
    side_effect: str = DEFAULT_SIDE_EFFECT,
    accept_changed: bool = False,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
) -> list[Imported]:
    """Import ``names`` (the server's names; all it offers when None) as Toka tools.

    Refuses, before registering anything: a name the server does not offer, a name
    Toka cannot give a tool (when named), and a changed definition unless
    ``accept_changed`` (then it becomes the next version)."""
    rt = client.runtime
    offered = {o.remote: o for o in offers(rt, server_name)}
    if names is None:
        chosen = [o for o in offered.values() if o.status != "unnamable"]
    else:
        missing = [n for n in names if n not in offered]
        if missing:
            raise NotFound(
                f"MCP server {server_name} does not offer {', '.join(missing)} "
                f"(it offers: {', '.join(offered) or 'nothing'})"
            )
        chosen = [offered[n] for n in dict.fromkeys(names)]
    unnamable = [o.remote for o in chosen if o.status == "unnamable"]
    if unnamable:
        raise InvalidInput(
            f"cannot import {', '.join(unnamable)}: a Toka tool name is <server>.<tool>, "
            "the tool's name up to 64 of A-Z a-z 0-9 _ -"
        )
    changed = [o.remote for o in chosen if o.status == "changed"]
    if changed and not accept_changed:
        raise InvalidInput(
            f"the definition of {', '.join(changed)} changed since it was imported; review "
            f"it (`toka mcp tools {server_name}`), then import with --accept-changed to "
            "register it as a new version"
        )
    planned: list[tuple[Offer, ops.RegisterTool | None]] = []
    for offer in chosen:
        if offer.status == "imported":
            planned.append((offer, None))
            continue
        version = FIRST_VERSION if offer.version is None else _next_version(offer.version)
        op = registration(offer, server_name, version, side_effect, timeout_ms, max_output_bytes)
        _check(op, offer.remote)
        planned.append((offer, op))
    done = []
    for offer, op in planned:
        assert offer.name is not None
        if op is None:
            assert offer.version is not None
            done.append(Imported(offer.name, offer.version, offer.pin, "unchanged", None))
            continue
        outcome = client.submit(op)
        status = "imported" if offer.status == "new" else "new version"
        done.append(Imported(offer.name, op.version, offer.pin, status, outcome.last_seq))
    return done


def _check(op: ops.RegisterTool, remote: str) -> None:
    """The registration's own rules (a schema Toka cannot check in bounded time, limits
    out of range), for every chosen tool before any is registered."""
    try:
        check_registration(op)
    except InvalidOperation as exc:
        raise InvalidInput(f"cannot import {remote}: {exc.message}; nothing was imported") from None
