"""``toka run``: drive the agents whose behaviour this runner knows."""

from __future__ import annotations

from toka.cli.context import Context


def register(sub, common) -> None:
    p = sub.add_parser(
        "run",
        parents=[common],
        help="run agents: take their tasks, let their behaviour decide, act as them",
        description="Drive every running agent with a known behaviour (echo, planner, "
        "supervisor, llm): take its tasks, let the behaviour decide, and submit what it "
        "decides signed with the agent's own key. Follows the log until Ctrl-C, or with "
        "--until-idle exits once nothing is left to run. Several runners may share a home: "
        "task leases keep them from running one task twice.",
    )
    p.add_argument(
        "--until-idle",
        action="store_true",
        help="exit 0 once no task is runnable and no other runner holds one",
    )
    p.add_argument("--agent", metavar="ID", help="drive only this agent")
    p.add_argument(
        "--lease",
        default="60s",
        metavar="DURATION",
        help="how long a taken task stays this runner's without renewal (default 60s)",
    )
    p.add_argument(
        "--pace",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long before each new step, to watch agents work (default 0)",
    )
    p.add_argument("--runner-id", metavar="ID", help="this runner's name in task leases")
    p.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics while running, this runner's commit latency and "
        "batch size included (loopback unless told otherwise)",
    )
    p.set_defaults(handler=cmd_run)


def cmd_run(ctx: Context) -> int:
    import signal
    import sys
    import threading

    import msgspec

    from toka.cli.output import info, say
    from toka.core.agents.behaviours import drivers
    from toka.core.agents.runner import Runner
    from toka.core.describe import short
    from toka.core.durations import parse_duration
    from toka.core.errors import InvalidInput, NotFound

    a = ctx.args
    rt = ctx.runtime
    if a.agent is not None:
        agent = rt.state.agents.get(a.agent)
        if agent is None:
            raise NotFound(f"unknown agent {a.agent!r}")
        if agent.behaviour not in drivers():
            raise InvalidInput(
                f"agent {agent.id} has behaviour {agent.behaviour!r}, which no runner drives"
            )
    lease_s = parse_duration(a.lease)
    metrics = None
    if a.metrics:
        from toka.core.metrics import start_metrics_server

        metrics = start_metrics_server(ctx.home, a.metrics, runtime=rt)
        if metrics.warning:
            info(metrics.warning)
        info(f"toka: metrics at {metrics.url}")
    runner = Runner(rt, runner_id=a.runner_id, agent=a.agent, lease_s=lease_s, pace_s=a.pace)
    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    finished: list[dict] = []

    def on_events(records) -> None:
        for r in records:
            if r.kind in ("task.completed", "task.failed"):
                p = msgspec.json.decode(r.payload)
                task = rt.state.tasks.get(p["task"])
                if task is None or task.runner != runner.runner_id:
                    continue  # finished by someone else (another runner, a person)
                entry = {"seq": r.seq, "task": p["task"], "agent": r.principal, "event": r.kind}
                finished.append(entry)
                if not ctx.json:
                    what = p.get("result") if r.kind == "task.completed" else p.get("reason")
                    say(f"{p['task']} {r.kind.split('.')[1]} by {r.principal}: {short(what)}")
                    sys.stdout.flush()

    if a.agent is not None and not runner.holds_key(a.agent):
        runner.close()
        raise InvalidInput(
            f"agent {a.agent}'s key is not on this host: run it where it was spawned"
        )
    unsubscribe = rt.subscribe(on_events)
    skipped = runner.skipped()
    if not ctx.json:
        mode = "until idle" if a.until_idle else "until Ctrl-C"
        info(f"toka: runner {runner.runner_id} driving {a.agent or 'all agents'} ({mode})")
        for agent_id, why in skipped.items():
            info(f"toka: skipping {agent_id} ({why})")
    try:
        advanced = runner.run(until_idle=a.until_idle, stop_event=stop)
    finally:
        unsubscribe()
        runner.close()
        if metrics is not None:
            metrics.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    state = rt.state
    open_tasks = [
        t.id
        for t in state.tasks.values()
        if t.status in ("scheduled", "started")
        and (a.agent is None or t.agent == a.agent)
        and state.agents[t.agent].behaviour in runner.behaviours
    ]
    data = {
        "runner": runner.runner_id,
        "advanced": advanced,
        "finished": finished,
        "open": open_tasks,
        "stuck": runner.stuck,
        "skipped": {**skipped, **runner.skipped()},
        "stopped": stop.is_set(),
    }

    def human() -> str:
        lines = [
            f"runner {runner.runner_id}: {len(finished)} tasks finished, "
            f"{len(open_tasks)} still open" + (" (waiting, paused or stuck)" if open_tasks else "")
        ]
        lines += [f"  stuck {task}: {why}" for task, why in runner.stuck.items()]
        lines += [f"  skipped {agent}: {why}" for agent, why in data["skipped"].items()]
        return "\n".join(lines)

    if ctx.json:
        ctx.emit(data)
    else:
        info(human())
    return 0
