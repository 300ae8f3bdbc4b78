"""StatusLine: the console's one-line header (no wall clock, so screens stay reproducible)."""

from __future__ import annotations

from typing import NamedTuple

from rich.text import Text
from textual.widget import Widget

from toka.tui.effect_view import waiting_text
from toka.tui.literal import literal


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
    calls_waiting: int = 0  # open calls with an effect the operator has to resolve


SEPARATOR = (" │ ", "dim")


class StatusLine(Widget):
    """``toka home │ seq │ chain │ N calls need you │ principal key │ runner │ ev/s │
    following`` (the calls only when some wait for the operator).

    On a narrow terminal the key, the home, then the rate are left out before anything is cut.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.status = Status(home="")

    def show(self, status: Status) -> None:
        self.status = status
        self.refresh()

    def render(self) -> Text:
        s = self.status
        chain_style = {True: "green", False: "bold red", None: "yellow"}[s.chain_ok]
        mark = {True: "✓", False: "✗", None: "…"}[s.chain_ok]
        parts: dict[str, list[tuple[str, str]]] = {
            "home": [("toka ", "bold"), (s.home, "")],
            "seq": [("seq ", "dim"), (str(s.seq), "bold")],
            "chain": [("chain ", "dim"), (f"{mark} {s.chain}", chain_style)],
            "calls": [(waiting_text(s.calls_waiting), "bold yellow")] if s.calls_waiting else [],
            "who": [(s.principal, "bold")],
            "key": [(" " + s.key, "dim")] if s.key else [],
            "runner": [(f"runner: {s.runner}", "")],
            "rate": [(f"{s.rate:.1f} ev/s", "")],
            "follow": [(s.follow, "green" if s.follow_ok else "bold yellow")],
        }
        for drop in ((), ("key",), ("key", "home"), ("key", "home", "rate")):
            text = _assemble({k: v for k, v in parts.items() if k not in drop})
            if text.cell_len <= self.size.width:
                break
        text.truncate(max(self.size.width, 1), overflow="ellipsis")
        return text


def _assemble(parts: dict[str, list[tuple[str, str]]]) -> Text:
    text = Text(" ", no_wrap=True, overflow="ellipsis")
    for index, (name, pieces) in enumerate(parts.items()):
        if index and name != "key" and pieces:
            text.append(*SEPARATOR)
        for piece, style in pieces:
            text.append(literal(piece, style))
    return text
