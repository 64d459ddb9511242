"""The pure checks behind guarantee 5 (issue 11): ages, numbers, UID sets, filter values, Redis
URLs. The CLI-level table is tests/unit/test_bad_input.py."""

from __future__ import annotations

import resource
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage_tui.domain import uidset
from triage_tui.domain.age import parse_age
from triage_tui.domain.filter import FilterSyntaxError, Text, parse_filter
from triage_tui.domain.model import Message
from triage_tui.domain.numbers import IMAP_MAX, parse_float, parse_int, parse_uid
from triage_tui.domain.redisurl import check_redis_url
from triage_tui.errors import UsageError

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


# -- ages ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [
    ("90m", 5400), ("36h", 129600), ("2d", 172800), ("1w", 604800), ("45s", 45), ("1.5h", 5400), (" 2D ", 172800),
    ("2 d", 172800), (".5d", 43200), ("36500d", 36500 * 86400),
])
def test_ages_with_units(text, seconds):  # type: ignore[no-untyped-def]
    assert parse_age(text).total_seconds() == seconds


@pytest.mark.parametrize(("text", "phrase"), [
    ("2", "2 what? use 2d"), ("0", "0 what?"), ("0d", "is zero"), ("0.0h", "is zero"),
    ("36501d", "more than 100 years"), ("99999999999w", "more than 100 years"), ("9" * 400 + "w", "invalid age"),
    ("1e400d", "invalid age"), ("nan", "invalid age"), ("inf", "invalid age"), ("-1d", "invalid age"),
    ("٣d", "invalid age"), ("2x", "invalid age"), ("", "invalid age"), ("d", "invalid age"), ("1_0d", "invalid age"),
    ("2dd", "invalid age"), ("\x1b[2J", "invalid age"),
])
def test_bad_ages_are_usage_errors_never_overflow(text, phrase):  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError) as e:
        parse_age(text)
    assert phrase in str(e.value)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_parse_age_raises_only_usage_errors(text):  # type: ignore[no-untyped-def]
    try:
        td = parse_age(text)
    except UsageError:
        return
    assert timedelta(0) < td <= timedelta(days=36500)


# -- numbers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e400", "1e9", "0x10", "٣", "1_000", "", " ", "+", "1.2.3"])
def test_strict_floats(text):  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError):
        parse_float(text, what="--timeout", minimum=0.1, maximum=3600)


@pytest.mark.parametrize("text", ["0", "-1", "4294967296", "99999999999999999999999", "٣", "1.0", "0x1", " "])
def test_uids(text):  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError):
        parse_uid(text)


def test_numbers_in_range():
    assert parse_uid("4294967295") == IMAP_MAX and parse_uid(" 1 ") == 1
    assert parse_float("2.5", what="x", minimum=0.1, maximum=3600) == 2.5
    assert parse_int("65535", what="x", minimum=1, maximum=65535) == 65535
    with pytest.raises(UsageError, match="between 1 and 65535"):
        parse_int("65536", what="--port", minimum=1, maximum=65535)


# -- UID sets: ranges, never expanded -------------------------------------------------------------

def test_uid_sets_are_normalised():
    assert uidset.parse_ranges("10:5") == [(5, 10)]
    assert uidset.parse_ranges("5,3,4,1:2,9:7,8,8,2:3") == [(1, 5), (7, 9)]
    assert uidset.parse_ranges("1:3,2:6,10") == [(1, 6), (10, 10)]
    assert uidset.parse_ranges(" 7 ") == [(7, 7)] and uidset.parse_ranges("") == []
    assert uidset.parse("10:5") == [5, 6, 7, 8, 9, 10]
    assert uidset.count("1:3,2:6,10") == 7


@pytest.mark.parametrize(("text", "phrase"), [
    ("1:10000000,10000002:20000002", "covers 20,000,001 UIDs"),
    ("1:4294967295", "more than a mailbox holds"),
    ("1:*", "'*'"), ("*", "'*'"), ("0", "is not a UID"), ("0:5", "is not a UID"), ("4294967296", "is not a UID"),
    ("٣", "is not a UID"), ("1,,2", "is not a UID"), ("1:2:3", "is not a UID"), ("-3", "is not a UID"),
    ("1;2", "is not a UID"),
])
def test_bad_uid_sets(text, phrase):  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError) as e:
        uidset.parse_ranges(text)
    assert phrase in str(e.value)


def test_a_huge_uid_set_costs_no_memory():
    """1:10000000,10000002:20000002 once took 1.6 GB: refusing it now must not expand it first,
    and a 10M-UID range that is allowed stays two numbers."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    for _ in range(50):
        with pytest.raises(UsageError):
            uidset.parse_ranges("1:10000000,10000002:20000002")
        runs = uidset.parse_ranges("1:10000000")
    assert runs == [(1, 10_000_000)]
    assert uidset.contains(runs, 10_000_000) and not uidset.contains(runs, 10_000_001)
    assert time.perf_counter() - t0 < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB: no 10M-int set


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5000), st.integers(1, 5000)), min_size=1, max_size=30),
       st.integers(1, 5001))
def test_contains_agrees_with_the_expanded_set(pairs, probe):  # type: ignore[no-untyped-def]
    text = ",".join(f"{a}:{b}" for a, b in pairs)
    expanded = {u for a, b in pairs for u in range(min(a, b), max(a, b) + 1)}
    runs = uidset.parse_ranges(text)
    assert uidset.contains(runs, probe) == (probe in expanded)
    assert uidset.parse(text) == sorted(expanded)


# -- the filter: quoted text is text, numbers within IMAP's range ---------------------------------

def _msg(**kw: object) -> Message:
    base: dict[str, object] = {"uid": 1, "uidvalidity": 1}
    base.update(kw)
    return Message(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("query", "field", "value"), [
    ('msgid:"<a@b>"', "msgid", "<a@b>"), ('subject:"=5"', "subject", "=5"), ('from:">x"', "from", ">x"),
    ('subject:"<=5"', "subject", "<=5"), ('to:">= y"', "to", ">= y"), ('subject="<x>"', "subject", "<x>"),
])
def test_quoted_values_starting_with_an_operator_are_text(query, field, value):  # type: ignore[no-untyped-def]
    root = parse_filter(query).root
    assert isinstance(root, Text) and root.fields == (field,) and root.value == value


def test_quoted_msgid_matches_locally():
    f = parse_filter('msgid:"<a@b.example>"')
    assert f.matches(_msg(message_id="<a@b.example>"), NOW)
    assert not f.matches(_msg(message_id="<other@b.example>"), NOW)
    assert parse_filter('subject:"=5"').matches(_msg(subject="price =5"), NOW)


def test_unquoted_operator_in_a_text_field_says_to_quote():
    with pytest.raises(FilterSyntaxError) as e:
        parse_filter("msgid:<a@b>")
    assert 'quote it: msgid:"<a@b>"' in str(e.value)


@pytest.mark.parametrize(("query", "phrase"), [
    ("age>2", "2 what?"), ("age<=90", "90 what?"), ("age>0s", "is zero"), ("age>99999999999w", "100 years"),
    ("size>5G", "beyond IMAP's range"), ("size>=4294967296", "beyond IMAP's range"), ("size>1e3", "expected a size"),
    ("size>٣", "expected a size"), ("uid:0", "from 1 to 4294967295"), ("uid:5-4294967296", "from 1 to 4294967295"),
    ("uid>4294967296", "from 0 to 4294967295"), ("uid:٣", "expected UIDs"), ("iid:٣", "expected an issue iid"),
])
def test_filter_numbers_are_checked(query, phrase):  # type: ignore[no-untyped-def]
    with pytest.raises(FilterSyntaxError) as e:
        parse_filter(query)
    assert phrase in str(e.value)


def test_pushdown_never_sends_a_number_beyond_32_bits():
    for q in ("size<=4294967295", "size>4294967295", "size:4294967295", "uid>4294967295", "uid>=4294967295"):
        crit = parse_filter(q).pushdown(NOW) or ""
        for tok in crit.replace(":", " ").replace("(", " ").replace(")", " ").split():
            if tok.isdigit():
                assert int(tok) <= IMAP_MAX, (q, crit)


def test_project_digits_are_ascii():
    assert parse_filter("project:٣").root._id is None  # type: ignore[attr-defined]
    assert parse_filter("project:3").root._id == 3  # type: ignore[attr-defined]


# -- Redis URLs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6379/0", "redis://h", "redis://h/", "rediss://:pw@h:6380/15", "redis://h/0?db=3",
    "unix:///run/redis.sock?db=1", "redis://[::1]:6379/2", "redis://user:p%40ss@h:1/0",
])
def test_good_redis_urls(url):  # type: ignore[no-untyped-def]
    check_redis_url(url)


@pytest.mark.parametrize(("url", "phrase"), [
    ("redis://h/abc", "database 'abc' is not a number"), ("redis://h/-1", "is not a number"),
    ("redis://h/0?db=x", "database 'x'"), ("redis://h:99999/0", "from 1 to 65535"), ("redis://h:abc/0", "from 1 to"),
    ("redis://h:0/0", "port 0"), ("http://h:6379/0", "is not Redis"), ("h:6379", "no scheme"), ("", "empty"),
    ("redis://h /0", "space, control"), ("redis://h/0\x1b[2J", "control"), ("unix://", "socket path"),
    ("redis://:s3cret@h/abc", "is not a number"),
])
def test_bad_redis_urls(url, phrase):  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError) as e:
        check_redis_url(url)
    assert phrase in str(e.value) and "s3cret" not in str(e.value)


# -- the filter under fuzz: only syntax errors, and a parsed filter always evaluates and pushes -------

_PIECES = ["age", "size", "uid", "iid", "from", "msgid", "subject", "project", "kind", "is", "bot", ":", ">", "<",
           "=", ">=", "<=", '"', "/", "(", ")", "!", "|", "&", " ", "or", "not", "2", "0", "99999999999", "4294967296",
           "d", "w", "G", "K", "-", ",", ".", "*", "٣", "\x1b", "\u202e", "\\", "nan", "1e400", "[", "{", "x"]


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=14))
def test_filter_fuzz_raises_only_syntax_errors(pieces):  # type: ignore[no-untyped-def]
    text = "".join(pieces)
    try:
        f = parse_filter(text)
    except FilterSyntaxError as e:
        assert str(e).startswith("filter syntax error at position ") and "\n" not in str(e)
        return
    crit = f.pushdown(NOW)
    if crit:
        for tok in crit.replace(":", " ").replace("(", " ").replace(")", " ").split():
            if tok.isdigit():
                assert int(tok) <= IMAP_MAX, (text, crit)
    for m in (_msg(), _msg(uid=IMAP_MAX, size=IMAP_MAX, internaldate=NOW - timedelta(days=400), subject="=5 <x>")):
        f.matches(m, NOW)
