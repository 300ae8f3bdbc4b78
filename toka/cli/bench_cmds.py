"""``toka bench ...``: measurements on a scratch home (never the user's)."""

from __future__ import annotations

from toka.cli.context import Context


def register(sub, common) -> None:
    bench = sub.add_parser("bench", help="measure Toka on a scratch home")
    b = bench.add_subparsers(dest="bench_command", metavar="BENCH", required=True)

    p = b.add_parser(
        "tool",
        parents=[common],
        help="per-call cost of a trivial WASM tool: raw sandbox call and full signed+logged invocation",
    )
    p.add_argument("--calls", type=int, default=1000, help="measured calls of each kind")
    p.add_argument("--warmup", type=int, default=50, help="unmeasured calls first")
    p.set_defaults(handler=cmd_bench_tool)

    p = b.add_parser(
        "kernel",
        parents=[common],
        help="signed, checked, durable operations/s from several submitters, then from 1",
    )
    p.add_argument("--ops", type=int, default=20_000, help="operations per run (default 20000)")
    p.add_argument("--submitters", type=int, default=4, help="concurrent submitters (default 4)")
    p.add_argument(
        "--window",
        type=int,
        default=8,
        help="operations each submitter keeps in flight in the first run (default 8)",
    )
    p.add_argument(
        "--vs-eventsourcing",
        action="store_true",
        help="also run the same count of spawn/schedule commands on the eventsourcing "
        "library (SQLite, no authentication) and measure Ed25519 verification; "
        "needs pip install 'toka[bench]'",
    )
    p.set_defaults(handler=cmd_bench_kernel)

    p = b.add_parser(
        "replay",
        parents=[common],
        help="rebuild from genesis of a large log, against a raw scan of its rows",
    )
    p.add_argument("--events", type=int, default=200_000, help="log size to build (default 200000)")
    p.set_defaults(handler=cmd_bench_replay)

    p = b.add_parser(
        "verify",
        parents=[common],
        help="toka verify on a large log: by default, --quick, and each with --signatures",
    )
    p.add_argument("--events", type=int, default=200_000, help="log size to build (default 200000)")
    p.set_defaults(handler=cmd_bench_verify)

    p = b.add_parser(
        "cli",
        parents=[common],
        help="wall time of read-only commands (agent list, task list, events list) "
        "in fresh processes, against python -c pass and toka --version",
    )
    p.add_argument("--events", type=int, default=100_000, help="log size to build (default 100000)")
    p.add_argument("--runs", type=int, default=5, help="timed runs of each command (default 5)")
    p.set_defaults(handler=cmd_bench_cli)

    p = b.add_parser(
        "tui",
        parents=[common],
        help="the console's key-to-screen latency, idle and under a stream of events",
    )
    p.add_argument("--presses", type=int, default=40, help="key presses per run (default 40)")
    p.add_argument("--rate", type=float, default=1500.0, help="load events/s (default 1500)")
    p.add_argument("--seconds", type=float, default=10.0, help="load duration (default 10)")
    p.set_defaults(handler=cmd_bench_tui)


def cmd_bench_tui(ctx: Context) -> int:
    from toka.tui.bench import bench_tui

    a = ctx.args
    data = bench_tui(a.presses, a.rate, a.seconds, _bench_progress(ctx))
    idle, load = data["idle"], data["load"]
    ctx.emit(
        data,
        lambda: (
            f"idle   p50 {idle['p50_ms']:.1f} ms  p95 {idle['p95_ms']:.1f} ms  "
            f"max {idle['max_ms']:.1f} ms  ({idle['presses']} keys)\n"
            f"load   p50 {load['p50_ms']:.1f} ms  p95 {load['p95_ms']:.1f} ms  "
            f"max {load['max_ms']:.1f} ms  ({load['presses']} keys, "
            f"{load['events_per_s']:.0f} events/s, Events pane {load['events_pane_rows']} rows)"
        ),
    )
    return 0


def _bench_progress(ctx: Context):
    """Phase notices on stderr when it is a terminal (stdout stays one JSON document)."""
    import sys

    if not sys.stderr.isatty():
        return None
    from toka.cli.output import info

    return lambda message: info(f"toka bench: {message}")


def cmd_bench_kernel(ctx: Context) -> int:
    from toka.core.bench import bench_kernel

    a = ctx.args
    progress = _bench_progress(ctx)
    if a.vs_eventsourcing:
        from toka.core.bench.peer import _peer_model

        _peer_model()  # MissingExtra before minutes of Toka's runs, not after
    data = bench_kernel(a.ops, a.submitters, a.durability or "full", a.window, progress, a.store)
    if a.vs_eventsourcing:
        from toka.core.bench.peer import vs_eventsourcing

        if progress:
            progress(f"eventsourcing peer: {a.ops} ops, {a.submitters} threads, then 1")
        data["vs_eventsourcing"] = vs_eventsourcing(data, a.ops, a.submitters)
    n = data["submitters"]

    def line(label: str, prefix: str) -> str:
        return (
            f"{label:<38} {data[prefix + 'ops_per_s']:>6.0f} ops/s  "
            f"p50 {data[prefix + 'p50_ms']:.2f} ms  p99 {data[prefix + 'p99_ms']:.2f} ms"
        )

    ctx.emit(
        data,
        lambda: "\n".join(
            [
                line(f"{n} submitters, {data['window']} in flight each", ""),
                line(f"{n} submitters, waiting for each outcome", "sync_"),
                line("1 submitter, waiting for each outcome", "single_"),
                f"({data['ops']} signed, capability-checked operations per run, "
                f"durability {data['durability']}, log on {data['store']})",
                *(_peer_lines(data) if "vs_eventsourcing" in data else []),
            ]
        ),
    )
    return 0


def _peer_lines(data: dict) -> list[str]:
    vs = data["vs_eventsourcing"]
    peer, ed, r, commits = vs["eventsourcing"], vs["ed25519"], vs["ratios"], vs["commits"]
    n, sq = peer["submitters"], peer["sqlite"]
    toka_sq = vs["toka_sqlite"]
    return [
        f"eventsourcing {peer['version']} (SQLite, aggregate cache, no authentication):",
        f"  {n} threads, each waiting for its commit  {peer['multi']['ops_per_s']:>6.0f} ops/s",
        f"  1 client, waiting for each commit      {peer['single']['ops_per_s']:>6.0f} ops/s",
        f"  ({peer['multi']['ops']} and {peer['single']['ops']} spawn/schedule commands; "
        f"journal_mode={sq['journal_mode']} synchronous={sq['synchronous']}, read from its "
        "connection; Toka: "
        + (
            f"journal_mode={toka_sq['journal_mode']} synchronous={toka_sq['synchronous']}"
            if toka_sq
            else data["store"]
        )
        + ("" if vs["durability_comparable"] else "; NOT the same durability")
        + ")",
        f"Toka/eventsourcing: {r['toka_vs_peer_submitters']:.2f}x with {n} submitters "
        f"({r['toka_sync_vs_peer_submitters']:.2f}x with each waiting), "
        f"{r['toka_vs_peer_single']:.2f}x for 1 waiting client",
        f"Ed25519 verification, {ed['threads']} threads (libsodium): "
        f"{ed['verify_per_s']:.0f}/s; Toka's {data['ops_per_s']:.0f} ops/s is "
        f"{r['toka_of_ed25519']:.1%} of it",
        f"Durable commits on this disk (SQLite WAL, synchronous=FULL, 1 row each): "
        f"{commits['commits_per_s']:.0f}/s, the most one waiting client can reach; "
        f"Toka's is {r['toka_single_of_commits']:.1%} of it, eventsourcing's "
        f"{r['peer_single_of_commits']:.1%}",
    ]


def cmd_bench_replay(ctx: Context) -> int:
    from toka.core.bench import bench_replay

    data = bench_replay(ctx.args.events, _bench_progress(ctx), ctx.args.store)
    ctx.emit(
        data,
        lambda: (
            f"replay {data['events']} events from genesis ({data['store']}): "
            f"{data['events_per_s']:.0f} events/s\n"
            f"raw scan of the same rows: {data['raw_scan_rows_per_s']:.0f} rows/s "
            f"(replay runs at {data['ratio']:.2f} of it)"
        ),
    )
    return 0


def cmd_bench_cli(ctx: Context) -> int:
    from toka.core.bench.cli import bench_cli

    data = bench_cli(ctx.args.events, ctx.args.runs, _bench_progress(ctx), ctx.args.store)

    def lines() -> str:
        out = [
            f"{label:<30} median {c['median_ms']:>7.1f} ms  min {c['min_ms']:>7.1f} ms"
            + ("" if not any(c["exit_codes"]) else f"  EXIT {c['exit_codes']}")
            for label, c in data["commands"].items()
        ]
        b = data["breakdown_ms"]
        out.append(
            f"({data['events']} events, {data['store']}, {data['runs']} runs each; "
            f"interpreter {b['interpreter_start']:.0f} ms, CLI import {b['cli_import_and_parser']:.0f} ms, "
            f"agent list beyond --version {b['agent_list_beyond_version']:.0f} ms)"
        )
        imports = data["importtime"]
        out.append(f"imports of one agent list: {imports['total_self_ms']:.0f} ms; top cumulative:")
        out += [
            f"  {m['cumulative_ms']:>7.1f} ms  {m['module']}" for m in imports["top_cumulative"]
        ]
        return "\n".join(out)

    ctx.emit(data, lines)
    failed = any(any(c["exit_codes"]) for c in data["commands"].values())
    return 1 if failed else 0


def cmd_bench_verify(ctx: Context) -> int:
    from toka.core.bench import bench_verify

    data = bench_verify(ctx.args.events, _bench_progress(ctx))
    s = data["seconds"]
    ctx.emit(
        data,
        lambda: (
            f"verify {data['events']} events: {s['default']:.2f} s "
            f"(every operation decided again), --quick {s['quick']:.2f} s\n"
            f"with --signatures: {s['default_signatures']:.2f} s, "
            f"--quick {s['quick_signatures']:.2f} s"
        ),
    )
    return 0


def _mcp_lines(mcp: dict) -> str:
    if "skipped" in mcp:
        return f"mcp            skipped: {mcp['skipped']}"
    toka, raw = mcp["toka"], mcp["raw_sdk"]
    return (
        f"mcp via toka   p50 {toka['p50_ms']:.3f} ms  p99 {toka['p99_ms']:.3f} ms  "
        f"{toka['calls_per_s']:.0f} calls/s  (pin checked, intent and outcome logged)\n"
        f"mcp raw SDK    p50 {raw['p50_ms']:.3f} ms  p99 {raw['p99_ms']:.3f} ms  "
        f"{raw['calls_per_s']:.0f} calls/s  (the same server, the SDK's Client alone)"
    )


def cmd_bench_tool(ctx: Context) -> int:
    from toka.core.bench.tool import bench_tool

    a = ctx.args
    data = bench_tool(a.calls, a.warmup, a.durability)
    sandbox, invocation = data, data["invocation"]
    durability = invocation["durability"]
    ctx.emit(
        data,
        lambda: (
            f"sandbox call   p50 {sandbox['p50_ms']:.3f} ms  p99 {sandbox['p99_ms']:.3f} ms  "
            f"{sandbox['calls_per_s']:.0f} calls/s\n"
            f"invocation     p50 {invocation['p50_ms']:.3f} ms  p99 {invocation['p99_ms']:.3f} ms  "
            f"{invocation['calls_per_s']:.0f} calls/s  (signed, checked, logged; "
            f"durability {durability})\n"
            + "".join(
                f"{label:<15}p50 {data[key]['p50_ms']:.3f} ms  p99 {data[key]['p99_ms']:.3f} ms  "
                f"{data[key]['calls_per_s']:.0f} calls/s  (intent and outcome logged)\n"
                for label, key in (("fs-read 1 MiB", "fs_read_1mib"), ("http-fetch", "http_fetch"))
            )
            + _mcp_lines(data["mcp"])
        ),
    )
    return 0
