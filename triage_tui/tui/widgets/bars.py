"""One-line bars at the bottom: the status line (results and the one visible error) and the
filter input."""

from __future__ import annotations

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


class StatusLine(Static):
    """Where results and errors appear. An error stays until the next status or ``esc``: an
    operator who looked away must still be able to read it."""

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__("", id=id, markup=False)
        self.kind = "info"
        self.text = ""

    def show(self, text: str, kind: str = "info") -> None:
        self.kind = kind
        self.text = inert(text)
        self.update(Content(GLYPHS.get(kind, "") + self.text))
        for k in GLYPHS:
            self.set_class(k == kind, f"-{k}")

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
