"""``inert``: the one way out to a terminal, a widget, a notification or a clipboard message.

Every code point of the dangerous Unicode categories is checked against ``unicodedata``, so a
newer Python (a newer Unicode) that adds a format character fails here instead of leaking.
"""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triage_tui.domain.text import inert

#: Never written as themselves: controls, format characters (bidi, zero-width, tags...),
#: surrogates, line/paragraph separators.
DANGEROUS = {"Cc", "Cf", "Cs", "Zl", "Zp"}
#: Not in those categories but invisible or blank-looking, escaped too.
INVISIBLE_EXTRA = [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x2065, 0x3164,
                   0xFFA0, 0xFFFE, 0xFFFF, 0xE0000, 0xE0002, 0xE001F]


def _clean(s: str) -> bool:
    return all(unicodedata.category(c) not in DANGEROUS for c in s)


def test_every_dangerous_code_point_is_escaped_visibly() -> None:
    missed = []
    for code in range(0x110000):
        ch = chr(code)
        if unicodedata.category(ch) not in DANGEROUS:
            continue
        out = inert(f"a{ch}b")
        if ch in "\t\n\r":
            ok = out == "a b"
        elif code < 0x100:
            ok = out == f"a\\x{code:02x}b"
        elif code < 0x10000:
            ok = out == f"a\\u{code:04x}b"
        else:
            ok = out == f"a\\U{code:08x}b"
        if not ok:
            missed.append(f"U+{code:04X}")
    assert not missed, missed


@pytest.mark.parametrize("code", INVISIBLE_EXTRA)
def test_invisible_fillers_outside_cf_are_escaped(code: int) -> None:
    out = inert(chr(code))
    assert out.startswith("\\") and _clean(out) and chr(code) not in out


@pytest.mark.parametrize(("raw", "shown"), [
    ("a\x1b[31mred\x07", "a\\x1b[31mred\\x07"),  # CSI, BEL
    ("\x1b]52;c;ZXZpbA==\x07", "\\x1b]52;c;ZXZpbA==\\x07"),  # OSC 52 (clipboard)
    ("\x1b]0;pwned\x1b\\", "\\x1b]0;pwned\\x1b\\"),  # OSC 0 (window title), ST terminator
    ("<a\x1b[201~b@x>", "<a\\x1b[201~b@x>"),  # bracketed-paste end
    ("\x9b31m\x9d0;t\x9c", "\\x9b31m\\x9d0;t\\x9c"),  # C1 CSI / OSC / ST
    ("nul\x00del\x7f", "nul\\x00del\\x7f"),
    ("x\u202ey", "x\\u202ey"),  # RLO
    ("\u2066\u2067\u2068\u2069\u200e\u200f\u061c", "\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f\\u061c"),
    ("pay\u200bpal", "pay\\u200bpal"),  # zero-width space
    ("a\u200db\u200cc\u2060d", "a\\u200db\\u200cc\\u2060d"),  # ZWJ, ZWNJ, word joiner
    ("\ufeffbom", "\\ufeffbom"),
    ("soft\u00adhyphen", "soft\\xadhyphen"),
    ("tag\U000e0041\U000e007f", "tag\\U000e0041\\U000e007f"),  # invisible tag characters
    ("ann\ufff9x\ufffbz", "ann\\ufff9x\\ufffbz"),  # interlinear annotation
    ("line\u2028para\u2029", "line\\u2028para\\u2029"),
    ("bytes\udcff\udc80", "bytes\\udcff\\udc80"),  # lone surrogates (surrogateescape)
    ("\ud800", "\\ud800"),
])
def test_known_hostile_values(raw: str, shown: str) -> None:
    assert inert(raw) == shown


@pytest.mark.parametrize("text", [
    "plain ASCII [bold]markup[/] stays",
    "e\u0301\u0308 combining marks", "日本語の件名 한국어 中文",  # CJK and Hangul stay
    "emoji 🧨 ❤️ 👍🏽 👨‍👩", "replacement \ufffd stays", "private \ue000",
    "Ünïcödé façade", "  spaces  and\u00a0nbsp", "back\\slash \\x1b literal",
])
def test_harmless_text_stays_as_it_is(text: str) -> None:
    # (the family emoji's ZWJ is shown: an invisible joiner is an invisible character)
    expected = text.replace("\u200d", "\\u200d")
    assert inert(text) == expected


def test_whitespace() -> None:
    assert inert("a\tb") == "a b"
    assert inert("line\nnext\r\nthird") == "line next  third"
    assert inert("one\ntwo\tx\r", multiline=True) == "one\ntwo x "
    assert inert("a\x1b\nb\u202e", multiline=True) == "a\\x1b\nb\\u202e"
    assert inert("\x0b\x0c", multiline=True) == "\\x0b\\x0c"  # VT / FF are not line breaks here
    assert inert("a\r\nb\r\n", multiline=True) == "a\nb\n"  # CRLF ends a line
    # only LF ends a line: what str.splitlines() would also break at is shown, so a header
    # cannot forge a line of its own
    forged = "Subject: hi\x85X-Verdict: clean\u2028X-A: 1\x0cX-B: 2\x1cX-C\x1d\x1e\u2029"
    assert inert(forged, multiline=True).count("\n") == 0 and len(forged.splitlines()) == 7


def test_none_empty_and_non_strings() -> None:
    assert inert(None) == "" and inert("") == ""
    assert inert(0) == "0" and inert(b"\x1b") == "b'\\x1b'"


def test_fast_path_returns_the_same_object() -> None:
    s = "Re: [gitlab] build failed #1234"
    assert inert(s) is s


def test_very_long_strings() -> None:
    hostile = "\x1b\u202e\u200b\udcff" * 250_000  # 1M code points, every one escaped
    out = inert(hostile)
    assert len(out) == 250_000 * (4 + 6 + 6 + 6) and _clean(out)
    cut = inert(hostile, limit=80)
    assert cut.endswith("…") and _clean(cut) and len(cut) <= 79 * 6 + 1
    assert inert("x" * 1000, limit=10) == "x" * 9 + "…"
    assert inert("short", limit=10) == "short"


@given(st.text(alphabet=st.characters(), max_size=200))
def test_output_is_clean_and_idempotent(text: str) -> None:
    out = inert(text)
    assert _clean(out) and "\n" not in out and "\t" not in out
    assert inert(out) == out
    out.encode("utf-8")  # lone surrogates never reach a stream (would raise UnicodeEncodeError)
    multi = inert(text, multiline=True)
    assert _clean(multi.replace("\n", "")) and multi.count("\n") == text.count("\n")


# -- the clipboard -----------------------------------------------------------------------------------

from triage_tui.domain.text import clipboard_refusal  # noqa: E402


@pytest.mark.parametrize("value", ["<a@b>", "<CAF=x+y_z-1.2@mail.gmail.com>", "<!#$%&'*+-/=?^_`{|}~@x>",
                                   "<no-at-sign>"])
def test_a_message_id_of_printable_ascii_may_be_copied(value: str) -> None:
    assert clipboard_refusal(value, "Message-ID") is None


@pytest.mark.parametrize(("value", "reason"), [
    ("<x\x1b[201~; rm -rf ~@evil>", "the Message-ID contains control characters (shown as \\x1b)"),
    ("<a@b>\n", "the Message-ID contains control characters (shown as \\n)"),
    ("<a\x00@b>", "the Message-ID contains control characters (shown as \\x00)"),
    ("<a\x9b@b>", "the Message-ID contains control characters (shown as \\x9b)"),
    ("<a\u202eb@c>", "the Message-ID contains invisible or bidi characters (shown as \\u202e)"),
    ("<a\u200b@b>", "the Message-ID contains invisible or bidi characters (shown as \\u200b)"),
    ("<a\U000e0041@b>", "the Message-ID contains invisible or bidi characters (shown as \\U000e0041)"),
    ("<a\udcff@b>", "the Message-ID contains invisible or bidi characters (shown as \\udcff)"),
    ("<é@x>", "the Message-ID contains non-ASCII characters (é)"),
    ("<a b@c>", "the Message-ID contains spaces"),
    ("a@b", "the Message-ID is not of the form <...>"),
    ("<a<b@c>", "the Message-ID is not of the form <...>"),
    ("<a@b><c@d>", "the Message-ID is not of the form <...>"),
    ("<>", "the Message-ID is not of the form <...>"),
    ("", "the Message-ID is empty"),
    ("<" + "x" * 5000 + ">", "the Message-ID is 5,002 characters long"),
    ("<a@b>\t", "the Message-ID contains control characters (shown as \\t)"),
])
def test_a_hostile_message_id_is_refused_with_the_reason(value: str, reason: str) -> None:
    got = clipboard_refusal(value, "Message-ID")
    assert got is not None and got.startswith(reason), got
    assert _clean(got) and "\n" not in got


@pytest.mark.parametrize(("value", "ok"), [("1", True), ("4294967295", True), ("0", False), ("4294967296", False),
                                           ("-1", False), ("1\x1b", False), ("١", False), ("01", False)])
def test_a_uid_is_digits(value: str, ok: bool) -> None:
    assert (clipboard_refusal(value, "UID") is None) is ok


def test_other_text_may_hold_line_feeds_tabs_and_unicode_but_nothing_invisible() -> None:
    assert clipboard_refusal("UID 12\tcafé 日本\nnext line") is None
    assert clipboard_refusal("a\x1b[201~b") == "the text contains control characters (shown as \\x1b)"
    assert clipboard_refusal("a\rb") == "the text contains control characters (shown as \\r)"
    assert clipboard_refusal("a\u202eb") == "the text contains invisible or bidi characters (shown as \\u202e)"
    assert clipboard_refusal("x" * 100_001) == "the text is 100,001 characters long"


@given(st.text(max_size=60))
def test_whatever_passes_the_gate_is_clean(value: str) -> None:
    for what in ("Message-ID", "UID"):
        if clipboard_refusal(value, what) is None:
            assert value.isascii() and value.isprintable() and value
    if clipboard_refusal(value) is None:
        assert value and inert(value, multiline=True) == value.replace("\t", " ")
