"""Parsing user input into typed values, with one-line errors."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from toka.core.errors import InvalidInput

# What the options may read from the environment (TOKA_HOME is read as a path).
_ENVIRONMENT = ("TOKA_HOME", "TOKA_AS", "TOKA_TOKEN", "TOKA_KEY")


def check_arguments(args: argparse.Namespace) -> None:
    """Every argument and Toka variable must be text: bytes that are not UTF-8 reach
    Python as lone surrogates (``surrogateescape``), which nothing can encode again."""
    for name, value in vars(args).items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                _check_utf8(text, _argument_label(name))
    for name in _ENVIRONMENT:
        _check_utf8(os.environ.get(name, ""), f"${name}")


def _argument_label(dest: str) -> str:
    return dest if dest.isupper() else dest.replace("_", "-")


def _check_utf8(text: str, label: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"{label} is not valid UTF-8 (an undecodable byte at character {exc.start})"
        ) from None


def _read(source: str, label: str) -> bytes:
    """The bytes of ``-`` (stdin) or ``@FILE``."""
    if source == "-":
        # The bytes, so that what is not UTF-8 is refused here; a stdin replaced by text
        # (as by an embedding program) has no bytes underneath.
        raw = getattr(sys.stdin, "buffer", None)
        return raw.read() if raw is not None else sys.stdin.read().encode(errors="replace")
    try:
        return Path(source[1:]).expanduser().read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{label}: cannot read {source[1:]}: {exc.strerror}") from exc


class NotJson(InvalidInput):
    """The text is not JSON at all (as opposed to JSON that is refused)."""


def _decode(data: bytes, label: str) -> Any:
    # Imported here: every command checks its arguments (check_arguments), few parse JSON.
    import msgspec

    from toka.core.kernel.context import MAX_JSON_DEPTH, json_depth

    try:
        data.decode()
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{label} is not valid UTF-8 (byte {exc.start})") from None
    too_deep = InvalidInput(f"{label} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = msgspec.json.decode(data)
    except RecursionError:
        raise too_deep from None
    except msgspec.DecodeError as exc:
        raise NotJson(f"{label} is not valid JSON: {exc}") from exc
    if json_depth(value) > MAX_JSON_DEPTH:
        raise too_deep
    return value


def json_value(text: str, label: str = "JSON") -> Any:
    """Parse JSON given inline, as ``@FILE``, or as ``-`` for stdin."""
    data = _read(text, label) if text == "-" or text.startswith("@") else text.encode()
    return _decode(data, label)


def json_or_text(text: str, label: str) -> Any:
    """JSON if ``text`` parses as JSON (refused if it nests too deeply), else the text."""
    try:
        return _decode(text.encode(), label)
    except NotJson:
        return text
