"""Columns of the message list and how each cell is written, for 80 columns and wider.

Pure (no Textual): the widget asks for a layout for its width and for cell strings per
message. Every string that came from mail goes through :func:`inert` here, once, so the
widget never sees a control character; it never parses markup either (it builds segments).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from rich.cells import cell_len, set_cell_size

from triage_tui.domain.model import Message
from triage_tui.domain.outcome import GLYPHS as OUTCOME_GLYPHS
from triage_tui.domain.text import inert
from triage_tui.tui.listmodel import project_label

#: Below this width the compact layout is used (80×24 over SSH is the design minimum).
WIDE = 110
#: A cell never shows more than this many characters of a header: a 1 MB hostile subject costs
#: what a long one does (inert cuts before it escapes), on every repaint of its row.
CELL_CHARS = 1024


@dataclass(frozen=True)
class Column:
    key: str  # cell function name, and the sort key when sortable
    title: str
    width: int  # 0: takes what is left
    right: bool = False
    sort: str | None = None


def human_age(seconds: float | None, compact: bool) -> str:
    """``3 days`` in the wide layout, ``3d`` in the compact one."""
    if seconds is None:
        return "?"
    s = int(max(0, seconds))
    units = (("week", "w", 604800, 2), ("day", "d", 86400, 1), ("hour", "h", 3600, 1), ("min", "m", 60, 1))
    for long, short, size, least in units:
        if s >= size * least:
            n = s // size
            if compact:
                return f"{n}{short}"
            return f"{n} {long}{'s' if n != 1 and long != 'min' else ''}"
    return f"{s}s" if compact else f"{s} sec"


def human_size(n: int) -> str:
    if n < 1024:
        return f"{n}B"
    for unit in ("K", "M", "G"):
        n_f = n / 1024
        if n_f < 1024 or unit == "G":
            return f"{n_f:.0f}{unit}" if n_f >= 10 else f"{n_f:.1f}{unit}"
        n = int(n_f)
    return f"{n}G"  # pragma: no cover


#: Handler kinds as the column shows them (the filter and --json use the full names).
KIND_LABELS = {
    "reply": "reply", "new_issue": "new issue", "note_on_issuable": "note", "unsubscribe": "unsubscribe",
    "new_merge_request": "new MR", "service_desk": "service desk", "unknown": "no key",
}

#: ``~``: a header field could not be read (or is implausible) and the row shows what could;
#: the preview and ``peek`` say which (``Message.problems``).
#: ``G``: GitLab's predicted verdict if re-ingested (domain.outcome): ✓ handled (drawn dim: the
#: usual case), ∅ dropped without a reply, ↩ rejected (GitLab writes to the sender), ⋯ unknown.
VERDICTS = (("B", "bot"), ("S", "stale"), ("!", "suspicious"), ("?", "no_key"), ("~", "problems"),
            ("G", "outcome"))
VERDICT_TITLE = "".join(g for g, _ in VERDICTS)
#: Glyphs of the verdict column drawn dim (not set, or nothing to worry about).
QUIET_GLYPHS = frozenset({"·", OUTCOME_GLYPHS["handled"]})


def outcome_glyph(m: Message) -> str:
    """GitLab's verdict as one glyph; ``·`` when it was not predicted (no header read yet)."""
    o = m.outcome
    if o is None:
        return "·"
    return OUTCOME_GLYPHS.get(getattr(o, "verdict", "unknown"), OUTCOME_GLYPHS["unknown"])


def verdict_glyphs(m: Message) -> str:
    """Bot / stale / suspicious / no-key / damaged as glyphs (never colour alone); ``·`` when
    not set; then GitLab's verdict. Always :data:`VERDICT_TITLE` long (the widget draws one
    segment per glyph; every glyph is one cell)."""
    return "".join(g if getattr(m, attr) else "·" for g, attr in VERDICTS[:-1]) + outcome_glyph(m)


def lock_text(m: Message) -> str:
    if m.lock_ttl is None:
        if m.lock is None and m.seen:
            return "?" if m.extra.get("lock_error") else "exp"  # \\Seen and no key: mail_room took it once, its lock ran out (seen-stuck evidence)
        return "·" if m.lock is None else "held"
    if m.lock_ttl < 0:
        return "no TTL"
    return f"{m.lock_ttl}s"


def layout(width: int, locks: bool) -> list[Column]:
    """The columns for a width: compact below :data:`WIDE`, with received time, handler, size
    and the lock TTL added when there is room."""
    if width < WIDE:
        cols = [
            Column("mark", "", 2),
            Column("age", "AGE", 4, right=True, sort="age"),
            Column("verdict", VERDICT_TITLE, len(VERDICTS), sort="verdict"),
            Column("sender", "FROM", 20 if width >= 90 else 17, sort="sender"),
            Column("project", "PROJECT", 18 if width >= 90 else 15, sort="project"),
        ]
        if locks:
            cols.append(Column("lock", "LOCK", 5, right=True, sort="lock"))
        cols.append(Column("subject", "SUBJECT", 0, sort="subject"))
        return cols
    cols = [
        Column("mark", "", 2),
        Column("age", "AGE", 8, right=True, sort="age"),
    ]
    if width >= 150:
        cols.append(Column("received", "RCVD (UTC)", 11, sort="age"))
    cols += [
        Column("verdict", VERDICT_TITLE, len(VERDICTS), sort="verdict"),
        Column("sender", "FROM", 26 if width >= 150 else 20, sort="sender"),
        Column("project", "PROJECT", 26 if width >= 150 else 21, sort="project"),
        Column("kind", "HANDLER", 12, sort="kind"),
        Column("subject", "SUBJECT", 0, sort="subject"),
        Column("size", "SIZE", 5, right=True, sort="size"),
    ]
    if locks:
        cols.append(Column("lock", "LOCK", 6, right=True, sort="lock"))
    return cols


def widths(cols: list[Column], width: int) -> list[int]:
    """Cell widths (without the one-space gaps) filling ``width``."""
    fixed = sum(c.width for c in cols) + len(cols) - 1
    flex = max(8, width - fixed)
    return [c.width or flex for c in cols]


def fit(text: str, width: int, right: bool = False) -> str:
    """Exactly ``width`` cells (wide characters counted), cut with an ellipsis."""
    if width <= 0:
        return ""
    if text.isascii() and text.isprintable():
        n = len(text)
        if n > width:
            return text[: width - 1] + "…"
        return text.rjust(width) if right else text.ljust(width)
    n = cell_len(text)
    if n > width:
        return set_cell_size(text, width - 1) + "…"
    pad = " " * (width - n)
    return pad + text if right else text + pad


def fit_tail(text: str, width: int, tail: str) -> str:
    """Like :func:`fit`, but a cut keeps ``tail`` (the ids): ``gitlab-org-gi…#278964 #12``."""
    tail_w = cell_len(tail)
    if cell_len(text) <= width or not tail or not text.endswith(tail) or tail_w + 3 > width:
        return fit(text, width)
    head = text[: len(text) - len(tail)]
    return set_cell_size(head, width - tail_w - 1) + "…" + tail


def project_tail(m: Message) -> str:
    """The part of the project cell worth keeping when it is cut: ``#id`` and the issue iid."""
    tail = ""
    if m.project_id is not None and not m.project_path:
        tail = f"#{m.project_id}"
    if m.issue_iid is not None:
        tail += f" #{m.issue_iid}"
    return tail


def cell(col: str, m: Message, now: datetime, compact: bool) -> str:
    """One cell's plain text (already inert). Never raises: a value that cannot be drawn (a
    time at the edge of the calendar, say) is drawn as ``?``, and the row stays."""
    try:
        return _cell(col, m, now, compact)
    except Exception:  # noqa: BLE001 - one bad value must not take the list's rendering down
        return "?"


def _cell(col: str, m: Message, now: datetime, compact: bool) -> str:
    if col == "age":
        return human_age(m.age_seconds(now), compact)
    if col == "received":
        return _received(m.internaldate)
    if col == "verdict":
        return verdict_glyphs(m)
    if col == "sender":
        return inert(m.from_addr or m.from_name, limit=CELL_CHARS)
    if col == "project":
        label = project_label(m)[:CELL_CHARS]
        if m.issue_iid is not None:
            label += f" #{m.issue_iid}"
        return inert(label, limit=CELL_CHARS)
    if col == "kind":
        return KIND_LABELS.get(m.kind) or inert(m.kind[:CELL_CHARS])
    if col == "subject":
        return inert(m.subject, limit=CELL_CHARS) or "(no subject)"
    if col == "size":
        return human_size(m.size)
    if col == "lock":
        return lock_text(m)
    if col == "uid":
        return str(m.uid)
    return ""


def _received(when: datetime | None) -> str:
    if when is None:
        return "?"
    try:
        when = when.astimezone(UTC)
    except (OverflowError, ValueError):  # 9999-12-31 23:00 -0500 is past the calendar in UTC
        pass
    return when.strftime("%m-%d %H:%M")
