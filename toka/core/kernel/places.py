"""Places in the world the operator lends to tools: mounts, and private hosts let through.

A mount names a host directory (``fs.mount``), read-only or read-write; file tools
reach files only through a mount, by a path relative to it, and the capability their
call needs is built from that mount and path (``model.places.fs_resource``). A grant
can never write where its mount is read-only: refused when it is issued, if it names
the mount, and always when it is used.

``net.allow`` lets ``http-fetch`` reach one host and port although it resolves to a
private, loopback or link-local address (refused otherwise, on the resolved address).
"""

from __future__ import annotations

import msgspec

from toka.core.errors import InvalidOperation, NotCovered, NotFound
from toka.core.kernel.auth import authorize, required_caps
from toka.core.kernel.context import Ctx, Evolver
from toka.core.kernel.derive import find_mount
from toka.core.model import events as ev
from toka.core.model import ops, places
from toka.core.model.state import (
    MOUNT_MODES,
    AllowedHost,
    Mount,
    WorldState,
    table_drop,
    table_put,
)

MAX_MOUNT_PATH_BYTES = 4096


def host_key(host: str, port: int) -> str:
    """The allowed-hosts table's key: ``host:port``, an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_mount_path(path: str) -> None:
    """A mount's directory: absolute, normalized (no ``.``, ``..`` or empty segments)."""
    if not path.startswith("/") or "\0" in path:
        raise InvalidOperation(f"mount path {path!r} must be an absolute path")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_MOUNT_PATH_BYTES:
        raise InvalidOperation(f"mount path is over {MAX_MOUNT_PATH_BYTES} bytes")
    if path != "/" and any(part in ("", ".", "..") for part in path[1:].split("/")):
        raise InvalidOperation(
            f"mount path {path!r} must be normalized (no '.', '..', '//' or trailing '/')"
        )


def add_mount(state: WorldState, op: ops.AddMount, ctx: Ctx) -> list[msgspec.Struct]:
    places.check_mount_name(op.name)
    authorize(state, ctx, required_caps(state, op))
    check_mount_path(op.path)
    if op.mode not in MOUNT_MODES:
        raise InvalidOperation(f"mount mode {op.mode!r} is not one of {', '.join(MOUNT_MODES)}")
    if op.name in state.mount_table():
        raise InvalidOperation(f"mount {op.name} exists; remove it first to change it")
    return [ev.MountAdded(op.name, op.path, op.mode)]


def remove_mount(state: WorldState, op: ops.RemoveMount, ctx: Ctx) -> list[msgspec.Struct]:
    authorize(state, ctx, required_caps(state, op))
    find_mount(state, op.name)
    return [ev.MountRemoved(op.name)]


def _canonical_host(host: str, port: int) -> tuple[str, int]:
    if isinstance(port, bool) or not 1 <= port <= 65535:
        raise InvalidOperation(f"port {port} is outside 1..65535")
    return places.canonical_host(host), port


def allow_host(state: WorldState, op: ops.AllowHost, ctx: Ctx) -> list[msgspec.Struct]:
    host, port = _canonical_host(op.host, op.port)
    if host != op.host:
        raise InvalidOperation(f"host {op.host!r} is not in canonical form (use {host!r})")
    authorize(state, ctx, required_caps(state, op))
    if host_key(host, port) in state.host_table():
        raise InvalidOperation(f"{host_key(host, port)} is already allowed")
    return [ev.HostAllowed(host, port)]


def revoke_host(state: WorldState, op: ops.RevokeHost, ctx: Ctx) -> list[msgspec.Struct]:
    authorize(state, ctx, required_caps(state, op))
    if host_key(op.host, op.port) not in state.host_table():
        raise NotFound(f"{host_key(op.host, op.port)} is not an allowed host")
    return [ev.HostRevoked(op.host, op.port)]


def check_grant_fits_mounts(state: WorldState, wanted: list[str]) -> None:
    """Refuse a grant that would write to a read-only mount it names."""
    for cap in wanted:
        action, _, resource = cap.partition(":")
        if action != "fs.write":
            continue
        parts = resource.split("/")
        if len(parts) < 2 or parts[0] != "mount" or "*" in parts[1]:
            continue
        mount = state.mount_table().get(parts[1])
        if mount is not None and mount.mode != "rw":
            raise NotCovered(f"mount {mount.name} is read-only: {cap} can never be used")


# -- evolvers ----------------------------------------------------------------------


def _on_mount_added(state: WorldState, e: ev.MountAdded, r: ev.EventRecord) -> None:
    table_put(state, "mounts", e.name, Mount(e.name, e.path, e.mode, r.principal, r.ts))


def _on_mount_removed(state: WorldState, e: ev.MountRemoved, r: ev.EventRecord) -> None:
    table_drop(state, "mounts", e.name)


def _on_host_allowed(state: WorldState, e: ev.HostAllowed, r: ev.EventRecord) -> None:
    key = host_key(e.host, e.port)
    table_put(state, "allowed_hosts", key, AllowedHost(e.host, e.port, r.principal, r.ts))


def _on_host_revoked(state: WorldState, e: ev.HostRevoked, r: ev.EventRecord) -> None:
    table_drop(state, "allowed_hosts", host_key(e.host, e.port))


EVOLVERS: dict[str, Evolver] = {
    "mount.added": _on_mount_added,
    "mount.removed": _on_mount_removed,
    "host.allowed": _on_host_allowed,
    "host.revoked": _on_host_revoked,
}
