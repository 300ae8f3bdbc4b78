"""Text that reaches a terminal: the characters that could steer it, and how to show them.

The set is spelled out as code points (not read from ``unicodedata``), so what the kernel
accepts does not change with the Python version that replays the log.
"""

from __future__ import annotations

import re

# C0 controls (ESC, BEL, CR, backspace...), DEL and the C1 controls (0x9b is a one-byte
# CSI); lone surrogates (what undecodable argv bytes become); the bidirectional
# embeddings, overrides and isolates and the Unicode line and paragraph separators,
# which reorder or break what is shown around them.
_OTHERS = r"\x7f-\x9f\ud800-\udfff\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029"
UNPRINTABLE = re.compile(r"[\x00-\x1f" + _OTHERS + "]")
# What human output may carry raw: the newlines and tabs of its own layout.
_SHOWN_ESCAPED = re.compile(r"[\x00-\x08\x0b-\x1f" + _OTHERS + "]")


def escape(char: str) -> str:
    """One such character as an escape: ``\\x1b``, ``\\u202e``."""
    c = ord(char)
    return f"\\x{c:02x}" if c <= 0xFF else f"\\u{c:04x}"


# Line breaks and tabs by name, where a value must stay on one line.
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def escape_named(char: str) -> str:
    """Like ``escape``, with newline, tab and carriage return as ``\\n`` ``\\t`` ``\\r``."""
    return _NAMED.get(char) or escape(char)


def one_line(text: str) -> str:
    """``text`` on one line: every character that could steer a terminal, newlines and
    tabs included, shown as an escape (``\\n``, ``\\x1b``)."""
    return UNPRINTABLE.sub(lambda m: escape_named(m.group()), text)


def _escape(match: re.Match[str]) -> str:
    return escape(match.group())


def shown_escaped(*, multiline: bool) -> re.Pattern[str]:
    """What to show as escapes: with ``multiline``, newlines and tabs stay as they are."""
    return _SHOWN_ESCAPED if multiline else UNPRINTABLE


def visible(text: str) -> str:
    """``text`` with every character that could steer a terminal shown as an escape
    (``\\x1b``, ``\\u202e``); newlines and tabs stay."""
    return _SHOWN_ESCAPED.sub(_escape, text)


def shown_as_is(text: str) -> bool:
    """Whether ``visible(text)`` is ``text``: one scan, where a page of cells would
    otherwise be escaped one by one."""
    return _SHOWN_ESCAPED.search(text) is None


def first_unprintable(text: str) -> str | None:
    """The first character of ``text`` that an identifier must not hold, escaped; or None."""
    match = UNPRINTABLE.search(text)
    return None if match is None else _escape(match)
