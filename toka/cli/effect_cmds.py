"""``toka effects list|show|resolve``: tool calls that touch the world, and their records."""

from __future__ import annotations

from typing import Any

from toka.cli.context import Context, common_options


def register(sub, common) -> None:
    effects = sub.add_parser(
        "effects", help="tool calls with an effect: open ones, what each touched, resolving"
    )
    e = effects.add_subparsers(dest="effects_command", metavar="ACTION", required=True)
    p = e.add_parser("list", parents=[common], help="open calls (started, interrupted, unknown)")
    p.add_argument("--all", action="store_true", help="also calls that ended (newest first)")
    p.add_argument("--limit", type=int, default=50, help="with --all: how many (default 50)")
    p.set_defaults(handler=cmd_list)
    p = e.add_parser("show", parents=[common], help="one call: intent, effects, blobs, outcome")
    p.add_argument("call", metavar="CALL", help="the call's id, iv-<seq>")
    p.set_defaults(handler=cmd_show)
    p = e.add_parser(
        "resolve",
        parents=[common_options(False, principal=False)],
        help="say how a call whose outcome is unknown ended (after checking the world)",
        description="The signer is the global --as before `effects` (default: operator).",
    )
    p.add_argument("call", metavar="CALL", help="the call's id, iv-<seq>")
    p.add_argument("--as", dest="resolution", required=True, choices=["succeeded", "failed"])
    p.add_argument("--note", default="", help="what you found out (kept in the log)")
    p.set_defaults(handler=cmd_resolve)


def cmd_list(ctx: Context) -> int:
    from toka.cli.output import fmt_s, table_or
    from toka.core.tools import calls

    rt = ctx.runtime
    rows: list[dict[str, Any]] = []
    if ctx.args.all:
        for r in rt.log.query(kinds=["tool.started"], limit=ctx.args.limit, newest_first=True):
            started = r.data()
            result = calls.result(rt, started.call)  # type: ignore[attr-defined]
            rows.append(_row(started, started.call, r.principal, r.ts, result.status))
    else:
        now = rt.now_ms()
        for call in rt.state.call_table().values():
            rows.append(_row(call, call.id, call.principal, call.started_ms, call.standing(now)))
    empty = "no calls" if ctx.args.all else "no open calls"
    ctx.emit(
        {"calls": rows},
        lambda: table_or(
            ["call", "tool", "class", "status", "by", "task", "started", "place"],
            [
                [
                    r["call"],
                    r["tool"],
                    r["side_effect"],
                    r["status"],
                    r["principal"],
                    r["task"] or "-",
                    fmt_s(r["started_ms"] // 1000),
                    " ".join(r["caps"]) or "-",
                ]
                for r in rows
            ],
            empty,
        ),
    )
    return 0


def _row(started, call_id: str, principal: str, ts: int, status: str) -> dict[str, Any]:
    """A call as listed: ``started`` is its intent (``ToolStarted``) or its open record
    (``OpenCall``), which share the fields listed."""
    return {
        "call": call_id,
        "tool": f"{started.tool}@{started.version}",
        "side_effect": started.side_effect,
        "status": status,
        "principal": principal,
        "task": started.task,
        "started_ms": ts,
        "caps": list(started.caps),
    }


def cmd_show(ctx: Context) -> int:
    import msgspec

    from toka.core.errors import NotFound
    from toka.core.tools import calls

    rt = ctx.runtime
    seq = calls.call_seq(ctx.args.call)
    record = rt.log.record(seq)
    if record is None or record.kind != "tool.started":
        raise NotFound(f"no tool call {ctx.args.call!r} in the log")
    started = record.data()
    result = calls.result(rt, ctx.args.call)
    call = rt.state.call_table().get(ctx.args.call)
    data = {
        **_row(started, started.call, record.principal, record.ts, result.status),
        "status": call.standing(rt.now_ms()) if call is not None else result.status,
        "intent": msgspec.to_builtins(started),
        "outcome_seq": result.seq if result.ended else None,
        "ok": result.ok if result.ended else None,
        "error": msgspec.to_builtins(result.error) if result.error else None,
        "effects": [msgspec.to_builtins(e) for e in result.effects],
        "blobs": sorted({b for e in result.effects for b in e.blobs()}),
    }
    ctx.emit(data, lambda: _show_text(data, record.ts))
    return 0


def _show_text(d: dict[str, Any], ts: int) -> str:
    """The call's intent and effect records as the console shows them (``describe``)."""
    from toka.core.describe import effects_text, intent_text

    lines = [
        f"{d['call']}  {d['tool']}  {d['side_effect']}  {d['status']}",
        intent_text(d["intent"], ts),
    ]
    if d["error"]:
        lines.append(f"failed ({d['error']['kind']}): {d['error']['message']}")
    if d["effects"] or d["outcome_seq"] is not None:
        lines += [f"effects ({len(d['effects'])})", effects_text(d["effects"])]
    return "\n".join(lines)


def cmd_resolve(ctx: Context) -> int:
    from toka.core.model import events as ev
    from toka.core.model import ops

    a = ctx.args
    outcome = ctx.client.submit(ops.ResolveCall(a.call, a.resolution, a.note))
    resolved = outcome.first(ev.ToolResolved)
    ctx.emit(
        {"call": resolved.call, "outcome": resolved.outcome, "seq": outcome.last_seq},
        f"{resolved.call} ({resolved.tool}) resolved as {resolved.outcome} at seq "
        f"{outcome.last_seq}",
    )
    return 0
