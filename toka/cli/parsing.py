"""Parsing user input into typed values, with one-line errors.

Every malformed input is an :class:`InvalidInput` (exit 4) here, before anything is
signed: invalid UTF-8 (in an argument, a file or stdin), JSON that does not parse,
and JSON nested deeper than ``MAX_JSON_DEPTH``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec

from toka.core.errors import InvalidInput

MAX_JSON_DEPTH = 64


def check_arguments(argv: list[str]) -> None:
    """Refuse arguments that were not valid UTF-8 (Python hands such bytes over as lone
    surrogates, which nothing downstream can encode)."""
    for n, arg in enumerate(argv, start=1):
        bad = next((i for i, ch in enumerate(arg) if "\ud800" <= ch <= "\udfff"), None)
        if bad is not None:
            shown = arg[:bad].encode("utf-8", "replace").decode()[-20:]
            raise InvalidInput(
                f"argument {n} is not valid UTF-8 (after {shown!r}, character {bad + 1})"
            )


def _utf8(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{source} is not valid UTF-8 (byte {exc.start + 1})") from None


def read_text(text: str) -> str:
    """``text`` itself, the contents of ``@FILE``, or stdin for ``-``; UTF-8 only."""
    if text == "-":
        stream = getattr(sys.stdin, "buffer", None)  # a test's StringIO has none
        return _utf8(stream.read(), "stdin") if stream is not None else sys.stdin.read()
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read {text[1:]}: {exc.strerror}") from exc
        return _utf8(data, text[1:])
    return text


def _decode(text: str) -> Any:
    """JSON, nested at most MAX_JSON_DEPTH deep (RecursionError would be far deeper)."""
    try:
        value = msgspec.json.decode(text.encode())
    except RecursionError:
        raise InvalidInput(f"it is nested deeper than {MAX_JSON_DEPTH} levels") from None
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > MAX_JSON_DEPTH:
                raise InvalidInput(f"it is nested deeper than {MAX_JSON_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return value


def json_value(text: str, label: str = "JSON") -> Any:
    """Parse JSON given inline, as ``@FILE``, or as ``-`` for stdin."""
    text = read_text(text)
    try:
        return _decode(text)
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"{label} is not valid JSON: {exc}") from exc
    except InvalidInput as exc:
        raise InvalidInput(f"{label} is not usable JSON: {exc.message}") from None


def json_or_text(text: str, label: str = "value") -> Any:
    """JSON if ``text`` parses as JSON, else the text itself."""
    try:
        return _decode(text)
    except msgspec.DecodeError:
        return text
    except InvalidInput as exc:
        raise InvalidInput(f"{label} is not usable JSON: {exc.message}") from None
