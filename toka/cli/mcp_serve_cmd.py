"""``toka mcp serve``: the tools a principal may call, served to any MCP host.

stdout belongs to the MCP protocol on stdio: everything this command says goes to
stderr, and it never uses ``--json`` output.
"""

from __future__ import annotations

from toka.cli.context import Context

DEFAULT_HOST = "127.0.0.1"


def add_serve_parser(subparsers, common) -> None:
    """Add ``serve`` to the ``toka mcp`` subcommands."""
    p = subparsers.add_parser(
        "serve",
        parents=[common],
        help="serve the tools a principal may call to an MCP host (stdio, or --http)",
        description=(
            "Serve Toka's tools to an MCP host as one principal (--as, default operator; "
            "TOKA_TOKEN and TOKA_KEY apply as to every command). tools/list shows the "
            "tools its grants cover; every tools/call is a signed tool.invoke by it. "
            "Speaks MCP on stdin/stdout unless --http is given; logs go to stderr."
        ),
    )
    p.add_argument(
        "--http",
        metavar="[HOST:]PORT",
        help=f"serve streamable HTTP at http://HOST:PORT/mcp instead (HOST default {DEFAULT_HOST}; "
        "PORT 0 picks a free one). Every request must carry the bearer token",
    )
    p.add_argument(
        "--token-file",
        metavar="FILE",
        help="with --http: read the bearer token from FILE (default: $TOKA_MCP_TOKEN, "
        "else a new random token, shown once on stderr)",
    )
    p.set_defaults(handler=cmd_serve)


def parse_address(text: str) -> tuple[str, int]:
    """``PORT``, ``:PORT``, ``HOST:PORT`` or ``[IPV6]:PORT`` as ``(host, port)``."""
    from toka.core.endpoints import parse_host_port

    return parse_host_port(text, "--http", default_host=DEFAULT_HOST)


def cmd_serve(ctx: Context) -> int:
    import logging
    import sys

    from toka.cli.output import info
    from toka.core import gateway
    from toka.core.errors import InvalidInput

    a = ctx.args
    if ctx.json:
        raise InvalidInput("toka mcp serve writes only MCP to stdout: --json does not apply")
    if a.token_file is not None and a.http is None:
        raise InvalidInput("--token-file applies only with --http")
    address = parse_address(a.http) if a.http is not None else None
    gateway.require_sdk()
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING,
        format="toka mcp serve: %(levelname)s %(name)s: %(message)s",
    )
    served = gateway.Gateway(ctx.client)
    served.check()
    if address is None:
        info(f"toka mcp serve: serving the tools {served.principal} may call, over stdio")
        gateway.serve_stdio(served)
        return 0
    return _serve_http(served, address, a.token_file)


def _serve_http(served, address: tuple[str, int], token_file: str | None) -> int:
    import os
    import signal

    from toka.cli.output import info
    from toka.core import gateway
    from toka.core.gateway.bearer import ENV_VAR, bearer_token

    token = bearer_token(token_file, os.environ.get(ENV_VAR))

    def ready(url: str) -> None:
        info(f"toka mcp serve: serving the tools {served.principal} may call at {url}")
        if token.generated:
            info(f"toka mcp serve: bearer token (this start only): {token.value}")
        else:
            info(f"toka mcp serve: bearer token from {token_file or '$' + ENV_VAR}")

    def stop(signum, frame) -> None:
        raise KeyboardInterrupt

    # uvicorn shuts down gracefully on SIGTERM, then raises it again with this handler
    # back in place: the command then ends normally and the runtime is closed.
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        gateway.serve_http(served, *address, token.value, ready)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
