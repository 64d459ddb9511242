"""The message list's state: messages by UID, sort order, filter, grouping, marks, cursor.

Pure Python (no Textual) so that the 100k-row paths can be measured and tested on their own:
the widget only asks for "row i" and the model keeps every derived list ready. Everything is
keyed by UID, so a refresh is a diff (add the new UIDs, drop the vanished ones) and marks and
the cursor survive it.

Costs, for 100k messages: sort keys are cached per column (re-sort is one ``list.sort`` over
cached tuples), filter results are cached per UID (new chunks only evaluate their own rows),
"mark all matching" is one ``set.update`` over the already filtered list.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any, Protocol

from triage_tui.domain.model import Message
from triage_tui.domain.outcome import GLYPHS as OUTCOME_GLYPHS
from triage_tui.domain.outcome import VERDICTS as OUTCOMES


class MessageFilter(Protocol):
    def matches(self, msg: Message, now: datetime) -> bool: ...


#: Sortable columns: key name -> (label, key function). Missing values sort last.
_BIG = float("inf")


def _ts(m: Message) -> float:
    return m.internaldate.timestamp() if m.internaldate is not None else _BIG


def _cut(order: list[int], key: Any, get: Callable[[int], Any], reverse: bool, lo: int) -> int:
    """How many UIDs of ``order`` (sorted by ``get``, descending if ``reverse``), from ``lo`` on,
    sort before ``key``: where a row with that key goes (binary search)."""
    hi = len(order)
    while lo < hi:
        mid = (lo + hi) // 2
        k = get(order[mid])
        if (k > key) if reverse else (k < key):
            lo = mid + 1
        else:
            hi = mid
    return lo


def project_label(m: Message) -> str:
    """How a project is shown and grouped: legacy path, ``slug#id``, ``#id`` or a placeholder
    saying why there is none (a reply key names no project offline)."""
    if m.project_path:
        return m.project_path
    if m.project_slug and m.project_id is not None:
        return f"{m.project_slug}#{m.project_id}"
    if m.project_id is not None:
        return f"#{m.project_id}"
    if m.no_key or m.kind == "unknown":
        return "(no key)"
    return f"({m.kind})"


def sender_domain(m: Message) -> str:
    addr = m.from_addr or ""
    return addr.rpartition("@")[2].lower() if "@" in addr else (addr.lower() or "(no sender)")


def gitlab_outcome(m: Message) -> str:
    """GitLab's predicted verdict (handled, dropped, rejected, unknown); ``unknown`` before the
    prediction ran."""
    o = m.outcome
    v = getattr(o, "verdict", None)
    return v if v in OUTCOMES else "unknown"


def outcome_label(verdict: str) -> str:
    """A group's label: ``↩ GitLab rejects`` (glyph and words, never colour alone)."""
    words = {"handled": "GitLab handles", "dropped": "GitLab drops (no reply)",
             "rejected": "GitLab rejects (writes to the sender)", "unknown": "GitLab: unknown"}
    return f"{OUTCOME_GLYPHS.get(verdict, '?')} {words.get(verdict, verdict)}"


_BOT = attrgetter("bot")
_STALE = attrgetter("stale")


def verdict_rank(m: Message) -> int:
    return (m.suspicious << 3) | (m.bot << 2) | (m.stale << 1) | int(m.no_key)


SORTS: dict[str, tuple[str, Callable[[Message], Any]]] = {
    "age": ("age", lambda m: (_ts(m), m.uid)),  # oldest first when ascending
    "uid": ("UID", lambda m: m.uid),
    "sender": ("sender", lambda m: ((m.from_addr or m.from_name).lower(), m.uid)),
    "project": ("project", lambda m: (project_label(m).lower(), m.uid)),
    "kind": ("handler", lambda m: (m.kind, m.uid)),
    "subject": ("subject", lambda m: (m.subject.lower(), m.uid)),
    "size": ("size", lambda m: (m.size, m.uid)),
    "verdict": ("verdicts", lambda m: (-verdict_rank(m), m.uid)),
    "lock": ("lock TTL", lambda m: (m.lock_ttl if m.lock_ttl is not None else -1, m.uid)),
}
SORT_ORDER = ("age", "sender", "project", "kind", "subject", "size", "verdict", "lock", "uid")

AGE_BUCKETS: tuple[tuple[float, str], ...] = (
    (3600, "< 1 hour"), (6 * 3600, "1–6 hours"), (86400, "6–24 hours"), (2 * 86400, "1–2 days"),
    (7 * 86400, "2–7 days"), (_BIG, "> 7 days"),
)


def age_bucket(m: Message, now: datetime) -> str:
    age = m.age_seconds(now)
    if age is None:
        return "(no date)"
    for limit, label in AGE_BUCKETS:
        if age < limit:
            return label
    return AGE_BUCKETS[-1][1]  # pragma: no cover


GROUPS: dict[str, str] = {
    "project": "project",
    "kind": "handler",
    "domain": "sender domain",
    "age": "age bucket",
    "outcome": "GitLab verdict",
}
GROUP_ORDER: tuple[str | None, ...] = (None, "project", "kind", "domain", "age", "outcome")


@dataclass
class Group:
    """A group header row: a summary line the operator can expand."""

    key: str
    label: str
    uids: list[int] = field(default_factory=list)
    oldest: float | None = None  # seconds of the oldest member's age
    marked: int = 0
    bots: int = 0
    stale: int = 0


Row = int | Group  # a message UID, or a group header


class ListModel:
    """Messages of one view, plus what the operator did to them (marks, filter, sort, groups)."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.clock = clock or (lambda: datetime.now(UTC))
        self.messages: dict[int, Message] = {}
        self.marks: set[int] = set()
        self.sort_key = "age"
        self.reverse = False
        self.filter: MessageFilter | None = None
        self.filter_text = ""
        self.group_by: str | None = None
        self.expanded: set[str] = set()  # group keys shown open (groups start as a summary)
        self.order: list[int] = []  # every UID, sorted
        self.filtered: list[int] = []  # order, narrowed by the filter
        self.rows: list[Row] = []  # what the widget shows
        self.groups: list[Group] = []
        self._keys: dict[str, dict[int, Any]] = {}
        self._match: dict[int, bool] = {}
        # what changed since the last resort: new UIDs (merged into ``order``), and whether
        # some were replaced or removed (then ``order`` is re-sorted / pruned)
        self._new: list[int] = []
        self._dirty = True  # order must be rebuilt from scratch (sort key or direction changed)
        self._removed = False

    # -- contents --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.messages)

    def clear(self) -> None:
        self.messages.clear()
        self.marks.clear()
        self._keys.clear()
        self._match.clear()
        self._new, self._dirty, self._removed = [], True, False
        self.order, self.filtered, self.rows, self.groups = [], [], [], []

    def add(self, batch: Iterable[Message]) -> int:
        """Add or replace messages (keyed by UID); returns how many were new. Call
        :meth:`rebuild` afterwards (once per burst of batches, not per batch)."""
        new = 0
        keys = self._keys
        msgs = self.messages
        fresh = self._new
        sort_keys = keys.setdefault(self.sort_key, {})
        fn = SORTS[self.sort_key][1]  # keys computed here, a batch at a time, not all at the next resort
        for m in batch:
            u = m.uid
            if u not in msgs:
                new += 1
                fresh.append(u)
            else:
                for cache in keys.values():
                    cache.pop(u, None)
                self._match.pop(u, None)
                self._dirty = True  # its sort key may have changed: re-sort (timsort: near O(n))
            msgs[u] = m
            sort_keys[u] = fn(m)
        return new

    def update(self, batch: Iterable[Message]) -> int:
        """Like :meth:`add`, but a message that differs from the one held only in its flags
        updates that one in place (the row and its object stay; a re-list's common case).
        Returns how many were new."""
        msgs = self.messages
        rest = []
        for m in batch:
            old = msgs.get(m.uid)
            if old is not None and old.flags != m.flags:
                flags, m.flags = m.flags, old.flags
                same = m == old
                m.flags = flags
                if same:
                    old.flags = flags
                    self._match.pop(m.uid, None)  # a filter may look at flags (sort keys do not)
                    continue
            rest.append(m)
        return self.add(rest)

    def forget_matches(self, uids: Iterable[int]) -> None:
        """Evaluate the filter again for these UIDs at the next refilter (a re-list: a filter
        may depend on the clock, e.g. ``age>1d``)."""
        if self._match:
            pop = self._match.pop
            for u in uids:
                pop(u, None)

    def remove(self, uids: Iterable[int]) -> int:
        """Drop vanished UIDs (and their marks). Returns how many were present."""
        gone = 0
        for u in uids:
            if self.messages.pop(u, None) is not None:
                gone += 1
                self._removed = True
                self.marks.discard(u)
                self._match.pop(u, None)
                for cache in self._keys.values():
                    cache.pop(u, None)
        return gone

    def forget_sort_keys(self, column: str) -> None:
        """Drop a column's cached sort keys (its values change in place, e.g. lock TTLs)."""
        if self._keys.pop(column, None) is not None and column == self.sort_key:
            self._dirty = True

    # -- derived lists --------------------------------------------------------------------------

    def _sort_keys(self, uids: Iterable[int] | None = None) -> dict[int, Any]:
        """The cached sort keys of the current column; computed for ``uids`` (default: every
        message) where missing."""
        cache = self._keys.setdefault(self.sort_key, {})
        fn = SORTS[self.sort_key][1]
        msgs = self.messages
        if uids is None:
            if len(cache) == len(msgs):
                return cache
            uids = msgs
        for u in uids:
            if u not in cache:
                m = msgs.get(u)
                if m is not None:
                    cache[u] = fn(m)
        return cache

    def resort(self) -> None:
        """Bring ``order`` up to date. Incremental when only new UIDs arrived (a listing's
        batches, a refresh): their keys alone are computed and they are merged in (appended
        when they all sort after the last row, the common case of a listing by age)."""
        msgs = self.messages
        new, self._new = self._new, []
        if self._dirty or len(new) > len(msgs) // 2 + 1000:
            self._dirty = self._removed = False
            keys = self._sort_keys()
            order = list(msgs)
            order.sort(key=keys.__getitem__, reverse=self.reverse)
            self.order = order
            return
        order = self.order
        if self._removed:
            self._removed = False
            order = [u for u in order if u in msgs]
        if new:
            new = [u for u in dict.fromkeys(new) if u in msgs]  # added then removed: gone
            keys = self._sort_keys(new)
            get = keys.__getitem__
            new.sort(key=get, reverse=self.reverse)
            if not order:
                order = new
            else:
                # Only the stretch of ``order`` the new keys fall into is sorted again (keys are
                # unique: each ends in the UID). A listing's new rows mostly go at one end: a
                # newest-first listing re-sorted all 90k rows at every rebuild (7-14 ms each).
                rev = self.reverse
                lo = _cut(order, get(new[0]), get, rev, 0)
                hi = _cut(order, get(new[-1]), get, rev, lo)
                if lo == hi:
                    order = order[:lo] + new + order[lo:]
                else:
                    mid = order[lo:hi] + new
                    mid.sort(key=get, reverse=rev)  # two sorted runs: one merge
                    order = order[:lo] + mid + order[hi:]
        self.order = order

    def refilter(self) -> None:
        flt = self.filter
        if flt is None:
            self.filtered = self.order
            return
        now = self.clock()
        match = self._match
        msgs = self.messages
        out = []
        for u in self.order:
            ok = match.get(u)
            if ok is None:
                try:
                    ok = bool(flt.matches(msgs[u], now))
                except Exception:  # noqa: BLE001 - a filter must never take the list down
                    ok = False
                match[u] = ok
            if ok:
                out.append(u)
        self.filtered = out

    def regroup(self) -> None:
        """Group the filtered rows. At 100k rows this runs on every refresh, so the per-row work
        is done by C-level ``map`` over cached per-UID values (group keys and timestamps are
        cached like sort keys and dropped with them when a message is replaced or removed);
        only the age buckets, which depend on the clock, are computed per row."""
        if self.group_by is None:
            self.groups = []
            self.rows = self.filtered  # type: ignore[assignment]
            return
        now = self.clock()
        msgs = self.messages
        filtered = self.filtered
        ts_cache = self._cached("group:ts", _ts, filtered)
        if self.group_by == "age":
            # age < limit  <=>  date after now - limit; timestamps keep the dates' order (and
            # tell microseconds apart), so one bisect per row gives age_bucket's answer
            cuts = [(now - timedelta(seconds=limit)).timestamp() for limit, _ in AGE_BUCKETS[:-1]]
            cuts.reverse()  # ascending: the oldest limit first
            labels = [label for _, label in reversed(AGE_BUCKETS)]

            def bucket(t: float) -> str:
                return "(no date)" if t == _BIG else labels[bisect_left(cuts, t)]

            keys: Iterable[str] = map(bucket, map(ts_cache.__getitem__, filtered))
        else:
            keys = map(self._cached("group:" + self.group_by, self._group_key_fn(now), filtered).__getitem__,
                       filtered)
        members: dict[str, list[int]] = {}
        get = members.get
        for k, u in zip(keys, filtered, strict=True):
            lst = get(k)
            if lst is None:
                members[k] = [u]
            else:
                lst.append(u)
        ts = ts_cache.__getitem__
        marks = self.marks
        outcome = self.group_by == "outcome"
        by: dict[str, Group] = {}
        for k, uids in members.items():
            g = by[k] = Group(key=k, label=outcome_label(k) if outcome else k, uids=uids)
            first = min(uids, key=ts)  # the oldest (timestamps order as the dates do)
            if ts(first) != _BIG:
                g.oldest = msgs[first].age_seconds(now)
            g.marked = sum(map(marks.__contains__, uids)) if marks else 0
            members_ = list(map(msgs.__getitem__, uids))
            g.bots = sum(map(_BOT, members_))
            g.stale = sum(map(_STALE, members_))
        groups = list(by.values())
        if self.group_by == "age":
            rank = {label: i for i, (_, label) in enumerate(AGE_BUCKETS)}
            groups.sort(key=lambda g: rank.get(g.key, -1), reverse=True)
        elif self.group_by == "outcome":  # GitLab's order of concern: rejections first
            order = {"rejected": 0, "unknown": 1, "dropped": 2, "handled": 3}
            groups.sort(key=lambda g: order.get(g.key, 9))
        else:
            groups.sort(key=lambda g: (-len(g.uids), g.key))
        rows: list[Row] = []
        for g in groups:
            rows.append(g)
            if g.key in self.expanded:
                rows.extend(g.uids)
        self.groups = groups
        self.rows = rows

    def _cached(self, name: str, fn: Callable[[Message], Any], uids: Iterable[int]) -> dict[int, Any]:
        """Per-UID values of ``fn`` for ``uids``, cached under ``name`` (with the sort keys: a
        replaced or removed message drops its entries)."""
        cache = self._keys.setdefault(name, {})
        if len(cache) < len(self.messages):
            msgs = self.messages
            for u in uids:
                if u not in cache:
                    cache[u] = fn(msgs[u])
        return cache

    def _group_key_fn(self, now: datetime) -> Callable[[Message], str]:
        if self.group_by == "project":
            return project_label
        if self.group_by == "kind":
            return lambda m: m.kind or "unknown"
        if self.group_by == "domain":
            return sender_domain
        if self.group_by == "age":
            return lambda m: age_bucket(m, now)
        if self.group_by == "outcome":
            return gitlab_outcome
        raise ValueError(self.group_by)

    def rebuild(self) -> None:
        self.resort()
        self.refilter()
        self.regroup()

    # -- settings -------------------------------------------------------------------------------

    def set_sort(self, key: str, reverse: bool | None = None) -> None:
        if key not in SORTS:
            raise ValueError(f"unknown sort column {key!r}")
        self.sort_key = key
        if reverse is not None:
            self.reverse = reverse
        self._dirty = True
        self.resort()
        self.refilter()
        self.regroup()

    def set_filter(self, flt: MessageFilter | None, text: str = "") -> None:
        self.filter = flt
        self.filter_text = text if flt is not None else ""
        self._match = {}
        self.refilter()
        self.regroup()

    def set_group(self, group_by: str | None) -> None:
        if group_by is not None and group_by not in GROUPS:
            raise ValueError(f"unknown grouping {group_by!r}")
        self.group_by = group_by
        self.expanded.clear()
        self.regroup()

    def toggle_group(self, key: str) -> None:
        if key in self.expanded:
            self.expanded.discard(key)
        else:
            self.expanded.add(key)
        self.regroup()

    def expand_all(self, expand: bool) -> None:
        self.expanded = {g.key for g in self.groups} if expand else set()
        self.regroup()

    # -- marks ----------------------------------------------------------------------------------

    def toggle_mark(self, uid: int) -> bool:
        if uid in self.marks:
            self.marks.discard(uid)
            return False
        self.marks.add(uid)
        return True

    def mark_many(self, uids: Iterable[int], on: bool = True) -> None:
        if on:
            self.marks.update(uids)
        else:
            self.marks.difference_update(uids)

    def mark_all_matching(self) -> int:
        """Mark the whole filtered set (not just the rows on screen). Returns the mark count."""
        self.marks.update(self.filtered)
        return len(self.marks)

    def mark_where(self, pred: Callable[[Message], bool]) -> int:
        """Mark every filtered message for which ``pred`` holds; returns how many that was."""
        msgs = self.messages
        hits = [u for u in self.filtered if pred(msgs[u])]
        self.marks.update(hits)
        return len(hits)

    def invert_marks(self) -> None:
        """Invert within the filtered set; marks outside the filter are left alone."""
        shown = set(self.filtered)
        self.marks = (self.marks - shown) | (shown - self.marks)

    def clear_marks(self) -> None:
        self.marks.clear()

    @property
    def hidden_marks(self) -> int:
        """Marks the current filter hides (actions still act on them: say so)."""
        if self.filter is None or not self.marks:
            return 0
        match = self._match
        return sum(1 for u in self.marks if not match.get(u, True))

    def refresh_group_marks(self) -> None:
        if self.groups:
            marks = self.marks
            for g in self.groups:
                g.marked = sum(1 for u in g.uids if u in marks)

    # -- rows -----------------------------------------------------------------------------------

    def row_uids(self, row: Row) -> list[int]:
        return row.uids if isinstance(row, Group) else [row]

    def index_of(self, uid: int) -> int | None:
        try:
            return self.rows.index(uid)
        except ValueError:
            return None

    def index_of_group(self, key: str) -> int | None:
        for i, r in enumerate(self.rows):
            if isinstance(r, Group) and r.key == key:
                return i
        return None
