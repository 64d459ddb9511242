"""UID sets: compression into ranges, parsing, and splitting into commands that fit server limits.

Neither imapclient nor imap_tools compresses UID sets; a plain comma list of 100k UIDs is
~700 KB and blows every server's command-line limit (Dovecot 64 KB, Exchange 10 KB).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

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


def parse(text: str) -> list[int]:
    """Parse ``"1:3,5,9:7"`` into sorted unique UIDs. ``*`` is refused: we act on known UIDs only."""
    out: set[int] = set()
    text = text.strip()
    if not text:
        return []
    for part in text.split(","):
        part = part.strip()
        try:
            if ":" in part:
                a, b = part.split(":", 1)
                lo, hi = sorted((int(a), int(b)))
                if lo < 1:
                    raise ValueError
                if hi - lo > 10_000_000:
                    raise UsageError(f"UID range {part!r} is implausibly large")
                out.update(range(lo, hi + 1))
            else:
                v = int(part)
                if v < 1:
                    raise ValueError
                out.add(v)
        except ValueError:
            raise UsageError(f"invalid UID set {text!r}: expected numbers and ranges like 1:500,502") from None
    return sorted(out)


def count(text: str) -> int:
    total = 0
    for part in filter(None, text.split(",")):
        if ":" in part:
            a, b = part.split(":", 1)
            total += abs(int(b) - int(a)) + 1
        else:
            total += 1
    return total


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
