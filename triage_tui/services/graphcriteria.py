"""IMAP SEARCH criteria, as the triage service sends them, evaluated over Graph messages.

The service layer searches with IMAP criteria (a view's ``UNSEEN`` or ``SEEN UNDELETED KEYWORD
$TriageIgnored``, a filter's pushdown, ``UID <set> <criteria>`` when it narrows a plan). A Graph
mailbox answers them here: the parts Graph can filter on (``isRead``, ``receivedDateTime``) go
into ``$filter`` to shrink the listing, and every criterion is evaluated again on each message,
three-valued:

- exact: ``ALL``, ``SEEN``/``UNSEEN`` (isRead), ``DELETED``/``UNDELETED`` (in Deleted Items or
  not), ``KEYWORD``/``UNKEYWORD $TriageIgnored`` (the ``TriageIgnored`` category), ``UID <set>``,
  ``SINCE``/``BEFORE``/``ON <date>`` (the UTC day of receivedDateTime), ``OLDER``/``YOUNGER <n>``,
  ``NOT``, ``OR``, parentheses;
- unknown (``None``, so the message is *kept*: a superset): ``FROM``/``TO``/``CC``/``SUBJECT``/
  ``BODY``/``TEXT``/``HEADER`` text and ``LARGER``/``SMALLER`` (Graph gives no size). Only a
  filter's pushdown sends these, and its callers re-apply the filter locally (``list``, the
  selectors of the mutating commands): a superset there is what the pushdown promises anyway.
  ``NOT unknown`` stays unknown, so a superset never becomes a subset;
- anything else (``RECENT``, ``MODSEQ``, ``ANSWERED``, sequence numbers, other keywords...):
  :class:`OperationFailed`, never a guess.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from triage_tui.domain import uidset
from triage_tui.domain.model import TRIAGE_KEYWORD
from triage_tui.errors import OperationFailed

#: The Graph category that stands for :data:`TRIAGE_KEYWORD` (categories are names, no ``$``).
TRIAGE_CATEGORY = "TriageIgnored"
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_TEXT_KEYS = frozenset({"FROM", "TO", "CC", "BCC", "SUBJECT", "BODY", "TEXT"})


@dataclass
class Row:
    """What a search looks at: one Graph message."""

    uid: int
    gid: str
    is_read: bool
    categories: tuple[str, ...]
    received: datetime | None
    deleted: bool  # in Deleted Items
    etag: str | None = None

    @property
    def ignored(self) -> bool:
        k = TRIAGE_CATEGORY.casefold()
        return any(c.casefold() == k for c in self.categories)


Tri = bool | None
Pred = Callable[[Row, datetime], Tri]


@dataclass
class Criteria:
    pred: Pred
    #: ``$filter`` clauses implied by the top-level conjunction (exact: the rows they drop never match)
    server: list[str]
    #: which folders can hold a match: "main" and/or "deleted"
    folders: frozenset[str]


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()":
            out.append(c)
            i += 1
        elif c == '"':
            j = i + 1
            buf = []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise OperationFailed(f"unterminated quoted string in search criteria {text[:80]!r}")
            out.append('"' + "".join(buf))
            i = j + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in '()"':
                j += 1
            out.append(text[i:j])
            i = j
    return out


def _date(word: str) -> date:
    try:
        d, m, y = word.lstrip('"').split("-")
        return date(int(y), _MONTHS.index(m.lower()) + 1, int(d))
    except (ValueError, IndexError):
        raise OperationFailed(f"not an IMAP date in search criteria: {word[:40]!r}") from None


def _day(row: Row) -> date | None:
    return row.received.astimezone(UTC).date() if row.received is not None else None


def _age(row: Row, now: datetime) -> float | None:
    return (now - row.received).total_seconds() if row.received is not None else None


def _not(p: Pred) -> Pred:
    def f(r: Row, now: datetime) -> Tri:
        v = p(r, now)
        return None if v is None else not v
    return f


def _and(ps: list[Pred]) -> Pred:
    def f(r: Row, now: datetime) -> Tri:
        unknown = False
        for p in ps:
            v = p(r, now)
            if v is False:
                return False
            unknown = unknown or v is None
        return None if unknown else True
    return f


def _or(a: Pred, b: Pred) -> Pred:
    def f(r: Row, now: datetime) -> Tri:
        x, y = a(r, now), b(r, now)
        if x is True or y is True:
            return True
        return None if x is None or y is None else False
    return f


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        #: DELETED asked for somewhere (positively): Deleted Items must be looked at
        self.wants_deleted = False

    def fail(self, what: str) -> OperationFailed:
        return OperationFailed(f"a Graph mailbox cannot search {what} (criteria {self.text[:120]!r})")

    def next(self) -> str:
        if self.i >= len(self.toks):
            raise self.fail("an incomplete criterion")
        t = self.toks[self.i]
        self.i += 1
        return t

    def keys(self, stop: str | None = None) -> list[tuple[Pred, str | None, bool | None]]:
        """Search keys up to ``stop`` (or the end): (predicate, $filter clause, deleted-only?)."""
        out = []
        while self.i < len(self.toks) and self.toks[self.i] != stop:
            out.append(self.key(positive=True))
        return out

    def key(self, positive: bool) -> tuple[Pred, str | None, bool | None]:
        t = self.next()
        u = t.upper()
        if t == "(":
            inner = self.keys(")")
            if self.i >= len(self.toks):
                raise self.fail("an unclosed parenthesis")
            self.i += 1
            return _and([p for p, _, _ in inner]), None, None
        if u == "NOT":
            p, _, _ = self.key(not positive)
            return _not(p), None, None
        if u == "OR":
            a, _, _ = self.key(positive)
            b, _, _ = self.key(positive)
            return _or(a, b), None, None
        if u == "ALL":
            return (lambda r, now: True), None, None
        if u in ("SEEN", "UNSEEN"):
            want = u == "SEEN"
            return (lambda r, now: r.is_read is want), f"isRead eq {'true' if want else 'false'}", None
        if u in ("DELETED", "UNDELETED"):
            want = u == "DELETED"
            if want == positive:
                self.wants_deleted = True
            return (lambda r, now: r.deleted is want), None, want
        if u in ("KEYWORD", "UNKEYWORD"):
            word = self.next().lstrip('"')
            if word.casefold() != TRIAGE_KEYWORD.casefold():
                raise self.fail(f"keyword {word[:40]!r} (only {TRIAGE_KEYWORD}, kept as the category "
                                f"{TRIAGE_CATEGORY})")
            want = u == "KEYWORD"
            return (lambda r, now: r.ignored is want), None, None
        if u == "UID":
            try:
                ranges = uidset.parse_ranges(self.next())
            except Exception:  # noqa: BLE001 - any malformed set
                raise self.fail("this UID set") from None

            def in_set(r: Row, now: datetime) -> Tri:
                return uidset.contains(ranges, r.uid)
            return in_set, None, None
        if u in ("SINCE", "BEFORE", "ON"):
            d = _date(self.next())
            start = datetime(d.year, d.month, d.day, tzinfo=UTC)
            if u == "SINCE":
                return (lambda r, now: None if _day(r) is None else _day(r) >= d), \
                    f"receivedDateTime ge {start:%Y-%m-%dT%H:%M:%SZ}", None
            if u == "BEFORE":
                return (lambda r, now: None if _day(r) is None else _day(r) < d), \
                    f"receivedDateTime lt {start:%Y-%m-%dT%H:%M:%SZ}", None
            return (lambda r, now: None if _day(r) is None else _day(r) == d), None, None
        if u in ("OLDER", "YOUNGER"):
            word = self.next()
            if not word.isdigit():
                raise self.fail(f"{u} {word[:20]!r}")
            n = int(word)
            if u == "OLDER":
                return (lambda r, now: None if _age(r, now) is None else _age(r, now) >= n), None, None
            return (lambda r, now: None if _age(r, now) is None else _age(r, now) <= n), None, None
        if u in _TEXT_KEYS:
            self.next()
            return (lambda r, now: None), None, None
        if u == "HEADER":
            self.next()
            self.next()
            return (lambda r, now: None), None, None
        if u in ("LARGER", "SMALLER"):
            if not self.next().isdigit():
                raise self.fail(f"{u} without a number")
            return (lambda r, now: None), None, None
        raise self.fail(repr(t[:40]))


def parse(text: str) -> Criteria:
    p = _Parser(text)
    keys = p.keys()
    if p.i != len(p.toks):
        raise p.fail("an unbalanced parenthesis")
    if not keys:
        raise p.fail("empty criteria")
    server = [c for _, c, _ in keys if c]
    only = {d for _, _, d in keys if d is not None}
    if only == {True}:
        folders = frozenset({"deleted"})
    elif only == {False}:
        folders = frozenset({"main"})
    elif only:  # DELETED UNDELETED: nothing can match
        folders = frozenset()
    else:
        folders = frozenset({"main", "deleted"}) if p.wants_deleted else frozenset({"main"})
    return Criteria(_and([k for k, _, _ in keys]), server, folders)


def received_range(days: list[datetime]) -> str | None:
    """A ``$filter`` clause covering these receivedDateTimes (a second of slack each side)."""
    if not days:
        return None
    lo, hi = _utc(min(days), -1), _utc(max(days), 1)
    return (f"receivedDateTime ge {lo:%Y-%m-%dT%H:%M:%SZ} and "
            f"receivedDateTime le {hi:%Y-%m-%dT%H:%M:%SZ}")


def _utc(t: datetime, slack: int) -> datetime:
    """``t`` in UTC, ``slack`` seconds further out, as far as a datetime reaches: a server's
    receivedDateTime of 9999-12-31T23:59:59Z (or year 1) overflowed here, and the id map kept
    it, so every later listing of the mailbox was an internal error (found by an adversary)."""
    try:
        t = t.astimezone(UTC)
    except (OverflowError, ValueError):
        t = t.replace(tzinfo=UTC)
    try:
        return t + timedelta(seconds=slack)
    except OverflowError:
        return t


__all__ = ["TRIAGE_CATEGORY", "Criteria", "Row", "parse", "received_range"]
