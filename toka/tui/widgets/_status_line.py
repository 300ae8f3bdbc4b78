"""StatusLine: the console's one-line header (no wall clock, so screens stay reproducible)."""

from __future__ import annotations

from typing import NamedTuple

from rich.text import Text
from textual.widgets import Static


class Status(NamedTuple):
    home: str
    seq: int = 0
    chain: str = "loading"
    chain_ok: bool | None = None
    principal: str = "operator"
    key: str = ""
    runner: str = "off"
    rate: float = 0.0
    follow: str = "following"
    follow_ok: bool = True


class StatusLine(Static):
    """``toka │ home │ seq │ chain │ principal │ runner │ ev/s │ following``."""

    def show(self, status: Status) -> None:
        chain_style = {True: "green", False: "bold red", None: "yellow"}[status.chain_ok]
        mark = {True: "✓", False: "✗", None: "…"}[status.chain_ok]
        sep = (" │ ", "dim")
        text = Text.assemble(
            (" toka ", "bold"),
            (status.home, ""),
            sep,
            ("seq ", "dim"),
            (str(status.seq), "bold"),
            sep,
            ("chain ", "dim"),
            (f"{mark} {status.chain}", chain_style),
            sep,
            (status.principal, "bold"),
            (f" {status.key}" if status.key else "", "dim"),
            sep,
            (f"runner: {status.runner}", ""),
            sep,
            (f"{status.rate:.1f} ev/s", ""),
            sep,
            (status.follow, "green" if status.follow_ok else "bold yellow"),
            no_wrap=True,
            overflow="ellipsis",
        )
        self.update(text)
