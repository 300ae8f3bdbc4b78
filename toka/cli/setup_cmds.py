"""``toka init``, ``toka info`` and ``toka gc``."""

from __future__ import annotations

from toka.cli.context import Context


def register(sub, common) -> None:
    p = sub.add_parser(
        "init",
        parents=[common],
        help="create the Toka home (safe to re-run)",
        description="Create the Toka home: kernel secret, kernel key, operator key, config "
        "and the log's genesis. With --store postgresql://..., the log goes into that "
        "database (schema --schema) and the config keeps the URL (never a password: libpq "
        "reads ~/.pgpass, PGPASSFILE, PGPASSWORD, a service file or a client certificate). "
        "With --join FILE (from `toka home export-kernel` on a host of that log), this new "
        "home joins an existing shared log instead.",
    )
    p.add_argument("--schema", metavar="S", help="the PostgreSQL schema of the log (default toka)")
    p.add_argument(
        "--join",
        metavar="FILE",
        help="join the existing log at --store with the kernel bundle FILE",
    )
    p.set_defaults(handler=cmd_init)
    p = sub.add_parser("info", parents=[common], help="show the home, the log head and identities")
    p.set_defaults(handler=cmd_info)
    p = sub.add_parser(
        "gc",
        parents=[common],
        help="list blobs, compiled modules and staged copies nothing needs (--delete removes them)",
        description="Unreferenced module blobs, stale compiled modules and leftovers of "
        "interrupted writes under the home. A dry run unless --delete is given; the log "
        "is never touched.",
    )
    p.add_argument("--delete", action="store_true", help="remove what is listed")
    p.set_defaults(handler=cmd_gc)


def cmd_init(ctx: Context) -> int:
    from pathlib import Path

    from toka.cli.output import info
    from toka.core.errors import InvalidInput
    from toka.core.log.store import parse_location
    from toka.core.runtime.client import Client
    from toka.core.runtime.kernel_bundle import join
    from toka.core.tools import register_builtins

    a = ctx.args
    home = ctx.home
    store = parse_location(a.store, a.schema) if a.store else None
    if store is None and (a.schema or a.join):
        raise InvalidInput(f"--{'schema' if a.schema else 'join'} needs --store URL")
    if a.join:
        if store is None or not store.is_postgres:
            raise InvalidInput("--join needs --store postgresql://... (the shared log)")
        join(home, Path(a.join), store)
        created = True
    else:
        created = home.init(store=store)
    runtime = ctx.runtime
    # The built-in tools are registered by signed operations of the operator.
    tools_registered = register_builtins(Client(runtime))
    data = {
        "created": created,
        "home": str(home.root),
        "home_id": runtime.state.home_id,
        "operator": "operator",
        "operator_key": runtime.state.principals["operator"],
        "head_seq": runtime.state.seq,
        "token_file": str(home.token_path),
        "store": home.store_location(),
        "joined": bool(a.join),
        "tools_registered": tools_registered,
    }
    if not created and not tools_registered:
        info(f"toka: {home.root} is already initialized; nothing changed")
    ctx.emit(
        data,
        lambda: (
            f"{'joined' if a.join else 'initialized'} Toka home {home.root}\n"
            f"  home id       {data['home_id']}\n"
            f"  log           {data['store']}\n"
            f"  operator key  {data['operator_key']}\n"
            f"  root token    {home.token_path}\n"
            f"  tools         {', '.join(tools_registered) or '-'}\n"
            "next: toka agent spawn NAME"
            if created
            else ""
        ),
    )
    return 0


def cmd_info(ctx: Context) -> int:
    from toka import __version__
    from toka.cli.output import info
    from toka.core.model.keys import thumbprint
    from toka.core.runtime.home import wider_than_private

    home = ctx.home
    home.require()
    rt = ctx.runtime
    seq, head_hash, _ = rt.log.head()
    st = rt.state
    data = {
        "version": __version__,
        "home": str(home.root),
        "home_id": st.home_id,
        "db": None if home.store_spec().is_postgres else str(home.db_path),
        "store": home.store_location(),
        "durability": rt.durability,
        "head_seq": seq,
        "head_hash": head_hash,
        "state_hash": st.state_hash(),
        "operator_key": st.principals.get("operator"),
        "operator_thumbprint": thumbprint(st.principals["operator"]),
        "principal": ctx.principal,
        "agents": len(st.agents),
        "agents_running": sum(1 for a in st.agents.values() if a.status == "running"),
        "tasks_open": sum(1 for t in st.tasks.values() if t.status in ("scheduled", "started")),
        "grants_active": len(
            [g for g in st.grants.values() if not g.revoked and g.exp * 1000 > rt.now_ms()]
        ),
        "tools": sum(len(v) for v in st.tools.values()),
        "not_private": [str(p) for p in wider_than_private(home.root)],
    }
    if data["not_private"] and not ctx.json:
        info(
            "toka: warning: other users may read or change these (make directories 0700 "
            "and files 0600): " + ", ".join(data["not_private"])
        )

    def human() -> str:
        shown = {k: v for k, v in data.items() if k != "not_private"}
        width = max(len(k) for k in shown)
        return "\n".join(f"{k.replace('_', ' '):<{width}}  {v}" for k, v in shown.items())

    ctx.emit(data, human)
    return 0


def cmd_gc(ctx: Context) -> int:
    from toka.cli.output import table_or
    from toka.core.tools.gc import collect

    ctx.home.require()
    found = collect(ctx.runtime, delete=ctx.args.delete)
    total = sum(g.size for g in found)
    data = {
        "deleted": ctx.args.delete,
        "garbage": [{"path": g.path, "kind": g.kind, "bytes": g.size, "why": g.why} for g in found],
        "bytes": total,
    }

    def human() -> str:
        if not found:
            return "nothing to collect"
        rows = [[g.kind, g.size, g.path, g.why] for g in found]
        listing = table_or(["kind", "bytes", "path", "why"], rows, "")
        verdict = (
            f"removed {len(found)} files, {total} bytes"
            if ctx.args.delete
            else f"{len(found)} files, {total} bytes: a dry run, `toka gc --delete` removes them"
        )
        return f"{listing}\n{verdict}"

    ctx.emit(data, human)
    return 0
