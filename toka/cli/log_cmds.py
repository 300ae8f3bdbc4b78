"""``toka events`` and ``toka state``."""

from __future__ import annotations

import sys
import time

from toka.cli.context import Context
from toka.core.describe import grant_status, log_time, summarize


def register(sub, common) -> None:
    events = sub.add_parser("events", help="read the event log")
    e = events.add_subparsers(dest="events_command", metavar="ACTION", required=True)
    for name, helptext in (
        ("list", "list events, oldest first"),
        ("tail", "show the newest events; -f to follow"),
    ):
        p = e.add_parser(name, parents=[common], help=helptext)
        p.add_argument(
            "--kind", action="append", help="event kind, or a prefix like task.* (repeatable)"
        )
        p.add_argument("--principal", help="only events by this principal")
        p.add_argument("--agent", help="only events by or about this agent")
        p.add_argument("--text", help="only events whose payload contains this text")
        if name == "list":
            p.add_argument("--after", type=int, default=0, metavar="SEQ", help="start after SEQ")
            p.add_argument("--limit", type=int, default=100)
        else:
            p.add_argument("-n", type=int, default=20, dest="limit", help="how many (default 20)")
            p.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
            p.add_argument("--interval", type=float, default=0.05, help=argparse_suppress())
        p.set_defaults(handler=cmd_events, mode=name)

    p = sub.add_parser("state", parents=[common], help="show the world state (now, or --at SEQ)")
    p.add_argument("--at", type=int, metavar="SEQ", help="the world as it was at SEQ (time travel)")
    p.add_argument("--full", action="store_true", help="with --json: every agent, task and grant")
    p.set_defaults(handler=cmd_state)
    # `toka verify` and `toka replay` live in checkpoint_cmds, with the checkpoints.


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


def _filters(ctx: Context) -> dict:
    a = ctx.args
    return {"kinds": a.kind, "principal": a.principal, "text": a.text}


def _matches_agent(record, agent: str | None) -> bool:
    return agent is None or record.principal == agent or agent.encode() in record.payload


def cmd_events(ctx: Context) -> int:
    from toka.cli import output

    rt = ctx.view
    a = ctx.args
    filters = _filters(ctx)
    # Where following starts when nothing matches yet; read before the query, so an
    # event committed meanwhile is shown once, by the query or by the follower.
    head_before = rt.log.head()[0]
    if a.mode == "list":
        records = [
            r
            for r in rt.log.query(after=a.after, limit=a.limit, **filters)
            if _matches_agent(r, a.agent)
        ]
    else:
        records = [
            r
            for r in rt.log.query(limit=a.limit, newest_first=True, **filters)
            if _matches_agent(r, a.agent)
        ]
        records.reverse()

    def show(recs) -> None:
        for r in recs:
            if ctx.json:
                output.emit_line(r.to_dict())
            else:
                output.say(_event_line(r))
        sys.stdout.flush()

    if a.mode == "list" and ctx.json:
        output.emit_json({"events": [r.to_dict() for r in records]})
        return 0
    if not records and not getattr(a, "follow", False) and not ctx.json:
        output.info("no events match")
    show(records)
    if a.mode != "tail" or not a.follow:
        return 0
    from toka.core.log.follow import LogFollower

    after = max(records[-1].seq if records else 0, head_before)
    with LogFollower(
        rt.home,
        after,
        kinds=a.kind,
        principal=a.principal,
        agent=a.agent,
        text=a.text,
    ) as follower:
        while True:
            show(follower.poll())
            time.sleep(a.interval)


def _event_line(r) -> str:
    import msgspec

    payload = msgspec.json.decode(r.payload)
    return (
        f"{r.seq:>7}  {log_time(r.ts)}  {r.kind:<20} {r.principal:<14} {summarize(r.kind, payload)}"
    )


def cmd_state(ctx: Context) -> int:
    import msgspec

    from toka.core.errors import InvalidInput

    rt = ctx.runtime if ctx.args.at is not None else ctx.view  # time travel replays
    if ctx.args.at is not None:
        head = rt.state.seq
        if not 1 <= ctx.args.at <= head:
            raise InvalidInput(f"--at must be between 1 and the head sequence number {head}")
        st = rt.state_at(ctx.args.at)
    else:
        st = rt.state
    # A grant's status as `grant list` gives it, at the time of the state shown.
    now_s = (st.ts if ctx.args.at is not None else rt.now_ms()) // 1000
    statuses = [grant_status(st, g, now_s) for g in st.grants.values()]
    counts = {
        "agents": {
            s: sum(1 for a in st.agents.values() if a.status == s)
            for s in ("running", "paused", "terminated")
        },
        "tasks": {
            s: sum(1 for t in st.tasks.values() if t.status == s)
            for s in ("scheduled", "started", "completed", "failed", "cancelled")
        },
        "grants": {s: statuses.count(s) for s in ("active", "expired", "revoked")},
        "tools": sum(len(v) for v in st.tools.values()),
    }
    data = {
        "seq": st.seq,
        "ts": st.ts,
        "state_hash": st.state_hash(),
        "at": ctx.args.at,
        "counts": counts,
    }
    if ctx.args.full or ctx.args.at is not None:
        data["state"] = msgspec.to_builtins(st)

    def human() -> str:
        from toka.cli.output import table_or

        lines = [
            f"world at seq {st.seq} ({log_time(st.ts)})"
            + ("  [time travel: read-only view of the past]" if ctx.args.at else ""),
            f"state hash {data['state_hash']}",
            "",
        ]
        lines.append(
            table_or(
                ["agent", "name", "status", "open"],
                [[a.id, a.name, a.status, a.open_tasks] for a in st.agents.values()],
                "no agents",
            )
        )
        lines.append("")
        lines.append("tasks: " + ", ".join(f"{k} {v}" for k, v in counts["tasks"].items()))
        lines.append("grants: " + ", ".join(f"{k} {v}" for k, v in counts["grants"].items()))
        return "\n".join(lines)

    ctx.emit(data, human)
    return 0
