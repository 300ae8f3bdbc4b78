"""``toka tui``: the operator console. Textual is imported only inside the handler."""

from __future__ import annotations

from toka.cli.context import Context


def register(sub, common) -> None:
    p = sub.add_parser(
        "tui",
        parents=[common],
        help="open the operator console (creates the home on first use)",
        description="The operator console: the log live, agents, grants and tools, and every "
        "action as a signed operation. Press ? inside for the keys, ctrl+p for every command.",
    )
    p.add_argument(
        "--no-runner",
        action="store_true",
        help="do not drive agents from the console (by default it runs the agent runner, "
        "like `toka run`)",
    )
    p.set_defaults(handler=cmd_tui)


def home_label(path) -> str:
    """The home as a person would type it: ``~/...`` under the user's home directory."""
    from pathlib import Path

    path = Path(path)
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


# What textual-serve sets in each browser session's environment (`toka web`).
WEB_DRIVER = "textual.drivers.web_driver:WebDriver"


def cmd_tui(ctx: Context) -> int:
    import os
    import sys

    from toka.core.errors import TokaError

    # Under textual's web driver stdin and stdout are the pipes to the web server: that
    # driver needs no terminal. Any other pipe still gets the error.
    in_browser = os.environ.get("TEXTUAL_DRIVER") == WEB_DRIVER
    if not in_browser and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise TokaError("toka tui needs a terminal; for scripts use the headless commands")
    greeting = open_home(ctx)
    if in_browser:
        signing = f"Signing as {ctx.principal} from a browser session."
        greeting = f"{signing} {greeting}" if greeting else signing
    home = ctx.home
    from toka.tui.app import make_app

    app = make_app(
        ctx.runtime,
        client=ctx.client,
        home_label=home_label(home.root),
        demo=demo_loader(),
        greeting=greeting,
        run_agents=not ctx.args.no_runner,
    )
    app.run()
    # Textual shows the traceback of a crash and sets the return code; pass it on.
    return 0 if not app.return_code else 1


def open_home(ctx: Context) -> str | None:
    """Create the home (with the built-in tools) on first use; say so, or None."""
    home = ctx.home
    if home.exists():
        return None
    from toka.core.runtime.client import Client
    from toka.core.tools import register_builtins

    home.init()
    register_builtins(Client(ctx.runtime))
    return f"Created a new Toka home at {home_label(home.root)}. Press s to spawn an agent."


def demo_loader():
    """``Load demo scenario`` in the palette: ``toka demo``'s seed, through the console."""
    from toka.core import demo

    def load(client):
        summary = demo.seed(client.runtime)
        return (
            f"seeded {len(summary.agents)} agents, {len(summary.tasks)} tasks and "
            f"{len(summary.grants)} grants at seq {summary.first_seq}-{summary.last_seq}"
        )

    return load
