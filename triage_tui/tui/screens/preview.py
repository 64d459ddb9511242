"""Header preview: the full header (fetched with BODY.PEEK, so \\Seen never changes) and its
analysis: Received hops with delays and TLS, authentication results, transit vs waiting time,
the GitLab key and the verdict reasons.

Every line is made inert and shown as plain content: a header is attacker-controlled text.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Static

from triage_tui.domain.model import Message
from triage_tui.domain.text import clipboard_refusal, inert
from triage_tui.tui.screens.once import OnceModal

_WARN_WORDS = ("PLAINTEXT", "CLOCK SKEW", "Warning:", "no key", "suspicious", "UNVERIFIED", "fail", "Problems:",
               "verdict if re-ingested: ↩", "verdict if re-ingested: ∅", "verdict if re-ingested: ⋯")
#: What the preview lays out of a header. A widget wraps and measures every line it holds on
#: the event loop: a 10 MB header took 15-18 s, a frozen UI (tests/faults/test_nasty.py). The
#: whole header stays one key away (p, $PAGER).
SHOWN_CHARS = 64 * 1024
SHOWN_LINES = 2000
SHOWN_LINE = 2000


def shown_header(header: str) -> str:
    """The part of ``header`` the preview shows: at most :data:`SHOWN_CHARS` characters in
    :data:`SHOWN_LINES` lines, each cut at :data:`SHOWN_LINE`, inert, with a note saying what
    was left out."""
    out: list[str] = []
    used = 0
    # lines end at LF only: splitlines() also breaks at NEL, VT, FF, U+2028..., which would let
    # a header forge a line of its own (inert shows them)
    lines = header.replace("\r\n", "\n").removesuffix("\n").split("\n") if header else []
    for i, line in enumerate(lines):
        if used >= SHOWN_CHARS or i >= SHOWN_LINES:
            rest = len(header) - sum(len(x) + 1 for x in lines[:i])
            out.append(f"… {len(lines) - i:,} more line(s), {rest:,} more characters: p opens the whole "
                       "header in $PAGER")
            break
        if len(line) > SHOWN_LINE:
            line = line[:SHOWN_LINE] + f" … ({len(line) - SHOWN_LINE:,} more characters on this line)"
        out.append(inert(line))
        used += len(line) + 1
    return "\n".join(out)


def _styled_lines(lines: list[str]) -> Content:
    """Plain lines; warnings get the ``$warning`` style through a component class, never through
    markup in the text."""
    parts: list[Content] = []
    for line in lines:
        text = inert(line)
        c = Content(text)
        if any(w in text for w in _WARN_WORDS):
            c = c.stylize("bold")
        parts.append(c)
    return Content("\n").join(parts)


class PreviewScreen(OnceModal[None]):
    BINDINGS = [
        Binding("escape,q", "close", "Close", id="preview.close"),
        Binding("c", "copy_uid", "Copy UID", id="preview.copy_uid"),
        Binding("m", "copy_msgid", "Copy Message-ID", id="preview.copy_msgid"),
        Binding("p", "pager", "Open in $PAGER", id="preview.pager"),
        Binding("j,down", "scroll_down", "Down", show=False, id="preview.down"),
        Binding("k,up", "scroll_up", "Up", show=False, id="preview.up"),
        Binding("space,pagedown", "page_down", "Page down", show=False, id="preview.page_down"),
        Binding("pageup", "page_up", "Page up", show=False, id="preview.page_up"),
    ]

    def __init__(self, uid: int, message: Message | None) -> None:
        super().__init__()
        self.uid = uid
        self.message = message
        self.header_text = ""
        self.message_id = message.message_id if message else ""

    def compose(self) -> ComposeResult:
        m = self.message
        title = f"UID {self.uid}"
        if m is not None:
            title += f" · {inert(m.sender, limit=200)} · {inert(m.subject, limit=500)}"
        with Vertical(id="preview-box"):
            yield Static(Content(title), id="preview-title", markup=False)
            with VerticalScroll(id="preview-scroll"):
                yield Static(Content("fetching the header with BODY.PEEK (\\Seen is not touched)…"),
                             id="preview-analysis", markup=False)
                yield Static(Content(""), id="preview-header", markup=False)
            yield Static(Content("esc close · c copy UID · m copy Message-ID · p $PAGER · j/k scroll"),
                         id="preview-keys", markup=False)

    def on_mount(self) -> None:
        self.query_one("#preview-scroll").focus()

    def show_result(self, analysis_lines: list[str], header: str, message_id: str | None) -> None:
        self.header_text = header
        if message_id:
            self.message_id = message_id
        self.query_one("#preview-analysis", Static).update(_styled_lines(analysis_lines))
        head = Content("Full header (BODY.PEEK):\n").stylize("bold")
        self.query_one("#preview-header", Static).update(head + Content(shown_header(header)))

    def show_error(self, text: str) -> None:
        self.query_one("#preview-analysis", Static).update(Content("✗ " + inert(text)))

    def action_close(self) -> None:
        self.dismiss(None)

    def action_copy_uid(self) -> None:
        self._copy(str(self.uid), "UID")

    def action_copy_msgid(self) -> None:
        if not self.message_id:
            self.notify("not copied: this message has no Message-ID", severity="warning", timeout=3, markup=False)
            return
        self._copy(self.message_id, "Message-ID")

    def _copy(self, value: str, what: str) -> None:
        """Only a value of the expected shape reaches the clipboard (it is pasted into shells);
        anything else is refused, with the reason, in one line."""
        reason = clipboard_refusal(value, what)
        if reason is not None:
            self.notify(f"not copied: {reason}", severity="warning", timeout=6, markup=False)
            return
        self.app.copy_to_clipboard(value)
        self.notify(f"copied {what} {value} (OSC 52 clipboard)", timeout=3, markup=False)

    def action_pager(self) -> None:
        opener = getattr(self.app, "open_in_pager", None)
        if opener is not None:
            opener(self.header_text or "(header not fetched yet)")

    def action_scroll_down(self) -> None:
        self.query_one("#preview-scroll", VerticalScroll).scroll_down(animate=False)

    def action_scroll_up(self) -> None:
        self.query_one("#preview-scroll", VerticalScroll).scroll_up(animate=False)

    def action_page_down(self) -> None:
        self.query_one("#preview-scroll", VerticalScroll).scroll_page_down(animate=False)

    def action_page_up(self) -> None:
        self.query_one("#preview-scroll", VerticalScroll).scroll_page_up(animate=False)
