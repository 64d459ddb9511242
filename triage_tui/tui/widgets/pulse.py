"""The pulse bar (two lines at the top) and the column header.

Line 1 is the mailbox's health: RO/RW badge, the DEMO badge, a loud "TLS UNVERIFIED" badge when
certificate checks are off, UNSEEN and the oldest unseen age, seen-stuck, \\Deleted, Redis locks,
live-refresh state and time, TLS version and whether the certificate was verified, mailbox and
server. Line 2 is the list's state: view, rows shown, the mark count (always visible), the demo's
mail_room, a running re-ingest watch, filter, sort, group, load or action progress, and what
vanished since the last refresh.

Pieces are styled from the stylesheet's component classes (theme variables). When a line does
not fit, pieces are abbreviated lowest priority first (12.3k, "stuck", a time without seconds,
the watch without its ETA) and only the mailbox name and TLS details are left out, so at 80
columns every count, the watch and mail_room's state stay. States are words or glyphs, never colour alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from rich.cells import cell_len, set_cell_size
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


def compact(v: int | None) -> str:
    """A count in at most 5 cells: 999, 1.06k, 12.3k, 123k, 1.23M (rounded down: never more than
    there is)."""
    if v is None:
        return "…"
    if v < 1000:
        return str(v)
    for div, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if v >= div:
            x = v / div
            if x < 10:
                text = f"{math.floor(x * 100) / 100:.2f}"
            elif x < 100:
                text = f"{math.floor(x * 10) / 10:.1f}"
            else:
                text = str(int(x))
            return text + suffix
    return str(v)


Piece = tuple[int, str, str]  # (priority: lower stays longer, text, style name or "")
#: A piece as built: its priority, its full text, its style, then shorter forms in order; a form
#: "" means the piece may be left out. A piece without shorter forms is never shortened.
Spec = tuple[int, str, str, tuple[str, ...]]


def _first_part(text: str) -> str:
    """``mail_room: running, 812 delivered`` -> ``mail_room: running``; ``a · b`` -> ``a``."""
    for sep in (" · ", ", "):
        if sep in text:
            text = text.split(sep, 1)[0]
    return text


def _cut(text: str, cells: int) -> str:
    return text if cell_len(text) <= cells else set_cell_size(text, cells - 1) + "…"


def pulse_lines(s: PulseState) -> tuple[list[Spec], list[Spec]]:
    """The two lines as pieces, in display order. Pure, so it is cheap and testable."""
    one: list[Spec] = []
    two: list[Spec] = []
    one.append((0, " RO read-only " if s.read_only else " RW ", "ro" if s.read_only else "rw",
                (" RO ",) if s.read_only else ()))
    if s.demo:
        one.append((0, " DEMO ", "demo", ()))
    if s.insecure or (s.tls_version and s.tls_ok is False):
        # words, not a colour: an operator must not miss that the password went to an unverified peer
        one.append((0, " TLS UNVERIFIED ", "insecure", ()))
    elif s.connected and not s.tls_version and not s.loopback:
        one.append((0, " NO TLS ", "insecure", ()))
    age = human_age(s.oldest_unseen_age, True) if s.oldest_unseen_age is not None else ""
    oldest = f" · oldest {age}" if age else ""
    short_age = f" · {age}" if age else ""
    one.append((1, f"UNSEEN {_n(s.unseen)}{oldest}", "warn" if (s.unseen or 0) > 0 else "good",
                (f"UNSEEN {_n(s.unseen)}{short_age}", f"UNSEEN {compact(s.unseen)}{short_age}",
                 f"UNSEEN {compact(s.unseen)}")))
    one.append((3, f"seen-stuck {_n(s.seen_stuck)}", "warn" if s.seen_stuck else "",
                (f"stuck {_n(s.seen_stuck)}", f"stuck {compact(s.seen_stuck)}")))
    one.append((4, f"\\Deleted {_n(s.deleted)}", "", (f"\\Del {_n(s.deleted)}", f"\\Del {compact(s.deleted)}")))
    if s.locks_configured:
        if s.locks_error:
            one.append((2, "locks: Redis unavailable", "bad", ("locks: no Redis", "locks ✗")))
        else:
            one.append((5, f"locks {_n(s.locks_held)}", "", (f"locks {compact(s.locks_held)}",)))
    # connecting, paused and reconnecting are news (priority 2); the time of a normal refresh
    # yields to the counts (5, after the locks count: abbreviated first, left out first)
    t = s.refreshed.strftime("%H:%M:%SZ") if s.refreshed else "--:--:--"
    hm = t[:5]
    if not s.connected:
        one.append((2, "connecting…", "warn", ()))
    elif s.paused:
        one.append((2, f"⏸ paused {t}", "warn", (f"⏸ paused {hm}", "⏸ paused", "⏸")))
    elif s.live.startswith("reconnecting"):
        one.append((2, f"⟳ reconnecting {t}", "bad", (f"⟳ reconnecting {hm}", "⟳ reconnecting", "⟳")))
    elif s.live == "idle":
        one.append((5, f"● live {t}", "good", (f"● live {hm}", "● live", "●")))
    elif s.live.startswith("poll"):
        one.append((5, f"↻ {s.live} {t}", "", (f"↻ {s.live} {hm}", f"↻ {hm}", "↻")))
    else:
        one.append((5, f"refreshed {t}", "", (f"↻ {t}", f"↻ {hm}", "↻")))
    one.append(_tls_piece(s))
    if s.server:
        one.append((7, inert(f"{s.mailbox}@{s.server}"), "", ("",)))

    shown = f"{s.shown:,}" if s.shown == s.total else f"{s.shown:,}/{s.total:,}"
    cshown = compact(s.shown) if s.shown == s.total else f"{compact(s.shown)}/{compact(s.total)}"
    two.append((0, f"view {s.view} · {shown}", "", (f"{s.view} {shown}", f"{s.view} {cshown}")))
    dot = "●" if s.marks else "○"
    marks = f"{dot} {s.marks:,} marked"
    short_marks = [f"{dot} {compact(s.marks)} marked"]
    if s.hidden_marks:
        marks += f" ({s.hidden_marks:,} hidden by filter)"
        # hidden marks are acted on too: they are never left out, only abbreviated
        short_marks = [f"{dot} {s.marks:,} marked (+{s.hidden_marks:,} hidden)",
                       f"{dot} {compact(s.marks)} marked (+{compact(s.hidden_marks)} hidden)"]
    two.append((1, marks, "on" if s.marks else "", tuple(short_marks)))
    if s.reingest:  # a running watch outranks everything but the view and the marks
        two.append((1, s.reingest, s.reingest_style, (_first_part(s.reingest),)))
    if s.consumer:
        two.append((2, s.consumer, "good" if s.consumer_running else "warn", (_first_part(s.consumer),)))
    if s.filter:
        two.append((3, inert(f"filter: {s.filter}"), "on", (_cut(inert(f"filter: {s.filter}"), 24), "filtered")))
    if s.keyword_note:
        two.append((6, s.keyword_note, "warn", ("no keywords", "")))
    if s.progress:
        two.append((2, s.progress, "warn", (_first_part(s.progress),)))
    elif s.loading is not None:
        done, total = s.loading
        two.append((2, f"loading {done:,}/{total:,}", "warn", (f"loading {compact(done)}/{compact(total)}",)))
    vanished = []
    short_vanished = []
    if s.vanished:
        word = {"unseen": "picked up", "deleted": "expunged"}.get(s.view, "left the view")
        vanished.append(f"{s.vanished:,} {word} since last refresh")
        short_vanished.append(f"{compact(s.vanished)} {word}")
    if s.arrived:
        vanished.append(f"{s.arrived:,} new")
        short_vanished.append(f"{compact(s.arrived)} new")
    if vanished:
        two.append((4, " · ".join(vanished), "warn", (" · ".join(short_vanished),)))
    two.append((6, f"sort {SORTS[s.sort][0]}{'↓' if s.reverse else '↑'}", "", ("",)))
    if s.group:
        two.append((5, f"group {GROUPS[s.group]}", "", ("",)))
    # every piece, inert: the server name, a reconnect reason or a watch diagnosis may quote a
    # server reply (the ones that carry mail or config text are also made inert where built)
    return ([(p, inert(t), st, tuple(inert(f) for f in fs)) for p, t, st, fs in one],
            [(p, inert(t), st, tuple(inert(f) for f in fs)) for p, t, st, fs in two])


def _tls_piece(s: PulseState) -> Spec:
    """The TLS version and whether the certificate was verified, in words (the loud badge for the
    unverified case is a separate, top-priority piece)."""
    if not s.connected:
        return (6, "TLS …", "", ("",))
    if not s.tls_version:
        return (6, "plaintext (loopback)" if s.loopback else "plaintext", "" if s.loopback else "bad", ("",))
    short = s.tls_version.replace("TLSv", "TLS ")
    if s.tls_ok:
        return (6, f"{s.tls_version} ✓ verified", "good", (f"{short} ✓", ""))
    return (6, f"{s.tls_version} not verified", "bad", (f"{short} ✗", ""))


def _width(texts: list[str]) -> int:
    return sum(cell_len(t) + 2 for t in texts if t)


def fit_pieces(pieces: list[Spec] | list[Piece], width: int) -> list[Piece]:
    """Every piece that fits, abbreviated before anything is left out: each piece, lowest
    priority first, takes its next shorter form (short labels, a time without seconds, then
    compact counts; a form "" leaves it out) until the line fits; counts and badges are never
    left out while anything can still be abbreviated. Only when even the shortest forms do not fit are
    the lowest-priority pieces dropped (each is padded by one space a side)."""
    specs: list[Spec] = [p if len(p) == 4 else (p[0], p[1], p[2], ()) for p in pieces]  # type: ignore[misc]
    texts = [sp[1] for sp in specs]
    order = sorted(range(len(specs)), key=lambda i: (-specs[i][0], -i))  # lowest priority first
    level = 0
    while _width(texts) > width and any(len(sp[3]) > level for sp in specs):
        for i in order:  # one step shorter each, lowest priority first, then the next step
            if len(specs[i][3]) > level:
                texts[i] = specs[i][3][level]
                if _width(texts) <= width:
                    break
        level += 1
    used = 0
    keep: set[int] = set()
    for i in sorted(range(len(specs)), key=lambda i: specs[i][0]):
        if not texts[i]:
            continue
        w = cell_len(texts[i]) + 2
        if used + w <= width:
            used += w
            keep.add(i)
    return [(specs[i][0], texts[i], specs[i][2]) for i in range(len(specs)) if i in keep]


class PulseBar(Widget):
    """Two lines drawn with the Line API: an update is a repaint of two lines, never a layout
    pass (a keypress that changes the mark count must not re-layout the screen)."""

    COMPONENT_CLASSES = {"pulse--ro", "pulse--rw", "pulse--warn", "pulse--bad", "pulse--good", "pulse--on",
                         "pulse--demo", "pulse--insecure"}
    DEFAULT_CSS = "PulseBar { height: 2; }"

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.state = PulseState()
        self._lines: tuple[list[Spec], list[Spec]] = ([], [])

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
        for _prio, text, style in fit_pieces(self._lines[y], width):  # type: ignore[arg-type]
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
