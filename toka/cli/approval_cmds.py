"""``toka approvals list|show|approve|deny``: the queue of operations waiting for approval."""

from __future__ import annotations

from toka.cli.context import Context


def register(sub, common) -> None:
    approvals = sub.add_parser(
        "approvals", help="operations waiting for approval: list, show, approve, deny"
    )
    a = approvals.add_subparsers(dest="approvals_command", metavar="ACTION", required=True)

    p = a.add_parser("list", parents=[common], help="list pending approvals (oldest first)")
    p.add_argument("--all", action="store_true", help="also those already approved or denied")
    p.set_defaults(handler=cmd_list)

    p = a.add_parser("show", parents=[common], help="show one approval and its held operation")
    p.add_argument("approval", metavar="ID")
    p.set_defaults(handler=cmd_show)

    p = a.add_parser(
        "approve",
        parents=[common],
        help="approve: re-check the held operation now and apply it",
    )
    p.add_argument("approval", metavar="ID")
    p.set_defaults(handler=cmd_approve)

    p = a.add_parser("deny", parents=[common], help="deny: the held operation never applies")
    p.add_argument("approval", metavar="ID")
    p.add_argument("--reason", default="", help="why (recorded in the log)")
    p.set_defaults(handler=cmd_deny)


def _summary(data: dict) -> str:
    from toka.core.describe import short

    op = data.get("operation")
    if op is None:
        return "-"
    return short({k: v for k, v in op.items() if k != "type"}, 70)


def cmd_list(ctx: Context) -> int:
    from toka.cli.output import table_or
    from toka.core import approvals
    from toka.core.describe import log_time

    state = ctx.runtime.state
    chosen = state.approvals.values() if ctx.args.all else approvals.pending(state)
    rows = [approvals.describe(ctx.runtime, a) for a in chosen]
    ctx.emit(
        {"approvals": rows},
        lambda: table_or(
            ["id", "status", "op", "principal", "grant", "created", "operation"],
            [
                [
                    r["id"],
                    r["status"],
                    r["op"],
                    r["principal"],
                    r["grant"],
                    log_time(r["created_ms"]),
                    _summary(r),
                ]
                for r in rows
            ],
            ("no approvals" if ctx.args.all else "no operations waiting for approval"),
        ),
    )
    return 0


def cmd_show(ctx: Context) -> int:
    import json

    from toka.core import approvals
    from toka.core.describe import log_time
    from toka.core.errors import NotFound

    approval = ctx.runtime.state.approvals.get(ctx.args.approval)
    if approval is None:
        raise NotFound(f"unknown approval {ctx.args.approval!r}")
    data = approvals.describe(ctx.runtime, approval)

    def human() -> str:
        lines = [
            f"approval {data['id']}  {data['status']}",
            f"  op         {data['op']}",
            f"  principal  {data['principal']} (grant {data['grant']})",
            f"  created    {log_time(data['created_ms'])}",
            f"  digest     {data['digest']}",
        ]
        if data["decided_by"]:
            lines.append(f"  decided    by {data['decided_by']} at seq {data['decided_seq']}")
        if data["reason"]:
            lines.append(f"  reason     {data['reason']}")
        if "operation" in data:
            lines += ["", json.dumps(data["operation"], indent=2)]
        return "\n".join(lines)

    ctx.emit(data, human)
    return 0


def _decision(ctx: Context, outcome, status: str) -> int:
    kinds = outcome.kinds
    data = {
        "approval": ctx.args.approval,
        "status": status,
        "events": kinds,
        "seq": outcome.last_seq,
        "first_seq": outcome.first_seq,
        "digest": outcome.digest,
    }
    effects = f": {', '.join(kinds[1:])}" if len(kinds) > 1 else ""
    ctx.emit(data, f"{status} {ctx.args.approval} at seq {outcome.last_seq}{effects}")
    return 0


def cmd_approve(ctx: Context) -> int:
    from toka.core import approvals

    return _decision(ctx, approvals.approve(ctx.client, ctx.args.approval), "approved")


def cmd_deny(ctx: Context) -> int:
    from toka.core import approvals

    return _decision(ctx, approvals.deny(ctx.client, ctx.args.approval, ctx.args.reason), "denied")
