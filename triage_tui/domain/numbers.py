"""Numbers typed by people: strict, bounded, finite, and refused with the fix.

Python's ``int()`` and ``float()`` accept far more than an operator means: ``int('٣')`` is 3,
``int('1_0')`` is 10, ``float('nan')``, ``float('inf')`` and ``float('1e400')`` are numbers that
compare false with every bound (so ``--timeout nan`` slipped past ``minimum``), and huge values
overflow later, deep inside a socket call or a ``timedelta``. Here only ASCII digits (an
optional sign, one decimal point for floats, no exponent) are numbers, and every value is
checked against its range before anything runs.

:func:`int_arg` / :func:`float_arg` / :func:`uid_arg` are argparse ``type=`` callables, so a bad
flag is refused while the command line is parsed: before any connection is made.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

from triage_tui.errors import UsageError

#: IMAP numbers (UIDs, RFC822.SIZE, LARGER/SMALLER arguments) are 32-bit unsigned (RFC 3501
#: ``number``); a UID is a ``nz-number``: 1 .. 2^32-1.
IMAP_MAX = 4_294_967_295

_INT = re.compile(r"[+-]?[0-9]{1,30}", re.ASCII)
_FLOAT = re.compile(r"[+-]?(?:[0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})", re.ASCII)


def _shown(text: object) -> str:
    s = str(text)
    return repr(s if len(s) <= 40 else s[:40] + "…")


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) or not float(x).is_integer() else str(int(x))


def _range(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"between {_num(minimum)} and {_num(maximum)}"
    if minimum is not None:
        return f"at least {_num(minimum)}"
    return f"at most {_num(maximum)}" if maximum is not None else "a number"


def _within(minimum: float | None, maximum: float | None) -> str:
    return "" if minimum is None and maximum is None else f" {_range(minimum, maximum)}"


def parse_int(text: object, *, what: str, minimum: int | None = None, maximum: int | None = None,
              hint: str = "") -> int:
    """A decimal integer in range; ``what`` names the value in the error ("--limit")."""
    if isinstance(text, bool):
        raise UsageError(f"{what}: expected a whole number, got {text!r}")
    if isinstance(text, int):
        value = text
    else:
        s = str(text).strip()
        if not _INT.fullmatch(s):
            raise UsageError(f"{what}: expected a whole number{_within(minimum, maximum)} (digits 0-9), got "
                             f"{_shown(text)}"
                             + (f"; {hint}" if hint else ""))
        value = int(s)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise UsageError(f"{what}: {_shown(value)} is out of range: must be {_range(minimum, maximum)}"
                         + (f"; {hint}" if hint else ""))
    return value


def parse_float(text: object, *, what: str, minimum: float | None = None, maximum: float | None = None,
                hint: str = "") -> float:
    """A finite decimal number in range (no ``nan``, ``inf``, exponents or non-ASCII digits)."""
    if isinstance(text, bool):
        raise UsageError(f"{what}: expected a number, got {text!r}")
    if isinstance(text, int | float):
        value = float(text)
    else:
        s = str(text).strip()
        if not _FLOAT.fullmatch(s):
            raise UsageError(f"{what}: expected a number{_within(minimum, maximum)} like 2.5 (digits 0-9, no "
                             f"exponent), got {_shown(text)}"
                             + (f"; {hint}" if hint else ""))
        value = float(s)
    if not math.isfinite(value):
        raise UsageError(f"{what}: {_shown(text)} is not a finite number")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise UsageError(f"{what}: {_shown(text)} is out of range: must be {_range(minimum, maximum)}"
                         + (f"; {hint}" if hint else ""))
    return value


def parse_uid(text: object, *, what: str = "UID") -> int:
    """One IMAP UID: 1 .. 4294967295."""
    return parse_int(text, what=what, minimum=1, maximum=IMAP_MAX,
                     hint="IMAP UIDs are 1 to 4294967295, as `triage-tui list` shows them")


def _argtype(fn: Callable[[str], object], name: str) -> Callable[[str], object]:
    def convert(text: str) -> object:
        try:
            return fn(text)
        except UsageError as e:
            # argparse prefixes "argument --flag: "; the value is already named in the message
            raise argparse.ArgumentTypeError(str(e).split(": ", 1)[-1]) from None

    convert.__name__ = name  # argparse names the type in its own messages
    return convert


def int_arg(minimum: int | None = None, maximum: int | None = None, hint: str = "") -> Callable[[str], object]:
    return _argtype(lambda t: parse_int(t, what="value", minimum=minimum, maximum=maximum, hint=hint), "int")


def float_arg(minimum: float | None = None, maximum: float | None = None, hint: str = "") -> Callable[[str], object]:
    return _argtype(lambda t: parse_float(t, what="value", minimum=minimum, maximum=maximum, hint=hint), "float")


def uid_arg() -> Callable[[str], object]:
    return _argtype(parse_uid, "uid")
