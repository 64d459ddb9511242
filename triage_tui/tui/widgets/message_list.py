"""The virtual message list: a Line-API ``ScrollView`` that renders only the visible rows.

Textual's DataTable measures every cell and needs ~20 s for 100k rows; here the widget holds
no per-row state at all: ``render_line(y)`` looks up row ``scroll_y + y`` in the
:class:`~triage_tui.tui.listmodel.ListModel` and writes its cells as segments. Text from mail
is never parsed as markup (segments are plain strings) and was made inert by
:mod:`triage_tui.tui.columns`. The cursor and marks are shown by glyphs (``▶``, ``●``) as well
as colour, so they stay visible under ``NO_COLOR``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message as TMessage
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget

from triage_tui.domain.text import inert
from triage_tui.tui import columns as C
from triage_tui.tui.listmodel import Group, ListModel, Row

CURSOR_GLYPH = "▶"
MARK_GLYPH = "●"


class MessageList(ScrollView, can_focus=True):
    """Rows of a :class:`ListModel`; owns only the cursor and the column layout."""

    COMPONENT_CLASSES = {
        "message-list--cursor",
        "message-list--marked",
        "message-list--group",
        "message-list--verdict",
        "message-list--dim",
        "message-list--empty",
    }

    BINDINGS = [
        Binding("down,j", "cursor_down", "Down", show=False, id="list.down"),
        Binding("up,k", "cursor_up", "Up", show=False, id="list.up"),
        Binding("pagedown,ctrl+f", "page_down", "Page down", show=False, id="list.page_down"),
        Binding("pageup,ctrl+b", "page_up", "Page up", show=False, id="list.page_up"),
        Binding("home,g", "cursor_home", "Top", show=False, id="list.top"),
        Binding("end,G", "cursor_end", "Bottom", show=False, id="list.bottom"),
    ]

    class CursorMoved(TMessage):
        """The cursor moved to another row (the app updates what depends on it)."""

        def __init__(self, index: int) -> None:
            self.index = index
            super().__init__()

    class RowActivated(TMessage):
        def __init__(self, index: int) -> None:
            self.index = index
            super().__init__()

    def __init__(self, model: ListModel, *, clock: Callable[[], datetime], locks: bool = False,
                 id: str | None = None) -> None:  # noqa: A002 - Textual's parameter name
        super().__init__(id=id)
        self.model = model
        self.clock = clock
        self.locks = locks
        self.cursor = 0
        self.empty_text = "loading…"
        self._styles: dict[str, Style] = {}
        self._cols: list[C.Column] = []
        self._widths: list[int] = []
        self._layout_width = -1
        self.header: Widget | None = None  # the ColumnHeader to refresh on layout changes

    # -- layout ---------------------------------------------------------------------------------

    @property
    def row_width(self) -> int:
        return max(20, self.scrollable_content_region.width)

    def _ensure_layout(self) -> None:
        w = self.row_width
        if w != self._layout_width:
            self._layout_width = w
            self._cols = C.layout(w, self.locks)
            self._widths = C.widths(self._cols, w)

    def set_locks(self, locks: bool) -> None:
        if locks != self.locks:
            self.locks = locks
            self._layout_width = -1
            self.refresh()
            if self.header is not None:
                self.header.refresh()

    @property
    def compact(self) -> bool:
        return self.row_width < C.WIDE

    def header_text(self, sort_key: str, reverse: bool) -> str:
        """The column titles for the current width, with the sort column's arrow."""
        self._ensure_layout()
        parts = []
        for col, w in zip(self._cols, self._widths, strict=True):
            title = col.title
            if col.sort == sort_key and col.key != "received":
                title = f"{title}{'↓' if reverse else '↑'}"
            parts.append(C.fit(title, w, col.right))
        return " ".join(parts)

    def on_resize(self, event: events.Resize) -> None:
        self._layout_width = -1
        self._update_virtual_size()
        self.scroll_to_cursor()
        if self.header is not None:
            self.header.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(f"message-list--{name}", partial=True)
        return style

    # -- model updates --------------------------------------------------------------------------

    def _update_virtual_size(self) -> None:
        self.virtual_size = Size(self.row_width, len(self.model.rows))

    def rows_changed(self, keep: Row | None = None) -> None:
        """The model's rows were rebuilt: keep the cursor on ``keep`` (a UID or group) when it is
        still there, otherwise on the same index, and repaint."""
        rows = self.model.rows
        if keep is not None:
            idx = (self.model.index_of_group(keep.key) if isinstance(keep, Group)
                   else self.model.index_of(keep))
            if idx is not None:
                self.cursor = idx
        self.cursor = max(0, min(self.cursor, len(rows) - 1))
        self._update_virtual_size()
        self.scroll_to_cursor()
        self.refresh()

    @property
    def current(self) -> Row | None:
        rows = self.model.rows
        return rows[self.cursor] if 0 <= self.cursor < len(rows) else None

    # -- cursor ---------------------------------------------------------------------------------

    def move_cursor(self, index: int) -> None:
        n = len(self.model.rows)
        if n == 0:
            return
        index = max(0, min(index, n - 1))
        old = self.cursor
        if index == old:
            return
        self.cursor = index
        top = int(self.scroll_offset.y)
        height = self.scrollable_content_region.height
        if index < top or index >= top + height:
            self.scroll_to_cursor()
        else:
            self.refresh_line(old)
            self.refresh_line(index)
        self.post_message(self.CursorMoved(index))

    def scroll_to_cursor(self) -> None:
        height = max(1, self.scrollable_content_region.height)
        top = int(self.scroll_offset.y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False, immediate=True)

    def refresh_row(self, index: int) -> None:
        self.refresh_line(index)

    def action_cursor_down(self) -> None:
        self.move_cursor(self.cursor + 1)

    def action_cursor_up(self) -> None:
        self.move_cursor(self.cursor - 1)

    def action_page_down(self) -> None:
        self.move_cursor(self.cursor + max(1, self.scrollable_content_region.height - 1))

    def action_page_up(self) -> None:
        self.move_cursor(self.cursor - max(1, self.scrollable_content_region.height - 1))

    def action_cursor_home(self) -> None:
        self.move_cursor(0)

    def action_cursor_end(self) -> None:
        self.move_cursor(len(self.model.rows) - 1)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        index = int(self.scroll_offset.y) + offset.y
        if 0 <= index < len(self.model.rows):
            if index == self.cursor and event.chain >= 2:
                self.post_message(self.RowActivated(index))
            self.move_cursor(index)

    # -- rendering ------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        self._ensure_layout()
        width = self.row_width
        base = self.rich_style
        index = int(self.scroll_offset.y) + y
        rows = self.model.rows
        if index >= len(rows):
            if index == 0 and not rows:
                empty = self.empty_text
                if self.model.messages and self.model.filter_text:
                    # the view has messages, the filter hides them all: say that, not "listing…"
                    empty = f"no message of the {len(self.model.messages):,} in this view matches the filter (esc clears it)"
                text = C.fit("  " + inert(empty, limit=2000), width)  # may quote a server reply
                return Strip([Segment(text, base + self._style("empty"))], width)
            return Strip.blank(width, base)
        row = rows[index]
        is_cursor = index == self.cursor
        if isinstance(row, Group):
            segments = self._group_segments(row, width, base, is_cursor)
        else:
            segments = self._message_segments(row, width, base, is_cursor)
        if is_cursor:
            cursor = self._style("cursor")
            segments = [Segment(t, (s or base) + cursor) for t, s, _ in segments]
        return Strip(segments, width)

    def _group_segments(self, g: Group, width: int, base: Style, is_cursor: bool) -> list[Segment]:
        model = self.model
        is_open = g.key in model.expanded
        age = C.human_age(g.oldest, True) if g.oldest is not None else "?"
        what = {"project": "project", "kind": "handler", "domain": "from", "age": "age",
                "outcome": "verdict"}.get(model.group_by or "", "")
        head = f"{CURSOR_GLYPH if is_cursor else ' '}{'▾' if is_open else '▸'} {what} {inert(g.label)}"
        n = len(g.uids)
        tail = f"  {n:,} message{'s' if n != 1 else ''} · oldest {age}"
        if g.bots:
            tail += f" · {g.bots:,} bot"
        if g.stale:
            tail += f" · {g.stale:,} stale"
        if g.marked:
            tail += f" · {MARK_GLYPH} {g.marked:,} marked"
        text = C.fit(head + tail, width)
        return [Segment(text, base + self._style("group"))]

    def _message_segments(self, uid: int, width: int, base: Style, is_cursor: bool) -> list[Segment]:
        m = self.model.messages.get(uid)
        if m is None:
            return [Segment(" " * width, base)]
        marked = uid in self.model.marks
        row_style = base + self._style("marked") if marked else base
        now = self.clock()
        compact = self.compact
        segs: list[Segment] = []
        last = len(self._cols) - 1
        for i, (col, w) in enumerate(zip(self._cols, self._widths, strict=True)):
            if col.key == "mark":
                text = (CURSOR_GLYPH if is_cursor else " ") + (MARK_GLYPH if marked else " ")
                segs.append(Segment(text, row_style))
            elif col.key == "verdict":
                on, off = row_style + self._style("verdict"), row_style + self._style("dim")
                for g in C.verdict_glyphs(m):
                    segs.append(Segment(g, off if g in C.QUIET_GLYPHS else on))
            elif col.key == "project":
                segs.append(Segment(C.fit_tail(C.cell("project", m, now, compact), w, C.project_tail(m)), row_style))
            else:
                segs.append(Segment(C.fit(C.cell(col.key, m, now, compact), w, col.right), row_style))
            if i != last:
                segs.append(Segment(" ", row_style))
        return segs
