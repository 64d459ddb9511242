"""Ages like ``90m``, ``36h``, ``2d``, ``1w`` (and plain seconds)."""

from __future__ import annotations

import re
from datetime import timedelta

from triage_tui.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)


def parse_age(text: str) -> timedelta:
    m = _AGE.match(text or "")
    if not m:
        raise UsageError(f"invalid age {text!r}: use a number with a unit, e.g. 90m, 36h, 2d, 1w")
    value, unit = float(m.group(1)), (m.group(2) or "s").lower()
    return timedelta(seconds=value * _UNITS[unit])


def format_age(seconds: float) -> str:
    """Compact age for tables: ``45s``, ``12m``, ``5h``, ``3d``, ``2w``."""
    s = int(max(0, seconds))
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size * (2 if unit == "w" else 1):
            return f"{s // size}{unit}"
    return f"{s}s"
