"""What every command shares: the home, runtime and client (built on first use), global options."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from functools import cached_property
from typing import Any


class Context:
    """What a command needs, built on first use so ``--help`` stays instant."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.json: bool = getattr(args, "json", False)

    @cached_property
    def home(self):
        from toka.core.runtime.home import Home

        return Home(self.args.home, store=self.args.store)

    @cached_property
    def runtime(self):
        from toka.core.runtime import Runtime

        return Runtime(self.home, durability=self.args.durability)

    @cached_property
    def view(self):
        """The home's state and log, read-only: what a command that only lists needs,
        loaded as the runtime loads it but without building one (toka.core.runtime.view)."""
        from toka.core.runtime.view import StateView

        return StateView(self.home, durability=self.args.durability)

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
                output.say(text)

    def close(self) -> None:
        """Close the runtime and the view if they were built; closing twice is harmless."""
        for name in ("runtime", "view"):
            opened = self.__dict__.pop(name, None)
            if opened is not None:
                opened.close()


def common_options(defaults: bool, *, principal: bool = True) -> argparse.ArgumentParser:
    """Global options, accepted before or after the subcommand (``--as`` only before
    it, for a subcommand with an ``--as`` of its own: ``principal=False``)."""
    d = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--home",
        default=d(None),
        metavar="DIR",
        help="Toka home (default: $TOKA_HOME or the platform user data dir)",
    )
    if principal:
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
        "--store",
        default=d(None),
        metavar="URL",
        help="the log for this invocation: postgresql://... or a SQLite file "
        "(default: $TOKA_STORE, else the home's config)",
    )
    p.add_argument(
        "--durability",
        choices=["full", "normal"],
        default=d(None),
        help="override the configured durability for this invocation",
    )
    return p
