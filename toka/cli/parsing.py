"""Parsing user input into typed values, with one-line errors."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import msgspec

from toka.core.errors import InvalidInput

_DURATION = re.compile(r"^(\d+)\s*([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> int:
    """``90``, ``30s``, ``10m``, ``2h``, ``7d``, ``1w`` -> seconds."""
    m = _DURATION.match(text.strip().lower())
    if not m:
        raise InvalidInput(f"invalid duration {text!r}: use e.g. 30s, 10m, 2h, 7d")
    return int(m.group(1)) * _UNITS[m.group(2)]


def json_value(text: str, label: str = "JSON") -> Any:
    """Parse JSON given inline, as ``@FILE``, or as ``-`` for stdin."""
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).expanduser().read_text()
        except OSError as exc:
            raise InvalidInput(f"cannot read {text[1:]}: {exc.strerror}") from exc
    try:
        return msgspec.json.decode(text.encode())
    except (msgspec.DecodeError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise InvalidInput(f"{label} is not valid JSON: {exc}") from exc


def json_or_text(text: str) -> Any:
    try:
        return msgspec.json.decode(text.encode())
    except msgspec.DecodeError:
        return text
