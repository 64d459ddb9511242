"""Confirmation that scales with the blast radius.

Every mutation shows the count, a sample of the rows and what will happen; Cancel has focus,
so a reflexive Enter does nothing. Flag changes confirm with ``y``. Expunge asks the operator
to type the count and says it cannot be undone; ``y`` does nothing there. Digits typed while
Cancel has focus go to the confirmation box, so the typed path needs no extra Tab.

The last line says which keys do what and what Enter would press *now*: it follows the focus
(Tab, a click, a digit that moves focus into the box). The count box is empty with a dim hint,
never the number itself (a prefilled-looking count invites an Enter that does nothing), and
pasted text in it is made inert like everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.css.query import NoMatches
from textual.widget import Widget
from textual.widgets import Button, Input, Static

from triage_tui.domain.text import inert
from triage_tui.tui.screens.once import OnceModal
from triage_tui.tui.widgets.bars import InertInput


@dataclass
class ConfirmRequest:
    title: str
    lines: list[str]
    sample: list[str] = field(default_factory=list)
    more: int = 0  # rows not in the sample
    typed: str | None = None  # text to type (expunge); None: a plain yes/no
    confirm_label: str = "Confirm"
    danger: bool = False


class ConfirmScreen(OnceModal[bool]):
    BINDINGS = [
        Binding("escape,n", "cancel", "Cancel", id="confirm.cancel"),
        Binding("y", "confirm", "Confirm", id="confirm.yes"),
    ]

    def __init__(self, request: ConfirmRequest) -> None:
        super().__init__()
        self.request = request

    def compose(self) -> ComposeResult:
        r = self.request
        with Vertical(id="confirm-dialog", classes="-danger" if r.danger else ""):
            yield Static(Content(inert(r.title)), id="confirm-title", markup=False)  # may quote the journal
            yield Static(Content("\n".join(inert(x) for x in r.lines)), id="confirm-body", markup=False)
            if r.sample:
                sample = "\n".join(inert(x) for x in r.sample)
                if r.more:
                    sample += f"\n… and {r.more:,} more"
                yield Static(Content(sample), id="confirm-sample", markup=False)
            if r.typed is not None:
                yield Static(Content(f"Type {r.typed} and press Enter to confirm."), id="confirm-typed-help",
                             markup=False)
                # no select-on-focus: the first digit, typed while Cancel had focus, moves focus here
                # and must not be selected (and replaced) by the second. The placeholder is a hint,
                # not the number: a box that looks filled in invites an Enter that does nothing.
                yield InertInput(placeholder="type the count", id="confirm-typed", select_on_focus=False)
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel", id="cancel", variant="default", compact=True)
                yield Button(r.confirm_label, id="confirm", variant="error" if r.danger else "primary",
                             disabled=r.typed is not None, compact=True)
            yield Static(Content(self.keys_hint(None)), id="confirm-keys", markup=False)

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()
        self.watch(self, "focused", self._focus_moved, init=False)
        self._focus_moved(self.focused)
        if self.app.is_headless and self.request.typed is not None:
            self.query_one("#confirm-typed", Input).cursor_blink = False

    def keys_hint(self, focused: Widget | None) -> str:
        """Which keys do what, and what Enter does with the focus where it is now (one line at
        80 columns)."""
        typed = self.request.typed
        label = self.request.confirm_label
        keys = "y confirms · n or esc cancels" if typed is None else f"type {typed} + Enter confirms · esc cancels"
        fid = getattr(focused, "id", None)
        if fid == "cancel":
            now = "Cancel has focus"
        elif fid == "confirm":
            now = f"{label} has focus"
        elif fid == "confirm-typed":
            now = "typing the count"
        else:
            now = ""
        return f"{keys} · {now}" if now else keys

    def _focus_moved(self, focused: Widget | None) -> None:
        try:
            self.query_one("#confirm-keys", Static).update(Content(self.keys_hint(focused)))
        except NoMatches:  # closing
            pass

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "confirm" and self.request.typed is not None:
            return None  # typed confirmation only
        return True

    def action_cancel(self) -> None:
        self.dismiss(False)

    def action_confirm(self) -> None:
        if self.request.typed is None:
            self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#confirm")
    def _confirm(self) -> None:
        if self._typed_ok():
            self.dismiss(True)

    def _typed_ok(self) -> bool:
        if self.request.typed is None:
            return True
        return self.query_one("#confirm-typed", Input).value.strip() == self.request.typed

    @on(Input.Changed, "#confirm-typed")
    def _typed_changed(self) -> None:
        self.query_one("#confirm", Button).disabled = not self._typed_ok()

    @on(Input.Submitted, "#confirm-typed")
    def _typed_submitted(self) -> None:
        if self._typed_ok():
            self.dismiss(True)
        else:
            self.query_one("#confirm-typed-help", Static).update(
                Content(f"That is not {self.request.typed}: type {self.request.typed} exactly, or esc to cancel."))

    def on_key(self, event: events.Key) -> None:
        if self.request.typed is None or event.character is None:
            return
        box = self.query_one("#confirm-typed", Input)
        if self.focused is not box and event.character == "y":
            self.query_one("#confirm-typed-help", Static).update(
                Content(f"y does not confirm this: type {self.request.typed} and press Enter (esc cancels)."))
            event.stop()
            return
        if self.focused is not box and event.character.isprintable() and event.character not in "ny":
            box.focus()
            box.insert_text_at_cursor(event.character)
            event.stop()
