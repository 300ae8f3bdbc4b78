"""``toka mount add|list|remove``, ``toka net allow|list|revoke``, ``toka secret set|list|remove``."""

from __future__ import annotations

import sys

from toka.cli.context import Context


def register(sub, common) -> None:
    mount = sub.add_parser("mount", help="lend host directories to file tools, by name")
    m = mount.add_subparsers(dest="mount_command", metavar="ACTION", required=True)
    p = m.add_parser("add", parents=[common], help="mount a directory (a signed fs.mount)")
    p.add_argument("name", help="the mount's name: a-z, then a-z 0-9 _ - (used in capabilities)")
    p.add_argument("directory", help="an existing directory on this host")
    p.add_argument("--mode", choices=["ro", "rw"], default="ro", help="read-only (default) or rw")
    p.set_defaults(handler=cmd_mount_add)
    p = m.add_parser("list", parents=[common], help="list mounts")
    p.set_defaults(handler=cmd_mount_list)
    p = m.add_parser("remove", parents=[common], help="remove a mount (the files stay)")
    p.add_argument("name")
    p.set_defaults(handler=cmd_mount_remove)

    net = sub.add_parser("net", help="let http-fetch reach private hosts, one host:port each")
    n = net.add_subparsers(dest="net_command", metavar="ACTION", required=True)
    p = n.add_parser("allow", parents=[common], help="allow HOST:PORT (a signed net.allow)")
    p.add_argument("address", metavar="HOST:PORT", help="e.g. 127.0.0.1:8080 or [::1]:80")
    p.set_defaults(handler=cmd_net_allow)
    p = n.add_parser("list", parents=[common], help="list allowed private hosts")
    p.set_defaults(handler=cmd_net_list)
    p = n.add_parser("revoke", parents=[common], help="allow HOST:PORT no longer")
    p.add_argument("address", metavar="HOST:PORT")
    p.set_defaults(handler=cmd_net_revoke)

    secret = sub.add_parser("secret", help="values tools may send but the log never holds")
    s = secret.add_subparsers(dest="secret_command", metavar="ACTION", required=True)
    p = s.add_parser("set", parents=[common], help="store a secret read from stdin (one line)")
    p.add_argument("name")
    p.set_defaults(handler=cmd_secret_set)
    p = s.add_parser("list", parents=[common], help="list secret names (never values)")
    p.set_defaults(handler=cmd_secret_list)
    p = s.add_parser("remove", parents=[common], help="delete a secret")
    p.add_argument("name")
    p.set_defaults(handler=cmd_secret_remove)


def cmd_mount_add(ctx: Context) -> int:
    from pathlib import Path

    from toka.core.errors import InvalidInput
    from toka.core.model import ops

    a = ctx.args
    directory = Path(a.directory).expanduser()
    if not directory.is_dir():
        raise InvalidInput(f"{a.directory}: not a directory")
    # The mount names the real directory: a link on the way is resolved once, here, by
    # the operator; after that the root itself is never followed if it becomes a link.
    path = str(directory.resolve())
    outcome = ctx.client.submit(ops.AddMount(a.name, path, a.mode))
    ctx.emit(
        {"name": a.name, "path": path, "mode": a.mode, "seq": outcome.last_seq},
        f"mounted {path} as {a.name} ({a.mode}) at seq {outcome.last_seq}",
    )
    return 0


def cmd_mount_list(ctx: Context) -> int:
    import msgspec

    from toka.cli.output import fmt_s, table_or

    mounts = list(ctx.runtime.state.mount_table().values())
    ctx.emit(
        {"mounts": [msgspec.to_builtins(m) for m in mounts]},
        lambda: table_or(
            ["name", "mode", "path", "added by", "added"],
            [[m.name, m.mode, m.path, m.added_by, fmt_s(m.added_ms // 1000)] for m in mounts],
            "no mounts (toka mount add NAME DIR --mode ro|rw)",
        ),
    )
    return 0


def cmd_mount_remove(ctx: Context) -> int:
    from toka.core.model import ops

    outcome = ctx.client.submit(ops.RemoveMount(ctx.args.name))
    ctx.emit(
        {"name": ctx.args.name, "seq": outcome.last_seq},
        f"removed mount {ctx.args.name} at seq {outcome.last_seq} (its files are untouched)",
    )
    return 0


def _address(text: str) -> tuple[str, int]:
    from toka.core.errors import InvalidInput, TokaError
    from toka.core.model import places

    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdecimal():
        raise InvalidInput(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8080, [::1]:80)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return places.canonical_host(host), int(port)
    except TokaError as exc:
        raise InvalidInput(f"{text!r}: {exc.message}") from None


def cmd_net_allow(ctx: Context) -> int:
    from toka.core.kernel.places import host_key
    from toka.core.model import ops

    host, port = _address(ctx.args.address)
    outcome = ctx.client.submit(ops.AllowHost(host, port))
    ctx.emit(
        {"host": host, "port": port, "seq": outcome.last_seq},
        f"allowed {host_key(host, port)} at seq {outcome.last_seq}",
    )
    return 0


def cmd_net_list(ctx: Context) -> int:
    import msgspec

    from toka.cli.output import fmt_s, table_or
    from toka.core.kernel.places import host_key

    hosts = list(ctx.runtime.state.host_table().values())
    ctx.emit(
        {"hosts": [msgspec.to_builtins(h) for h in hosts]},
        lambda: table_or(
            ["host", "added by", "added"],
            [[host_key(h.host, h.port), h.added_by, fmt_s(h.added_ms // 1000)] for h in hosts],
            "no private hosts allowed (toka net allow HOST:PORT)",
        ),
    )
    return 0


def cmd_net_revoke(ctx: Context) -> int:
    from toka.core.kernel.places import host_key
    from toka.core.model import ops

    host, port = _address(ctx.args.address)
    outcome = ctx.client.submit(ops.RevokeHost(host, port))
    ctx.emit(
        {"host": host, "port": port, "seq": outcome.last_seq},
        f"{host_key(host, port)} is no longer allowed (seq {outcome.last_seq})",
    )
    return 0


def cmd_secret_set(ctx: Context) -> int:
    from toka.core.errors import InvalidInput

    if sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"value of secret {ctx.args.name}: ").encode()
    else:
        value = sys.stdin.buffer.read(64 * 1024 + 1)
        if len(value) > 64 * 1024:
            raise InvalidInput("the secret's value is over 64 KiB")
    ctx.home.require()
    ctx.home.secrets.set(ctx.args.name, value)
    ctx.emit({"name": ctx.args.name}, f"secret {ctx.args.name} stored (0600)")
    return 0


def cmd_secret_list(ctx: Context) -> int:
    ctx.home.require()
    names = ctx.home.secrets.names()
    ctx.emit({"secrets": names}, "\n".join(names) if names else "no secrets")
    return 0


def cmd_secret_remove(ctx: Context) -> int:
    ctx.home.require()
    ctx.home.secrets.remove(ctx.args.name)
    ctx.emit({"name": ctx.args.name}, f"secret {ctx.args.name} removed")
    return 0
