"""The ``[keymap]`` check: an unknown binding id or a key Textual cannot produce is an error.

Textual's ``set_keymap`` silently ignores an id that no binding has and a key string that no
key press ever matches, so ``"mark.toggel" = "x"`` or ``"action.seen" = "ctl+s"`` would leave
the operator pressing a key that does nothing, mid-incident. :func:`check_keymap` names the
id (with a "did you mean") or the key and where the keymap came from.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from textual.binding import Binding
from textual.keys import REPLACED_KEYS, Keys, key_to_character

from triage_tui.errors import ConfigError

MODIFIERS = frozenset({"ctrl", "shift", "alt", "meta", "super", "hyper"})
_NAMED = frozenset(k.value for k in Keys if "+" not in k.value and not k.value.startswith("<"))


def binding_classes() -> tuple[type, ...]:
    """The app, its screens and widgets: every class whose BINDINGS the operator can press."""
    from triage_tui.tui.app import TriageApp  # noqa: PLC0415 - the app imports nothing from here
    from triage_tui.tui.screens.confirm import ConfirmScreen  # noqa: PLC0415
    from triage_tui.tui.screens.help import HelpScreen  # noqa: PLC0415
    from triage_tui.tui.screens.plan import PlanScreen  # noqa: PLC0415
    from triage_tui.tui.screens.preview import PreviewScreen  # noqa: PLC0415
    from triage_tui.tui.screens.reingest import ReingestScreen  # noqa: PLC0415
    from triage_tui.tui.widgets.bars import FilterInput  # noqa: PLC0415
    from triage_tui.tui.widgets.message_list import MessageList  # noqa: PLC0415

    return (TriageApp, MessageList, FilterInput, PreviewScreen, ConfirmScreen, ReingestScreen, HelpScreen,
            PlanScreen)


def binding_ids() -> list[str]:
    """Every binding id of the app, its screens and widgets (what ``?`` lists)."""
    ids: list[str] = []
    for cls in binding_classes():
        for b in getattr(cls, "BINDINGS", ()):
            if isinstance(b, Binding) and b.id and b.id not in ids:
                ids.append(b.id)
    return ids


def valid_key(key: str) -> bool:
    """Whether Textual can ever report this key: ``x``, ``X``, ``ctrl+s``, ``f5``, ``question_mark``."""
    key = key.strip()
    if not key or not key.isprintable():
        return False
    *mods, base = key.split("+") if key != "+" else [key]
    if any(m not in MODIFIERS for m in mods) or len(set(mods)) != len(mods):
        return False
    if len(base) == 1:
        return base.isprintable() and not base.isspace()
    return base in _NAMED or key_to_character(REPLACED_KEYS.get(base, base)) is not None


def check_keymap(keymap: Mapping[str, str], source: str = "", ids: Iterable[str] | None = None) -> dict[str, str]:
    """The keymap unchanged if every id and key is valid; else :class:`ConfigError` naming them."""
    known = list(ids) if ids is not None else binding_ids()
    where = f" ({source})" if source else ""
    for bid, keys in keymap.items():
        if bid not in known:
            hint = difflib.get_close_matches(bid, known, n=1, cutoff=0.5)
            extra = f" (did you mean {hint[0]!r}?)" if hint else " (press ? in the UI for the list of ids)"
            raise ConfigError(f"keymap{where}: unknown binding id {ascii(bid)[:60]}{extra}")
        if not isinstance(keys, str) or not keys.strip():
            raise ConfigError(f"keymap{where}: {bid}: expected a key like \"x\" or \"ctrl+s\", got {keys!r}")
        for key in keys.split(","):
            if not valid_key(key):
                raise ConfigError(f"keymap{where}: {bid}: {ascii(key.strip())[:40]} is not a key (examples: x, X, "
                                  "ctrl+s, f5, escape, question_mark; several: \"x,ctrl+x\")")
    return dict(keymap)
