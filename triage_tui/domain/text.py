"""Text from mail is data: make it inert before it reaches a terminal.

Subjects and names may carry terminal escape sequences (ESC, CSI, OSC...) or C1 controls.
``inert`` replaces every control character with a visible escape so nothing is interpreted.
Rich/Textual markup is handled in the UI by never parsing mail text as markup.
"""

from __future__ import annotations

import re

from triage_tui.domain.redact import mask_url as mask_url  # moved: re-exported for old imports

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _visible(m: re.Match[str]) -> str:
    ch = m.group(0)
    if ch in "\n\r":
        return " "
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def inert(text: str | None) -> str:
    """Control characters (C0 but tab, C1, DEL, bidi overrides) shown as ``\\xNN``; newlines as spaces."""
    if not text:
        return ""
    text = text.replace("\t", " ")
    return _CONTROL.sub(_visible, text)
