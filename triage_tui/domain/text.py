"""Text from mail is data: make it inert before it reaches a terminal.

Subjects and names may carry terminal escape sequences (ESC, CSI, OSC...), C1 controls, bidi
overrides or invisible characters. :func:`inert` is the one way out to a terminal, a widget, a
notification or a clipboard message: it shows each of those as a visible escape (``\\x1b``,
``\\u202e``, ``\\U000e0041``) so nothing is interpreted and nothing hides. Rich/Textual markup is
handled in the UI by never parsing mail text as markup.
"""

from __future__ import annotations

import re

from triage_tui.domain.redact import mask_url as mask_url  # moved: re-exported for old imports

#: What is never written as itself: every code point of Unicode categories Cc (C0, DEL, C1),
#: Cf (bidi controls and marks, zero-width and other invisible format characters, soft hyphen,
#: BOM, interlinear annotation, tags), Cs (lone surrogates: 8-bit bytes decoded with
#: ``surrogateescape``) and Zl/Zp (line/paragraph separators), as of Unicode 14 (Python 3.11);
#: plus the unassigned rest of the tag block and of U+2060..U+206F, the blank-looking Hangul
#: fillers, the invisible combining grapheme joiner / Khmer vowels / Mongolian variation
#: selectors, and the noncharacters U+FFFE/U+FFFF. tests/unit/test_text.py checks every code
#: point against ``unicodedata``, so a newer Unicode that adds a format character fails there.
_UNSAFE_RANGES: tuple[tuple[int, int], ...] = (
    (0x00, 0x1F), (0x7F, 0x9F), (0xAD, 0xAD), (0x034F, 0x034F), (0x0600, 0x0605), (0x061C, 0x061C),
    (0x06DD, 0x06DD), (0x070F, 0x070F), (0x0890, 0x0891), (0x08E2, 0x08E2), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x2028, 0x202E), (0x2060, 0x206F),
    (0x3164, 0x3164), (0xD800, 0xDFFF), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF9, 0xFFFB),
    (0xFFFE, 0xFFFF), (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x13438), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE007F),
)


def _shown(code: int) -> str:
    if code in (0x09, 0x0A, 0x0D):
        return " "
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


_CLASS = "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in _UNSAFE_RANGES)
_UNSAFE = re.compile(f"[{_CLASS}]")
#: code point -> what is shown instead (str.translate: one C loop however many there are)
_TABLE = {c: _shown(c) for a, b in _UNSAFE_RANGES for c in range(a, b + 1)}
#: The same, but a line feed is kept (multi-line output: each line made inert on its own).
_TABLE_BUT_LF = {**_TABLE, 0x0A: "\n"}


def inert(text: object, *, multiline: bool = False, limit: int | None = None) -> str:
    """The one function every string from mail, Redis, a server reply or the journal goes
    through before a terminal, a widget, a notification, a window title or a clipboard message.

    Control characters (C0, DEL, C1), bidi controls, invisible format characters and lone
    surrogates are shown as ``\\xNN`` / ``\\uNNNN`` / ``\\UNNNNNNNN``; tab, CR and LF become a
    space (with ``multiline``, LF and CRLF end a line, and nothing else does: ``str.splitlines``
    would also break at NEL, VT, FF, U+2028..., letting a header forge a line). ``limit`` cuts
    the text to that many characters (``…`` marks the cut) *before* escaping, so the cost is
    bounded for a 1 MB header. Combining marks, CJK, emoji and U+FFFD stay as they are. The
    result is idempotent: ``inert(inert(x)) == inert(x)``. ``None`` gives ``""``; anything else
    that is not a ``str`` is shown through ``str()``.
    """
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    if multiline and "\r\n" in text:
        text = text.replace("\r\n", "\n")
    if text.isascii() and text.isprintable():  # the common case: nothing to do, no copy
        return text
    if _UNSAFE.search(text) is None:  # printable non-ASCII (accents, CJK, emoji): nothing to do either
        return text
    return text.translate(_TABLE_BUT_LF if multiline else _TABLE)


#: What may go to the clipboard: a Message-ID is ``<`` printable ASCII without space, ``<`` or
#: ``>`` ``>`` (RFC 5322's msg-id shape, at most a header line long); a UID is 1..2**32-1.
_MESSAGE_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]{1,996}>")
_UID = re.compile(r"[1-9][0-9]{0,9}")
#: Anything else (text the operator selected on screen): no more than this many characters.
CLIPBOARD_TEXT_MAX = 100_000


def clipboard_refusal(value: str | None, what: str = "text") -> str | None:
    """Why ``value`` must not be copied to the clipboard (one line, the offending characters
    shown inert), or None when it may.

    The clipboard is pasted into shells: a value with ESC (``ESC[201~`` ends bracketed paste),
    a bidi or an invisible character would run or hide a command. A ``"Message-ID"`` must be
    ``<printable ASCII without spaces>``, a ``"UID"`` digits; any other text (a selection made
    on screen, where everything from mail is already inert) may hold line feeds and tabs, and
    no other control, bidi or invisible character."""
    if not value:
        return f"the {what} is empty"
    strict = what in ("Message-ID", "UID")
    longest = 998 if strict else CLIPBOARD_TEXT_MAX
    if len(value) > longest:
        return f"the {what} is {len(value):,} characters long"
    odd = sorted({ch for ch in value if _UNSAFE.match(ch) and (strict or ch not in "\n\t")})
    if odd:
        kind = "control characters" if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in odd) \
            else "invisible or bidi characters"
        shown = " ".join(inert(c) if c not in "\t\n\r" else repr(c)[1:-1] for c in odd)
        return f"the {what} contains {kind} (shown as {shown})"
    if not strict:
        return None
    if not value.isascii():
        extra = "".join(dict.fromkeys(c for c in value if not c.isascii()))[:8]
        return f"the {what} contains non-ASCII characters ({extra})"
    if what == "Message-ID":
        if " " in value:
            return "the Message-ID contains spaces"
        if not _MESSAGE_ID.fullmatch(value):
            return "the Message-ID is not of the form <...> (printable ASCII inside one pair of angle brackets)"
    elif not _UID.fullmatch(value) or int(value) >= 2**32:
        return "the UID is not a number from 1 to 4294967295"
    return None
