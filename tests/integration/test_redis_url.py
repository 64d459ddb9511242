"""A Redis URL that points at the wrong thing is one clear line, never an internal error or a hang
(issue 11, guarantee 5): checked against the real Dovecot (an IMAP port given as Redis), a real
HTTP server, a silent listener, and the real Redis fixture (which must keep working)."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.mailgen import backlog
from triage_tui.services.journal import AuditJournal
from triage_tui.services.locks import LockService, LockUnavailable, RedisSettings

NOW = time.time()


def _locks(url: str, timeout: float = 2.0) -> LockService:
    return LockService(RedisSettings(url=url, timeout=timeout), read_only=True, journal=AuditJournal())


@pytest.fixture
def http_port() -> Iterator[int]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_port
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(5)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def test_the_imap_port_given_as_redis_did_not_answer_like_redis(dovecot, mailbox, cli):  # type: ignore[no-untyped-def]
    url = f"redis://127.0.0.1:{dovecot.imap_port}/0"
    with pytest.raises(LockUnavailable) as ei:
        _locks(url).check()
    assert "did not answer like a Redis server" in str(ei.value) and ei.value.exit_code == 3
    mailbox.seed(backlog(2, now=NOW))
    r = cli(["locks"], env={**mailbox.env(), "TRIAGE_REDIS_URL": url})
    assert r.code == 3 and "did not answer like a Redis server" in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1 and "internal error" not in r.err
    # the mailbox itself is unaffected: list still works, the lock column says why it is empty
    r = cli(["list", "--json"], env={**mailbox.env(), "TRIAGE_REDIS_URL": url})
    assert r.code == 0 and len(r.lines) == 2, r.err


def test_the_imaps_port_given_as_redis(dovecot):  # type: ignore[no-untyped-def]
    with pytest.raises(LockUnavailable) as ei:
        _locks(f"redis://127.0.0.1:{dovecot.imaps_port}/0").check()
    assert "Redis" in str(ei.value) and "\n" not in str(ei.value)


def test_an_http_server_given_as_redis(http_port):  # type: ignore[no-untyped-def]
    with pytest.raises(LockUnavailable) as ei:
        _locks(f"redis://127.0.0.1:{http_port}/0").check()
    assert "did not answer like a Redis server" in str(ei.value)


def test_a_silent_port_is_a_timeout_not_a_hang(silent_port):  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    with pytest.raises(LockUnavailable) as ei:
        _locks(f"redis://127.0.0.1:{silent_port}/0", timeout=0.5).check()
    assert "timed out after 0.5 s" in str(ei.value)
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize(("tail", "phrase"), [
    ("/abc", "the database 'abc' is not a number"),
    ("/0?db=x", "the database 'x' is not a number"),
    (":99999/0", "from 1 to 65535"),
    (":abc/0", "from 1 to 65535"),
])
def test_malformed_urls_are_usage_errors_before_connecting(redis_server, mailbox, cli, tail, phrase):  # type: ignore[no-untyped-def]
    url = f"redis://:s3cr3t-pw@127.0.0.1{tail}"
    r = cli(["locks"], env={**mailbox.env(), "TRIAGE_REDIS_URL": url})
    assert r.code == 2 and phrase in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert "s3cr3t-pw" not in r.err


def test_http_scheme_is_refused(mailbox, cli):  # type: ignore[no-untyped-def]
    r = cli(["locks"], env={**mailbox.env(), "TRIAGE_REDIS_URL": "http://127.0.0.1:8080/0"})
    assert r.code == 2 and "is not Redis: use redis://" in r.err


def test_the_real_redis_still_works(redis_server, redis_client, mailbox, cli):  # type: ignore[no-untyped-def]
    assert "prefix" in _locks(redis_server.url).check()
    assert "prefix" in _locks(f"redis://127.0.0.1:{redis_server.port}/15").check()
    assert "prefix" in _locks(f"redis://127.0.0.1:{redis_server.port}/0?db=3").check()
    mailbox.seed(backlog(2, now=NOW))
    r = cli(["locks"], env={**mailbox.env(), "TRIAGE_REDIS_URL": redis_server.url})
    assert r.code == 0, r.err
