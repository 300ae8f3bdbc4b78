"""``toka grant issue|list|revoke``."""

from __future__ import annotations

from toka.cli.context import Context
from toka.core.model import events as ev


def register(sub, common) -> None:
    grant = sub.add_parser("grant", help="issue, list and revoke capability grants")
    g = grant.add_subparsers(dest="grant_command", metavar="ACTION", required=True)

    p = g.add_parser("issue", parents=[common], help="grant capabilities to a principal")
    p.add_argument("subject", help="agent id or principal")
    p.add_argument(
        "caps", nargs="+", metavar="CAP", help="capability patterns, e.g. tool.invoke:tool/echo"
    )
    p.add_argument("--ttl", default="1h", help="lifetime: 30s, 10m, 2h, 7d (default 1h)")
    p.add_argument("--max-ops", type=int, help="budget: maximum operations")
    p.add_argument("--max-tool-calls", type=int, help="budget: maximum tool calls")
    p.add_argument("--max-fuel", type=int, help="budget: maximum WASM fuel")
    p.add_argument(
        "--approve",
        action="store_true",
        help="operations under this grant wait for operator approval",
    )
    p.add_argument(
        "--unattended",
        action="store_true",
        help="external tool calls (an MCP tool's, an http-fetch POST) under this grant run "
        "without waiting for approval; without it an agent's wait (privileged ones always do)",
    )
    p.set_defaults(handler=cmd_issue)

    p = g.add_parser("list", parents=[common], help="list grants")
    p.add_argument("--subject")
    p.add_argument("--active", action="store_true", help="only active grants")
    p.set_defaults(handler=cmd_list)

    p = g.add_parser(
        "revoke", parents=[common], help="revoke a grant and everything derived from it"
    )
    p.add_argument("jti")
    p.add_argument("--reason", default="")
    p.set_defaults(handler=cmd_revoke)


def cmd_issue(ctx: Context) -> int:
    from toka.core.durations import parse_duration
    from toka.core.model.state import Budgets

    a = ctx.args
    budgets = Budgets(a.max_ops, a.max_tool_calls, a.max_fuel)
    outcome = ctx.client.grant(
        a.subject,
        a.caps,
        parse_duration(a.ttl),
        budgets=budgets,
        approve=a.approve,
        unattended=a.unattended,
    )
    g = outcome.first(ev.CapabilityGranted)
    token = outcome.tokens.get(g.jti)
    data = {
        "jti": g.jti,
        "token": token,
        "subject": g.subject,
        "caps": g.caps,
        "exp": g.exp,
        "parent": g.parent,
        "seq": outcome.last_seq,
    }
    ctx.emit(data, lambda: f"granted {g.jti} to {g.subject}: {' '.join(g.caps)}\n{token}")
    return 0


def cmd_list(ctx: Context) -> int:
    import msgspec

    from toka.cli.output import fmt_s, shorten, table_or
    from toka.core.describe import grant_status

    rt = ctx.view
    now_s = rt.now_ms() // 1000
    rows = []
    for g in rt.state.grants.values():
        if ctx.args.subject and g.subject != ctx.args.subject:
            continue
        status = grant_status(rt.state, g, now_s)
        if ctx.args.active and status != "active":
            continue
        rows.append({**msgspec.to_builtins(g), "status": status})
    ctx.emit(
        {"grants": rows},
        lambda: table_or(
            ["jti", "subject", "status", "expires", "parent", "caps"],
            [
                [
                    r["jti"],
                    r["subject"],
                    r["status"],
                    fmt_s(r["exp"]),
                    r["parent"] or "-",
                    shorten(" ".join(r["caps"]), 60),
                ]
                for r in rows
            ],
            "no grants",
        ),
    )
    return 0


def cmd_revoke(ctx: Context) -> int:
    outcome = ctx.client.revoke(ctx.args.jti, ctx.args.reason)
    revoked = outcome.first(ev.CapabilityRevoked).revoked
    ctx.emit(
        {"jti": ctx.args.jti, "revoked": revoked, "seq": outcome.last_seq},
        f"revoked {', '.join(revoked)} at seq {outcome.last_seq}",
    )
    return 0
