"""Printing for the CLI: one JSON document with ``--json``, plain text otherwise.

Plain text goes through :func:`say`, :func:`info` or :func:`error`, which show every
character that could steer a terminal (ESC, BEL, CR, bidi overrides...) as an escape:
names, descriptions and results come from the log and from agents, and are data.
JSON needs nothing: its encoder escapes them already.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from toka.core.model.text import shown_as_is, visible


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def emit_line(data: Any) -> None:
    sys.stdout.write(json.dumps(data, separators=(",", ":"), default=str) + "\n")
    sys.stdout.flush()


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    rows = list(rows)
    # Column by column (a listing can have thousands of rows): each cell as text, the
    # missing cells of a short row as empty ones (stripped off its line like its padding).
    columns = [
        ["" if v is None else str(v) for v in column] for column in itertools.zip_longest(*rows)
    ]
    # Escaped cell by cell, so the columns line up on what is shown; a table with
    # nothing to escape (newlines and tabs are shown as they are) is checked in one scan.
    if not shown_as_is("\n".join(itertools.chain.from_iterable(columns))):
        columns = [[visible(v) for v in column] for column in columns]
    widths = [len(h) for h in headers]
    for i, column in enumerate(columns):
        widths[i] = max(widths[i], max(map(len, column)))
    padded = [[v.ljust(w) for v in column] for column, w in zip(columns, widths, strict=False)]
    lines = ["  ".join(h.upper().ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    if padded:
        lines += ["  ".join(cells).rstrip() for cells in zip(*padded, strict=True)]
    else:  # rows without cells
        lines += [""] * len(rows)
    return "\n".join(lines)


def table_or(headers: Sequence[str], rows: Iterable[Sequence[Any]], empty: str) -> str:
    """The rows as a table, or ``empty`` (what to say, or do, when there are none)."""
    rows = list(rows)
    return table(headers, rows) if rows else empty


def fmt_s(s: int | None) -> str:
    if s is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(s))


def shorten(text: str, width: int) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def say(text: str) -> None:
    """Human output on stdout, one or more lines."""
    sys.stdout.write(visible(text) + "\n")


def info(message: str) -> None:
    """A notice for the user: stderr, so stdout stays data only."""
    sys.stderr.write(visible(message) + "\n")


def error(message: str) -> None:
    """The one line that tells the user what went wrong."""
    sys.stderr.write("toka: error: " + visible(message).replace("\n", "\\n") + "\n")
