"""A mutation fuzzer over real header blocks, and every path a row travels (issue 11, guarantee 1).

Seeds are real header blocks: the sample messages in ``tests/corpus/*.eml``, the small entries
of the hostile corpus (``tests/corpus/nasty``) and the demo backlog (every key kind, bounces,
bulk, traps). A case takes one seed, picks a header field (one the block has, or one the list
fetches, or Date/Received/Authentication-Results) and puts an absurd value there: date offsets
±0000..±9999, years 0..99999, day/month/hour 0..99, 1 MB values, encoded words in every charset
Python knows and bogus ones, 8-bit and NUL bytes, unbalanced comments/quotes/brackets, control,
bidi and invisible characters (U+200B, U+200D, U+200F, U+061C, U+FEFF, U+00AD, tags
U+E0000..U+E007F), display names that impersonate an address; sometimes two or three at once.

:func:`check` runs one case through everything that shows or uses a row: ``build_message``
(+ classification, keys), ``Message.to_json`` and the JSON encoder, filter evaluation, the list
model's sorts and groups (:func:`check_model`, per batch), the plain ``list`` row, the hops
analysis behind ``peek`` and the preview with its ``render_text`` and JSON, ``decode --message``
through the CLI's own function, and the TUI's cells. A case fails when anything raises, when a
row falls back to the last-resort minimal row or a guarded step caught an exception (a guard
keeps the product up; the fuzzer makes sure no guard is hiding a bug), when text that reaches
an output is not encodable as UTF-8, or when the TUI's verdict cell is not exactly as wide as
its column.

Deterministic: ``cases(seed, n)`` yields the same cases for the same seed.
"""

from __future__ import annotations

import argparse
import base64
import encodings.aliases
import io
import json
import pkgutil
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

from tests.corpus import CORPUS
from tests.corpus.nasty import GENERATORS
from triage_tui.domain.analysis import AnalysisConfig, build_message
from triage_tui.domain.filter import parse_filter
from triage_tui.domain.hops import analyze_header
from triage_tui.domain.model import LIST_HEADER_FIELDS, Message
from triage_tui.domain.text import inert
from triage_tui.tui import columns as C
from triage_tui.tui.listmodel import GROUPS, SORTS, ListModel

ADDRESS = "incoming+%{key}@incoming.gitlab.example.com"
CONFIGS = (
    AnalysisConfig(address=ADDRESS, gitlab_host="gitlab.example.com"),
    AnalysisConfig(address=ADDRESS, mailbox_kind="service_desk", bot_sender_patterns=("@monitoring", "("),
                   bot_subject_patterns=("Error fetching",), suspicious_patterns=("verify",)),
    AnalysisConfig(),  # no template: nothing decodes
)
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
INTERNALDATES = (NOW - timedelta(hours=3), NOW - timedelta(days=30), None, datetime(1, 1, 1, tzinfo=UTC),
                 datetime(9999, 12, 31, 23, 59, tzinfo=UTC), NOW + timedelta(days=400))
QUERIES = ("age>2d", "bot or from:noreply", "!suspicious subject:\"Error fetching\"", "kind:new_issue size>1k",
           "project:#42 | nokey", "to:incoming msgid:x cc:y key:glimt", "stale !bot age<1h", "/^[^a-z]+$/")
#: Problems that only a caught exception writes (the text of a guard, not of a degraded value).
_GUARD = re.compile(r"\((?:[A-Z][A-Za-z]*(?:Error|Exception|Warning)|StopIteration|KeyboardInterrupt)\)")

HUGE_SHARE = 0.025  # 1 MB values: each costs ~100x an ordinary case
FIELDS = tuple(sorted({*(f.title() for f in LIST_HEADER_FIELDS), "Date", "Received", "Authentication-Results",
                       "Resent-Date", "X-Original-To", "Message-Id"}))
INVISIBLE = ["\u200b", "\u200d", "\u200f", "\u061c", "\ufeff", "\u00ad", "\u202e", "\u2066", "\u2069",
             "\u2028", "\u2029", "\u180e", "\u2060"] + [chr(c) for c in range(0xE0000, 0xE0080, 7)]
CONTROLS = [chr(c) for c in (*range(0, 32), *range(0x7F, 0xA0))]
LOOKALIKE_AT = ["\uff20", "\ufe6b", "@", "(at)", "\u0040\u200b"]
BOGUS_CHARSETS = ["x-no-such", "", "utf-8*en", "utf-8*", "*", "UTF-8'en'", "../../etc", "a" * 40, "utf-\x00",
                  "utf8\u200b", "ébcdic", "base64", "zlib", "rot13", "hex", "bz2", "uu", "quopri", "idna",
                  "punycode", "undefined", "unicode_escape", "raw_unicode_escape", "utf-7", "utf-16", "utf-32",
                  "mbcs", "oem", "charmap", "string_escape", "utf-8-sig", "iso-2022-jp-ext"]


@cache
def charsets() -> tuple[str, ...]:
    """Every codec name Python knows (aliases and modules), plus bogus ones."""
    names = set(encodings.aliases.aliases) | set(encodings.aliases.aliases.values())
    names |= {m.name for m in pkgutil.iter_modules(encodings.__path__)}
    return tuple(sorted(names)) + tuple(BOGUS_CHARSETS)


def _header_block(raw: bytes) -> bytes:
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    end = raw.find(b"\r\n\r\n")
    return (raw[:end] if end >= 0 else raw) + b"\r\n\r\n"


@cache
def seeds() -> tuple[tuple[str, bytes], ...]:
    """(name, header block) of every real seed: corpus, the small hostile ones, the demo backlog."""
    out = [(p.name, _header_block(p.read_bytes())) for p in sorted(Path(CORPUS).glob("*.eml"))]
    for name, gen, _why in GENERATORS:
        if name.startswith(("huge_", "ten_thousand", "many_", "pathological", "hundred_kb")):
            continue  # megabytes each: the 1 MB mutation covers size, these would dominate the time
        out.append((f"nasty/{name}", _header_block(gen())))
    from triage_tui.demo.backlog import build_backlog  # noqa: PLC0415 - only the fuzzer needs it

    backlog = build_backlog(size=150, seed=7, now=NOW)
    for i, dm in enumerate(backlog.messages[::3]):
        out.append((f"demo/{i}/{dm.kind}", _header_block(dm.raw)))
    return tuple(out)


# --- values -----------------------------------------------------------------------------------

def _date(rng: random.Random) -> tuple[str, str]:
    day, mon, year = rng.randint(1, 28), rng.choice(["Jan", "Feb", "Mar", "Dec"]), rng.randint(1990, 2030)
    hh, mm, ss = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    off = f"{rng.choice('+-')}{rng.randint(0, 9999):04d}"
    what = rng.randrange(6)
    if what == 0:
        return f"date offset {off}", f"Mon, {day} {mon} {year} {hh:02d}:{mm:02d}:{ss:02d} {off}"
    if what == 1:
        year_s = str(rng.choice([0, 1, 99, 100, 999, 1000, 1969, 9999, 10000, 99999, rng.randint(0, 99999)]))
        return f"date year {year_s}", f"Mon, {day} {mon} {year_s} {hh:02d}:{mm:02d}:{ss:02d} {off}"
    if what == 2:
        d, h, mi, s = (rng.randint(0, 99) for _ in range(4))
        return f"date fields {d}/{h}:{mi}:{s}", f"{d} {mon} {year} {h:02d}:{mi:02d}:{s:02d} +0000"
    if what == 3:
        mo = rng.randint(0, 99)
        return f"date numeric month {mo}", f"{year}-{mo:02d}-{rng.randint(0, 99):02d}T25:61:61{off[:3]}:{off[3:]}"
    if what == 4:
        zone = rng.choice(["GMT", "UT", "EST", "PDT", "Z", "XYZ", "+", "-", "+24", "+2400", "-99999", "(no zone)"])
        return f"date zone {zone}", f"{rng.choice(['Mon, ', '', 'Xyz, '])}{day} {mon} {year} {hh}:{mm} {zone}"
    junk = rng.choice(["", " ", "0", "-1", "1e999", "Mon, 32 Foo 2025 99:99:99 +2460", ",,,", "Mon,", "\x00",
                       "31 Feb 2025 00:00:00 +0000", "29 Feb 2023 00:00 +0000", "1 Jan 2025 00:00:60 +0000"])
    return f"date junk {junk!r}", junk


def _encoded_word(rng: random.Random) -> tuple[str, str]:
    cs = rng.choice(charsets())
    payload = bytes(rng.randrange(256) for _ in range(rng.randint(0, 24)))
    if rng.random() < 0.3:
        payload = rng.choice(["noreply@github.com", "\\ud800x", "+2D0-", "xn--abc", "ZmFrZQ==", "\x00"]).encode(
            "latin-1", "replace")
    if rng.random() < 0.5:
        enc, text = "B", base64.b64encode(payload).decode()
        if rng.random() < 0.2:
            text = text[:-1] + rng.choice("!*=?")  # broken base64
    else:
        enc = "Q"
        text = "".join(chr(b) if 0x21 <= b < 0x7F and chr(b) not in "=?_ " else f"={b:02X}" for b in payload)
    return f"encoded word charset {cs!r}", f"=?{cs}?{enc}?{text}?="


def _huge(rng: random.Random) -> tuple[str, str]:
    n = 1_000_000
    unit = rng.choice(["x", "(", ")", '"', "<", ">", "=?utf-8?B?QQ==?= ", "a@b.c, ", "\\", "=?", "for <",
                       "; ", "Mon, 1 Jan 2025 ", "\u200b", "é", "-1-", "<a@b> "])
    return f"1 MB of {unit!r}", (unit * (n // len(unit) + 1))[:n]


def _splice(rng: random.Random, value: str, bits: list[str], what: str) -> tuple[str, str]:
    chars = list(value) or [""]
    for _ in range(rng.randint(1, 6)):
        chars.insert(rng.randint(0, len(chars)), rng.choice(bits))
    return what, "".join(chars)


def _address(rng: random.Random) -> tuple[str, str]:
    real = rng.choice(["attacker@evil.example", "noreply@evil.example", "MAILER-DAEMON@evil.example", ""])
    fake = rng.choice(["noreply@github.com", "support@gitlab.example.com", "dependabot[bot]@github.com"])
    at = rng.choice(LOOKALIKE_AT)
    fake = fake.replace("@", at)
    shapes = [
        f"{fake} <{real}>", f'"{fake}" <{real}>', f"=?utf-8?B?{base64.b64encode(fake.encode()).decode()}?= <{real}>",
        f"({fake}) {real}", f"{real} ({fake})", f"Name <{fake}> <{real}>", f"<{fake}> <{real}>", f'"{fake} <{real}>',
        f"{fake} <{real}", f"{fake} ({real}", f'"a\\"b" <{real}>', f"\u202e{fake[::-1]} <{real}>",
        f"{fake}, {real}", f"group: {fake} <{real}>;", f"{fake}{rng.choice(INVISIBLE)} <{real}>", "<>", "<<<>>>",
    ]
    return "address shape", rng.choice(shapes)


def mutate_value(rng: random.Random, field: str, value: str) -> tuple[str, str]:
    if rng.random() < HUGE_SHARE:
        return _huge(rng)
    kind = rng.randrange(11)
    if kind == 0:
        what, date = _date(rng)
        if field.lower() == "received":
            return f"received date: {what}", f"from a.example by b.example with ESMTPS id x for <x@y>; {date}"
        return what, date
    if kind == 1:
        what, word = _encoded_word(rng)
        return what, rng.choice([word, f"{value} {word}", f"{word}{word}", f"Name {word} <a@b.c>"])
    if kind == 2:
        return _splice(rng, value, [rng.choice(charsets())], "charset name as text")
    if kind == 3:
        return _splice(rng, value, ["\x00", "\x80", "\xff", "\udcff"] + [chr(rng.randrange(0x80, 0x100))],
                       "8-bit/NUL bytes")
    if kind == 4:
        return _splice(rng, value, ["(", ")", '"', "<", ">", "\\", "(((", ")))", '"""', ";", ":", ","],
                       "unbalanced comments/quotes/brackets")
    if kind == 5:
        return _splice(rng, value, CONTROLS, "control characters")
    if kind == 6:
        return _splice(rng, value, INVISIBLE, "bidi/invisible characters")
    if kind == 7:
        return _address(rng)
    if kind == 8:
        return "empty value", rng.choice(["", " ", "\t"])
    if kind == 9:
        n = rng.randint(1, 40)
        return f"{n} continuation lines", value + "".join(f"\r\n {rng.choice(['x', '', '(', '=?'])}" for _ in range(n))
    digits = rng.choice(["9" * 50, "-1", "0", "4294967296", "1e999", "nan", "٣"])
    return f"numbers {digits!r}", _splice(rng, value, [digits], "")[1]


def _fields(block: bytes) -> list[tuple[str, str]]:
    text = block.decode("latin-1")
    out: list[tuple[str, str]] = []
    for line in text.split("\r\n"):
        if not line:
            continue
        if line[0] in " \t" and out:
            out[-1] = (out[-1][0], out[-1][1] + "\r\n" + line)
        elif ":" in line:
            name, _, value = line.partition(":")
            out.append((name, value.lstrip()))
        else:
            out.append(("", line))
    return out


def mutate(rng: random.Random, block: bytes) -> tuple[bytes, str]:
    """One mutated header block and a description of what was done."""
    fields = _fields(block)
    done = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        present = [i for i, (n, _) in enumerate(fields) if n]
        if present and rng.random() < 0.6:
            i = rng.choice(present)
            name = fields[i][0]
        else:
            name = rng.choice(FIELDS)
            i = next((j for j, (n, _) in enumerate(fields) if n.lower() == name.lower()), -1)
            if i < 0 or rng.random() < 0.3:  # add it (again)
                fields.insert(rng.randint(0, len(fields)), (name, ""))
                i = next(j for j, (n, v) in enumerate(fields) if n == name and v == "")
        what, value = mutate_value(rng, name, fields[i][1])
        fields[i] = (name, value)
        done.append(f"{name}: {what}")
    out = bytearray()
    for name, value in fields:
        line = f"{name}: {value}" if name else value
        out += line.encode("utf-8", "surrogateescape") if not line.isascii() else line.encode("ascii")
        out += b"\r\n"
    if rng.random() < 0.5:  # the value's own bytes: sometimes latin-1 instead of UTF-8
        out = bytearray(bytes(out).decode("utf-8", "surrogateescape").encode("latin-1", "ignore"))
    return bytes(out) + b"\r\n", " + ".join(done)


@dataclass
class Case:
    index: int
    seed_name: str
    what: str
    raw: bytes
    config: AnalysisConfig
    internaldate: datetime | None


def cases(seed: int, n: int) -> Iterator[Case]:
    rng = random.Random(seed)
    pool = seeds()
    for i in range(n):
        name, block = rng.choice(pool)
        raw, what = mutate(rng, block)
        yield Case(i, name, what, raw, rng.choice(CONFIGS), rng.choice(INTERNALDATES))


# --- the paths ---------------------------------------------------------------------------------

@cache
def filters() -> tuple[object, ...]:
    return tuple(parse_filter(q) for q in QUERIES)


def _utf8(text: object, where: str) -> None:
    if isinstance(text, str):
        text.encode("utf-8")  # raises on a lone surrogate: it would kill a write to the terminal
    elif isinstance(text, list | tuple):
        for t in text:
            _utf8(t, where)


class Finding(AssertionError):
    pass


def check(case: Case, decode: bool = True) -> Message:
    """Run one case through every path; raise on any failure. Returns the built row."""
    from triage_tui.commands.list_ import _row, layout  # noqa: PLC0415

    m = build_message(case.index + 1, 7, ("\\Recent",), case.internaldate, len(case.raw), case.raw, case.config,
                      NOW)
    guarded = [p for p in m.problems if _GUARD.search(p)]
    if guarded:
        raise Finding(f"a guard caught an exception: {guarded}")
    for name in ("from_name", "from_addr", "to", "cc", "subject", "message_id", "bot_reason", "suspicious_reason",
                 "kind", "key", "project_slug", "project_path", "problems"):
        _utf8(getattr(m, name), name)
    json.dumps(m.to_json(NOW), ensure_ascii=False, default=str).encode("utf-8")
    for flt in filters():
        flt.matches(m, NOW)  # type: ignore[attr-defined]
    for cols in (40, 80, 200):
        _row(m, NOW, layout(cols)).encode("utf-8")
    for width in (80, 160):
        cols = C.layout(width, locks=True)
        for col, w in zip(cols, C.widths(cols, width), strict=True):
            text = C.cell(col.key, m, NOW, width < C.WIDE)
            if col.key == "verdict" and len(text) != w:
                raise Finding(f"verdict cell {text!r} is not {w} wide")
            C.fit(text, w, col.right).encode("utf-8")
    a = analyze_header(case.raw, case.internaldate, NOW, case.config)
    if any("could not be" in w and "(" in w for w in a.warnings):
        raise Finding(f"a guard in the header analysis caught an exception: {a.warnings}")
    for line in a.render_text():
        inert(line).encode("utf-8")
    json.dumps(a.to_json(), ensure_ascii=False, default=str).encode("utf-8")
    if decode:
        check_decode(case)
    return m


def check_decode(case: Case) -> None:
    """``decode --message -`` through the command's own function (the CLI's argument parser
    and context), on the case's bytes."""
    from triage_tui.commands import decode  # noqa: PLC0415

    ns = argparse.Namespace(addresses=[], decode_address=case.config.address or ADDRESS,
                            decode_mailbox_kind=case.config.mailbox_kind, message="-",
                            gitlab_host=case.config.gitlab_host, json=bool(case.index % 2), address=None)
    ctx = _DecodeCtx(case.raw)
    code = decode.run(ns, ctx)
    if code != 0:
        raise Finding(f"decode --message exited {code}")
    "".join(ctx.lines).encode("utf-8")


class _DecodeCtx:
    def __init__(self, raw: bytes) -> None:
        self.stdin = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8", errors="surrogateescape")
        self.lines: list[str] = []

    def emit_json(self, obj: object) -> None:
        self.lines.append(json.dumps(obj, ensure_ascii=True, default=str))

    def say(self, text: str = "") -> None:
        self.lines.append(text)


def check_model(msgs: list[Message]) -> None:
    """The TUI's list model over a batch of fuzzed rows: every sort both ways, every grouping,
    a filter; rows stay exactly the messages."""
    model = ListModel(clock=lambda: NOW)
    model.add(msgs)
    model.rebuild()
    for key in SORTS:
        for rev in (False, True):
            model.set_sort(key, rev)
            if sorted(model.order) != sorted(m.uid for m in msgs):
                raise Finding(f"sort {key} lost rows")
    for group in GROUPS:
        model.set_group(group)
        model.expand_all(True)
        if sum(len(g.uids) for g in model.groups) != len(msgs):
            raise Finding(f"grouping by {group} lost rows")
    model.set_group(None)
    model.set_filter(filters()[0], QUERIES[0])  # type: ignore[arg-type]
    model.set_filter(None)
