"""What is shown and selected: marks (toggle, range, invert, clear, all, stale, bots, older
than), the view, sort and group, and the filter bar."""

from __future__ import annotations

import builtins
import contextlib
import time
from datetime import datetime
from typing import Any

from triage_tui.domain.model import Message, View
from triage_tui.errors import TriageError
from triage_tui.tui.controllers.host import Host
from triage_tui.tui.listmodel import GROUP_ORDER, GROUPS, SORT_ORDER, SORTS, Group
from triage_tui.tui.widgets.bars import FilterBar, FilterInput, marked_text


class ViewController:
    def __init__(self, host: Host) -> None:
        self.host = host

    # -- marks -----------------------------------------------------------------------------------

    def after_marks(self, rows: builtins.list[int] | None = None) -> None:
        h = self.host
        h.model.refresh_group_marks()
        lst = h.list
        if rows is None:
            lst.refresh()
        else:
            for r in rows:
                lst.refresh_row(r)
        h._pulse()

    def toggle_mark(self) -> None:
        h = self.host
        lst = h.list
        row = lst.current
        if row is None:
            return
        index = lst.cursor
        if isinstance(row, Group):
            uids = row.uids
            on = not all(u in h.model.marks for u in uids)
            h.model.mark_many(uids, on)
            self.after_marks(None)
        else:
            h.model.toggle_mark(row)
            self.after_marks([index])
        lst.action_cursor_down()

    def mark_range(self) -> None:
        h = self.host
        lst = h.list
        rows = h.model.rows
        if not 0 <= lst.cursor < len(rows):
            h._range_anchor = None
            h.status("nothing to mark here")
            return
        if h._range_anchor is None:
            # the row itself, not its position: a refresh, a filter or a sort between the two
            # presses moves rows, and a position then covered mail the operator never drew
            row = rows[lst.cursor]
            h._range_anchor = ("group", row.key) if isinstance(row, Group) else ("uid", row)
            h.status("range mark: move to the other end and press v again (esc cancels)")
            return
        kind, what = h._range_anchor
        h._range_anchor = None
        at = h.model.index_of_group(what) if kind == "group" else h.model.index_of(what)  # type: ignore[arg-type]
        if at is None:
            h.status("range mark cancelled: the row it started at is no longer listed (filtered out or gone); "
                     "press v to start again", "warn")
            return
        a, b = sorted((at, lst.cursor))
        uids: list[int] = []
        for row in h.model.rows[a: b + 1]:
            uids.extend(h.model.row_uids(row))
        h.model.mark_many(uids)
        self.after_marks()
        h.status(f"marked {len(uids):,} rows in the range")

    def invert_marks(self) -> None:
        self.host.model.invert_marks()
        self.after_marks()

    def clear_marks(self) -> None:
        h = self.host
        n = len(h.model.marks)
        h.model.clear_marks()
        self.after_marks()
        h.status(f"cleared {n:,} marks" if n else "no marks to clear")

    def mark_all(self) -> None:
        h = self.host
        n = len(h.model.filtered)
        h.model.mark_all_matching()
        self.after_marks()
        what = f"matching filter {h.model.filter_text!r}" if h.model.filter_text else "in the view"
        h.status(f"marked all {n:,} messages {what} (not just the visible rows)")

    def mark_stale(self) -> None:
        h = self.host
        before = len(h.model.marks)
        n = h.model.mark_where(lambda m: m.stale)
        self.after_marks()
        h.status(marked_text("stale messages", n, before, len(h.model.marks))
                 + (" (within the filter)" if h.model.filter else ""))

    def mark_bots(self) -> None:
        h = self.host
        before = len(h.model.marks)
        n = h.model.mark_where(lambda m: m.bot)
        self.after_marks()
        h.status(marked_text("bot messages", n, before, len(h.model.marks))
                 + (" (within the filter)" if h.model.filter else ""))

    def mark_older(self, age_text: str, then_mark_seen: bool) -> None:
        from triage_tui.domain.age import parse_age

        h = self.host
        try:
            limit = parse_age(age_text).total_seconds()
        except TriageError as e:
            h.status(str(e), "error")
            return
        now = h.clock()
        before = len(h.model.marks)
        n = h.model.mark_where(lambda m: (a := m.age_seconds(now)) is not None and a > limit)
        self.after_marks()
        h.status(marked_text(f"messages older than {age_text}", n, before, len(h.model.marks)))
        if then_mark_seen and n:
            h.call_later(h.palette_run, "mark_seen")

    # -- view, sort, group ----------------------------------------------------------------------

    def set_view(self, name: str) -> None:
        h = self.host
        view = View(name)
        if view == h.view and not h._loading:
            h.status(f"already in the {view.value} view (R re-lists it)")
            return
        marks = len(h.model.marks)
        h.view = view
        h._range_anchor = None
        h._load()
        h.refresh_bindings()
        if marks:
            h.status(f"{marks:,} marks cleared: they belonged to the previous view", "warn")

    def sort(self, key: str) -> None:
        h = self.host
        keep = h.list.current
        t0 = time.perf_counter()
        rev = (not h.model.reverse) if key == h.model.sort_key else False
        h.model.set_sort(key, rev)
        h.stats["sort_s"] = time.perf_counter() - t0
        h._refresh_list(keep)

    def sort_next(self) -> None:
        h = self.host
        i = SORT_ORDER.index(h.model.sort_key) if h.model.sort_key in SORT_ORDER else -1
        key = SORT_ORDER[(i + 1) % len(SORT_ORDER)]
        keep = h.list.current
        t0 = time.perf_counter()
        h.model.set_sort(key, False)
        h.stats["sort_s"] = time.perf_counter() - t0
        h._refresh_list(keep)
        h.status(f"sorted by {SORTS[key][0]} (s: next column, r: reverse)")

    def sort_reverse(self) -> None:
        h = self.host
        keep = h.list.current
        t0 = time.perf_counter()
        h.model.set_sort(h.model.sort_key, not h.model.reverse)
        h.stats["sort_s"] = time.perf_counter() - t0
        h._refresh_list(keep)

    def group(self, key: str) -> None:
        h = self.host
        h.model.set_group(key or None)
        h.list.cursor = 0
        h._refresh_list()
        if key:
            h.status(f"grouped by {GROUPS[key]}: enter folds/unfolds a group, space marks all of it, Z all groups")

    def group_next(self) -> None:
        i = GROUP_ORDER.index(self.host.model.group_by)
        self.host.action_group(GROUP_ORDER[(i + 1) % len(GROUP_ORDER)] or "")

    def toggle_all_groups(self) -> None:
        h = self.host
        if not h.model.groups:
            return
        keep = h.list.current
        h.model.expand_all(not h.model.expanded)
        h._refresh_list(keep)

    # -- filter ----------------------------------------------------------------------------------

    def open_filter(self) -> None:
        h = self.host
        bar = h.query_one("#filterbar", FilterBar)
        bar.add_class("-open")
        box = h.query_one("#filter-input", FilterInput)
        box.value = h.model.filter_text
        box.cursor_position = len(box.value)
        box.focus()

    def close_filter_bar(self) -> None:
        self.host.query_one("#filterbar", FilterBar).remove_class("-open")
        self.host.list.focus()

    def filter_submitted(self, value: str) -> None:
        h = self.host
        if not value.strip() and h.model.filter is None:
            # enter on an empty box changes nothing: it does not close the box either, so a
            # key typed right after it is not run on the whole list (esc closes)
            h.status("empty filter: type one (F1: syntax), or esc to close", "warn")
        elif h.apply_filter_text(value):
            self.close_filter_bar()

    def apply_filter_text(self, text: str) -> bool:
        h = self.host
        text = text.strip()
        try:
            flt = self.parse_filter(text) if text else None
        except TriageError as e:
            h.status(str(e), "error")
            pos = getattr(e, "position", None)
            with contextlib.suppress(Exception):
                box = h.query_one("#filter-input", FilterInput)
                if pos is not None:
                    box.cursor_position = max(0, int(pos) - 1)
            return False
        keep = h.list.current
        t0 = time.perf_counter()
        h.model.set_filter(flt, text)
        h.stats["filter_s"] = time.perf_counter() - t0
        h.list.cursor = 0 if keep is None else h.list.cursor
        h._refresh_list(keep)
        if text:
            h.status(f"filter: {len(h.model.filtered):,} of {len(h.model):,} match (esc clears)")
        else:
            h.status("filter cleared")
        return True

    @staticmethod
    def parse_filter(text: str) -> Any:
        try:
            from triage_tui.domain.filter import parse_filter
        except ImportError:  # pragma: no cover - until the filter language lands
            needle = text.lower()

            class _Substring:
                def matches(self, m: Message, now: datetime) -> bool:
                    return needle in m.subject.lower() or needle in m.sender.lower()

            return _Substring()
        return parse_filter(text)

    def back(self) -> None:
        h = self.host
        bar = h.query_one("#filterbar", FilterBar)
        if bar.has_class("-open"):
            self.close_filter_bar()
        elif h.model.filter is not None:
            h.apply_filter_text("")
        elif h._range_anchor is not None:
            h._range_anchor = None
            h.status("range mark cancelled")
        else:
            h.status_line.clear()
