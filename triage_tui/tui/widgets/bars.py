"""One-line bars at the bottom: the status line (results and the one visible error) and the
filter input."""

from __future__ import annotations

from rich.cells import cell_len, set_cell_size
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.content import Content
from textual.message import Message as TMessage
from textual.widgets import Input, Static

from triage_tui.domain.text import inert

GLYPHS = {"error": "✗ ", "ok": "✓ ", "info": "", "warn": "! "}


def marked_text(what: str, hits: int, before: int, after: int) -> str:
    """What a bulk mark did, when it differs from what it matched: ``b`` after ``o`` matches
    325 bot messages of which 256 were already marked as stale. Says the match, how many were
    newly marked and the total, so the count in the pulse bar never surprises."""
    if hits == 0:
        return f"no {what} to mark"
    new = after - before
    if new == hits:
        return f"marked {hits:,} {what}" + (f"; {after:,} marked in all" if before else "")
    already = hits - new
    return (f"{hits:,} {what}: {new:,} newly marked ({already:,} already were); {after:,} marked in all")


def fit_status(text: str, width: int, max_lines: int = 2) -> str:
    """``text`` in at most ``max_lines`` lines of ``width`` cells, never losing its end: the end
    of an error says what was wrong ("... expected an age like 90m, 36h, 2d or 1w: age '2' has
    no unit"). Word-wrapped when it fits in two lines; else the general clauses in the middle
    ("a: b: c: d") are left out (``…``) from the second on; else the first line keeps the start
    (what failed) and the second the end, joined by ``…``."""
    if width < 8 or cell_len(text) <= width:
        return text
    lines = _wrap(text, width)
    if len(lines) <= max_lines:
        return "\n".join(lines)
    # "what failed: context: more context: what was wrong": the general context in the middle
    # goes first (shown as …), the start and the specific end stay
    parts = text.split(": ")
    for drop in range(1, len(parts) - 1):
        shorter = ": ".join([parts[0], "…", *parts[1 + drop:]])
        lines = _wrap(shorter, width)
        if len(lines) <= max_lines:
            return "\n".join(lines)
    head = set_cell_size(text, width).rstrip()  # the start, ending at a word if one ends near the edge
    space = head.rfind(" ")
    if space > len(head) * 2 // 3:
        head = head[:space]
    tail_room = width - 2  # "… "
    # the end, cut to the room, starting at a word where one begins near the cut
    tail = text[-tail_room:] if text.isascii() else _last_cells(text, tail_room)
    while cell_len(tail) > tail_room:
        tail = tail[1:]
    space = tail.find(" ")
    if 0 <= space < tail_room // 3:
        tail = tail[space + 1:]
    return f"{head}\n… {tail}"


def _last_cells(text: str, cells: int) -> str:
    out: list[str] = []
    used = 0
    for ch in reversed(text):
        w = cell_len(ch)
        if used + w > cells:
            break
        out.append(ch)
        used += w
    return "".join(reversed(out))


def _wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap by display cells; a word longer than a line is cut (no hyphen)."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if cell_len(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while cell_len(word) > width:
            piece = set_cell_size(word, width)
            lines.append(piece)
            word = word[len(piece.rstrip()):] if piece.rstrip() else word[1:]
        line = word
    if line:
        lines.append(line)
    return lines


class StatusLine(Static):
    """Where results and errors appear. An error stays until the next status or ``esc``: an
    operator who looked away must still be able to read it. A text wider than the line wraps to
    a second line; one longer than two lines keeps its start and its end (see
    :func:`fit_status`), so the part that says what was wrong is never cut off."""

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__("", id=id, markup=False)
        self.kind = "info"
        self.text = ""

    def show(self, text: str, kind: str = "info") -> None:
        self.kind = kind
        self.text = inert(text)
        self._render_fitted()
        for k in GLYPHS:
            self.set_class(k == kind, f"-{k}")

    def shown_lines(self) -> list[str]:
        """What the line shows now, as plain text (tests read it)."""
        return self._fitted.split("\n")

    def _render_fitted(self) -> None:
        width = (self.content_size.width or max(20, self.app.size.width - 2)) if self.is_attached else 78
        self._fitted = fit_status(GLYPHS.get(self.kind, "") + self.text, width)
        self.update(Content(self._fitted))

    def on_resize(self) -> None:
        self._render_fitted()

    def clear(self) -> None:
        self.show("", "info")


class InertInput(Input):
    """An input whose text is never echoed raw: pasted (or otherwise inserted) text is made
    inert first. Pasted text is echoed by the input: a clipboard holding ESC, BEL or bidi
    characters must not reach the terminal through it (Textual draws an ESC as is). They are
    kept visibly (``\\x1b``), like everywhere else. The filter and every typed-count box use it."""

    def replace(self, text: str, start: int, end: int) -> None:
        super().replace(inert(text), start, end)

    def validate_value(self, value: str) -> str:
        return inert(value)


class FilterInput(InertInput):
    """The ``/`` input. ``esc`` closes it (without changing the applied filter); the filter
    looks for pasted control characters as their visible escapes."""

    BINDINGS = [
        Binding("escape", "close", "Close filter", show=False, id="filter.close"),
    ]

    class Closed(TMessage):
        pass

    def action_close(self) -> None:
        self.post_message(self.Closed())


class FilterBar(Horizontal):
    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)

    def compose(self) -> ComposeResult:
        yield Static(Content("/"), id="filter-prompt", markup=False)
        yield FilterInput(placeholder="filter: age>2d bot from:noreply subject:\"Error\" !suspicious  (F1: syntax)",
                          id="filter-input", select_on_focus=False)
