"""A corpus of hostile and broken messages, generated at test time (nothing big is committed).

Each entry is what a public incoming-email address really receives sooner or later: a header of
10 MB, ten thousand recipients, NUL bytes, invalid UTF-8 and charsets nobody knows, encoded
words nested or repeated thousands of times, dates in year 0 and 9999, a 100 KB subject,
lines that are not headers at all, and Received chains shaped to make a backtracking regex
explode. :func:`corpus` returns them in a fixed order (so UIDs are stable) with the maildir
flags and INTERNALDATE to seed them with; :data:`MARKERS` are strings that must reach the
operator literally (never interpreted as markup or terminal control).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass

ADDRESS = "incoming+%{key}@incoming.gitlab.example.com"
KEY = "group-project-42-glimt-abc123def-issue"
TO = ADDRESS.replace("%{key}", KEY)

#: Literal text that must survive to the screen as typed (markup) or as visible escapes.
MARKUP = "[bold red]pwned[/]"
ESCAPES = "\x1b]52;c;ZXZpbA==\x07\x1b[2J\x9b31m"


@dataclass(frozen=True)
class Nasty:
    name: str
    raw: bytes
    internaldate: float
    why: str


def _head(*lines: str | bytes, subject: str | bytes | None = "nasty", to: str = TO) -> bytes:
    out: list[bytes] = []
    base = {"From": "Mallory <mallory@example.org>", "To": to, "Date": "Mon, 10 Mar 2025 10:00:00 +0000",
            "Message-ID": "<nasty@example.org>"}
    for k, v in base.items():
        out.append(f"{k}: {v}".encode())
    if subject is not None:
        out.append(b"Subject: " + (subject if isinstance(subject, bytes) else subject.encode("utf-8")))
    for line in lines:
        out.append(line if isinstance(line, bytes) else line.encode("utf-8", "surrogateescape"))
    return b"\r\n".join(out) + b"\r\n\r\nbody\r\n"


def _ew(text: str, charset: str = "utf-8") -> str:
    return f"=?{charset}?B?{base64.b64encode(text.encode('utf-8')).decode()}?="


def huge_references() -> bytes:
    """10 MB of References (a field the listing fetches and the key finder scans)."""
    ids = " ".join(f"<{i:08d}.{'x' * 40}@example.org>" for i in range(160_000))
    folded = "\r\n ".join(ids[i:i + 900] for i in range(0, len(ids), 900))
    assert len(folded) > 10_000_000
    return _head(f"References: {folded}", subject="10 MB of References")


def huge_header_lines() -> bytes:
    """10 MB of header that the listing does not ask for (only the preview reads it all)."""
    filler = [f"X-Filler-{i}: {'y' * 990}" for i in range(10_200)]
    return _head(*filler, subject="10 MB of X-Filler")


def ten_thousand_recipients() -> bytes:
    rcpts = ",\r\n ".join(f'"User {i}" <user{i}@example.org>' for i in range(10_000))
    return _head(f"Cc: {rcpts}", subject="10k recipients", to=rcpts + f",\r\n {TO}")


def nul_bytes() -> bytes:
    return _head(b"X-Nul: a\x00b", subject=b"NUL\x00in\x00subject " + MARKUP.encode())


def invalid_utf8() -> bytes:
    return _head(b"From: \xff\xfe\xfd <bad@example.org>", b"X-Bad: \xc3\x28 \xa0\xa1 \xed\xa0\x80",
                 subject=b"broken \xe2\x82 \xf0\x28\x8c\x28 utf-8 " + ESCAPES.encode("utf-8"))


def unknown_charsets() -> bytes:
    return _head(subject="=?x-no-such-charset?B?SGVsbG8=?= =?utf-7?Q?+ZeVnLIqe-?= =?iso-2022-jp?B?GyRCJUYlOSVIGyhC?= "
                         "=?utf-8?Q?=FF=FE?= =?utf-8?B?!!!notbase64?= =??B??= =?utf-8?X?weird?=")


def nested_encoded_words() -> bytes:
    text = "innermost " + MARKUP
    for _ in range(25):
        text = _ew(text)
    return _head(subject=text)


def many_encoded_words() -> bytes:
    words = " ".join(_ew(f"w{i}" + ("\x1b[31m" if i % 97 == 0 else "")) for i in range(8_000))
    folded = "\r\n ".join(words[i:i + 900] for i in range(0, len(words), 900))
    return _head(subject=folded)


def year_zero() -> bytes:
    return _head("Date: Mon, 1 Jan 0000 00:00:00 +0000", subject="year 0")


def year_9999() -> bytes:
    return _head("Date: Fri, 31 Dec 9999 23:59:59 -1200", "Resent-Date: Sat, 1 Jan 10000 00:00:00 +9999",
                 subject="year 9999")


def hundred_kb_subject() -> bytes:
    words = ("[b]x[/b] " * 12_500)[:100_000]
    folded = "\r\n ".join(words[i:i + 900] for i in range(0, len(words), 900))
    return _head(subject=folded)


def lines_without_colon() -> bytes:
    return _head("This line is not a header at all", "neither: is", "  ", "X-After: still here",
                 ":empty name", "Bad Name With Spaces: v", subject="headers without colon")


def pathological_received() -> bytes:
    lines = [f"Received: from h{i}.example.net (h{i}.example.net [192.0.2.{i % 250}]) by mx{i}.example.net "
             f"with ESMTPS id {i:x} for <{TO}>; Mon, 10 Mar 2025 10:{i % 60:02d}:00 +0000" for i in range(500)]
    lines += [
        "Received: " + "(" * 50_000 + "from x" + ")" * 10,
        "Received: " + "from " * 20_000 + "by",
        "Received: from a by b with " + "ESMTP " * 10_000 + "for <" * 5_000,
        "Received: " + "[" * 30_000 + "192.0.2.1",
        "Received: from x by y; " + "Mon, 10 Mar 2025 " * 5_000,
        "Received: from " + "a" * 200_000 + " by b",
        "Received: ; ; ; ;" + " for <a@b>" * 10_000,
        f"Received: from evil ({MARKUP}) by mx ({ESCAPES}) for <{TO}>; Mon, 10 Mar 2025 10:00:00 +0000",
    ]
    return _head(*lines, subject="pathological Received")


def markup_and_escapes() -> bytes:
    return _head(f"From: \"{MARKUP}\" <m@example.org>", subject=f"{MARKUP} {ESCAPES} \u202eevil\u202c \u2028next")


def bare_line_ends() -> bytes:
    return (b"From: cr-only <cr@example.org>\rTo: " + TO.encode() + b"\nSubject: mixed\r line\n ends\r\n"
            b"Date: Mon, 10 Mar 2025 10:00:00 +0000\n\nbody\r\n")


def many_continuations() -> bytes:
    return _head("X-Folded: start" + "\r\n x" * 50_000, subject="50k continuation lines")


GENERATORS: list[tuple[str, Callable[[], bytes], str]] = [
    ("huge_references", huge_references, "10 MB header in a listed field"),
    ("huge_header_lines", huge_header_lines, "10 MB header the listing skips, the preview reads"),
    ("ten_thousand_recipients", ten_thousand_recipients, "10k recipients in To and Cc"),
    ("nul_bytes", nul_bytes, "NUL bytes in a header and the subject"),
    ("invalid_utf8", invalid_utf8, "invalid UTF-8 in From, a header and the subject"),
    ("unknown_charsets", unknown_charsets, "encoded words in unknown or broken charsets"),
    ("nested_encoded_words", nested_encoded_words, "an encoded word nested 25 deep"),
    ("many_encoded_words", many_encoded_words, "8,000 encoded words in one subject"),
    ("year_zero", year_zero, "Date in year 0"),
    ("year_9999", year_9999, "Date in year 9999 (and 10000)"),
    ("hundred_kb_subject", hundred_kb_subject, "a 100 KB subject full of markup"),
    ("lines_without_colon", lines_without_colon, "header lines without a colon"),
    ("pathological_received", pathological_received, "500 Received plus shapes that explode regexes"),
    ("markup_and_escapes", markup_and_escapes, "markup, OSC 52, CSI, C1, bidi override, U+2028"),
    ("bare_line_ends", bare_line_ends, "CR-only and LF-only line ends"),
    ("many_continuations", many_continuations, "one header folded over 50k lines"),
]


def corpus(now: float | None = None) -> list[Nasty]:
    """Every nasty message (in :data:`GENERATORS` order; UID i+1 is entry i when seeded first).
    Two get extreme INTERNALDATEs: the epoch, and one in 2100 (a clock that ran ahead)."""
    now = now or time.time()
    out = []
    for i, (name, gen, why) in enumerate(GENERATORS):
        ts = now - 3600 + i
        if name == "year_zero":
            ts = 0.0
        elif name == "year_9999":
            ts = 4_102_444_800.0  # 2100-01-01
        out.append(Nasty(name, gen(), ts, why))
    return out


def seed_items(now: float | None = None) -> list[tuple[bytes, float, str]]:
    """What :meth:`tests.servers.Dovecot.seed` takes."""
    return [(n.raw, n.internaldate, "") for n in corpus(now)]
