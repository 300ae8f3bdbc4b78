"""``toka``: entry point, global options, dispatch and exit codes."""

from __future__ import annotations

import argparse
import os

from toka import __version__
from toka.cli.commands import OnDemandSubparsers
from toka.cli.context import Context, common_options


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors, which quote what was typed, reach the terminal inert."""

    def _print_message(self, message: str, file=None) -> None:
        from toka.core.model.text import visible

        super()._print_message(visible(message), file)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="toka",
        description="Toka: a capability-secured agent runtime with a tamper-evident event log.",
        epilog="Environment: TOKA_HOME, TOKA_STORE (and TOKA_STORE_SCHEMA), TOKA_TOKEN (token string), TOKA_KEY (private key file). "
        "Exit codes: 0 ok, 1 failed, 2 usage, 3 denied, 4 invalid input, 5 integrity failure.",
        parents=[common_options(True)],
    )
    parser.add_argument("--version", action="version", version=f"toka {__version__}")
    # Each command's parser is built when it is looked up (toka.cli.commands).
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", action=OnDemandSubparsers, common=common_options(False)
    )
    sub.required = True
    return parser


def main(argv: list[str] | None = None) -> int:
    import sys

    from toka.cli import output
    from toka.cli.parsing import check_arguments
    from toka.core.errors import AwaitingApproval, ExitCode, TokaError

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # Words after ``--`` are a command line of their own (``toka mcp add NAME -- CMD ...``):
    # argparse would split them among the positionals before it.
    rest: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, rest = argv[:at], argv[at + 1 :]
    args = parser.parse_args(argv)
    if rest and not getattr(args, "takes_command", False):
        parser.error(f"unrecognized arguments: -- {' '.join(rest)}")
    args.command_line = rest
    ctx = Context(args)
    try:
        check_arguments(args)
        result = args.handler(ctx)
        return int(result or 0)
    except AwaitingApproval as exc:
        ctx.emit({"pending": exc.approval}, exc.message)
        return int(exc.exit_code)
    except TokaError as exc:
        output.error(exc.message)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if os.environ.get("TOKA_DEBUG"):
            raise
        output.info(
            f"toka: internal error: {type(exc).__name__}: {exc} (set TOKA_DEBUG=1 for a traceback)"
        )
        return int(ExitCode.FAILED)
    finally:
        ctx.close()


if __name__ == "__main__":
    raise SystemExit(main())
