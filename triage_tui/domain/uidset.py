"""UID sets: compression into ranges, parsing, and splitting into commands that fit server limits.

Neither imapclient nor imap_tools compresses UID sets; a plain comma list of 100k UIDs is
~700 KB and blows every server's command-line limit (Dovecot 64 KB, Exchange 10 KB).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator

from triage_tui.domain.numbers import IMAP_MAX
from triage_tui.errors import UsageError


def ranges(uids: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, de-duplicated ``(first, last)`` runs."""
    out: list[tuple[int, int]] = []
    for uid in sorted(set(uids)):
        if out and uid == out[-1][1] + 1:
            out[-1] = (out[-1][0], uid)
        else:
            out.append((uid, uid))
    return out


def _fmt(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}:{last}"


def compress(uids: Iterable[int]) -> str:
    """``[1,2,3,5,7,8]`` -> ``"1:3,5,7:8"``. Empty input gives ``""``."""
    return ",".join(_fmt(a, b) for a, b in ranges(uids))


#: The most UIDs one set may cover. Dovecot and Gmail mailboxes hold a few million messages at
#: most; a set covering more is a typo (``1:10000000,10000002:20000002`` once took 1.6 GB of
#: RAM when it was expanded), and ``--all``, ``--older-than`` or ``--filter`` select everything.
MAX_UIDS = 10_000_000
_NUMBER = re.compile(r"[0-9]{1,10}", re.ASCII)


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:60] + "…")


def _uid(token: str, text: str) -> int:
    tok = token.strip()
    if tok == "*":
        raise UsageError(f"invalid UID set {_shown(text)}: '*' (the highest UID, whatever arrives next) is refused: "
                         "give the UIDs as listed, or select with --all")
    if not _NUMBER.fullmatch(tok) or not 1 <= int(tok) <= IMAP_MAX:
        raise UsageError(f"invalid UID set {_shown(text)}: {tok[:20]!r} is not a UID (1 to {IMAP_MAX}); "
                         "expected numbers and ranges like 1:500,502")
    return int(tok)


def merge(runs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """``(lo, hi)`` runs (lo <= hi) sorted, with overlapping and adjacent ones joined: what
    :func:`contains` bisects."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(runs):
        if merged and lo <= merged[-1][1] + 1:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


def parse_ranges(text: str, *, limit: int = MAX_UIDS, dashes: bool = False) -> list[tuple[int, int]]:
    """Parse ``"1:3,5,9:7"`` into sorted, merged ``(first, last)`` runs without expanding them:
    reversed ranges are normalised (IMAP allows ``9:7``), duplicates and overlaps merged. ``*``,
    ``0``, non-ASCII digits and sets covering more than ``limit`` UIDs are refused. With
    ``dashes`` (what an operator types: ``--uids``), ``5-10`` is accepted as ``5:10`` too, the
    filter language's spelling; a server reply never gets that leniency."""
    text = text.strip()
    if not text:
        return []
    if len(text) > 1_000_000:
        raise UsageError(f"UID set of {len(text):,} characters is too long: select with --all, --older-than or "
                         "--filter instead")
    runs: list[tuple[int, int]] = []
    for part in text.split(","):
        sep = "-" if dashes and "-" in part and ":" not in part else ":"
        a, colon, b = part.partition(sep)
        lo = _uid(a, text)
        hi = _uid(b, text) if colon else lo
        runs.append((min(lo, hi), max(lo, hi)))
    merged = merge(runs)
    total = sum(hi - lo + 1 for lo, hi in merged)
    if total > limit:
        raise UsageError(f"UID set {_shown(text)} covers {total:,} UIDs, more than a mailbox holds (at most "
                         f"{limit:,}): select with --all, --older-than or --filter instead")
    return merged


def parse(text: str) -> list[int]:
    """Parse ``"1:3,5,9:7"`` into sorted unique UIDs (see :func:`parse_ranges` for what is refused)."""
    out: list[int] = []
    for lo, hi in parse_ranges(text):
        out.extend(range(lo, hi + 1))
    return out


def contains(runs: list[tuple[int, int]], uid: int) -> bool:
    """Whether ``uid`` lies in the sorted, merged ``runs`` of :func:`parse_ranges`."""
    i = bisect.bisect_right(runs, (uid, IMAP_MAX + 1)) - 1
    return i >= 0 and runs[i][0] <= uid <= runs[i][1]


def count(text: str) -> int:
    return sum(hi - lo + 1 for lo, hi in parse_ranges(text))


def split(uids: Iterable[int], *, max_bytes: int = 8192, max_count: int = 1000) -> Iterator[tuple[str, list[int]]]:
    """Yield ``(compressed_set, uids)`` pieces, each at most ``max_bytes`` long and covering at
    most ``max_count`` UIDs. A long run is cut into several ranges when it exceeds the count."""
    if max_bytes < 24 or max_count < 1:
        raise ValueError("chunk limits too small")
    parts: list[str] = []
    members: list[int] = []
    size = 0
    for first, last in ranges(uids):
        start = first
        while start <= last:
            room = max_count - len(members)
            stop = min(last, start + room - 1)
            token = _fmt(start, stop)
            extra = len(token) + (1 if parts else 0)
            if parts and size + extra > max_bytes:
                yield ",".join(parts), members
                parts, members, size = [], [], 0
                continue
            parts.append(token)
            members.extend(range(start, stop + 1))
            size += extra
            start = stop + 1
            if len(members) >= max_count:
                yield ",".join(parts), members
                parts, members, size = [], [], 0
    if parts:
        yield ",".join(parts), members
