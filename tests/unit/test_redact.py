"""Guarantee 3, the pure part: one mask for every credential form in a URL, one scrubber for every
spelling of a secret. Each form a secret can take is a case here."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage_tui.domain.redact import HIDDEN_HOST, HIDDEN_URL, mask_host, mask_url, scrub, secret_forms
from triage_tui.services.imap import ConnectionSettings, ImapSession, Secret
from triage_tui.services.locks import RedisSettings

PW = "Sëcret\"pw\\ä€"


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
    ("redis://user:pw@host", "redis://user:***@host"),
    ("rediss://user:pw@[::1]:6380/2", "rediss://user:***@[::1]:6380/2"),
    ("redis://host/0?password=pw&db=1", "redis://host/0?password=***&db=1"),
    ("redis://host/0?username=bob&password=pw", "redis://host/0?username=***&password=***"),
    ("redis://host/0?PassWord=pw", "redis://host/0?PassWord=***"),
    ("redis://host/0?pass%77ord=pw", "redis://host/0?pass%77ord=***"),  # percent-encoded name
    ("redis://host/0?sentinel_password=pw", "redis://host/0?sentinel_password=***"),
    ("unix:///run/redis.sock?password=pw&db=2", "unix:///run/redis.sock?password=***&db=2"),
    ("unix:/run/redis.sock?db=2", "unix:/run/redis.sock?db=2"),
    ("rediss://u:p%40ss%2Fw@h/1", "rediss://u:***@h/1"),  # percent-encoded password
    ("redis://pw@host/0", "redis://***@host/0"),  # a bare userinfo may be a password
    ("redis://:pw@host/0#frag", "redis://:***@host/0#***"),
    ("redis://host/0?hunter2", "redis://host/0?***"),  # a bare query value
    ("redis://host:6379/0", "redis://host:6379/0"),
    ("redis://host/0?db=3&ssl_cert_reqs=none", "redis://host/0?db=3&ssl_cert_reqs=none"),
])
def test_mask_url_keeps_where_hides_credentials(url: str, shown: str) -> None:
    assert mask_url(url) == shown


@pytest.mark.parametrize("url", [
    "redis//:pw@host", "redis:/:pw@host", "redis:pw@host", "redis://:p w@host", "redis://:pw@host /0",
    "redis://:a@b@host", "redis://:pw@host/0@x", "redis://:pa/ss@host", "redis://:pa?ss@host",
    "redis://:pa#ss@host", "redis://:secret", "redis://host:6379:pw", "redis://:x@[bad", " redis://:pw@h",
    "redis://:pw@h\n", "redis://:p\tw@h", "redis://:pw\u200b@h", "redis://:pw@h\u00a0", "://:pw@h",
    "1redis://:pw@h", "redis://:p\\w@h", ":pw@host", "pw",
])
def test_malformed_urls_are_hidden_whole(url: str) -> None:
    assert mask_url(url) == HIDDEN_URL


def test_mask_url_empty() -> None:
    assert mask_url(None) == "" and mask_url("") == ""


@given(st.text(max_size=30))
@settings(max_examples=300, deadline=None)
def test_no_password_survives_mask_url(tail: str) -> None:
    """Whatever the password, in userinfo (raw or percent-encoded) or in ?password=, no piece of
    its start reaches the output."""
    pw = "ZQX" + tail
    for url in (f"redis://:{pw}@host/0", f"redis://:{quote(pw, safe='')}@host/0", f"redis://u:{pw}@h",
                f"redis://h/0?password={pw}", f"unix:///s?password={quote(pw, safe='')}", f"redis//:{pw}@h",
                f"rediss://{pw.replace(':', '')}@h:6379"):  # a bare userinfo: before a ':' is a user name
        assert "ZQX" not in mask_url(url).upper(), url
        assert "ZQX" not in RedisSettings(url=url).display.upper(), url


@pytest.mark.parametrize(("host", "shown"), [
    ("imap.example.com:993", "imap.example.com:993"), ("[::1]:993", "[::1]:993"), ("127.0.0.1", "127.0.0.1"),
    ("user:pw@imap.example.com:993", HIDDEN_HOST), ("imaps://u:pw@h:993", "imaps://u:***@h:993"),
    ("h /x", HIDDEN_HOST), ("h\r\n", HIDDEN_HOST), ("", ""),
])
def test_mask_host(host: str, shown: str) -> None:
    assert mask_host(host) == shown


def _forms_in(text: str) -> str:
    return scrub(text, [PW], user="incoming@example.com")


@pytest.mark.parametrize("form", [
    PW,
    PW.replace("\\", "\\\\").replace('"', '\\"'),  # IMAP quoted string
    repr(PW)[1:-1], ascii(PW)[1:-1], repr(PW.encode())[2:-1],  # Python repr of str / bytes
    PW.encode("unicode_escape").decode(),
    json.dumps(PW)[1:-1], json.dumps(PW, ensure_ascii=False)[1:-1],  # JSON (\u00e4)
    quote(PW, safe=""), quote(PW, safe="").lower(), quote(PW),  # percent-encoding (%C3%A4 / %c3%a4)
    PW.encode().decode("latin-1"),  # UTF-8 read as Latin-1
    PW.lower(), PW.upper(), PW.swapcase(),  # a server that folds case
    base64.b64encode(f"\0incoming@example.com\0{PW}".encode()).decode(),  # AUTHENTICATE PLAIN echo
    base64.b64encode(f"\0\0{PW}".encode()).decode(),
    base64.b64encode(f"incoming@example.com\0incoming@example.com\0{PW}".encode()).decode(),
    base64.b64encode(f"user=incoming@example.com\1auth=Bearer {PW}\1\1".encode()).decode(),  # XOAUTH2
    base64.b64encode(PW.encode()).decode(),
])
def test_scrub_catches_every_spelling(form: str) -> None:
    text = f"NO [AUTHENTICATIONFAILED] bad {form} (sent {form!r})"
    out = _forms_in(text)
    assert form not in out and "***" in out
    assert out.startswith("NO [AUTHENTICATIONFAILED] bad ")


def test_scrub_leaves_other_text_alone() -> None:
    assert scrub("connection refused", [PW, None, ""]) == "connection refused"
    assert scrub("", [PW]) == ""
    assert secret_forms("") == set()


def test_imap_session_scrub_uses_every_secret() -> None:
    s = ImapSession(ConnectionSettings(user="bob", password=Secret(PW), oauth2_token=Secret("tok-123456")))
    blob = base64.b64encode(f"\0bob\0{PW}".encode()).decode()
    out = s._scrub(f"x {PW.upper()} {blob} {ascii(PW)} tok-123456 TOK-123456 y")
    assert out == "x *** *** '***' *** *** y"


@pytest.mark.parametrize("url", [
    "redis://:rpw-1234@h:6379/0", "redis://h:6379/0?password=rpw-1234", "redis://user:rpw-1234@h/0",
    "unix:///run/r.sock?password=rpw-1234", "redis//:rpw-1234@h", "redis:/:rpw-1234@h/0",
    "rediss://u:rpw%2D1234@h/0",
])
def test_redis_settings_never_show_the_password(url: str) -> None:
    rs = RedisSettings(url=url, sentinel_password="spw-5678")
    for text in (rs.display, repr(rs), str(rs), rs.scrub(f"error for {url}: AUTH rpw-1234 'RPW-1234' spw-5678"),
                 rs.identity):
        assert "rpw-1234" not in text.lower() and "rpw%2d1234" not in text.lower() and "spw-5678" not in text


def test_redis_password_reads_the_query_too() -> None:
    assert RedisSettings(url="redis://h/0?password=q-pw").password == "q-pw"
    assert RedisSettings(url="redis://:u-pw@h/0?password=q-pw").password == "u-pw"  # redis-py: userinfo wins
    assert RedisSettings(url="redis//:x@h").password is None  # redis-py refuses it


def test_sentinel_addresses_with_credentials_are_hidden() -> None:
    rs = RedisSettings(sentinels=[("redis://:s-pw@s1", 26379), ("s2", 26380)], master="m")
    assert "s-pw" not in rs.display and "s-pw" not in repr(rs) and "s2:26380" in rs.display


def test_registered_secrets_are_the_last_line_of_defence() -> None:
    from triage_tui.domain.redact import register, scrub_registered

    Secret("CANARY-registered-51")
    register("ab", None, "")  # too short to scrub everywhere: left to the targeted scrubbers
    out = scrub_registered("boom: 'CANARY-registered-51' canary-registered-51 Q0FOQVJZLXJlZ2lzdGVyZWQtNTE= ab")
    assert out == "boom: '***' *** *** ab"


@pytest.mark.parametrize(("text", "shown"), [
    ("invalid choice: 'redis://:pw-CANARY@h/0' (choose", "invalid choice: 'redis://:***@h/0' (choose"),
    ("unrecognized arguments: redis://h/0?password=pw-CANARY x", "unrecognized arguments: redis://h/0?password=*** x"),
    ("unrecognized arguments: redis//:pw-CANARY@h", f"unrecognized arguments: {HIDDEN_URL}"),
    ("mail a@b.example and http://x/y?q=1 at 10:30", "mail a@b.example and http://x/y?q=1 at 10:30"),
])
def test_urls_quoted_in_free_text_are_masked(text: str, shown: str) -> None:
    from triage_tui.domain.redact import mask_urls_in

    assert mask_urls_in(text) == shown


def test_a_mistyped_flag_does_not_echo_the_redis_password(capsys: pytest.CaptureFixture[str]) -> None:
    from triage_tui.cli import main

    assert main(["--redis-uri", "redis://:pw-CANARY-typo@h/0", "locks"]) == 2
    err = capsys.readouterr().err
    assert "pw-CANARY-typo" not in err and "redis://:***@h/0" in err
