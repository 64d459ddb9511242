"""Guarantee 1 of issue 11: one bad message never costs more than its own row.

Each known way a header broke a whole listing (a ``Date`` offset of 24 h or more, a codec that is
not a text encoding, a codec that refuses ``errors="replace"``) now degrades that field and marks
the row; a step that raises anyway is caught at its own field (the verdicts that could be made
stay); and the last-resort guard gives a minimal row. Plus: a display name that shows another
address is the suspicious verdict "display name impersonates …", never a bot sender.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from triage_tui.commands import list_
from triage_tui.domain import analysis, classify, keys
from triage_tui.domain.analysis import AnalysisConfig, build_message
from triage_tui.domain.filter import parse_filter
from triage_tui.domain.headers import decode_words, first_address, impersonated_address, parse_date
from triage_tui.domain.hops import analyze_header
from triage_tui.domain.model import Message
from triage_tui.tui import columns as C
from triage_tui.tui.listmodel import GROUPS, SORTS, ListModel

T = "incoming+%{key}@incoming.gitlab.example.com"
TO = T.replace("%{key}", "group-project-42-glimt-abc123-issue")
CFG = AnalysisConfig(address=T)
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DELIVERED = NOW - timedelta(days=3)


def head(*lines: str) -> bytes:
    base = {"From": "Ann <ann@example.org>", "To": TO, "Subject": "Build broken",
            "Date": "Sat, 7 Mar 2026 11:59:00 +0000", "Message-ID": "<1@example.org>"}
    for line in lines:
        base.pop(line.split(":", 1)[0], None)
    out = [f"{k}: {v}" for k, v in base.items()] + list(lines)
    return ("\r\n".join(out) + "\r\n\r\n").encode("utf-8", "surrogateescape")


def row(*lines: str, uid: int = 1, cfg: AnalysisConfig = CFG) -> Message:
    raw = head(*lines)
    return build_message(uid, 7, (), DELIVERED, len(raw), raw, cfg, NOW)


# --- the reported cases ----------------------------------------------------------------------

@pytest.mark.parametrize("offset", ["+2400", "-2400", "+9999", "-9999", "+2460", "+2359"])
def test_absurd_offsets_degrade_the_date_only(offset: str) -> None:
    m = row(f"Date: Mon, 9 Mar 2026 10:00:00 {offset}")
    # everything else of the row is there
    assert (m.from_addr, m.subject, m.kind, m.project_id) == ("ann@example.org", "Build broken", "new_issue", 42)
    assert m.stale  # age counts from INTERNALDATE (3 days)
    if offset == "+2359":
        assert m.date is not None and m.date.utcoffset() == timedelta(hours=23, minutes=59) and not m.problems
    else:
        assert m.date is None
        assert m.problems == (f"unparseable Date: Mon, 9 Mar 2026 10:00:00 {offset}",)
        assert C.verdict_glyphs(m)[:5] == "·S··~" and list_._glyphs(m) == ".S..~"
    obj = json.loads(json.dumps(m.to_json(NOW)))
    assert obj["problems"] == list(m.problems) and obj["age_seconds"] == 3 * 86400


def test_parse_date_never_raises_on_any_offset_year_or_field() -> None:
    for n in range(0, 10000, 7):
        for sign in "+-":
            d = parse_date(f"Mon, 9 Mar 2026 10:00:00 {sign}{n:04d}")
            assert (d is None) == (n // 100 >= 24 or n % 100 >= 60)
    for year in (*range(0, 120), *range(990, 1010), *range(9990, 10010), 99999, 123456):
        parse_date(f"1 Jan {year} 00:00:00 +0000")
        parse_date(f"Mon, 1 Jan {year} 00:00 GMT")
    for a in range(100):
        parse_date(f"{a} Mar 2026 {a}:{a}:{a} +0000")
        parse_date(f"2026-{a:02d}-{a:02d}T{a:02d}:00:00+{a:02d}:00")


@pytest.mark.parametrize("charset", ["zlib", "rot13", "base64", "hex", "bz2", "uu", "quopri", "idna", "undefined",
                                     "unicode_escape", "utf-7", "x-no-such", "utf-8*en", "utf-\x00"])
def test_every_charset_decodes_or_falls_back(charset: str) -> None:
    for payload in ("=?{}?B?eJwLSS0uAQAEKgHe?=", "=?{}?Q?\\ud800_x?=", "=?{}?Q?+2D0-?=", "=?{}?B?/w==?="):
        text = decode_words(payload.format(charset))
        text.encode("utf-8")  # no lone surrogate: it would break the write to a terminal


def test_received_offsets_break_neither_peek_nor_the_preview() -> None:
    raw = head("Received: from a.example by mx.example with ESMTPS; Mon, 9 Mar 2026 10:00:05 +9999",
               "Received: from b.example by a.example with ESMTP; Mon, 9 Mar 2026 10:00:00 +0000",
               "Date: Mon, 9 Mar 2026 09:59:00 +2400")
    a = analyze_header(raw, DELIVERED, NOW, CFG)
    assert [h.time is None for h in a.hops] == [False, True]
    assert a.hops[1].bad_time == "Mon, 9 Mar 2026 10:00:05 +9999"
    lines = a.render_text()
    assert "Problems: unparseable Date: Mon, 9 Mar 2026 09:59:00 +2400" in lines
    assert "Warning: hop 2: unparseable date Mon, 9 Mar 2026 10:00:05 +9999" in lines
    assert a.key.project_id == 42 and a.classification["problems"] == ["unparseable Date: Mon, 9 Mar 2026 09:59:00 +2400"]
    json.dumps(a.to_json())


# --- absurd but parseable dates --------------------------------------------------------------

@pytest.mark.parametrize(("date", "flagged"), [
    ("Mon, 1 Jan 0001 00:00:00 +0000", True), ("Fri, 31 Dec 9999 23:59:59 -1200", True),
    ("Thu, 1 Jan 1970 00:00:00 +0000", True), ("Sat, 7 Mar 2026 20:00:00 +0000", False),  # a skewed clock
    ("Sat, 7 Mar 2026 11:59:00 -2359", False), ("Wed, 11 Mar 2026 12:00:01 +0000", True),
])
def test_implausible_dates_are_kept_noted_and_never_used_for_age(date: str, flagged: bool) -> None:
    m = row(f"Date: {date}")
    assert m.date is not None
    assert bool(m.problems) is flagged
    if flagged:
        assert m.problems[0].startswith("implausible Date: ") and "age counts from delivery" in m.problems[0]
    assert m.age_seconds(NOW) == 3 * 86400 and m.stale
    assert parse_filter("age>2d stale").matches(m, NOW) and not parse_filter("age<1d").matches(m, NOW)
    json.dumps(m.to_json(NOW))
    a = analyze_header(head(f"Date: {date}"), DELIVERED, NOW, CFG)
    a.render_text()


def test_extreme_times_never_break_the_list_model_or_the_cells() -> None:
    """INTERNALDATEs at the calendar's edges and in other zones: every sort, group and cell."""
    minus5 = timezone(-timedelta(hours=5))
    whens = [datetime(9999, 12, 31, 23, 0, tzinfo=minus5), datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
             None, NOW + timedelta(days=3650), datetime(1, 1, 1, tzinfo=UTC)]
    msgs = []
    for i, when in enumerate(whens):
        raw = head("Date: Fri, 31 Dec 9999 23:59:59 -2359" if i % 2 else "Date: Mon, 1 Jan 0001 00:00:00 +2359")
        msgs.append(build_message(i + 1, 7, (), when, len(raw), raw, CFG, NOW))
    model = ListModel(clock=lambda: NOW)
    model.add(msgs)
    model.rebuild()
    for key in SORTS:
        model.set_sort(key, True)
        assert sorted(model.order) == [1, 2, 3, 4, 5]
    for group in GROUPS:
        model.set_group(group)
        assert sum(len(g.uids) for g in model.groups) == 5
    for m in msgs:
        for width in (80, 160):
            for col in C.layout(width, locks=True):
                C.cell(col.key, m, NOW, width < C.WIDE)
        list_._row(m, NOW, list_.layout(80))
        json.dumps(m.to_json(NOW))
    assert C.cell("received", msgs[0], NOW, False) == "12-31 23:00"  # past the calendar in UTC: as given


# --- a step that raises anyway ---------------------------------------------------------------

def test_a_failing_key_step_keeps_the_other_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: object, **k: object) -> None:
        raise RecursionError("hostile")

    monkeypatch.setattr(classify, "find_key_grouped", boom)
    m = row("From: noreply@ci.example", "Auto-Submitted: auto-generated")
    assert m.problems == ("GitLab key could not be decoded (RecursionError): handler unknown",)
    assert m.kind == "unknown" and not m.no_key  # unknown, never claimed keyless
    assert m.bot and m.stale and m.subject == "Build broken"


def test_a_failing_field_is_kept_raw_and_noted(monkeypatch: pytest.MonkeyPatch) -> None:
    real = analysis.decode_words

    def picky(value: str) -> str:
        if "boom" in value:
            raise MemoryError("boom")
        return real(value)

    monkeypatch.setattr(analysis, "decode_words", picky)
    m = row("Subject: =?utf-8?q?boom?=")
    assert m.subject == "=?utf-8?q?boom?=" and m.problems == ("unreadable Subject (MemoryError): =?utf-8?q?boom?=",)
    assert m.kind == "new_issue" and m.from_addr == "ann@example.org"


def test_the_last_resort_is_a_minimal_row(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: object, **k: object) -> None:
        raise ValueError("hostile")

    monkeypatch.setattr(analysis, "_build", boom)  # the row cannot be made at all
    raw = head()
    m = build_message(9, 7, ("\\Seen",), DELIVERED, 1234, raw, CFG, NOW)
    assert (m.uid, m.uidvalidity, m.flags, m.internaldate, m.size) == (9, 7, ("\\Seen",), DELIVERED, 1234)
    assert m.stale and m.problems == (
        "header not analysed (ValueError): only UID, flags, size and delivery time are shown",)
    assert C.verdict_glyphs(m)[:5] == "·S··~"  # the 6th is GitLab's verdict
    assert parse_filter("stale age>1d").matches(m, NOW)
    json.dumps(m.to_json(NOW))


def test_a_naive_internaldate_is_taken_as_utc() -> None:
    raw = head()
    m = build_message(1, 7, (), DELIVERED.replace(tzinfo=None), len(raw), raw, CFG, NOW)
    assert m.internaldate == DELIVERED and m.stale


def test_plain_list_writes_a_row_for_a_message_it_cannot_format(monkeypatch: pytest.MonkeyPatch) -> None:
    m = row(uid=5)
    m.extra["x"] = object()
    monkeypatch.setattr(Message, "to_json", lambda self, now=None: 1 / 0)
    assert list_._broken_row(m, ZeroDivisionError(), True) == {
        "uid": 5, "problems": ["row not shown (ZeroDivisionError): peek 5 shows the header"]}
    assert list_._broken_row(m, ZeroDivisionError(), False).split()[:3] == ["5", "?", "....~"]


def test_re_annotation_does_not_repeat_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: object, **k: object) -> None:
        raise KeyError("x")

    monkeypatch.setattr(classify, "find_key_grouped", boom)
    m = row("Date: Mon, 9 Mar 2026 10:00:00 +2400")
    from triage_tui.domain.headers import Headers

    classify.annotate(m, Headers.parse(head()), CFG, NOW)
    assert len(m.problems) == 2 and len(set(m.problems)) == 2


# --- display names that impersonate an address ----------------------------------------------

IMPERSONATIONS = [
    ("noreply@github.com <attacker@evil.example>", "noreply@github.com", "attacker@evil.example"),
    ('"noreply@github.com" <attacker@evil.example>', "noreply@github.com", "attacker@evil.example"),
    ("=?utf-8?B?bm9yZXBseUBnaXRodWIuY29t?= <attacker@evil.example>", "noreply@github.com", "attacker@evil.example"),
    ("=?utf-8?Q?GitHub_=3Cnoreply=40github=2Ecom=3E?= <attacker@evil.example>", "noreply@github.com",
     "attacker@evil.example"),
    ("GitHub (noreply@github.com) <attacker@evil.example>", "noreply@github.com", "attacker@evil.example"),
    ("attacker@evil.example (noreply@github.com)", "noreply@github.com", "attacker@evil.example"),
    ("(noreply@github.com) attacker@evil.example", "noreply@github.com", "attacker@evil.example"),
    ("GitHub <noreply@github.com> <attacker@evil.example>", "noreply@github.com", "attacker@evil.example"),
    ("noreply\uff20github.com <attacker@evil.example>", "noreply@github.com", "attacker@evil.example"),
    ("noreply\ufe6bgithub\u3002com <attacker@evil.example>", "noreply@github.com", "attacker@evil.example"),
    ("noreply@git\u200bhub.com\u2060 <attacker@evil.example>", "noreply@github.com", "attacker@evil.example"),
    ("\u202emoc.buhtig@ylperon <attacker@evil.example>", "noreply@github.com", "attacker@evil.example"),
    ('"noreply@github.com \\"GitHub\\"" <attacker@evil.example>', "noreply@github.com", "attacker@evil.example"),
    ("noreply@github.com <>", "noreply@github.com", ""),
    ("dependabot[bot]@github.com <noreply@evil.example>", "dependabot[bot]@github.com", "noreply@evil.example"),
    ("MAILER-DAEMON@github.com <mailer-daemon@evil.example>", "MAILER-DAEMON@github.com", "mailer-daemon@evil.example"),
]


@pytest.mark.parametrize(("value", "shown", "real"), IMPERSONATIONS)
def test_display_name_impersonation_is_suspicious_and_never_a_bot(value: str, shown: str, real: str) -> None:
    name, addr = first_address(value)
    assert addr == real
    assert impersonated_address(name, addr) == shown
    m = row(f"From: {value}", "Subject: Your pull request was merged")
    assert m.from_addr == real
    assert m.suspicious and (m.suspicious_reason or "").startswith(f"display name impersonates {shown} ")
    assert not m.bot, m.bot_reason
    assert parse_filter("suspicious !bot").matches(m, NOW)
    assert list_._sender(m) == (real or "(no address)")  # the plain list's cut keeps the real address
    assert C.cell("sender", m, NOW, True) == (real or C.cell("sender", m, NOW, True))


def test_configured_sender_patterns_do_not_match_an_impersonating_display_name() -> None:
    cfg = AnalysisConfig(address=T, bot_sender_patterns=(r"noreply@github\.com",))
    m = row("From: noreply@github.com <attacker@evil.example>", cfg=cfg)
    assert not m.bot and m.suspicious
    genuine = row("From: GitHub <noreply@github.com>", cfg=cfg)
    assert genuine.bot and not genuine.suspicious


def test_headers_that_make_gitlab_drop_mail_still_count_when_impersonating() -> None:
    m = row("From: noreply@github.com <attacker@evil.example>", "Auto-Submitted: auto-replied")
    assert m.suspicious and m.bot and m.bot_reason == "Auto-Submitted: auto-replied: GitLab will ignore this"


@pytest.mark.parametrize("value", [
    "Ann <ann@example.org>", '"ann@example.org" <ann@example.org>', '"ANN@Example.org" <ann@example.org>',
    "ann@example.org", "ann@example.org (Ann)", '"Doe, J" <j@x.org>, b@y', "Ann (at work) <ann@example.org>",
    "=?utf-8?q?J=C3=B6rg?= <j@x.org>", "Ann at example.org <ann@example.org>", "", "undisclosed-recipients:;",
])
def test_ordinary_senders_are_not_impersonations(value: str) -> None:
    m = row(f"From: {value}" if value else "X-No-From: 1")
    assert not m.suspicious, m.suspicious_reason


def test_genuine_bots_stay_bots() -> None:
    for value in ("noreply@github.com", "GitHub <noreply@github.com>", '"noreply@github.com" <noreply@github.com>',
                  "dependabot[bot] <x@example.com>", "Mail Delivery System <MAILER-DAEMON@mx.example>"):
        m = row(f"From: {value}")
        assert m.bot and not m.suspicious, value


def test_first_address_is_linear_on_hostile_values() -> None:
    for unit in ("(", ")", '"', "<", ">", "\\", "a@b, ", "<a@b> ", "=?utf-8?B?QQ==?= "):
        first_address(unit * 200_000)
    assert first_address("(x) <" + "a" * 20_000 + "@b>")[1] == "a" * 16_379  # read as far as MAX_ADDRESS_FIELD


def test_keys_scan_of_punctuation_only_lists_is_cheap() -> None:
    assert keys.split_addresses("; , ;" * 10_000) == []
    assert keys.decode_address("; ,; <incoming+group-project-42-glimt-abc123-issue@incoming.gitlab.example.com>",
                               T).project_id == 42


def test_punycode_words_are_read_as_utf8() -> None:
    """Python's punycode decoder is quadratic on crafted input (a 1 MB word: minutes per row)."""
    import base64

    word = "ab" + "".join(chr(0x100 + i % 0x2000) for i in range(300))
    payload = word.encode("punycode")
    assert decode_words(f"=?punycode?B?{base64.b64encode(payload).decode()}?=") == payload.decode()
