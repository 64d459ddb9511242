"""Properties: the decoder, classifier, filter parser and hop parser never raise on arbitrary
input and stay fast on huge hostile input (a header can be 10 MB)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from triage_tui.domain.analysis import AnalysisConfig, build_message
from triage_tui.domain.filter import FilterSyntaxError, parse_filter
from triage_tui.domain.headers import Headers
from triage_tui.domain.hops import analyze_header, parse_auth_results, parse_received
from triage_tui.domain.keys import KINDS, classify_key, decode_address, find_key, split_addresses
from triage_tui.domain.model import Message

T = "incoming+%{key}@incoming.gitlab.example.com"
NOW = datetime(2026, 3, 10, tzinfo=UTC)
CFG = AnalysisConfig(address=T, bot_sender_patterns=("noreply",), bot_subject_patterns=("Error",),
                     suspicious_patterns=("verify",))
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_HEADER_NAMES = ["To", "Cc", "From", "Subject", "Received", "References", "Delivered-To", "Envelope-To",
                 "X-Envelope-To", "X-Original-To", "X-Forwarded-To", "Auto-Submitted", "X-Autoreply",
                 "Content-Type", "Return-Path", "Precedence", "List-Id", "Message-ID", "Date",
                 "Authentication-Results"]
_VALUE_BITS = ["incoming+", "@incoming.gitlab.example.com", "<", ">", '"', "(", ")", ",", ";", ":", "\\", "=?utf-8?q?",
               "?=", "-issue", "-issue-", "42", "-", "+", "/", "for <", "reply-", " ", "\t", "\r\n ", "\x00", "é",
               "\udcff", "multipart/report", "no", "yes", "bulk", "MAILER-DAEMON", "verify your email", "dkim=pass",
               "; Mon, 1 Jan 2024 00:00:00 +0000", "ESMTPS", "version=TLS1_2"]

header_values = st.lists(st.one_of(st.sampled_from(_VALUE_BITS), st.text(max_size=8)), max_size=12).map("".join)
header_blocks = st.lists(st.tuples(st.sampled_from(_HEADER_NAMES), header_values), max_size=15).map(
    lambda fs: "".join(f"{n}: {v}\r\n" for n, v in fs).encode("utf-8", "surrogatepass"))


@FAST
@given(st.text())
def test_key_functions_never_raise_on_text(value: str) -> None:
    info = classify_key(value)
    assert info.kind in KINDS
    assert classify_key(value, "service_desk").kind == "service_desk"
    decode_address(value, T)
    decode_address(value, value or None)  # the template itself may be anything
    split_addresses(value)


@FAST
@given(st.binary(max_size=600))
def test_decoder_and_classifier_never_raise_on_bytes(raw: bytes) -> None:
    headers = Headers.parse(raw)
    find_key(headers, T)
    m = build_message(1, 1, (), NOW, len(raw), raw, CFG, NOW)
    assert "analysis_error" not in m.extra
    assert m.kind in KINDS
    json.dumps(m.to_json(NOW), default=str)


@FAST
@given(header_blocks, st.sampled_from(["incoming", "service_desk"]))
def test_classifier_never_raises_on_header_like_input(raw: bytes, kind: str) -> None:
    cfg = AnalysisConfig(address=T, mailbox_kind=kind)
    m = build_message(1, 1, (), NOW - timedelta(days=3), len(raw), raw, cfg, NOW)
    assert "analysis_error" not in m.extra
    assert m.stale
    assert m.no_key == (m.key is None)
    assert (m.bot_reason is not None) == m.bot
    assert (m.suspicious_reason is not None) == m.suspicious


@FAST
@given(header_blocks, st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))))
def test_header_analysis_never_raises(raw: bytes, internaldate: datetime | None) -> None:
    a = analyze_header(raw, internaldate, NOW, CFG)
    json.dumps(a.to_json())
    a.render_text()


@FAST
@given(st.text(max_size=300))
def test_hop_and_auth_parsers_never_raise(value: str) -> None:
    hop = parse_received(value)
    json.dumps(hop.to_json())
    parse_auth_results(value).to_json()


_FILTER_BITS = ["from:", "subject:", "age>", "age<=", "size>", "uid:", "kind:", "project:", "is:", "bot", "!", "not",
                "or", "and", "|", "&&", "(", ")", '"', "/", "\\", " ", "2d", "1M", "1-5", "new_issue", ":", "=",
                "<", ">", "x", "é"]


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(st.sampled_from(_FILTER_BITS), max_size=12).map("".join)))
def test_filter_parser_raises_only_syntax_errors(text: str) -> None:
    try:
        f = parse_filter(text)
    except FilterSyntaxError as e:
        assert 1 <= e.position <= len(text) + 1
        return
    msg = Message(uid=5, uidvalidity=1, internaldate=NOW, subject=text, from_addr="a@b")
    assert f.matches(msg, NOW) in (True, False)
    assert f.matches(Message(uid=1, uidvalidity=1), NOW) in (True, False)
    crit = f.pushdown(NOW)
    assert crit is None or (crit.isascii() and "\r" not in crit and "\n" not in crit)


# --- bounded time on huge hostile input ---------------------------------------------------------

MB10 = 10 * 1024 * 1024


def _timed(fn, limit: float) -> None:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    took = time.perf_counter() - t
    assert took < limit, f"{took:.2f}s"


@pytest.mark.parametrize(
    "key",
    [
        "a" + "-1" * (MB10 // 2) + "-issue",  # quadratic for GitLab's own regex
        "a" + "-1" * (MB10 // 2) + "-t-issue-5",
        "a-" + "1" * MB10 + "-t-issue",
        "-" * MB10 + "issue",
        "1" * MB10 + "x",
        "x-" + "9" * 5000 + "-t-issue",  # beyond Python's int-from-string limit
    ],
    ids=["dash-digit", "note", "digits", "dashes", "digit-run", "huge-id"],
)
def test_classify_key_is_linear(key: str) -> None:
    _timed(lambda: classify_key(key), 2.0)
    _timed(lambda: classify_key(key, "service_desk"), 2.0)


@pytest.mark.parametrize("unit", ['"', "<", "(", "a,", "<a>", "for <", "reply-<", "=?utf-8?q?"])
def test_huge_headers_are_bounded(unit: str) -> None:
    blob = unit * (MB10 // 5 // len(unit))  # five such headers: a 10 MB header block
    raw = "".join(f"{n}: {blob}\r\n" for n in ("To", "Cc", "References", "Received", "Delivered-To")).encode()
    headers = Headers.parse(raw)
    _timed(lambda: find_key(headers, T), 3.0)
    _timed(lambda: decode_address(blob, T), 3.0)
    _timed(lambda: parse_received(blob), 1.0)
    _timed(lambda: parse_auth_results(blob), 1.0)


def test_analyze_header_on_a_10mb_header() -> None:
    raw = (b"To: " + b"incoming+a@x, " * (MB10 // 28) + b"\r\n"
           + b"Received: " + b"(for <" * (MB10 // 12) + b"\r\n"
           + b"Authentication-Results: " + b"a=b; " * (MB10 // 10) + b"\r\n")
    _timed(lambda: analyze_header(raw, NOW, NOW, CFG), 8.0)


def test_filter_size_is_capped() -> None:
    with pytest.raises(FilterSyntaxError) as e:
        parse_filter("a " * 10_000)
    assert "shorter filter" in str(e.value)
    _timed(lambda: parse_filter('subject:"' + "a" * 9000 + '"'), 1.0)
