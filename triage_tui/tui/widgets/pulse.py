"""The pulse bar (two lines at the top) and the column header.

Line 1 is the mailbox's health: RO/RW badge, the DEMO badge, a loud "TLS UNVERIFIED" badge when
certificate checks are off, UNSEEN and the oldest unseen age, seen-stuck, \\Deleted, Redis locks,
live-refresh state and time, TLS version and whether the certificate was verified, mailbox and
server. Line 2 is the list's state: view, rows shown, the mark count (always visible), the demo's
mail_room, a running re-ingest watch, filter, sort, group, load or action progress, and what
vanished since the last refresh.

Pieces are styled from the stylesheet's component classes (theme variables), and pieces
that do not fit the width are dropped lowest priority first, so at 80 columns the important
ones stay. States are words or glyphs, never colour alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.cells import cell_len
from rich.segment import Segment
from textual.content import Content
from textual.strip import Strip
from textual.widget import Widget

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
    tls_version: str | None = None
    #: certificate verification is off (--insecure-skip-verify): known before connecting, shown loud
    insecure: bool = False
    loopback: bool = False
    demo: bool = False
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
    consumer: str = ""  # the demo's mail_room: "mail_room: running, 812 delivered"
    consumer_running: bool = False
    reingest: str = ""  # a re-ingest watch running behind the list: "re-ingest 5/12 · ETA 9 s"
    reingest_style: str = "warn"
    #: the mailbox refused our keyword: "ignored" stands on this machine's journal
    keyword_note: str = ""


def _n(v: int | None) -> str:
    return "…" if v is None else f"{v:,}"


Piece = tuple[int, str, str]  # (priority: lower stays longer, text, style name or "")


def pulse_lines(s: PulseState) -> tuple[list[Piece], list[Piece]]:
    """The two lines as pieces, in display order. Pure, so it is cheap and testable."""
    one: list[Piece] = []
    two: list[Piece] = []
    one.append((0, " RO read-only " if s.read_only else " RW ", "ro" if s.read_only else "rw"))
    if s.demo:
        one.append((0, " DEMO ", "demo"))
    if s.insecure or (s.tls_version and s.tls_ok is False):
        # words, not a colour: an operator must not miss that the password went to an unverified peer
        one.append((0, " TLS UNVERIFIED ", "insecure"))
    elif s.connected and not s.tls_version and not s.loopback:
        one.append((0, " NO TLS ", "insecure"))
    oldest = f" · oldest {human_age(s.oldest_unseen_age, True)}" if s.oldest_unseen_age is not None else ""
    one.append((1, f"UNSEEN {_n(s.unseen)}{oldest}", "warn" if (s.unseen or 0) > 0 else "good"))
    one.append((3, f"seen-stuck {_n(s.seen_stuck)}", "warn" if s.seen_stuck else ""))
    one.append((4, f"\\Deleted {_n(s.deleted)}", ""))
    if s.locks_configured:
        if s.locks_error:
            one.append((2, "locks: Redis unavailable", "bad"))  # worth more room than the counts
        else:
            one.append((5, f"locks {_n(s.locks_held)}", ""))
    t = s.refreshed.strftime("%H:%M:%SZ") if s.refreshed else "--:--:--"
    if not s.connected:
        one.append((2, "connecting…", "warn"))
    elif s.paused:
        one.append((2, f"⏸ paused {t}", "warn"))
    elif s.live.startswith("reconnecting"):
        one.append((2, f"⟳ reconnecting {t}", "bad"))
    elif s.live == "idle":
        one.append((2, f"● live {t}", "good"))
    elif s.live.startswith("poll"):
        one.append((2, f"↻ {s.live} {t}", ""))
    else:
        one.append((2, f"refreshed {t}", ""))
    one.append(_tls_piece(s))
    if s.server:
        one.append((7, inert(f"{s.mailbox}@{s.server}"), ""))

    shown = f"{s.shown:,}" if s.shown == s.total else f"{s.shown:,}/{s.total:,}"
    two.append((0, f"view {s.view} · {shown}", ""))
    marks = f"{'●' if s.marks else '○'} {s.marks:,} marked"
    if s.hidden_marks:
        marks += f" ({s.hidden_marks:,} hidden by filter)"
    two.append((1, marks, "on" if s.marks else ""))
    if s.reingest:  # a running watch outranks everything but the view and the marks
        two.append((1, s.reingest, s.reingest_style))
    if s.consumer:
        two.append((2, s.consumer, "good" if s.consumer_running else "warn"))
    if s.filter:
        two.append((3, inert(f"filter: {s.filter}"), "on"))
    if s.keyword_note:
        two.append((6, s.keyword_note, "warn"))
    if s.progress:
        two.append((2, s.progress, "warn"))
    elif s.loading is not None:
        done, total = s.loading
        two.append((2, f"loading {done:,}/{total:,}", "warn"))
    vanished = []
    if s.vanished:
        word = {"unseen": "picked up", "deleted": "expunged"}.get(s.view, "left the view")
        vanished.append(f"{s.vanished:,} {word} since last refresh")
    if s.arrived:
        vanished.append(f"{s.arrived:,} new")
    if vanished:
        two.append((4, " · ".join(vanished), "warn"))
    two.append((6, f"sort {SORTS[s.sort][0]}{'↓' if s.reverse else '↑'}", ""))
    if s.group:
        two.append((5, f"group {GROUPS[s.group]}", ""))
    # every piece, inert: the server name, a reconnect reason or a watch diagnosis may quote a
    # server reply (the ones that carry mail or config text are also made inert where built)
    return [(p, inert(t), st) for p, t, st in one], [(p, inert(t), st) for p, t, st in two]


def _tls_piece(s: PulseState) -> Piece:
    """The TLS version and whether the certificate was verified, in words (the loud badge for the
    unverified case is a separate, top-priority piece)."""
    if not s.connected:
        return (6, "TLS …", "")
    if not s.tls_version:
        return (6, "plaintext (loopback)" if s.loopback else "plaintext", "" if s.loopback else "bad")
    if s.tls_ok:
        return (6, f"{s.tls_version} ✓ verified", "good")
    return (6, f"{s.tls_version} not verified", "bad")


def fit_pieces(pieces: list[Piece], width: int) -> list[Piece]:
    """Keep the highest-priority pieces that fit (each is padded by one space a side)."""
    used = 0
    keep: set[int] = set()
    for i, (_prio, text, _style) in sorted(enumerate(pieces), key=lambda x: x[1][0]):
        w = cell_len(text) + 2
        if used + w <= width:
            used += w
            keep.add(i)
    return [p for i, p in enumerate(pieces) if i in keep]


class PulseBar(Widget):
    """Two lines drawn with the Line API: an update is a repaint of two lines, never a layout
    pass (a keypress that changes the mark count must not re-layout the screen)."""

    COMPONENT_CLASSES = {"pulse--ro", "pulse--rw", "pulse--warn", "pulse--bad", "pulse--good", "pulse--on",
                         "pulse--demo", "pulse--insecure"}
    DEFAULT_CSS = "PulseBar { height: 2; }"

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.state = PulseState()
        self._lines: tuple[list[Piece], list[Piece]] = ([], [])

    def show(self, s: PulseState) -> None:
        self.state = s
        lines = pulse_lines(s)
        if lines != self._lines:
            self._lines = lines
            self.refresh()

    def text_lines(self) -> list[str]:
        """What the bar shows, as plain text (tests and the benchmark read it)."""
        width = self.size.width or 80
        return ["".join(f" {t} " for _, t, _ in fit_pieces(line, width)) for line in self._lines]

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if y > 1:
            return Strip.blank(width, base)
        segs = []
        for _prio, text, style in fit_pieces(self._lines[y], width):
            st = base + self.get_component_rich_style(f"pulse--{style}", partial=True) if style else base
            segs.append(Segment(f" {text} ", st))
        return Strip(segs).adjust_cell_length(width, base)


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
