"""``toka``: entry point, global options, dispatch and exit codes."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from functools import cached_property
from typing import Any

from toka import __version__

# Each module defines ``register(subparsers, common)``; imported to build the parser.
COMMAND_MODULES = [
    "toka.cli.setup_cmds",
    "toka.cli.agent_cmds",
    "toka.cli.grant_cmds",
    "toka.cli.log_cmds",
    "toka.cli.checkpoint_cmds",
    "toka.cli.op_cmds",
    "toka.cli.demo_cmds",
    "toka.cli.tool_cmds",
    "toka.cli.bench_cmds",
    "toka.cli.run_cmds",
    "toka.cli.approval_cmds",
    "toka.cli.tui_cmds",
]


class Context:
    """What a command needs, built on first use so ``--help`` stays instant."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.json: bool = getattr(args, "json", False)

    @cached_property
    def home(self):
        from toka.core.runtime.home import Home

        return Home(self.args.home)

    @cached_property
    def runtime(self):
        from toka.core.runtime import Runtime

        return Runtime(self.home, durability=self.args.durability)

    @cached_property
    def principal(self) -> str:
        return self.args.as_principal or os.environ.get("TOKA_AS") or "operator"

    @cached_property
    def client(self):
        from toka.core.runtime.client import Client

        client = Client.from_env(
            self.runtime,
            self.principal,
            token=os.environ.get("TOKA_TOKEN") or None,
            key_file=os.environ.get("TOKA_KEY") or None,
        )
        client.raise_pending = True
        return client

    def emit(self, data: Any, human: str | Callable[[], str] | None = None) -> None:
        from toka.cli import output

        if self.json:
            output.emit_json(data)
        elif human is not None:
            text = human() if callable(human) else human
            if text:
                sys.stdout.write(text + "\n")

    def close(self) -> None:
        if "runtime" in self.__dict__:
            self.runtime.close()


def common_options(defaults: bool) -> argparse.ArgumentParser:
    """Global options, accepted before or after the subcommand."""
    d = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--home",
        default=d(None),
        metavar="DIR",
        help="Toka home (default: $TOKA_HOME or the platform user data dir)",
    )
    p.add_argument(
        "--as",
        dest="as_principal",
        default=d(None),
        metavar="PRINCIPAL",
        help="act as this principal: its key signs (default: operator)",
    )
    p.add_argument(
        "--json", action="store_true", default=d(False), help="print one JSON document on stdout"
    )
    p.add_argument(
        "--durability",
        choices=["full", "normal"],
        default=d(None),
        help="override the configured durability for this invocation",
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toka",
        description="Toka: a capability-secured agent runtime with a tamper-evident event log.",
        epilog="Environment: TOKA_HOME, TOKA_TOKEN (token string), TOKA_KEY (private key file). "
        "Exit codes: 0 ok, 1 failed, 2 usage, 3 denied, 4 invalid input, 5 integrity failure.",
        parents=[common_options(True)],
    )
    parser.add_argument("--version", action="version", version=f"toka {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    common = common_options(False)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    from toka.core.errors import AwaitingApproval, ExitCode, TokaError

    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = Context(args)
    try:
        result = args.handler(ctx)
        return int(result or 0)
    except AwaitingApproval as exc:
        ctx.emit({"pending": exc.approval}, exc.message)
        return int(exc.exit_code)
    except TokaError as exc:
        sys.stderr.write(f"toka: error: {exc.message}\n")
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if os.environ.get("TOKA_DEBUG"):
            raise
        sys.stderr.write(
            f"toka: internal error: {type(exc).__name__}: {exc} "
            "(set TOKA_DEBUG=1 for a traceback)\n"
        )
        return int(ExitCode.FAILED)
    finally:
        ctx.close()


if __name__ == "__main__":
    raise SystemExit(main())
