"""``toka agent``, ``toka task`` and ``toka obs``."""

from __future__ import annotations

from typing import Any

from toka.cli.context import Context
from toka.core.model import events as ev


def register(sub, common) -> None:
    agent = sub.add_parser("agent", help="spawn, list, show, pause, resume, terminate agents")
    a = agent.add_subparsers(dest="agent_command", metavar="ACTION", required=True)

    p = a.add_parser("spawn", parents=[common], help="spawn an agent (creates its key pair)")
    p.add_argument("name")
    p.add_argument(
        "--behaviour",
        "--behavior",
        default="manual",
        help="what drives the agent: manual (default; nobody), echo, planner, supervisor, "
        "llm (run by `toka run`)",
    )
    p.add_argument("--parent", help="the parent agent id, if any")
    p.set_defaults(handler=cmd_spawn)

    p = a.add_parser("list", parents=[common], help="list agents")
    p.add_argument("--status", choices=["running", "paused", "terminated"])
    p.set_defaults(handler=cmd_list)

    p = a.add_parser("show", parents=[common], help="show one agent with its tasks and grants")
    p.add_argument("agent")
    p.set_defaults(handler=cmd_show)

    for verb, helptext in (
        ("pause", "pause an agent: its tasks wait"),
        ("resume", "resume a paused agent"),
        ("terminate", "terminate an agent: open tasks cancelled, grants revoked"),
    ):
        p = a.add_parser(verb, parents=[common], help=helptext)
        p.add_argument("agent")
        if verb == "terminate":
            p.add_argument("--reason", default="")
        p.set_defaults(handler=cmd_lifecycle, verb=verb)

    task = sub.add_parser("task", help="schedule and list tasks")
    t = task.add_subparsers(dest="task_command", metavar="ACTION", required=True)
    p = t.add_parser("schedule", parents=[common], help="schedule a task for an agent")
    p.add_argument("agent")
    p.add_argument("description")
    p.add_argument("--payload", help="task payload as JSON (or @FILE, or - for stdin)")
    p.set_defaults(handler=cmd_schedule)
    p = t.add_parser("list", parents=[common], help="list tasks")
    p.add_argument("--agent")
    p.add_argument(
        "--status", choices=["scheduled", "started", "completed", "failed", "cancelled", "open"]
    )
    p.set_defaults(handler=cmd_tasks)
    for verb in ("complete", "fail"):
        p = t.add_parser(verb, parents=[common], help=f"{verb} a task (as its agent: --as AGENT)")
        p.add_argument("task")
        if verb == "complete":
            p.add_argument("--result", help="result as JSON (or @FILE, or -)")
        else:
            p.add_argument("reason")
        p.set_defaults(handler=cmd_finish, verb=verb)

    obs = sub.add_parser("obs", help="emit observations")
    o = obs.add_subparsers(dest="obs_command", metavar="ACTION", required=True)
    p = o.add_parser("emit", parents=[common], help="record an observation about an agent")
    p.add_argument("agent")
    p.add_argument("data", help="JSON value, or plain text")
    p.set_defaults(handler=cmd_observe)


def _seq_summary(outcome) -> dict[str, Any]:
    return {"seq": outcome.last_seq, "first_seq": outcome.first_seq, "digest": outcome.digest}


def cmd_spawn(ctx: Context) -> int:
    from toka.core.agents.behaviours import check_spawnable

    check_spawnable(ctx.args.behaviour)
    agent_id, outcome = ctx.client.spawn_agent(
        ctx.args.name, ctx.args.behaviour, parent=ctx.args.parent
    )
    grant = outcome.first(ev.CapabilityGranted)
    data = {
        "id": agent_id,
        "name": ctx.args.name,
        "behaviour": ctx.args.behaviour,
        "grant": grant.jti,
        **_seq_summary(outcome),
    }
    ctx.emit(data, f"spawned agent {agent_id} ({ctx.args.name}) at seq {outcome.last_seq}")
    return 0


def _agent_row(a, active: dict[str, list]) -> dict[str, Any]:
    """An agent as plain data; ``active`` holds the active grants by subject."""
    from toka.core.describe import budget_use

    usage = budget_use(active.get(a.id, []))
    return {
        "id": a.id,
        "name": a.name,
        "behaviour": a.behaviour,
        "status": a.status,
        "open_tasks": a.open_tasks,
        "parent": a.parent,
        "spawned_by": a.spawned_by,
        "created_ms": a.created_ms,
        "observations": a.observations,
        "budget": ", ".join(usage),
    }


def cmd_list(ctx: Context) -> int:
    from toka.cli.output import table_or
    from toka.core.describe import active_grants_by_subject

    st = ctx.view.state
    active = active_grants_by_subject(st, ctx.view.now_ms() // 1000)
    rows = [
        _agent_row(a, active)
        for a in st.agents.values()
        if ctx.args.status is None or a.status == ctx.args.status
    ]
    ctx.emit(
        {"agents": rows},
        lambda: table_or(
            ["id", "name", "behaviour", "status", "open", "budget"],
            [
                [
                    r["id"],
                    r["name"],
                    r["behaviour"],
                    r["status"],
                    r["open_tasks"],
                    r["budget"] or "-",
                ]
                for r in rows
            ],
            "no agents yet: toka agent spawn NAME",
        ),
    )
    return 0


def cmd_show(ctx: Context) -> int:
    import msgspec

    from toka.cli.output import fmt_s, table_or
    from toka.core.describe import grant_status, grant_usage, log_time
    from toka.core.errors import NotFound

    st = ctx.view.state
    a = st.agents.get(ctx.args.agent)
    if a is None:
        raise NotFound(f"unknown agent {ctx.args.agent!r}")
    tasks = [msgspec.to_builtins(t) for t in st.tasks.values() if t.agent == a.id]
    held = [g for g in st.grants.values() if g.subject == a.id]
    now_s = ctx.view.now_ms() // 1000
    # The same status as `toka grant list`: expiry and revoked ancestors count.
    status = {g.jti: grant_status(st, g, now_s) for g in held}
    grants = [{**msgspec.to_builtins(g), "status": status[g.jti]} for g in held]
    active = {a.id: [g for g in held if status[g.jti] == "active"]}
    usage = {g.jti: grant_usage(g) for g in held}
    data = {
        "agent": _agent_row(a, active),
        "public_key": a.public_key,
        "tasks": tasks,
        "grants": grants,
    }

    def human() -> str:
        r = data["agent"]
        lines = [
            f"agent {a.id}  {a.name}",
            f"  behaviour  {a.behaviour}",
            f"  status     {a.status}",
            f"  spawned    {log_time(a.created_ms)} by {a.spawned_by}",
            f"  parent     {a.parent or '-'}",
            f"  key        {a.public_key}",
            f"  budget     {r['budget'] or 'unlimited'}",
            "",
            "tasks:",
        ]
        lines.append(
            table_or(
                ["id", "status", "description"],
                [[t["id"], t["status"], t["description"][:60]] for t in tasks],
                "  (none)",
            )
        )
        lines += ["", "grants:"]
        lines.append(
            table_or(
                ["jti", "status", "expires", "caps", "usage"],
                [
                    [
                        g["jti"],
                        g["status"],
                        fmt_s(g["exp"]),
                        " ".join(g["caps"]),
                        usage[g["jti"]],
                    ]
                    for g in grants
                ],
                "  (none)",
            )
        )
        return "\n".join(lines)

    ctx.emit(data, human)
    return 0


def cmd_lifecycle(ctx: Context) -> int:
    verb = ctx.args.verb
    client = ctx.client
    if verb == "pause":
        outcome = client.pause(ctx.args.agent)
    elif verb == "resume":
        outcome = client.resume(ctx.args.agent)
    else:
        outcome = client.terminate(ctx.args.agent, ctx.args.reason)
    past = {"pause": "paused", "resume": "resumed", "terminate": "terminated"}[verb]
    kinds = outcome.kinds
    data = {
        "agent": ctx.args.agent,
        "status": ctx.runtime.state.agents[ctx.args.agent].status,
        "events": kinds,
        **_seq_summary(outcome),
    }
    extra = ""
    if verb == "terminate":
        cancelled = kinds.count("task.cancelled")
        revoked = sum(len(e.revoked) for e in outcome.all(ev.CapabilityRevoked))
        extra = f" ({cancelled} open tasks cancelled, {revoked} grants revoked)"
    ctx.emit(data, f"{past} agent {ctx.args.agent} at seq {outcome.last_seq}{extra}")
    return 0


def cmd_schedule(ctx: Context) -> int:
    from toka.cli.parsing import json_value

    payload = json_value(ctx.args.payload, "--payload") if ctx.args.payload else None
    outcome = ctx.client.schedule(ctx.args.agent, ctx.args.description, payload)
    task = outcome.first(ev.TaskScheduled).task
    ctx.emit(
        {"task": task, "agent": ctx.args.agent, **_seq_summary(outcome)},
        f"scheduled task {task} for {ctx.args.agent} at seq {outcome.last_seq}",
    )
    return 0


def cmd_tasks(ctx: Context) -> int:
    import msgspec

    from toka.cli.output import shorten, table_or
    from toka.core.describe import log_time
    from toka.core.model.state import OPEN_TASK_STATUSES

    want = ctx.args.status
    tasks = [
        t
        for t in ctx.view.state.tasks.values()
        if (ctx.args.agent is None or t.agent == ctx.args.agent)
        and (
            want is None or t.status == want or (want == "open" and t.status in OPEN_TASK_STATUSES)
        )
    ]
    if ctx.json:  # as plain data in one call; the table reads the tasks as they are
        ctx.emit({"tasks": msgspec.to_builtins(tasks)})
        return 0
    ctx.emit(
        None,
        lambda: table_or(
            ["id", "agent", "status", "updated", "description", "why"],
            [
                [
                    t.id,
                    t.agent,
                    t.status,
                    log_time(t.updated_ms),
                    shorten(t.description, 40),
                    shorten(t.error, 60) if t.error else "",
                ]
                for t in tasks
            ],
            "no tasks",
        ),
    )
    return 0


def cmd_finish(ctx: Context) -> int:
    from toka.cli.parsing import json_value

    if ctx.args.verb == "complete":
        result = json_value(ctx.args.result, "--result") if ctx.args.result else None
        outcome = ctx.client.complete(ctx.args.task, result)
    else:
        outcome = ctx.client.fail(ctx.args.task, ctx.args.reason)
    past = "completed" if ctx.args.verb == "complete" else "failed"
    ctx.emit(
        {"task": ctx.args.task, "status": past, **_seq_summary(outcome)},
        f"{past} task {ctx.args.task} at seq {outcome.last_seq}",
    )
    return 0


def cmd_observe(ctx: Context) -> int:
    from toka.cli.parsing import json_or_text

    outcome = ctx.client.observe(ctx.args.agent, json_or_text(ctx.args.data, "data"))
    ctx.emit(
        {"agent": ctx.args.agent, **_seq_summary(outcome)},
        f"observation recorded at seq {outcome.last_seq}",
    )
    return 0
