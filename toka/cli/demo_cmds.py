"""``toka demo``: seed a realistic scenario, or stream a paced synthetic load."""

from __future__ import annotations

from toka.cli.context import Context


def register(sub, common) -> None:
    p = sub.add_parser(
        "demo",
        parents=[common],
        help="seed demo agents, grants, tasks and observations (or --load a workload)",
        description="Without --load: seed one batch of a scenario (planner, supervisor, echo "
        "agents; a budgeted grant; completed and failed tasks; observations; a revoked "
        "grant; a paused agent). Running it again adds another batch. With --load RATE: "
        "stream signed operations at RATE per second for --seconds.",
    )
    p.add_argument("--load", type=float, metavar="RATE", help="operations per second to stream")
    p.add_argument("--seconds", type=float, help="how long to stream (default 10)")
    p.set_defaults(handler=cmd_demo)


def cmd_demo(ctx: Context) -> int:
    import msgspec

    from toka.core import demo
    from toka.core.errors import InvalidInput

    ctx.home.require()
    if ctx.args.load is None and ctx.args.seconds is not None:
        raise InvalidInput("--seconds applies to --load RATE: give both, or neither")
    if ctx.args.load is not None:
        seconds = 10.0 if ctx.args.seconds is None else ctx.args.seconds
        load = demo.stream_load(ctx.runtime, ctx.args.load, seconds)
        ctx.emit(
            msgspec.to_builtins(load),
            f"sent {load.sent} ops in {load.seconds:.1f} s: {load.achieved_rate:.0f} ops/s "
            f"(target {load.target_rate:g}), {load.applied} applied, {load.refused} refused, "
            f"seq {load.first_seq}-{load.last_seq}",
        )
        return 0
    summary = demo.seed(ctx.runtime)

    def human() -> str:
        a = summary.agents
        return "\n".join(
            [
                f"seeded the demo at seq {summary.first_seq}-{summary.last_seq}",
                f"  planner     {a['planner']}  (budgeted grant {summary.grants['planner_budget']})",
                f"  supervisor  {a['supervisor']}",
                f"  echo        {a['echo']}",
                f"  scratch     {a['scratch']}  (paused; grant {summary.grants['revoked']} revoked)",
                "  and herald (echo), analyst, cautious, frugal (planner), foreman (supervisor):",
                "  queued work for a runner; one tool call waits for your approval",
                "next: toka tui (it runs the agents), or toka run --until-idle; "
                "toka approvals list",
            ]
        )

    ctx.emit(msgspec.to_builtins(summary), human)
    return 0
