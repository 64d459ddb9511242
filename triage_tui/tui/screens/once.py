"""A screen is dismissed once.

Textual's ``Screen.dismiss`` pops whatever screen is on top. A second dismiss of the same screen
(two ``enter`` of one burst in the command palette, a key and a button) then popped the screen
under it, or, with only the list left, failed with ``ScreenStackError`` and ended the app:
``: a enter enter`` did that (tests/tui/test_monkey.py). The keys are held one at a time
(tui/keyorder.py), but a key's *message* (an ``Input.Submitted``) can run after the next key.
"""

from __future__ import annotations

from typing import Any, TypeVar

from textual.await_complete import AwaitComplete
from textual.command import CommandPalette
from textual.screen import ModalScreen


class DismissOnce:
    """Mix-in for a screen: a dismiss when it is no longer the top screen does nothing. (Not a
    Screen subclass: Textual takes CSS and component classes from the first DOM base only.)"""

    def dismiss(self, result: Any = None) -> AwaitComplete:
        if not self.is_active:  # type: ignore[attr-defined]
            return AwaitComplete.nothing()
        return super().dismiss(result)  # type: ignore[misc,no-any-return]


T = TypeVar("T")


class OnceModal(DismissOnce, ModalScreen[T]):
    """A modal screen dismissed at most once."""


class OncePalette(DismissOnce, CommandPalette):
    """Textual's command palette, dismissed at most once."""

    def _action_command_list(self, action: str) -> None:
        # Textual's OptionList maps options to lines when it lays them out: a page key between
        # the options' arrival and that layout raised KeyError and ended the app (pagedown right
        # after ':', tests/tui/test_monkey.py). Moving the highlight then does nothing instead.
        try:
            super()._action_command_list(action)
        except (KeyError, IndexError):
            pass
