"""TOML files read into msgspec types, with errors that name the file and the key."""

from __future__ import annotations

import re
import tomllib
from typing import TypeVar

import msgspec

from toka.core.errors import InvalidInput

T = TypeVar("T")


def load_toml(text: str, into: type[T], source: str) -> T:
    """Parse ``text`` and convert it strictly to ``into``; ``source`` names it in errors."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{source}: not valid TOML: {exc}") from None
    try:
        return msgspec.convert(raw, into)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"{source}: {_problem(exc)}") from None


def _problem(exc: msgspec.ValidationError) -> str:
    """``Expected `int`, got `str` - at `$.limits.fuel``` -> ``limits.fuel: Expected `int`...``."""
    text = str(exc)
    where = ""
    m = re.search(r" - at `\$\.?(.*)`$", text)
    if m:
        where, text = m.group(1), text[: m.start()]
    text = text.replace(" | null", "")  # TOML has no null: "absent" is the None
    text = text.replace("Object contains unknown field", "unknown key")
    text = text.replace("Object missing required field", "missing required key")
    return f"{where}: {text}" if where else text
