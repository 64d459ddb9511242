import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage_tui.domain.age import format_age, parse_age
from triage_tui.domain.headers import Headers, decode_words, first_address, parse_date
from triage_tui.domain.text import inert
from triage_tui.errors import UsageError


def test_parse_unfolds_and_keeps_order():
    h = Headers.parse(b"Received: from a\r\n\tby b; Mon, 1 Jan 2024 00:00:00 +0000\r\nReceived: from c\r\n"
                      b"Subject: =?utf-8?q?caf=C3=A9?= =?utf-8?q?_ok?=\r\nX-8bit: \xff\r\n\r\nBODY: no\r\n")
    assert h.get_all("received") == ["from a by b; Mon, 1 Jan 2024 00:00:00 +0000", "from c"]
    assert h.decoded("subject") == "café ok"
    assert h.get("x-8bit") == "\xff"  # latin-1 fallback keeps the byte visible
    assert h.get("body") is None


def test_decode_words_tolerates_garbage():
    assert decode_words("=?utf-8?B?broken===?=") is not None
    assert decode_words("=?x-unknown?Q?hi?=") == "hi"
    assert decode_words("plain") == "plain"
    assert decode_words("=?utf-8?b?w6k=?=") == "é"


def test_dates_and_addresses():
    assert parse_date("nonsense") is None
    assert parse_date(None) is None
    d = parse_date("Mon, 1 Jan 2024 10:00:00")
    assert d is not None and d.tzinfo is not None
    assert first_address('"Doe, J" <j@x.org>, b@y') == ("Doe, J", "j@x.org")
    assert first_address("=?utf-8?q?J=C3=B6rg?= <j@x.org>") == ("Jörg", "j@x.org")


def test_ages():
    assert parse_age("90m").total_seconds() == 5400
    assert parse_age("36h").total_seconds() == 36 * 3600
    assert parse_age("2d").days == 2 and parse_age("1w").days == 7
    assert parse_age("45s").total_seconds() == 45
    for bad in ("soon", "45"):  # a bare number has no unit: refused (it used to mean seconds)
        with pytest.raises(UsageError):
            parse_age(bad)
    assert format_age(59) == "59s" and format_age(3 * 86400) == "3d" and format_age(20 * 86400) == "2w"


def test_inert():
    assert inert("a\x1b[31mred\x07") == "a\\x1b[31mred\\x07"
    assert inert("x\u202ey") == "x\\u202ey"
    assert inert("line\nnext") == "line next"
    assert inert("[bold]x[/]") == "[bold]x[/]"  # markup is the UI's job: shown literally there


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_header_parser_never_raises(raw):
    h = Headers.parse(raw)
    for name, _ in h.fields:
        h.decoded(name)
    first_address(h.get("from"))
    parse_date(h.get("date"))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=500))
def test_decode_and_inert_never_raise(text):
    out = inert(decode_words(text))
    assert "\x1b" not in out and "\x9b" not in out


def test_mask_url_hides_passwords_only():
    from triage_tui.domain.text import mask_url

    assert mask_url("redis://:s3cret@redis.example:6380/2") == "redis://:***@redis.example:6380/2"
    assert mask_url("rediss://user:pw@[::1]/0") == "rediss://user:***@[::1]/0"
    assert mask_url("redis://host/0") == "redis://host/0"
    assert mask_url(None) == ""
    assert mask_url("redis://:x@[bad") == "<unparseable URL>"
