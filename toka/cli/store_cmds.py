"""``toka store check|copy`` and ``toka home export-kernel``: the log's backend, and the
secrets another host needs to join a shared log."""

from __future__ import annotations

from pathlib import Path

from toka.cli.context import Context


def register(sub, common) -> None:
    store = sub.add_parser(
        "store",
        parents=[common],
        help="the log's database: check it, copy a log between backends",
    )
    store_sub = store.add_subparsers(dest="store_command", metavar="COMMAND")
    store_sub.required = True
    p = store_sub.add_parser(
        "check",
        parents=[common],
        help="backend, server version, durability settings, writer lock, head and lag",
        description="What the log runs on: the server's version and durability settings "
        "(a server that could lose acknowledged operations is refused at start), who holds "
        "the writer lock now, the head, and how far this host is from the log.",
    )
    p.set_defaults(handler=cmd_check)
    p = store_sub.add_parser(
        "copy",
        parents=[common],
        help="copy a log verbatim into an empty store, then verify the copy",
        description="Copy every event, operation, checkpoint, snapshot and blob of SRC into "
        "the empty DST, hashes as they are, in one transaction; then verify DST with this "
        "home's kernel key. SRC and DST: a postgresql:// URL, or the path of a SQLite log "
        "(sqlite:///PATH works too). A checkpoint exported before the copy still vouches "
        "for it (toka verify --against).",
    )
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DST")
    p.add_argument("--from-schema", metavar="S", help="SRC's schema (PostgreSQL; default toka)")
    p.add_argument("--to-schema", metavar="S", help="DST's schema (PostgreSQL; default toka)")
    p.set_defaults(handler=cmd_copy)

    home = sub.add_parser("home", parents=[common], help="the home's kernel secrets")
    home_sub = home.add_subparsers(dest="home_command", metavar="COMMAND")
    home_sub.required = True
    p = home_sub.add_parser(
        "export-kernel",
        parents=[common],
        help="write the kernel secret, kernel key and operator key for another host (SECRET)",
        description="Write what another host needs to join this home's shared log with "
        "`toka init --store URL --join FILE`: the kernel secret (token MACs), the kernel "
        "key (checkpoint signatures) and the operator's key. They never go into the "
        "database. FILE is created 0600 and never written over; it is a secret: move it "
        "over a channel you trust and delete it after joining.",
    )
    p.add_argument("file", metavar="FILE")
    p.set_defaults(handler=cmd_export_kernel)


def cmd_check(ctx: Context) -> int:
    home = ctx.home
    home.require()
    rt = ctx.runtime
    log = rt.log
    report = log.server_report()
    seq, head_hash, _ = log.head()
    report.update(
        {
            "home_id": rt.state.home_id,
            "durability": rt.durability,
            "head_seq": seq,
            "head_hash": head_hash,
            "local_seq": rt.state.seq,
        }
    )
    if hasattr(log, "probe"):
        report.update(log.probe())

    def human() -> str:
        lines = [
            f"backend        {report['backend']}",
            f"location       {report['location']}",
            f"server         {report['server_version']}",
            f"durability     {report['durability']}",
        ]
        lines += [f"  {k:<26} {v}" for k, v in report["settings"].items()]
        holders = report["writer_lock"]
        lines.append(
            "writer lock    "
            + (
                "; ".join(
                    f"{h['application']} (pid {h['pid']}, {h['client']}, {h['held_s']} s)"
                    for h in holders
                )
                or "free"
            )
        )
        lines.append(f"head           {seq} {head_hash[:16]}")
        if "round_trip_ms" in report:
            lines.append(
                f"this host      round trip {report['round_trip_ms']} ms, commit notice "
                f"{report['notify_ms']} ms, clock {report['clock_offset_ms']:+} ms from the server"
            )
        return "\n".join(lines)

    ctx.emit(report, human)
    return 0


def cmd_copy(ctx: Context) -> int:
    from toka.cli.checkpoint_cmds import _progress
    from toka.core.errors import HomeError, InvalidInput
    from toka.core.log import audit
    from toka.core.log.backends import open_store
    from toka.core.log.copy import copy_log, local_blobs
    from toka.core.log.store import parse_location

    a = ctx.args
    src_spec = parse_location(a.src, a.from_schema)
    dst_spec = parse_location(a.dst, a.to_schema)
    if src_spec == dst_spec:
        raise InvalidInput("SRC and DST are the same log")
    for spec, what in ((src_spec, "SRC"), (dst_spec, "DST")):
        path = None if spec.is_postgres else _path(spec.url)
        if what == "SRC" and path is not None and not path.is_file():
            raise InvalidInput(f"SRC {path} is not a SQLite log (no such file)")
        if what == "DST" and path is not None and not path.parent.is_dir():
            raise InvalidInput(f"DST {path}: the directory {path.parent} does not exist")
    home = ctx.home
    public_key = home.kernel_public_key() if home.exists() else None
    src = open_store(src_spec, readonly=True)
    try:
        home_id = src.meta("home_id")
        if public_key is None or not home.exists():
            raise HomeError(
                "verifying the copy needs the kernel key of the log's home: run this on a "
                "host of that home (--home DIR)"
            )
        local = home.open_store(readonly=True)
        try:
            if local.meta("home_id") != home_id:
                raise HomeError(
                    f"SRC is the log of home {home_id}, not of {home.root}: run this "
                    "with --home of a host of that home"
                )
        finally:
            local.close()
        dst = open_store(dst_spec)
        try:
            blobs = {
                "src_blobs": None if src_spec.is_postgres else local_blobs(_path(src_spec.url)),
                "dst_blobs": None if dst_spec.is_postgres else local_blobs(_path(dst_spec.url)),
            }
            with _progress("copying") as progress:
                counts = copy_log(src, dst, progress=progress, **blobs)
            with dst.read(), _progress("verifying the copy") as progress:
                result = audit.verify_log(
                    dst,
                    public_key,
                    progress=progress,
                    decisions=True,
                    checkpoint_interval=home.config().checkpoint_interval,
                )
        finally:
            dst.close()
    finally:
        src.close()
    data = {"src": src.location, "dst": dst.location, "copied": counts, "verify": result}
    ctx.emit(
        data,
        lambda: (
            f"copied {counts['events']} events, {counts['operations']} operations, "
            f"{counts['checkpoints']} checkpoints, {counts['snapshots']} snapshots and "
            f"{counts['blobs']} blobs\n  from {src.location}\n  to   {dst.location}\n"
            f"the copy verifies: chain, checkpoints and decisions up to seq {counts['events']}"
        ),
    )
    return 0


def _path(url: str) -> Path:
    return Path(url.removeprefix("sqlite://"))


def cmd_export_kernel(ctx: Context) -> int:
    from toka.cli.output import info
    from toka.core.runtime.kernel_bundle import export_kernel

    path = Path(ctx.args.file)
    bundle = export_kernel(ctx.home, path)
    if not ctx.json:
        info(
            f"toka: {path} holds this home's kernel secret, kernel key and operator key. "
            "It is a SECRET: move it only over a channel you trust and delete it after "
            "`toka init --store URL --join FILE` on the other host."
        )
    ctx.emit({"file": str(path), "home_id": bundle.home_id}, f"wrote {path} (0600)")
    return 0
