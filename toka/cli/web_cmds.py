"""``toka web``: the operator console in a browser, behind a per-start token.

aiohttp and textual-serve are imported only inside the handler (the ``web`` extra).
"""

from __future__ import annotations

import argparse
import os

from toka.cli.context import Context

DEFAULT_PORT = 8765
DEFAULT_MAX_SESSIONS = 4
# What a console child keeps of the server's TOKA_* variables: the log it opens, and with
# --runner what its LLM behaviour reads. Never a token or a key file.
CHILD_KEEPS = ("TOKA_STORE", "TOKA_STORE_SCHEMA")
RUNNER_KEEPS_PREFIX = "TOKA_LLM_"


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535 (0: any free port), not {port}")
    return port


def session_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of sessions: {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"at least one session, not {count}")
    return count


def register(sub, common) -> None:
    p = sub.add_parser(
        "web",
        parents=[common],
        help="serve the operator console to a browser (token-gated, loopback only by default)",
        description="Serve `toka tui` to a browser. Each browser tab is its own console "
        "process, signing as --as (default: operator). Open the URL printed at start: its "
        "token (new at every start) becomes a cookie. To reach it from elsewhere, forward the port "
        "(ssh -L 8765:127.0.0.1:8765 HOST) or put a TLS proxy with a host name of its own "
        "in front and pass --public-url https://NAME.",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; any other exposes the console: "
        "prefer ssh forwarding or a TLS proxy)",
    )
    p.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"port to listen on (default {DEFAULT_PORT}; 0: any free port)",
    )
    p.add_argument(
        "--public-url",
        metavar="URL",
        help="the address browsers use, when a proxy is in front (https://console.example.com): "
        "the only origin the websocket accepts",
    )
    p.add_argument(
        "--max-sessions",
        type=session_count,
        default=DEFAULT_MAX_SESSIONS,
        metavar="N",
        help=f"browser sessions open at once, each a process (default {DEFAULT_MAX_SESSIONS})",
    )
    p.add_argument(
        "--runner",
        action="store_true",
        help="let each session drive agents too (by default they do not: run `toka run` once)",
    )
    p.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="also serve Prometheus metrics counted from the log (as `toka metrics serve`; "
        "loopback unless told otherwise)",
    )
    p.set_defaults(handler=cmd_web)


def child_command(ctx: Context, python: str) -> str:
    """The shell command of one console session (textual-serve runs a shell string)."""
    import shlex

    args = ctx.args
    words = [python, "-m", "toka", "--home", str(ctx.home.root), "--as", ctx.principal]
    if args.store:
        words += ["--store", args.store]
    if args.durability:
        words += ["--durability", args.durability]
    words.append("tui")
    if not args.runner:
        words.append("--no-runner")
    return shlex.join(words)


def child_environment(environ: dict[str, str], *, runner: bool) -> dict[str, str]:
    """The server's environment without Toka's credentials (TOKA_TOKEN, TOKA_KEY, ...):
    a session signs with the keystore's key for ``--as`` and nothing else."""

    def kept(name: str) -> bool:
        if not name.startswith("TOKA_"):
            return True
        return name in CHILD_KEEPS or (runner and name.startswith(RUNNER_KEEPS_PREFIX))

    return {k: v for k, v in environ.items() if kept(k)}


def cmd_web(ctx: Context) -> int:
    import sys

    from toka.cli import output
    from toka.cli.tui_cmds import open_home
    from toka.core.endpoints import is_loopback, listening_socket
    from toka.core.errors import InvalidInput, MissingExtra, NotFound

    try:
        from toka.web import address, gate, server
    except ImportError as exc:
        raise MissingExtra(
            f"toka web needs textual-serve ({exc.name} is missing): pip install 'toka[web]'"
        ) from None

    args = ctx.args
    public = address.parse_public_url(args.public_url) if args.public_url else None
    wildcard = args.host in ("0.0.0.0", "::", "")
    if wildcard and public is None:
        raise InvalidInput(
            f"--host {args.host!r} listens on every address: give --public-url with the "
            "address browsers use, so their Host and Origin can be checked"
        )
    open_home(ctx)
    principal = ctx.principal
    if not ctx.home.keystore.has(principal):
        raise NotFound(
            f"no private key for {principal!r} in this home: browser sessions would have "
            "nothing to sign with (--as names a principal of this home)"
        )
    sock = listening_socket(args.host, args.port)
    port = sock.getsockname()[1]
    bound = address.bound_address(args.host, port)
    public = public or bound
    console = server.WebConsole(
        command=child_command(ctx, sys.executable),
        environment=child_environment(dict(os.environ), runner=args.runner),
        gate=gate.Gate(gate.new_token(), public, {bound.host}),
        principal=principal,
        max_sessions=args.max_sessions,
    )
    metrics = None
    if args.metrics:
        from toka.core.metrics import start_metrics_server

        metrics = start_metrics_server(ctx.home, args.metrics)
        if metrics.warning:
            output.info(metrics.warning)
        output.info(f"toka web: metrics at {metrics.url}")
    url = f"{public.origin}/?token={console.gate.token}"
    if not is_loopback(args.host):
        output.info(
            f"warning: listening on {args.host}: the console, which signs as {principal}, is "
            "reachable from the network and only the token stands in the way. Prefer "
            f"`ssh -L {port}:127.0.0.1:{port} HOST` to a loopback console, or a TLS proxy "
            "on a host name of its own with --public-url https://NAME."
        )
    if not public.secure and not is_loopback(args.host):
        output.info(
            "warning: plain http off this host: the token and cookie cross the network in clear"
        )
    output.info(
        f"toka web: browser sessions sign as {principal}"
        + (" and drive agents (--runner)" if args.runner else "")
        + f"; at most {args.max_sessions} at once. Open this URL (once; it sets a cookie):"
    )
    ctx.emit({"url": url, "origin": public.origin, "principal": principal}, url)
    sys.stdout.flush()
    # The server's own Runtime (if it made the home) is not needed while serving.
    ctx.close()
    server.configure_logging(sys.stderr)
    try:
        server.serve(console, sock)
    finally:
        if metrics is not None:
            metrics.close()
    return 0
