"""``?``: every key, generated from the live bindings (so a remapped key shows its new key),
the read-only explanation, and the filter language."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Static

from triage_tui.tui.screens.once import OnceModal


class HelpScreen(OnceModal[None]):
    BINDINGS = [
        Binding("escape,q,question_mark,f1", "close", "Close", id="help.close"),
        Binding("j,down", "scroll_down", "Down", show=False, id="help.down"),
        Binding("k,up", "scroll_up", "Up", show=False, id="help.up"),
        Binding("space,pagedown", "page_down", "Page down", show=False, id="help.page_down"),
        Binding("pageup", "page_up", "Page up", show=False, id="help.page_up"),
    ]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str, str]]]], notes: list[str],
                 filter_help: str, preface: list[str] | None = None) -> None:
        super().__init__()
        self.sections = sections
        self.notes = notes
        self.filter_help = filter_help
        self.preface = list(preface or [])  # first on screen: the demo's story and its keys

    def compose(self) -> ComposeResult:
        parts: list[Content] = []
        for i, text in enumerate(self.preface):
            parts.append(Content(text).stylize("bold") if i == 0 else Content(text))
        if self.preface:
            parts.append(Content(""))
        for title, rows in self.sections:
            parts.append(Content(title).stylize("bold"))
            width = max((len(k) for k, _, _ in rows), default=4)
            for keys, desc, binding_id in rows:
                line = Content.assemble(("  " + keys.ljust(width), "bold"), "  " + desc)
                if binding_id:
                    line = line + Content("  " + binding_id).stylize("dim")
                parts.append(line)
            parts.append(Content(""))
        for note in self.notes:
            parts.append(Content(note))
        if self.notes:
            parts.append(Content(""))
        parts.append(Content(self.filter_help))
        with Vertical(id="help-box"):
            yield Static(Content("triage-tui keys  (esc to close)"), id="help-title", markup=False)
            with VerticalScroll(id="help-scroll"):
                yield Static(Content("\n").join(parts), id="help-body", markup=False)

    def on_mount(self) -> None:
        self.query_one("#help-scroll").focus()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_scroll_down(self) -> None:
        self.query_one("#help-scroll", VerticalScroll).scroll_down(animate=False)

    def action_scroll_up(self) -> None:
        self.query_one("#help-scroll", VerticalScroll).scroll_up(animate=False)

    def action_page_down(self) -> None:
        self.query_one("#help-scroll", VerticalScroll).scroll_page_down(animate=False)

    def action_page_up(self) -> None:
        self.query_one("#help-scroll", VerticalScroll).scroll_page_up(animate=False)
