"""``toka metrics``: Prometheus metrics counted from the log, served or printed once."""

from __future__ import annotations

from toka.cli.context import Context

DEFAULT_LISTEN = "127.0.0.1:9464"  # toka.core.metrics.DEFAULT_LISTEN, without importing it


def register(sub, common) -> None:
    metrics = sub.add_parser(
        "metrics",
        parents=[common],
        help="metrics counted from the log: print them once, or `serve` them to Prometheus",
        description=(
            "Print the metrics of the home's log once (--json: the same families and "
            "samples a scrape gives), or serve them to Prometheus with `toka metrics serve`. "
            "Needs the metrics extra: pip install 'toka[metrics]'."
        ),
    )
    metrics.set_defaults(handler=cmd_metrics)
    m = metrics.add_subparsers(dest="metrics_command", metavar="ACTION")
    p = m.add_parser(
        "serve",
        parents=[common],
        help="serve /metrics over HTTP, following the log, until interrupted",
    )
    p.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"where to listen (default {DEFAULT_LISTEN}; PORT 0 picks a free one). "
        "Anything but loopback is warned about: metrics reveal tool names and activity",
    )
    p.set_defaults(handler=cmd_serve)


def cmd_metrics(ctx: Context) -> int:
    from toka.core.metrics import read_metrics, render_text

    ctx.home.require()
    data = read_metrics(ctx.home)
    ctx.emit(data, lambda: render_text(data))
    return 0


def cmd_serve(ctx: Context) -> int:
    import signal
    import threading

    from toka.cli.output import info
    from toka.core.errors import InvalidInput
    from toka.core.metrics import start_metrics_server

    if ctx.json:
        raise InvalidInput("toka metrics serve prints nothing but notices: --json does not apply")
    ctx.home.require()
    stopped = threading.Event()

    def stop(signum, frame) -> None:
        stopped.set()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with start_metrics_server(ctx.home, ctx.args.listen) as server:
            if server.warning:
                info(f"toka metrics serve: warning: {server.warning}")
            info(f"toka metrics serve: serving {server.url}")
            stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
