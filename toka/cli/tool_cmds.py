"""``toka tool list|show|register|invoke``."""

from __future__ import annotations

from typing import Any

import msgspec

from toka.cli.context import Context


def register(sub, common) -> None:
    tool = sub.add_parser("tool", help="register, list, show and invoke tools")
    t = tool.add_subparsers(dest="tool_command", metavar="ACTION", required=True)

    p = t.add_parser("list", parents=[common], help="list registered tools (newest versions)")
    p.set_defaults(handler=cmd_list)

    p = t.add_parser("show", parents=[common], help="show a tool: versions, limits, input schema")
    p.add_argument("name")
    p.add_argument("--version", dest="tool_version", help="one version (default: all)")
    p.set_defaults(handler=cmd_show)

    p = t.add_parser(
        "register", parents=[common], help="register the tool a TOML manifest describes"
    )
    p.add_argument("manifest", help="path to the manifest (.toml)")
    p.set_defaults(handler=cmd_register)

    p = t.add_parser(
        "invoke",
        parents=[common],
        help="invoke a tool (exit 0 ok, 1 tool failed, 3 denied, 4 invalid arguments)",
    )
    p.add_argument("name")
    p.add_argument(
        "--args",
        dest="tool_args",
        default="{}",
        help="arguments as JSON, @FILE, or - for stdin (default: {})",
    )
    p.add_argument("--version", dest="tool_version", help="tool version (default: newest)")
    p.add_argument("--task", help="the task this invocation serves, if any")
    p.set_defaults(handler=cmd_invoke)


def _tool_dict(t) -> dict[str, Any]:
    return {
        "name": t.name,
        "version": t.version,
        "kind": t.kind,
        "description": t.description,
        "module_sha256": t.module_sha256,
        "capabilities": list(t.capabilities),
        "limits": dict(t.limits),
        "input_schema": t.input_schema,
        "side_effect": t.effect_class,
        "files": msgspec.to_builtins(t.staged) if t.staged is not None else None,
        "mcp": _binding(t),
        "registered_by": t.registered_by,
        "registered_ms": t.registered_ms,
    }


def _binding(t) -> dict[str, Any] | None:
    """Where an imported MCP tool comes from (its pinned definition is in ``tool.registered``)."""
    b = t.binding
    return None if b is None else {"server": b.server, "tool": b.tool, "pin": b.pin}


def cmd_list(ctx: Context) -> int:
    from toka.cli.output import shorten, table_or
    from toka.core.model.state import version_key

    st = ctx.runtime.state
    rows = []
    for name in sorted(st.tools):
        latest = st.latest_tool(name)
        assert latest is not None
        rows.append(
            {
                **_tool_dict(latest),
                "versions": sorted(st.tools[name], key=version_key),
            }
        )
    ctx.emit(
        {"tools": rows},
        lambda: table_or(
            ["name", "version", "kind", "side effect", "versions", "description"],
            [
                [
                    r["name"],
                    r["version"],
                    r["kind"],
                    r["side_effect"],
                    len(r["versions"]),
                    shorten(r["description"], 60),
                ]
                for r in rows
            ],
            "no tools registered: toka tool register MANIFEST",
        ),
    )
    return 0


def cmd_show(ctx: Context) -> int:
    import json

    from toka.core.describe import log_time
    from toka.core.errors import NotFound
    from toka.core.model.state import version_key

    st = ctx.runtime.state
    name, wanted = ctx.args.name, ctx.args.tool_version
    versions = st.tools.get(name)
    if not versions:
        raise NotFound(f"unknown tool {name!r}: see `toka tool list`")
    if wanted is not None and wanted not in versions:
        raise NotFound(f"tool {name} has no version {wanted} (has {', '.join(versions)})")
    latest = st.latest_tool(name)
    assert latest is not None
    chosen = (
        [versions[wanted]]
        if wanted
        else sorted(versions.values(), key=lambda t: version_key(t.version))
    )
    data = {
        "name": name,
        "latest": latest.version,
        "versions": [_tool_dict(t) for t in chosen],
    }

    def human() -> str:
        out = []
        for t in reversed(chosen):
            mark = " (latest)" if t.version == latest.version else ""
            out += [
                f"{t.name}@{t.version}{mark}  [{t.kind}]",
                f"  {t.description}",
                f"  module       {t.module_sha256 or '-'}"
                if t.binding is None
                else f"  mcp          {t.binding.tool} on server {t.binding.server}, "
                f"pinned {t.binding.pin}",
                f"  capabilities {', '.join(t.capabilities) or '-'}",
                f"  side effect  {t.effect_class}"
                + (f"  (files: {msgspec.to_builtins(t.staged)})" if t.staged else ""),
                "  limits       " + ", ".join(f"{k}={v}" for k, v in sorted(t.limits.items())),
                f"  registered   {log_time(t.registered_ms)} by {t.registered_by}",
                "  input        "
                + (json.dumps(t.input_schema, sort_keys=True) if t.input_schema else "any JSON"),
            ]
        return "\n".join(out)

    ctx.emit(data, human)
    return 0


def cmd_register(ctx: Context) -> int:
    from toka.core import tools

    reg = tools.register(ctx.client, ctx.args.manifest)
    data = {
        "name": reg.name,
        "version": reg.version,
        "kind": reg.kind,
        "module_sha256": reg.module_sha256,
        "seq": reg.seq,
    }
    ctx.emit(data, f"registered {reg.name}@{reg.version} ({reg.kind}) at seq {reg.seq}")
    return 0


def cmd_invoke(ctx: Context) -> int:
    import json

    from toka.cli.output import info
    from toka.cli.parsing import json_value
    from toka.core import tools

    a = ctx.args
    args = json_value(a.tool_args, "--args")
    result = tools.invoke_as(ctx.client, a.name, args, version=a.tool_version, task=a.task)
    data = result.to_dict()
    data["wall_ms"] = round(result.wall_ms, 3)
    error = result.error
    ctx.emit(
        data, lambda: json.dumps(result.output, indent=2, sort_keys=True) if error is None else ""
    )
    if error is None:
        return 0
    if not ctx.json:
        info(
            f"toka: tool {result.tool}@{result.version} failed ({error.kind}): "
            f"{error.message} [seq {result.seq}]"
        )
    return 1
