"""The table of toka's commands, and the argparse action that builds one on demand.

``toka --help`` lists every command, but a run of ``toka agent list`` needs the parser
of ``agent`` only: importing all nineteen command modules and building every
subparser would cost most of the time a quick command takes. So the top-level
parser lists its commands from ``COMMANDS`` (name and help, as ``--help`` shows
them), and the first lookup of a command imports its module and calls its
``register(subparsers, common)``, which builds that command's parser exactly as it
always did (with its siblings in the same module). A test checks the table against
what the modules register.
"""

from __future__ import annotations

import argparse
import importlib
from typing import NamedTuple


class Command(NamedTuple):
    name: str
    help: str
    module: str  # its register(subparsers, common) adds this command's parser


# In the order `toka --help` lists them.
COMMANDS: tuple[Command, ...] = (
    Command("init", "create the Toka home (safe to re-run)", "setup_cmds"),
    Command("info", "show the home, the log head and identities", "setup_cmds"),
    Command(
        "gc",
        "list blobs, compiled modules and staged copies nothing needs (--delete removes them)",
        "setup_cmds",
    ),
    Command("agent", "spawn, list, show, pause, resume, terminate agents", "agent_cmds"),
    Command("task", "schedule and list tasks", "agent_cmds"),
    Command("obs", "emit observations", "agent_cmds"),
    Command("grant", "issue, list and revoke capability grants", "grant_cmds"),
    Command("events", "read the event log", "log_cmds"),
    Command("state", "show the world state (now, or --at SEQ)", "log_cmds"),
    Command("stats", "event rate and refusal rate over a window, as text charts", "stats_cmds"),
    Command(
        "verify",
        "verify the log: every event is what its signed operation decides, the hash chain, "
        "signed checkpoints and operation records",
        "checkpoint_cmds",
    ),
    Command("replay", "rebuild state from the log", "checkpoint_cmds"),
    Command("checkpoint", "export a signed checkpoint of the log head", "checkpoint_cmds"),
    Command("store", "the log's database: check it, copy a log between backends", "store_cmds"),
    Command("home", "the home's kernel secrets", "store_cmds"),
    Command("op", "sign an operation offline, submit a signed operation", "op_cmds"),
    Command(
        "demo",
        "seed demo agents, grants, tasks and observations (or --load a workload)",
        "demo_cmds",
    ),
    Command("tool", "register, list, show and invoke tools", "tool_cmds"),
    Command("mount", "lend host directories to file tools, by name", "place_cmds"),
    Command("net", "let http-fetch reach private hosts, one host:port each", "place_cmds"),
    Command("secret", "values tools may send but the log never holds", "place_cmds"),
    Command(
        "effects",
        "tool calls with an effect: open ones, what each touched, resolving",
        "effect_cmds",
    ),
    Command(
        "mcp",
        "MCP servers as Toka tools, and Toka as an MCP server (needs toka[mcp])",
        "mcp_cmds",
    ),
    Command("bench", "measure Toka on a scratch home", "bench_cmds"),
    Command(
        "metrics",
        "metrics counted from the log: print them once, or `serve` them to Prometheus",
        "metrics_cmds",
    ),
    Command(
        "run",
        "run agents: take their tasks, let their behaviour decide, act as them",
        "run_cmds",
    ),
    Command(
        "approvals",
        "operations waiting for approval: list, show, approve, deny",
        "approval_cmds",
    ),
    Command("tui", "open the operator console (creates the home on first use)", "tui_cmds"),
    Command(
        "web",
        "serve the operator console to a browser (token-gated, loopback only by default)",
        "web_cmds",
    ),
)

# The modules, in the order their commands are listed.
MODULES: tuple[str, ...] = tuple(dict.fromkeys(c.module for c in COMMANDS))


def register_module(module: str, subparsers, common: argparse.ArgumentParser) -> None:
    importlib.import_module(f"toka.cli.{module}").register(subparsers, common)


class _Parsers(dict):
    """Command name -> parser, holding None for a command not built yet: membership
    and order (what argparse checks a choice against and names in its error) are the
    table's from the start; looking a command up builds it."""

    def __init__(self, build):
        super().__init__()
        self._build = build

    def __getitem__(self, name: str) -> argparse.ArgumentParser:
        if super().__getitem__(name) is None:
            self._build(name)
        return super().__getitem__(name)

    def values(self):
        return [self[name] for name in self]

    def items(self):
        return [(name, self[name]) for name in self]


class OnDemandSubparsers(argparse._SubParsersAction):
    """The subcommands action of the top-level parser: lists ``COMMANDS`` for help and
    usage errors, and builds a command's parser when argparse looks it up."""

    def __init__(self, *args, common: argparse.ArgumentParser, **kwargs):
        super().__init__(*args, **kwargs)
        self._common = common
        self._module = {c.name: c.module for c in COMMANDS}
        self._name_parser_map = self.choices = _Parsers(self._build)
        for c in COMMANDS:
            dict.__setitem__(self._name_parser_map, c.name, None)
            self._choices_actions.append(self._ChoicesPseudoAction(c.name, (), c.help))

    def _build(self, name: str) -> None:
        register_module(self._module[name], self, self._common)

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        """What ``register`` calls: a command of the table takes its place in it (its
        help is listed already); any other is added as argparse adds one."""
        if dict.get(self._name_parser_map, name, ...) is not None:
            return super().add_parser(name, **kwargs)
        kwargs.pop("help", None)
        if kwargs.get("prog") is None:
            kwargs["prog"] = f"{self._prog_prefix} {name}"
        parser = self._parser_class(**kwargs)
        dict.__setitem__(self._name_parser_map, name, parser)
        return parser
