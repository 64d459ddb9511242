"""The pulse bar (two lines at the top) and the column header.

Line 1 is the mailbox's health: RO/RW badge, UNSEEN and the oldest unseen age, seen-stuck,
\\Deleted, Redis locks, live-refresh state and time, TLS, mailbox and server. Line 2 is the
list's state: view, rows shown, the mark count (always visible), filter, sort, group, load
or action progress, and what vanished since the last refresh.

Every piece is its own one-line widget styled from the stylesheet (theme variables), and
pieces that do not fit the width are hidden lowest priority first, so at 80 columns the
important ones stay. States are words or glyphs, never colour alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Static

from triage_tui.domain.text import inert
from triage_tui.tui.columns import human_age
from triage_tui.tui.listmodel import GROUPS, SORTS


@dataclass
class PulseState:
    mailbox: str = ""
    server: str = ""
    read_only: bool = False
    connected: bool = False
    tls_label: str = "connecting…"
    tls_ok: bool | None = None
    unseen: int | None = None
    oldest_unseen_age: float | None = None
    seen_stuck: int | None = None
    deleted: int | None = None
    locks_configured: bool = False
    locks_held: int | None = None
    locks_error: str | None = None
    refreshed: datetime | None = None
    live: str = ""  # "idle", "poll 30s", "reconnecting", "off", "stopped"
    paused: bool = False
    # line 2
    view: str = "unseen"
    shown: int = 0
    total: int = 0
    marks: int = 0
    hidden_marks: int = 0
    filter: str = ""
    sort: str = "age"
    reverse: bool = False
    group: str | None = None
    loading: tuple[int, int] | None = None
    progress: str = ""
    vanished: int = 0
    arrived: int = 0


def _n(v: int | None) -> str:
    return "…" if v is None else f"{v:,}"


class Piece(Static):
    """One item of the pulse bar. Never parses markup (filters and names come from people)."""

    def __init__(self, priority: int, *, id: str) -> None:  # noqa: A002
        super().__init__("", id=id, markup=False)
        self.priority = priority
        self.text = ""

    def set(self, text: str, *classes: str, on: bool = True) -> None:
        self.text = text if on else ""
        self.update(Content(self.text))
        for c in ("-bad", "-warn", "-good", "-ro", "-rw", "-on"):
            self.set_class(c in classes, c)


class PulseRow(Horizontal):
    def fit(self) -> None:
        """Show the highest-priority pieces that fit the width; hide the rest."""
        width = self.size.width or 80
        pieces = [p for p in self.query(Piece)]
        used = 0
        keep: set[str] = set()
        for p in sorted(pieces, key=lambda p: p.priority):
            if not p.text:
                continue
            w = cell_len(p.text) + 2  # padding 0 1
            if used + w <= width:
                used += w
                keep.add(p.id or "")
        for p in pieces:
            p.display = (p.id or "") in keep

    def on_resize(self) -> None:
        self.fit()


class PulseBar(Vertical):
    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.state = PulseState()

    def compose(self) -> ComposeResult:
        with PulseRow(id="pulse-1"):
            yield Piece(0, id="p-mode")
            yield Piece(1, id="p-unseen")
            yield Piece(3, id="p-stuck")
            yield Piece(4, id="p-deleted")
            yield Piece(5, id="p-locks")
            yield Piece(2, id="p-live")
            yield Piece(6, id="p-tls")
            yield Piece(7, id="p-box")
        with PulseRow(id="pulse-2"):
            yield Piece(0, id="p-view")
            yield Piece(1, id="p-marks")
            yield Piece(3, id="p-filter")
            yield Piece(2, id="p-progress")
            yield Piece(4, id="p-vanished")
            yield Piece(6, id="p-sort")
            yield Piece(5, id="p-group")

    def show(self, s: PulseState) -> None:
        self.state = s
        q = self.query_one
        q("#p-mode", Piece).set(" RO read-only " if s.read_only else " RW ", "-ro" if s.read_only else "-rw")
        oldest = f" · oldest {human_age(s.oldest_unseen_age, True)}" if s.oldest_unseen_age is not None else ""
        q("#p-unseen", Piece).set(f"UNSEEN {_n(s.unseen)}{oldest}",
                                  "-warn" if (s.unseen or 0) > 0 else "-good")
        q("#p-stuck", Piece).set(f"seen-stuck {_n(s.seen_stuck)}", "-warn" if s.seen_stuck else "")
        q("#p-deleted", Piece).set(f"\\Deleted {_n(s.deleted)}")
        if s.locks_error:
            q("#p-locks", Piece).set("locks: Redis unavailable", "-bad", on=s.locks_configured)
        else:
            q("#p-locks", Piece).set(f"locks {_n(s.locks_held)}", on=s.locks_configured)
        t = s.refreshed.strftime("%H:%M:%S") if s.refreshed else "--:--:--"
        if not s.connected:
            q("#p-live", Piece).set("connecting…", "-warn")
        elif s.paused:
            q("#p-live", Piece).set(f"⏸ paused {t}", "-warn")
        elif s.live.startswith("reconnecting"):
            q("#p-live", Piece).set(f"⟳ reconnecting {t}", "-bad")
        elif s.live == "idle":
            q("#p-live", Piece).set(f"● live {t}", "-good")
        elif s.live.startswith("poll"):
            q("#p-live", Piece).set(f"↻ {s.live} {t}")
        else:
            q("#p-live", Piece).set(f"refreshed {t}")
        q("#p-tls", Piece).set(s.tls_label + (" ✓" if s.tls_ok else ""),
                               "-good" if s.tls_ok else ("-bad" if s.tls_ok is False else ""))
        q("#p-box", Piece).set(inert(f"{s.mailbox}@{s.server}") if s.server else "")

        shown = f"{s.shown:,}" if s.shown == s.total else f"{s.shown:,}/{s.total:,}"
        q("#p-view", Piece).set(f"view {s.view} · {shown}")
        marks = f"{'●' if s.marks else '○'} {s.marks:,} marked"
        if s.hidden_marks:
            marks += f" ({s.hidden_marks:,} hidden by filter)"
        q("#p-marks", Piece).set(marks, "-on" if s.marks else "")
        q("#p-filter", Piece).set(inert(f"filter: {s.filter}"), "-on", on=bool(s.filter))
        if s.progress:
            q("#p-progress", Piece).set(s.progress, "-warn")
        elif s.loading is not None:
            done, total = s.loading
            q("#p-progress", Piece).set(f"loading {done:,}/{total:,}", "-warn")
        else:
            q("#p-progress", Piece).set("", on=False)
        vanished = []
        if s.vanished:
            word = {"unseen": "picked up", "deleted": "expunged"}.get(s.view, "left the view")
            vanished.append(f"{s.vanished:,} {word} since last refresh")
        if s.arrived:
            vanished.append(f"{s.arrived:,} new")
        q("#p-vanished", Piece).set(" · ".join(vanished), on=bool(vanished))
        q("#p-sort", Piece).set(f"sort {SORTS[s.sort][0]}{'↓' if s.reverse else '↑'}")
        q("#p-group", Piece).set(f"group {GROUPS[s.group]}" if s.group else "", on=bool(s.group))
        for row in self.query(PulseRow):
            row.fit()


class ColumnHeader(Widget):
    """The column titles above the list, laid out by the list itself (same widths)."""

    DEFAULT_CSS = "ColumnHeader { height: 1; }"

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.text_source: object = None

    def render(self) -> Content:
        src = self.text_source
        text = src() if callable(src) else ""
        return Content(text)
