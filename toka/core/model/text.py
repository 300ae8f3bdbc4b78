"""Characters that must not act: terminal control, lone surrogates, bidi overrides.

Agents pick their own names, descriptions, payloads and results. Whatever shows them
(the CLI's human output, the console) writes such characters as visible escapes
(``\\x1b``), never raw; identifiers (agent, tool and runner names) refuse them.
"""

from __future__ import annotations

import re

# C0 controls, DEL, the C1 controls (U+0080-U+009F: 8-bit CSI, OSC, ...), lone
# surrogates (invalid UTF-8 from argv or a file), and the bidi embeddings, overrides
# and isolates that reorder what a terminal shows (U+202A-U+202E, U+2066-U+2069).
_BEYOND_C0 = "\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069"
UNSAFE = re.compile(f"[\x00-\x1f{_BEYOND_C0}]")
_UNSAFE_EXCEPT_LINES = re.compile(f"[\x00-\x08\x0b-\x1f{_BEYOND_C0}]")  # keeps \t, \n
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def escape_char(char: str) -> str:
    """One unsafe character as an escape: ``\\n``, ``\\x1b``, ``\\udc80``, ``\\u202e``."""
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


def unsafe_pattern(multiline: bool = False) -> re.Pattern[str]:
    """The unsafe characters; with ``multiline``, newlines and tabs are not among them."""
    return _UNSAFE_EXCEPT_LINES if multiline else UNSAFE


def visible(value: str, *, multiline: bool = False) -> str:
    """``value`` with every unsafe character written as an escape; ``multiline`` keeps
    newlines and tabs."""
    return unsafe_pattern(multiline).sub(lambda m: escape_char(m.group()), value)


def first_unsafe(value: str) -> str | None:
    """The first unsafe character of ``value`` as an escape, or None."""
    match = UNSAFE.search(value)
    return escape_char(match.group()) if match else None
