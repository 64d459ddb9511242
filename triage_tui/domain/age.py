"""Ages like ``90m``, ``36h``, ``2d``, ``1w``, ``45s``: a unit is required.

A bare number is refused ("2 what? use 2d, 36h, 90m"): it used to mean seconds, so ``age>2``
or ``--older-than 2`` selected the whole backlog. Ages are positive and at most
:data:`MAX_AGE_DAYS` days (no mailbox holds older mail; ``99999999999w`` overflowed). Only ASCII
digits count (``int('٣')`` is 3 in Python, and an operator never meant that).
"""

from __future__ import annotations

import re
from datetime import timedelta

from triage_tui.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_AGE = re.compile(r"([0-9]{1,12}(?:\.[0-9]{1,9})?|\.[0-9]{1,9})\s*([smhdw]?)", re.IGNORECASE | re.ASCII)
#: The largest age accepted: 100 years (36500d). Anything bigger is a typo or an attack.
MAX_AGE_DAYS = 36500
_HINT = "use a number with a unit: 90m, 36h, 2d, 1w (units s m h d w)"


def parse_age(text: str) -> timedelta:
    """A positive age with a unit; anything else is a :class:`UsageError` saying the fix (never
    an OverflowError or ValueError)."""
    raw = text if isinstance(text, str) else str(text)
    shown = raw if len(raw) <= 40 else raw[:40] + "…"
    m = _AGE.fullmatch(raw.strip())
    if not m:
        raise UsageError(f"invalid age {shown!r}: {_HINT}")
    number, unit = m.group(1), m.group(2).lower()
    if not unit:
        raise UsageError(f"age {number!r} has no unit: {number} what? use {number}d, {number}h or {number}m "
                         "(units s m h d w)")
    seconds = float(number) * _UNITS[unit]
    if seconds <= 0:
        raise UsageError(f"age {shown!r} is zero: give a positive age like 90m, 36h or 2d "
                         "(to select everything, leave the age out)")
    if seconds > MAX_AGE_DAYS * 86400:
        raise UsageError(f"age {shown!r} is more than 100 years ({MAX_AGE_DAYS}d): {_HINT}")
    return timedelta(seconds=seconds)


def format_age(seconds: float) -> str:
    """Compact age for tables: ``45s``, ``12m``, ``5h``, ``3d``, ``2w``."""
    s = int(max(0, seconds))
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size * (2 if unit == "w" else 1):
            return f"{s // size}{unit}"
    return f"{s}s"
