"""Round trips of a connection (issue 13, goal 5): what a listing sends, counted by the proxy.

Behind a WAN every command the client waits for costs a round trip. A listing sends LOGIN, then
ENABLE CONDSTORE and EXAMINE together, one SEARCH, the pipelined FETCH chunks and LOGOUT: no
CAPABILITY (the greeting carries it), no second EXAMINE.
"""

from __future__ import annotations

import json
import time

from tests.mailgen import backlog
from tests.proxy import LatencyProxy
from triage_tui.services.imap import FRESH_EXAMINE, ImapSession


def _verbs(cmds: list[bytes]) -> list[bytes]:
    out = []
    for c in cmds:
        words = c.upper().split(b" ")
        verb = b" ".join(words[1:3]) if len(words) > 2 and words[1] == b"UID" else words[1]
        out.append(verb)
    return out


def _rows(out: str) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in out.splitlines() if line]
    for r in rows:
        r.pop("age_seconds", None)
    return rows


def test_list_sends_no_setup_command_it_does_not_need(mailbox, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(25, seen_every=5))
    direct = cli(["list", "--json"], env={**mailbox.env(), "TRIAGE_IMAP_PORT": str(mailbox.server.imap_port),
                                          "TRIAGE_IMAP_SECURITY": "none"})
    assert direct.code == 0, direct.err
    # 300 ms each way round: the client sends EXAMINE long before ENABLE's answer can come back
    with LatencyProxy(mailbox.server.imap_port, rtt=0.3) as proxy:
        env = {**mailbox.env(), "TRIAGE_IMAP_PORT": str(proxy.port), "TRIAGE_IMAP_SECURITY": "none"}
        r = cli(["list", "--json"], env=env)
        time.sleep(0.4)  # LOGOUT through the delayed pump
        cmds, round_trips = proxy.commands(), proxy.round_trips
    assert r.code == 0, r.err
    assert _rows(r.out) == _rows(direct.out) and len(_rows(r.out)) == 20  # the same listing
    verbs = _verbs(cmds)
    assert verbs[:4] == [b"LOGIN", b"ENABLE", b"EXAMINE", b"UID SEARCH"], verbs
    assert b"CAPABILITY" not in verbs and verbs.count(b"EXAMINE") == 1, verbs
    assert set(verbs[4:-1]) == {b"UID FETCH"} and verbs[-1] == b"LOGOUT", verbs
    # connect, LOGIN, ENABLE+EXAMINE, SEARCH, FETCH, LOGOUT
    assert round_trips == 6, (round_trips, verbs)


def test_round_trips_grow_with_chunks_not_messages(mailbox, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(200))
    counts = {}
    for chunk in (200, 10):
        with LatencyProxy(mailbox.server.imap_port, rtt=0.2) as proxy:
            env = {**mailbox.env(), "TRIAGE_IMAP_PORT": str(proxy.port), "TRIAGE_IMAP_SECURITY": "none"}
            r = cli(["--chunk", str(chunk), "list", "--json"], env=env)
            time.sleep(0.3)
            assert r.code == 0 and len(r.lines) == 200, r.err
            counts[chunk] = (_verbs(proxy.commands()).count(b"UID FETCH"), proxy.round_trips)
    assert counts[200][0] == 1 and counts[10][0] == 20
    # 20 FETCH commands, 8 in flight: a few more round trips than one FETCH, far fewer than 20
    assert counts[200][1] == 6 and counts[200][1] < counts[10][1] <= 6 + 20 // 8 + 1, counts


def test_a_recent_examine_answers_the_next_once(mailbox):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(5))
    with LatencyProxy(mailbox.server.imap_port) as proxy:
        s = ImapSession.open(mailbox.settings(port=proxy.port, security="none"))
        try:
            first = s.examine()
            assert s.examine() is first  # back to back: the same answer, nothing sent
            s.examine()                   # the reuse was used up: a real EXAMINE
            s.client.noop()               # a command sent around us (as the watcher's IDLE is)
            s.examine()                   # ... so a real EXAMINE
            s.search("ALL")
            s.examine()                   # a command in between: a real EXAMINE
            time.sleep(FRESH_EXAMINE + 0.1)
            s.examine()                   # too old: a real EXAMINE
            s.select()
            s.examine()                   # after SELECT (read-write): a real EXAMINE
            # ENABLE CONDSTORE was answered OK along the way (a NO would have raised)
            assert not s._pending
            recs = [r for b in s.fetch_stream([1], "UID FLAGS MODSEQ") for r in b]
            assert recs and recs[0].modseq is not None
            assert "CONDSTORE" in s.capabilities and "IMAP4REV1" in s.capabilities
        finally:
            s.close()
        verbs = _verbs(proxy.commands())
    assert b"CAPABILITY" not in verbs
    assert verbs.count(b"EXAMINE") == 6 and verbs.count(b"SELECT") == 1, verbs


def test_a_refused_enable_is_one_clear_line(mailbox, cli):  # type: ignore[no-untyped-def]
    """ENABLE is no longer waited for on its own: a NO to it still ends the run cleanly (exit 3)."""
    mailbox.seed(backlog(3))
    with LatencyProxy(mailbox.server.imap_port, throttle_pattern=b"ENABLE", throttle_times=1) as proxy:
        env = {**mailbox.env(), "TRIAGE_IMAP_PORT": str(proxy.port), "TRIAGE_IMAP_SECURITY": "none"}
        r = cli(["list", "--json"], env=env)
    assert r.code == 3 and r.out == "", (r.code, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("triage-tui: error: IMAP error from ") and "ENABLE" in lines[0], r.err
    assert "Traceback" not in r.err


def test_the_connection_does_not_wait_on_nagle(mailbox):  # type: ignore[no-untyped-def]
    """We pipeline: with Nagle's algorithm every command after the first of a burst would wait
    for the server's ACK (a round trip on a WAN), so the socket has TCP_NODELAY, on plaintext
    implicit TLS and after STARTTLS alike; a burst of pipelined commands then costs one round trip."""
    import socket  # noqa: PLC0415

    mailbox.seed(backlog(40))
    port = mailbox.server.imap_port
    for settings in (mailbox.settings(), mailbox.settings(port=port, security="starttls"),
                     mailbox.settings(port=port, security="none")):
        security = settings.security
        s = ImapSession.open(settings)
        try:
            sock = s.client._imap.sock
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0, security
        finally:
            s.close()
    with LatencyProxy(mailbox.server.imap_port, rtt=0.2) as proxy:
        s = ImapSession.open(mailbox.settings(port=proxy.port, security="none"), limits=None)
        try:
            s.examine()
            t = time.perf_counter()
            s.changed_since_and_search(1, "ALL")  # two commands, pipelined
            took = time.perf_counter() - t
        finally:
            s.close()
    assert took < 0.2 * 1.6, f"two pipelined commands took {took:.2f} s at a 0.2 s RTT"


def _sessions(mailbox) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    log = mailbox.server.log()
    return (log.count(f"Login: user=<{mailbox.user}>"),
            sum(1 for ln in log.splitlines() if f"imap({mailbox.user})" in ln and "Disconnected: Logged out" in ln))


def test_a_command_exits_without_waiting_for_logouts_answer(mailbox, cli):  # type: ignore[no-untyped-def]
    """A CLI command's last round trip was LOGOUT's BYE, which tells it nothing: it sends LOGOUT,
    ends its stream and goes. Dovecot still logs every session out cleanly (it reads LOGOUT before
    the end of the stream), on TLS, STARTTLS and plaintext, and the CLI's exit through a slow link
    does not wait for the answer."""
    from tests.integration.test_consumer import wait_until  # noqa: PLC0415

    mailbox.seed(backlog(5))
    port = mailbox.server.imap_port
    for settings in (mailbox.settings(), mailbox.settings(port=port, security="starttls"),
                     mailbox.settings(port=port, security="none")):
        s = ImapSession.open(settings)
        s.examine()
        s.close(wait=False)
        assert s.client is None
    for env in (mailbox.env(), {**mailbox.env(), "TRIAGE_IMAP_PORT": str(port), "TRIAGE_IMAP_SECURITY": "none"}):
        r = cli(["list", "--json"], env=env)
        assert r.code == 0 and len(r.lines) == 5, r.err
    assert wait_until(lambda: _sessions(mailbox)[0] == _sessions(mailbox)[1] == 5), _sessions(mailbox)
    with LatencyProxy(port, rtt=1.0) as proxy:
        s = ImapSession.open(mailbox.settings(port=proxy.port, security="none"), limits=None)
        s.examine()
        t = time.perf_counter()
        s.close(wait=False)
        took = time.perf_counter() - t
        assert wait_until(lambda: _sessions(mailbox)[1] == 6, timeout=10), _sessions(mailbox)
    assert took < 0.5, f"close(wait=False) waited {took:.2f} s at a 1 s RTT"


def test_a_warm_listing_asks_for_the_changed_flags_with_its_search(mailbox, cli):  # type: ignore[no-untyped-def]
    """Warm (header cache), the view's SEARCH, ``FETCH CHANGEDSINCE`` the cache's HIGHESTMODSEQ
    ``SEARCH RECENT`` and ``SEARCH ALL`` (for the cached rows gone) go in one burst, told apart by their ESEARCH tags: connect, LOGIN,
    ENABLE+EXAMINE, that burst; LOGOUT is not waited for. The rows are those of a cold listing,
    with a flag another client changed in between."""
    mailbox.seed(backlog(30, seen_every=5))
    with LatencyProxy(mailbox.server.imap_port, rtt=0.2) as proxy:
        env = {**mailbox.env(), "TRIAGE_IMAP_PORT": str(proxy.port), "TRIAGE_IMAP_SECURITY": "none"}
        assert cli(["list", "--json"], env=env).code == 0  # fills the cache
        c = mailbox.client()
        try:
            c.select_folder("INBOX")
            c.add_flags(mailbox.search("UNSEEN")[:3], [b"\\Seen"], silent=True)
            c.add_flags(mailbox.search("UNSEEN")[:2], [b"\\Flagged"], silent=True)
        finally:
            c.logout()
        time.sleep(0.5)
        before, trips = len(proxy.commands()), proxy.round_trips
        r = cli(["list", "--json"], env=env)
        time.sleep(0.5)  # LOGOUT through the delayed pump
        cmds, round_trips = proxy.commands()[before:], proxy.round_trips - trips
    cold = cli(["--no-cache", "list", "--json"], env={**mailbox.env(), "TRIAGE_IMAP_PORT": str(mailbox.server.imap_port),
                                                      "TRIAGE_IMAP_SECURITY": "none"})
    assert r.code == 0 and cold.code == 0, r.err + cold.err
    assert _rows(r.out) == _rows(cold.out) and len(_rows(r.out)) == 21
    assert sum(1 for row in _rows(r.out) if "\\Flagged" in row["flags"]) == 2  # type: ignore[operator]
    verbs = _verbs(cmds)
    assert verbs == [b"LOGIN", b"ENABLE", b"EXAMINE", b"UID SEARCH", b"UID FETCH", b"UID SEARCH", b"UID SEARCH",
                     b"UID FETCH", b"LOGOUT"], verbs
    assert b"CHANGEDSINCE" in cmds[4].upper() and cmds[5].upper().endswith(b" RECENT") and cmds[6].upper().endswith(b" ALL"), cmds
    assert cmds[7].upper().endswith(b" (UID INTERNALDATE RFC822.SIZE)"), cmds  # the highest cached UIDs: still theirs?
    # connect, LOGIN, ENABLE+EXAMINE, SEARCH+FETCH+SEARCH+SEARCH+FETCH (LOGOUT: sent, not waited for)
    assert round_trips <= 5, (round_trips, verbs)
