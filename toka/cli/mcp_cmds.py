"""``toka mcp add|list|remove|tools|import|serve``: MCP servers as tools, and Toka as one."""

from __future__ import annotations

import argparse

from toka.cli.context import Context
from toka.cli.mcp_serve_cmd import add_serve_parser

SIDE_EFFECTS = ("read_only", "idempotent", "external", "privileged")


def register(sub, common) -> None:
    mcp = sub.add_parser(
        "mcp",
        help="MCP servers as Toka tools, and Toka as an MCP server (needs toka[mcp])",
    )
    m = mcp.add_subparsers(dest="mcp_command", metavar="ACTION", required=True)
    p = m.add_parser(
        "add",
        parents=[common],
        help="register an MCP server (a signed mcp.register)",
        usage="toka mcp add NAME [options] -- COMMAND [ARGS...]\n"
        "       toka mcp add NAME --url URL [options]",
        description="toka mcp add NAME -- COMMAND [ARGS...]   (a server run over stdio)\n"
        "toka mcp add NAME --url URL            (streamable HTTP)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", help="the server's name: a-z, then a-z 0-9 _ - (its tools: NAME.tool)")
    p.add_argument("--url", help="a streamable HTTP endpoint instead of a command")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="an environment variable for the server (kept in the log: nothing secret)",
    )
    p.add_argument(
        "--env-secret",
        action="append",
        default=[],
        metavar="VAR=SECRET",
        help="set VAR to the value of secret SECRET (toka secret set; only the name is logged)",
    )
    p.add_argument(
        "--header-secret",
        action="append",
        default=[],
        metavar="HEADER=SECRET",
        help="with --url: send header HEADER with the value of secret SECRET",
    )
    p.add_argument(
        "--legacy",
        action="store_true",
        help="a 2025-era server (MCP SDK 1.x): connect with the initialize handshake",
    )
    p.set_defaults(handler=cmd_add, takes_command=True)
    p = m.add_parser("list", parents=[common], help="registered MCP servers")
    p.set_defaults(handler=cmd_list)
    p = m.add_parser("remove", parents=[common], help="remove a server (its tools stop working)")
    p.add_argument("name")
    p.set_defaults(handler=cmd_remove)
    p = m.add_parser(
        "tools", parents=[common], help="what a server offers now, against what was imported"
    )
    p.add_argument("name")
    p.set_defaults(handler=cmd_tools)
    p = m.add_parser(
        "import", parents=[common], help="register a server's tools as Toka tools NAME.tool"
    )
    p.add_argument("name")
    p.add_argument("--tools", metavar="A,B", help="only these tools (the server's names)")
    p.add_argument(
        "--side-effect",
        choices=SIDE_EFFECTS,
        default="external",
        help="what a call may do to the world; the server's hints are not trusted "
        "(default external: never repeated, an agent's call waits for approval unless "
        "its grant is --unattended)",
    )
    p.add_argument(
        "--accept-changed",
        action="store_true",
        help="import definitions that changed since their import, as new versions",
    )
    p.add_argument("--timeout-ms", type=int, default=30_000, help="a call's time limit")
    p.add_argument(
        "--max-output-bytes",
        type=int,
        default=256 * 1024,
        help="results larger than this are kept as a blob, not in the log",
    )
    p.set_defaults(handler=cmd_import)
    add_serve_parser(m, common)


def _pairs(items: list[str], what: str) -> dict[str, str]:
    from toka.core.errors import InvalidInput

    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise InvalidInput(f"{what}: {item!r} is not NAME=VALUE")
        if key in pairs:
            raise InvalidInput(f"{what}: {key} is given twice")
        pairs[key] = value
    return pairs


def cmd_add(ctx: Context) -> int:
    from toka.core.errors import InvalidInput
    from toka.core.model import ops

    a = ctx.args
    if bool(a.command_line) == bool(a.url):
        raise InvalidInput("give either a command (after --) or --url URL")
    env = _pairs(a.env, "--env")
    env_secrets = _pairs(a.env_secret, "--env-secret")
    header_secrets = _pairs(a.header_secret, "--header-secret")
    if a.url and (env or env_secrets):
        raise InvalidInput("--env and --env-secret are for a command; use --header-secret")
    if a.command_line and header_secrets:
        raise InvalidInput("--header-secret is for --url; use --env-secret for a command")
    known = set(ctx.home.secrets.names())
    for secret in [*env_secrets.values(), *header_secrets.values()]:
        ctx.home.secrets.path(secret)  # a valid name
        if secret not in known:
            raise InvalidInput(f"secret {secret} is not set on this host: toka secret set {secret}")
    op = ops.RegisterMcpServer(
        name=a.name,
        transport="http" if a.url else "stdio",
        command=list(a.command_line) if a.command_line else None,
        url=a.url,
        env=env,
        env_secrets=env_secrets,
        header_secrets=header_secrets,
        legacy=a.legacy,
    )
    outcome = ctx.client.submit(op)
    ctx.emit(
        {"name": a.name, "transport": op.transport, "seq": outcome.last_seq},
        f"registered MCP server {a.name} ({op.transport}) at seq {outcome.last_seq}; "
        f"next: toka mcp tools {a.name}, then toka mcp import {a.name}",
    )
    return 0


def _target(server) -> str:
    import shlex

    return server.url if server.transport == "http" else shlex.join(server.command or [])


def cmd_list(ctx: Context) -> int:
    from collections import Counter

    import msgspec

    from toka.cli.output import fmt_s, table_or

    state = ctx.runtime.state
    servers = list(state.mcp_table().values())
    # Tools imported from each server (a tool with several versions counts once).
    imported = Counter(
        tool.binding.server
        for versions in state.tools.values()
        for tool in list(versions.values())[:1]
        if tool.binding is not None
    )
    rows = []
    for s in servers:
        secrets = sorted({*s.env_secrets.values(), *s.header_secrets.values()})
        rows.append(
            [
                s.name,
                s.transport,
                _target(s),
                ", ".join(secrets) or "-",
                imported[s.name],
                s.added_by,
                fmt_s(s.added_ms // 1000),
            ]
        )
    ctx.emit(
        {
            "servers": [
                msgspec.to_builtins(s) | {"tools_imported": imported[s.name]} for s in servers
            ]
        },
        lambda: table_or(
            ["name", "transport", "command or url", "secrets", "tools", "added by", "added"],
            rows,
            "no MCP servers (toka mcp add NAME -- COMMAND..., or --url URL)",
        ),
    )
    return 0


def cmd_remove(ctx: Context) -> int:
    from toka.core.model import ops

    outcome = ctx.client.submit(ops.RemoveMcpServer(ctx.args.name))
    ctx.emit(
        {"name": ctx.args.name, "seq": outcome.last_seq},
        f"removed MCP server {ctx.args.name} at seq {outcome.last_seq}; calls of its "
        "tools are refused from now on",
    )
    return 0


def cmd_tools(ctx: Context) -> int:
    from toka.cli.output import shorten, table_or
    from toka.core.tools.mcp.importing import offers

    found = offers(ctx.runtime, ctx.args.name)
    rows = []
    for o in found:
        hints = o.definition.get("annotations") or {}
        hinted = ", ".join(k.removesuffix("Hint") for k, v in sorted(hints.items()) if v is True)
        toka = f"{o.name}@{o.version}" if o.version else (o.name or "-")
        rows.append(
            [
                o.remote,
                o.status,
                toka,
                o.pin[:12],
                hinted or "-",
                shorten(str(o.definition.get("description") or ""), 50),
            ]
        )
    ctx.emit(
        {"server": ctx.args.name, "tools": [o._asdict() for o in found]},
        lambda: table_or(
            ["tool", "status", "toka tool", "pin", "hints", "description"],
            rows,
            f"MCP server {ctx.args.name} offers no tools",
        ),
    )
    return 0


def cmd_import(ctx: Context) -> int:
    from toka.cli.output import table
    from toka.core.errors import InvalidInput
    from toka.core.tools.mcp.importing import import_tools

    a = ctx.args
    names = None
    if a.tools is not None:
        names = [n.strip() for n in a.tools.split(",") if n.strip()]
        if not names:
            raise InvalidInput("--tools: name at least one tool")
    done = import_tools(
        ctx.client,
        a.name,
        names,
        side_effect=a.side_effect,
        accept_changed=a.accept_changed,
        timeout_ms=a.timeout_ms,
        max_output_bytes=a.max_output_bytes,
    )
    ctx.emit(
        {"server": a.name, "tools": [d._asdict() for d in done]},
        lambda: (
            table(
                ["tool", "version", "status", "pin"],
                [[d.name, d.version, d.status, d.pin[:12]] for d in done],
            )
            if done
            else f"MCP server {a.name} offers no tools to import"
        ),
    )
    return 0
