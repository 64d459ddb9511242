"""A server that lies, in front of the real Dovecot: a proxy rewrites what one side says.

Found by an adversary's scripted server (2026-12-05): a server answering a narrowing ``UID
SEARCH UID <set> ...`` with UIDs outside the set made ``mark-seen --uids 2 --older-than 1d`` mark
2, 4 and 6, and an expunge resumed after a lost connection remove messages never selected; an
ESEARCH naming another command's tag was taken as the answer (\\Seen mail listed as UNSEEN, and
marked by ``--all``); ``* SEARCH 0`` went out as a STORE target; an ``OK [MODIFIED 1:*]`` in the
middle of a pipelined STORE stopped the operation with the operator's usage advice while later
STOREs were applied, and the journal had none of them; a server throttling every command kept a
``mark-seen`` silent for 8 minutes. Here Dovecot does the work and holds the truth; the proxy
only lies about it, and each test checks the server's flags and the journal afterwards.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from tests.conftest import Mailbox, one_line_error
from tests.mailgen import message
from tests.proxy import LatencyProxy
from triage_tui.domain import uidset
from triage_tui.services import imap as imap_mod
from triage_tui.services.journal import AuditJournal

DAY = 86400
OLD = (2, 4, 6)
_SEARCH_OK = re.compile(rb"(?m)^(\w+ OK Search completed)")
_STORE_OK = re.compile(rb"(?m)^(\w+) OK (Store completed)")


def _seed(mailbox: Mailbox, seen: tuple[int, ...] = ()) -> None:
    now = time.time()
    mailbox.seed([(message(subject=f"m{i}", date=now - (3 * DAY if i in OLD else 60)),
                   now - (3 * DAY if i in OLD else 60), "\\Seen" if i in seen else "") for i in range(1, 7)])


def _env(mailbox: Mailbox, port: int) -> dict[str, str]:
    return {**mailbox.env(), "TRIAGE_IMAP_PORT": str(port), "TRIAGE_IMAP_SECURITY": "none",
            "TRIAGE_IMAP_TIMEOUT": "5", "TRIAGE_ADDRESS": "incoming+%{key}@incoming.gitlab.example.com"}


def _seen(mailbox: Mailbox) -> list[int]:
    return sorted(u for u, f in mailbox.flags().items() if "\\Seen" in f)


def _ignoring_the_uid_key(data: bytes) -> bytes:
    """The client's ``UID SEARCH [RETURN (...)] UID <set> <criteria>`` reaches Dovecot without
    ``UID <set>``: it answers for the whole mailbox."""
    return re.sub(rb"(UID SEARCH (?:RETURN \([^)]*\) )?)UID [0-9:,]+ ", rb"\1", data)


def _without(capability: bytes) -> Callable[[bytes], bytes]:
    return lambda data: data.replace(b" " + capability + b" ", b" ").replace(b" " + capability + b"]", b"]") \
        .replace(b" " + capability + b"\r\n", b"\r\n")


@pytest.mark.parametrize("condstore", [True, False])
def test_a_narrowing_search_answered_for_the_whole_mailbox_marks_only_what_was_selected(
        mailbox: Mailbox, cli, condstore: bool) -> None:  # type: ignore[no-untyped-def]
    _seed(mailbox)
    with LatencyProxy(mailbox.server.imap_port, client_says=_ignoring_the_uid_key,
                      server_says=None if condstore else _without(b"CONDSTORE")) as proxy:
        r = cli(["mark-seen", "--uids", "2", "--older-than", "1d", "--yes"], env=_env(mailbox, proxy.port))
        assert r.code == 0, r
        assert b"UID SEARCH RETURN (ALL) UID 2 " in bytes(proxy.sent), "the narrowing the lie is about"
        assert _seen(mailbox) == [2], r.out
        r = cli(["mark-seen", "--uids", "1,3", "--yes"], env=_env(mailbox, proxy.port))
    assert r.code == 0, r
    assert _seen(mailbox) == [1, 2, 3]
    begins = [x for x in AuditJournal().records() if x.get("phase") == "begin"]
    assert [x["targets"] for x in begins] == ["2", "1,3"]


def test_an_esearch_answer_naming_another_tag_is_not_the_answer(mailbox: Mailbox, cli) -> None:  # type: ignore[no-untyped-def]
    _seed(mailbox, seen=(1, 3, 5))

    def stray(data: bytes) -> bytes:  # before the real answer: the first one is not the one
        return re.sub(rb"(?m)^(\* ESEARCH )", rb'* ESEARCH (TAG "ZZZ9") UID ALL 1:6\r\n\1', data)

    with LatencyProxy(mailbox.server.imap_port, server_says=stray) as proxy:
        env = _env(mailbox, proxy.port)
        r = cli(["--no-cache", "list", "--json"], env=env)
        assert r.code == 0, r
        assert [int(line.split('"uid": ')[1].split(",")[0]) for line in r.lines] == [2, 4, 6]
        r = cli(["mark-seen", "--all", "--yes"], env=env)
    assert r.code == 0, r
    assert _seen(mailbox) == [1, 2, 3, 4, 5, 6]
    begin = next(x for x in AuditJournal().records() if x.get("phase") == "begin")
    assert begin["targets"] == "2,4,6"


def test_two_untagged_esearch_answers_cannot_be_told_apart(mailbox: Mailbox, cli) -> None:  # type: ignore[no-untyped-def]
    _seed(mailbox, seen=(1, 3, 5))

    def two(data: bytes) -> bytes:
        data = re.sub(rb'\* ESEARCH \(TAG "[^"]*"\) ', b"* ESEARCH ", data)  # no correlators at all
        return _SEARCH_OK.sub(rb"* ESEARCH UID ALL 1:6\r\n\1", data)

    with LatencyProxy(mailbox.server.imap_port, server_says=two) as proxy:
        r = cli(["mark-seen", "--all", "--yes"], env=_env(mailbox, proxy.port))
    one_line_error(r)
    assert "cannot be told apart" in r.err
    assert _seen(mailbox) == [1, 3, 5]


@pytest.mark.parametrize("lie", [b"0", b"4294967296", b"99999999999"])
def test_a_search_answer_that_is_no_uid_is_refused_before_anything_is_sent(
        mailbox: Mailbox, cli, lie: bytes) -> None:  # type: ignore[no-untyped-def]
    _seed(mailbox)
    plain = _without(b"ESEARCH")

    def bad(data: bytes) -> bytes:
        return _SEARCH_OK.sub(b"* SEARCH " + lie + rb"\r\n\1", plain(data))

    with LatencyProxy(mailbox.server.imap_port, server_says=bad) as proxy:
        r = cli(["mark-seen", "--all", "--yes"], env=_env(mailbox, proxy.port))
        assert b"UID STORE" not in bytes(proxy.sent)
    one_line_error(r)
    assert "not a UID" in r.err and lie.decode() in r.err
    assert _seen(mailbox) == []


@pytest.mark.parametrize("lie", [b"ALL (1 2)", b"ALL 1:*", b"ALL 0", b"ALL 5:abc"])
def test_an_esearch_set_that_is_no_set_is_the_servers_fault(mailbox: Mailbox, cli, lie: bytes) -> None:  # type: ignore[no-untyped-def]
    _seed(mailbox)

    def bad(data: bytes) -> bytes:
        return re.sub(rb"(\* ESEARCH \(TAG \"[^\"]*\"\) UID) ALL [0-9:,]+", rb"\1 " + lie, data)

    with LatencyProxy(mailbox.server.imap_port, server_says=bad) as proxy:
        r = cli(["--no-cache", "list", "--json"], env=_env(mailbox, proxy.port))
    one_line_error(r)
    assert "the server answered SEARCH" in r.err
    assert "--all" not in r.err, "the operator's usage advice about the server's answer"


@pytest.mark.parametrize("lie", [b"1:*", b"abc"])
def test_a_modified_code_that_is_no_set_of_ours_still_journals_what_the_server_did(
        mailbox: Mailbox, cli, lie: bytes) -> None:  # type: ignore[no-untyped-def]
    """The first of three pipelined STOREs is answered ``OK [MODIFIED <lie>]``; Dovecot applied
    all three. ``1:*`` names every UID (the server says those two were changed by someone else:
    skipped, not ours); ``abc`` names none that can be read, so the server's flags tell."""
    _seed(mailbox)
    first = [True]

    def modified(data: bytes) -> bytes:
        if first[0] and _STORE_OK.search(data):
            first[0] = False
            return _STORE_OK.sub(rb"\1 OK [MODIFIED " + lie + rb"] \2", data, count=1)
        return data

    with LatencyProxy(mailbox.server.imap_port, server_says=modified) as proxy:
        r = cli(["--chunk", "2", "mark-seen", "--all", "--yes"], env=_env(mailbox, proxy.port))
    assert not first[0], "the lie was told"
    assert r.code == 0, r
    assert "Traceback" not in r.err and "invalid UID set" not in r.err
    assert _seen(mailbox) == [1, 2, 3, 4, 5, 6]
    end = next(x for x in AuditJournal().records() if x.get("phase") == "end")
    done = [x for x in AuditJournal().records() if x.get("phase") == "progress" and x.get("done")]
    journaled = sorted(u for x in done for u in uidset.parse(x["done"]))
    if lie == b"1:*":
        assert uidset.parse(end["changed"]) == [3, 4, 5, 6] and end["skipped_concurrent"] == "1:2"
        assert journaled == [3, 4, 5, 6]
    else:
        assert uidset.parse(end["changed"]) == [1, 2, 3, 4, 5, 6], end
        assert journaled == [1, 2, 3, 4, 5, 6]


def test_a_server_that_throttles_every_command_is_given_up_on_in_bounded_time(
        mailbox: Mailbox, cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    _seed(mailbox)
    monkeypatch.setattr(imap_mod, "MAX_THROTTLE_WAIT", 0.2)  # each answer asks for 40 ms
    with LatencyProxy(mailbox.server.imap_port, throttle_pattern=b" UID STORE ", throttle_times=10_000) as proxy:
        t0 = time.monotonic()
        r = cli(["mark-seen", "--all", "--yes"], env=_env(mailbox, proxy.port))
        took = time.monotonic() - t0
    assert r.code != 0, r
    assert "Traceback" not in r.err
    assert 1 < proxy.throttled <= 7, proxy.throttled  # before: 21 tries, whatever they cost
    assert took < 20
    assert _seen(mailbox) == []
    end = next(x for x in AuditJournal().records() if x.get("phase") == "end")
    assert end["result"] == "failed" and uidset.parse(end["failed"]) == [1, 2, 3, 4, 5, 6]


def test_a_count_that_is_no_number_is_the_servers_fault(mailbox: Mailbox) -> None:
    from dataclasses import replace

    from triage_tui.errors import OperationFailed
    from triage_tui.services.imap import ImapSession

    _seed(mailbox, seen=(1,))

    def bad(data: bytes) -> bytes:
        return re.sub(rb"(\* ESEARCH \(TAG \"[^\"]*\"\) UID) COUNT [0-9]+", rb"\1 COUNT abc", data)

    with LatencyProxy(mailbox.server.imap_port) as honest, LatencyProxy(mailbox.server.imap_port,
                                                                         server_says=bad) as liar:
        for proxy, want in ((honest, 5), (liar, None)):
            s = ImapSession(replace(mailbox.settings(), port=proxy.port, security="none"))
            try:
                s.connect()
                s.examine("INBOX")
                if want is None:
                    with pytest.raises(OperationFailed, match="not a count"):
                        s.count("UNSEEN")
                else:
                    assert s.count("UNSEEN") == want
            finally:
                s.close()


def test_a_select_answer_that_does_not_parse_is_one_line(mailbox: Mailbox, cli) -> None:  # type: ignore[no-untyped-def]
    _seed(mailbox)

    def bad(data: bytes) -> bytes:
        return re.sub(rb"\[HIGHESTMODSEQ [0-9]+\]", b"[HIGHESTMODSEQ abc]", data)

    with LatencyProxy(mailbox.server.imap_port, server_says=bad) as proxy:
        r = cli(["mark-seen", "--all", "--yes"], env=_env(mailbox, proxy.port))
    one_line_error(r)
    assert "does not parse" in r.err
    assert _seen(mailbox) == []


@pytest.mark.parametrize("lie", [b"0", b"-1", b"18446744073709551616"])
def test_an_absurd_highestmodseq_is_none(mailbox: Mailbox, cli, lie: bytes) -> None:  # type: ignore[no-untyped-def]
    """It went into UNCHANGEDSINCE as it was (0: every STORE 'modified'; 2^64: BAD). Now it is
    as if the server had none: the change is guarded as on a server without CONDSTORE."""
    _seed(mailbox, seen=(1,))

    def bad(data: bytes) -> bytes:
        return re.sub(rb"\[HIGHESTMODSEQ [0-9]+\]", b"[HIGHESTMODSEQ " + lie + b"]", data)

    with LatencyProxy(mailbox.server.imap_port, server_says=bad) as proxy:
        env = _env(mailbox, proxy.port)
        listed = cli(["list", "--json"], env=env)
        assert listed.code == 0 and len(listed.lines) == 5, listed
        r = cli(["mark-seen", "--all", "--yes"], env=env)
        assert b"UNCHANGEDSINCE" not in bytes(proxy.sent)
    assert r.code == 0 and "Traceback" not in r.err and "internal error" not in r.err, r
    assert _seen(mailbox) == [1, 2, 3, 4, 5, 6]


def test_an_answer_that_does_not_parse_is_given_up_on_after_one_reconnect(
        mailbox: Mailbox, cli) -> None:  # type: ignore[no-untyped-def]
    """A deterministic protocol error was retried like a lost connection, five times with
    backoff (16 s; a stalled server's timeout on top: 34 s); the server says it again each time."""
    _seed(mailbox)

    def huge(data: bytes) -> bytes:
        return re.sub(rb"(BODY\[HEADER[^\]]*\] )\{[0-9]+\}\r\n", rb"\1{999999999}\r\n", data, count=1)

    with LatencyProxy(mailbox.server.imap_port, server_says=huge) as proxy:
        t0 = time.monotonic()
        r = cli(["--no-cache", "list", "--json"], env=_env(mailbox, proxy.port))
        took = time.monotonic() - t0
        connections = proxy.connections
    assert r.code == 3 and "do not parse" in r.err and "Traceback" not in r.err, r
    assert r.err.strip().splitlines()[-1].startswith("triage-tui: error: literal of 999999999 bytes")
    assert connections == 2 and took < 10, (connections, took)
