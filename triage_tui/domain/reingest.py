"""Which selected messages a re-ingest takes: GitLab's verdict by age, and stale junk left out.

Re-ingesting is not free. For mail no handler accepts GitLab writes a rejection to the sender,
so re-ingesting three-week-old junk sends weeks-late rejections to customers and bots (reply
loops); auto-generated mail is dropped without a word and only costs a job. So by default a
re-ingest leaves out the **stale** messages whose predicted verdict
(:mod:`triage_tui.domain.outcome`) is ``rejected`` or ``dropped``; one visible switch
(``--include-junk`` in the CLI, a key on the TUI's re-ingest screen) brings them back.

Pure: the caller passes the messages (already annotated) and the stale limit; the result says
what is in, what is out, and counts per verdict × age bucket for the plan's text and JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from triage_tui.domain import uidset
from triage_tui.domain.age import format_age
from triage_tui.domain.model import Message
from triage_tui.domain.outcome import DROPPED, HANDLED, REJECTED, UNKNOWN, VERDICTS

FRESH, STALE, NO_DATE = "fresh", "stale", "no date"
AGES: tuple[str, ...] = (FRESH, STALE, NO_DATE)
#: Verdicts a stale message is left out for, by default.
JUNK = frozenset({REJECTED, DROPPED})
_WHAT = {
    HANDLED: "a handler takes it (GitLab's DB may refuse)",
    DROPPED: "GitLab ignores it without a reply",
    REJECTED: "GitLab writes a rejection to the sender",
    UNKNOWN: "cannot be predicted from the header",
}


def verdict_of(m: Message) -> str:
    o = getattr(m, "outcome", None)
    v = getattr(o, "verdict", None)
    return v if v in VERDICTS else UNKNOWN


def age_of(m: Message, stale_s: float, now: datetime) -> str:
    try:
        age = m.age_seconds(now)
    except Exception:  # noqa: BLE001 - a broken date is "no date", never a crash
        age = None
    if age is None:
        return NO_DATE
    return STALE if age > stale_s else FRESH


@dataclass(frozen=True)
class ReingestSelection:
    """The selection split for a re-ingest. ``counts`` covers every selected message (verdict,
    age) -> n; ``left_out`` only those excluded. ``included`` keeps the callers' order."""

    included: tuple[int, ...]
    excluded: tuple[int, ...]
    counts: dict[tuple[str, str], int]
    left_out: dict[tuple[str, str], int]
    stale_after_s: float
    include_junk: bool
    #: stale junk there is (whether or not it was left out): what the switch would change
    junk: tuple[int, ...] = field(default=())

    @property
    def selected(self) -> int:
        return len(self.included) + len(self.excluded)

    def count(self, verdict: str | None = None, age: str | None = None) -> int:
        return sum(n for (v, a), n in self.counts.items()
                   if (verdict is None or v == verdict) and (age is None or a == age))

    def lines(self, switch: str = "--include-junk") -> list[str]:
        """The plan's text: counts by verdict and age, then what was left out and how to bring it
        back (``switch`` names the CLI flag or the TUI key)."""
        limit = format_age(self.stale_after_s)
        out = [f"GitLab's verdict on the {self.selected:,} selected message(s) (stale: older than {limit}):"]
        for v in VERDICTS:
            n = self.count(v)
            if not n:
                continue
            parts = [f"{self.count(v, a):,} {a}" for a in AGES if self.count(v, a)]
            out.append(f"  {v:<9}{n:>7,}  ({', '.join(parts)}): {_WHAT[v]}")
        if self.excluded:
            by = ", ".join(f"{n:,} {v}" for (v, _a), n in sorted(self.left_out.items(), key=lambda kv: kv[0]))
            out.append(f"left out: {len(self.excluded):,} stale message(s) GitLab would reject or drop ({by}); "
                       f"UIDs {_short(uidset.compress(self.excluded))}; {switch} brings them in")
        elif self.junk:
            out.append(f"included on request: {len(self.junk):,} stale message(s) GitLab would reject or drop "
                       "(rejections go out weeks late)")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "selected": self.selected, "included": len(self.included), "excluded": len(self.excluded),
            "excluded_uids": uidset.compress(self.excluded), "include_junk": self.include_junk,
            "stale_after_s": self.stale_after_s,
            "counts": [{"outcome": v, "age": a, "count": n} for (v, a), n in sorted(self.counts.items())],
            "left_out": [{"outcome": v, "age": a, "count": n} for (v, a), n in sorted(self.left_out.items())],
        }


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def select_for_reingest(messages: Iterable[Message], stale_after: timedelta | float, *,
                        now: datetime | None = None, include_junk: bool = False) -> ReingestSelection:
    """Split ``messages`` into what a re-ingest takes and what it leaves out: by default every
    message whose age is over ``stale_after`` and whose predicted verdict is ``rejected`` or
    ``dropped`` is left out; ``include_junk`` keeps everything (the counts say what it is).
    A message without a delivery time is never called stale (it is counted as "no date")."""
    stale_s = stale_after.total_seconds() if isinstance(stale_after, timedelta) else float(stale_after)
    now = now or datetime.now(UTC)
    included: list[int] = []
    excluded: list[int] = []
    junk: list[int] = []
    counts: dict[tuple[str, str], int] = {}
    left_out: dict[tuple[str, str], int] = {}
    seen: set[int] = set()
    for m in messages:
        if m.uid in seen:
            continue
        seen.add(m.uid)
        cell = (verdict_of(m), age_of(m, stale_s, now))
        counts[cell] = counts.get(cell, 0) + 1
        if cell[1] == STALE and cell[0] in JUNK:
            junk.append(m.uid)
            if not include_junk:
                excluded.append(m.uid)
                left_out[cell] = left_out.get(cell, 0) + 1
                continue
        included.append(m.uid)
    return ReingestSelection(tuple(included), tuple(excluded), counts, left_out, stale_s, include_junk,
                             tuple(junk))


__all__ = ["AGES", "FRESH", "JUNK", "NO_DATE", "STALE", "ReingestSelection", "age_of", "select_for_reingest",
           "verdict_of"]
