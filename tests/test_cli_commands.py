"""The CLI's table of commands builds, on demand, exactly the parsers the modules register."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from toka import __version__
from toka.cli.commands import COMMANDS, MODULES, register_module
from toka.cli.context import common_options
from toka.cli.main import ArgumentParser, build_parser


def _eager_parser() -> argparse.ArgumentParser:
    """The top-level parser as it was built before commands were built on demand:
    every module registered up front, on argparse's own subparsers action."""
    lazy = build_parser()
    parser = ArgumentParser(
        prog="toka",
        description=lazy.description,
        epilog=lazy.epilog,
        parents=[common_options(True)],
    )
    parser.add_argument("--version", action="version", version=f"toka {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    common = common_options(False)
    for module in MODULES:
        register_module(module, sub, common)
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices.items())
    return {}


def _paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    yield prefix, parser
    for name, child in _subparsers(parser).items():
        yield from _paths(child, (*prefix, name))


def test_the_table_lists_what_the_modules_register_in_order():
    sub = next(a for a in _eager_parser()._actions if isinstance(a, argparse._SubParsersAction))
    registered = [(a.dest, a.help) for a in sub._choices_actions]
    assert registered == [(c.name, c.help) for c in COMMANDS]


def test_every_help_is_what_the_registered_parsers_print():
    eager = dict(_paths(_eager_parser()))
    lazy = dict(_paths(build_parser()))
    assert sorted(lazy) == sorted(eager)
    for path, parser in eager.items():
        assert lazy[path].format_help() == parser.format_help(), path


def test_a_command_builds_only_its_own_module():
    probe = (
        "import sys, json; from toka.cli.main import build_parser; "
        "build_parser().parse_args(['agent', 'list']); "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('toka.cli.'))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert "toka.cli.agent_cmds" in loaded
    assert not [m for m in loaded if m.endswith("_cmds") and m != "toka.cli.agent_cmds"]


@pytest.mark.parametrize(
    "argv",
    [[], ["nosuch"], ["agent"], ["agent", "nosuch"], ["agent", "list", "--nosuch"]],
)
def test_usage_errors_name_the_same_choices(argv, capsys):
    with pytest.raises(SystemExit) as lazy_exit:
        build_parser().parse_args(argv)
    lazy = capsys.readouterr()
    with pytest.raises(SystemExit) as eager_exit:
        _eager_parser().parse_args(argv)
    eager = capsys.readouterr()
    assert lazy_exit.value.code == eager_exit.value.code == 2
    assert (lazy.out, lazy.err) == (eager.out, eager.err)
