"""What a call with an effect may touch, derived from its arguments by the kernel.

A caller never writes the resource its call needs: ``fs-read {"mount": "ws", "path":
"docs/a.md"}`` needs ``fs.read:mount/ws/docs/a.md`` and ``http-fetch {"url":
"https://api.github.com/repos/x"}`` needs ``net.http:GET/https/api.github.com/443/
repos/x``, built here (``model.places``) from the very arguments the tool will get.
Used by ``auth.required_caps`` (to choose and check the token) and by the rules.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from toka.core.errors import InvalidOperation, NotCovered, NotFound
from toka.core.model import places
from toka.core.model.state import SIDE_EFFECTS, Mount, Tool, WorldState

# The least side-effect class of each native built-in (a registration may raise it,
# never lower it).
NATIVE_CLASSES = {
    "echo": "none",
    "fs-read": "read_only",
    "fs-list": "read_only",
    "fs-write": "idempotent",
    "http-fetch": "external",
}
_FS_ACTIONS = {"fs-read": "fs.read", "fs-list": "fs.list", "fs-write": "fs.write"}
# HTTP methods that are safe or idempotent by RFC 9110: the class a call of the
# built-in ``http-fetch`` (declared external) has with one of them.
_METHOD_CLASS = {
    "GET": "read_only",
    "HEAD": "read_only",
    "OPTIONS": "read_only",
    "PUT": "idempotent",
    "DELETE": "idempotent",
}


def class_rank(side_effect: str) -> int:
    return SIDE_EFFECTS.index(side_effect)


class Derived(NamedTuple):
    """What one call of a tool may touch (``caps``) and the class it is called as."""

    caps: list[str]
    side_effect: str


def find_mount(state: WorldState, name: str) -> Mount:
    mount = state.mount_table().get(name)
    if mount is None:
        raise NotFound(f"unknown mount {name!r} (see `toka mount list`)")
    return mount


def check_writable(state: WorldState, name: str) -> Mount:
    """A write needs a read-write mount, whatever the grant says."""
    mount = find_mount(state, name)
    if mount.mode != "rw":
        raise NotCovered(f"mount {name} is read-only: nothing may be written there")
    return mount


def _field(args: Any, name: str, kind: type, default: Any = ...) -> Any:
    if not isinstance(args, dict):
        raise InvalidOperation("the arguments must be an object")
    if name not in args:
        if default is ...:
            raise InvalidOperation(f"arguments.{name} is missing")
        return default
    value = args[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InvalidOperation(f"arguments.{name} must be a {kind.__name__}")
    return value


def _fs_place(state: WorldState, action: str, mount: str, path: str) -> str:
    """The resource of ``action`` on ``path`` under ``mount``, which must exist (and be
    read-write, for a write)."""
    resource = places.fs_resource(action, mount, path)
    if action == "fs.write":
        check_writable(state, mount)
    else:
        find_mount(state, mount)
    return resource


def _staged_place(state: WorldState, args: Any, name: str, action: str) -> str:
    """The capability over a staged tree: ``fs.read:mount/ws/docs/**`` (the place and
    everything below it, since the kernel does not know whether it is a file)."""
    place = _field(args, name, dict)
    mount, path = _field(place, "mount", str), _field(place, "path", str, "")
    return _fs_place(state, action, mount, path) + "/**"


def derive(state: WorldState, tool: Tool, args: Any) -> Derived:
    """The capabilities a call of ``tool`` with ``args`` needs, and its class.

    Refuses arguments that do not name a place (InvalidOperation), an unknown mount
    (NotFound) and a write to a read-only mount (NotCovered)."""
    declared = tool.effect_class
    if tool.kind == "mcp":
        return Derived([_mcp_call(state, tool)], declared)
    staged = tool.staged
    if staged is not None:
        needed = []
        if staged.input is not None:
            needed.append(_staged_place(state, args, staged.input, "fs.read"))
        if staged.output is not None:
            needed.append(_staged_place(state, args, staged.output, "fs.write"))
        return Derived(needed, declared)
    if tool.kind != "native" or tool.name not in NATIVE_CLASSES or declared == "none":
        return Derived([], declared)
    action = _FS_ACTIONS.get(tool.name)
    if action is not None:
        mount = _field(args, "mount", str)
        path = _field(args, "path", str, "" if action == "fs.list" else ...)
        if action != "fs.list" and not path:
            raise InvalidOperation("arguments.path must name a file, not the mount's root")
        return Derived([_fs_place(state, action, mount, path)], declared)
    method = _field(args, "method", str, "GET")
    url = places.parse_url(_field(args, "url", str))
    side_effect = declared
    if declared == "external":
        side_effect = _METHOD_CLASS.get(method.upper(), declared)
    names: set[str] = set()
    for argument in ("secret_headers", "secret_query"):
        secrets = _field(args, argument, dict, {})
        if not all(isinstance(v, str) for v in secrets.values()):
            raise InvalidOperation(f"arguments.{argument} must map names to secret names")
        names.update(secrets.values())
    used = [places.secret_resource(name, url.host) for name in sorted(names)]
    return Derived([places.http_resource(method.upper(), url), *used], side_effect)


def _mcp_call(state: WorldState, tool: Tool) -> str:
    """An imported MCP tool's call reaches its server, which must still be registered;
    what it may do there is the tool itself (``tool.invoke:tool/<server>.<tool>``)."""
    binding = tool.binding
    if binding is None or binding.server not in state.mcp_table():
        server = binding.server if binding is not None else "?"
        raise NotFound(f"MCP server {server} of tool {tool.name} was removed (see `toka mcp list`)")
    return f"tool.invoke:tool/{tool.name}"


def derived_caps(state: WorldState, tool: Tool | None, args: Any) -> list[str]:
    """``derive``'s capabilities, or none when the arguments name no place (the rule
    then refuses the call with the specific reason)."""
    if tool is None:
        return []
    try:
        return derive(state, tool, args).caps
    except (InvalidOperation, NotFound, NotCovered):
        return []


def asked_limit(tool: Tool, args: Any, key: str) -> int:
    """The tool's limit ``key``, or less if a built-in's arguments ask for less under
    that name (another tool's arguments are its own: an MCP tool's ``timeout_ms`` is
    its server's business)."""
    limit = tool.limits.get(key, 0)
    if tool.kind != "native":
        return limit
    asked = args.get(key) if isinstance(args, dict) else None
    if isinstance(asked, int) and not isinstance(asked, bool) and 0 < asked < limit:
        return asked
    return limit


def call_timeout_ms(tool: Tool, args: Any) -> int:
    """How long performing the call may take: the tool's limit, or less if asked."""
    return asked_limit(tool, args, "timeout_ms")
