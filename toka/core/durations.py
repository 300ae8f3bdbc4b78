"""Durations as people type them: ``90``, ``30s``, ``10m``, ``2h``, ``7d``, ``1w``."""

from __future__ import annotations

import re

from toka.core.errors import InvalidInput

_DURATION = re.compile(r"^(\d+)\s*([smhdw]?)\Z")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> int:
    """``90``, ``30s``, ``10m``, ``2h``, ``7d``, ``1w`` -> seconds."""
    m = _DURATION.match(text.strip().lower())
    if not m:
        raise InvalidInput(f"invalid duration {text!r}: use e.g. 30s, 10m, 2h, 7d")
    return int(m.group(1)) * _UNITS[m.group(2)]
