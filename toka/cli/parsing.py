"""Parsing user input into typed values, with one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec

from toka.core.errors import InvalidInput


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
