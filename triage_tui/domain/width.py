"""Display width: how many terminal cells a string takes (East Asian wide and fullwidth
characters take two, combining marks none), and fitting text into a column of cells.

The CLI must not import Rich or Textual (see the import-linter contracts), so this is the small
pure version of ``rich.cells.cell_len`` the plain ``list`` output uses to keep its columns
straight when a sender or a subject is Chinese, Japanese or Korean. Text is made inert (see
:func:`triage_tui.domain.text.inert`) before it is measured: control and format characters are
already shown as visible escapes by then.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache


@lru_cache(maxsize=4096)
def char_width(ch: str) -> int:
    """Cells taken by one code point: 2 for East Asian wide/fullwidth, 0 for combining marks
    and the zero-width joiner, 1 otherwise."""
    if ch.isascii():
        return 1
    if unicodedata.combining(ch) or ch in "\u200d" or unicodedata.category(ch) in ("Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def cell_len(text: str) -> int:
    """Cells ``text`` takes on a terminal."""
    if text.isascii():
        return len(text)
    return sum(char_width(ch) for ch in text)


def fit(text: str, width: int, *, pad: bool = True) -> str:
    """``text`` cut to at most ``width`` cells (``…`` marks the cut; a wide character that would
    straddle the edge is left out) and, with ``pad``, padded with spaces to exactly ``width``."""
    if width <= 0:
        return ""
    if text.isascii():
        if len(text) > width:
            text = text[: width - 1] + "…"
        return text.ljust(width) if pad else text
    used = 0
    out: list[str] = []
    total = cell_len(text)
    room = width if total <= width else width - 1  # room for the ellipsis
    for ch in text:
        w = char_width(ch)
        if used + w > room:
            break
        out.append(ch)
        used += w
    if total > width:
        out.append("…")
        used += 1
    s = "".join(out)
    return s + " " * (width - used) if pad else s
