"""The embedded demo servers, driven through the production engine: pymap behind
:class:`~triage_tui.services.imap.ImapSession` / :class:`~triage_tui.services.triage.TriageService`,
fakeredis behind redis-py and the lock service, the mail_room stand-in. Server state is always
checked on a separate connection, never from the reply of the call under test."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import imapclient
import pytest

from triage_tui.demo.backlog import ADDRESS_TEMPLATE, DEFAULT_SIZE, build_backlog
from triage_tui.demo.server import DEMO_PASSWORD, DEMO_USER, HOST, KEY_PREFIX, DemoServers, start_demo
from triage_tui.domain.analysis import AnalysisConfig
from triage_tui.domain.model import View
from triage_tui.errors import ReadOnlyRefused
from triage_tui.services.imap import ImapSession
from triage_tui.services.triage import RetryPolicy, TriageService

SMALL = 200


def wait_until(pred: Callable[[], bool], timeout: float = 15.0, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoServers]:
    """The default demo, as ``triage-tui demo`` starts it (shared by the read-only tests)."""
    servers = start_demo()
    yield servers
    servers.stop()


@pytest.fixture
def small() -> Iterator[DemoServers]:
    """A fresh small demo for tests that change the mailbox or Redis."""
    servers = start_demo(SMALL, poll_interval=0.2)
    yield servers
    servers.stop()


def checker(servers: DemoServers) -> imapclient.IMAPClient:
    c = imapclient.IMAPClient(HOST, port=servers.imap.port, ssl=False)
    c.login(DEMO_USER, DEMO_PASSWORD)
    c.select_folder("INBOX", readonly=True)
    return c


def search(servers: DemoServers, *criteria: str) -> list[int]:
    c = checker(servers)
    try:
        return sorted(c.search(list(criteria)))
    finally:
        c.logout()


def test_default_demo_starts_within_a_few_seconds(demo: DemoServers) -> None:
    # ~1.8 s on an idle 2-core machine; generous for a loaded CI runner
    assert demo.started_in < 10, f"demo took {demo.started_in:.1f} s to start"
    assert len(demo.uids) == DEFAULT_SIZE
    assert demo.uids == list(range(101, 101 + DEFAULT_SIZE))  # pymap starts at 101, appends in order


def test_engine_connects_with_the_production_settings(demo: DemoServers) -> None:
    settings = demo.connection_settings()
    assert settings.security == "none" and settings.host == "127.0.0.1"
    with ImapSession.open(settings) as s:
        info = s.examine()
        assert info.exists == DEFAULT_SIZE and info.uidvalidity == demo.uidvalidity
        assert {"IDLE", "UIDPLUS"} <= s.capabilities
        assert "ESEARCH" not in s.capabilities  # the engine's SEARCH fallback is what runs here
        assert len(s.search("UNSEEN")) == demo.backlog.view_counts()["unseen"]
        rec = s.fetch_header(demo.uid(0))
        assert rec is not None and rec.body and rec.body.startswith(b"Return-Path:")


def test_views_count_and_list_the_whole_backlog(demo: DemoServers) -> None:
    expected = demo.backlog.view_counts()
    svc = TriageService(demo.connection_settings(), read_only=True)
    try:
        c = svc.counts()
        assert (c.unseen, c.seen_stuck, c.deleted, c.exists) == \
            (expected["unseen"], expected["seen-stuck"], expected["deleted"], expected["all"])
        oldest = min(m.internaldate for m in demo.backlog.messages if "\\Seen" not in m.flags)
        assert c.oldest_unseen is not None and abs((c.oldest_unseen - oldest).total_seconds()) < 1
        for view in View:
            listed = svc.list(view)
            assert len(listed) == expected[view.value], view
        # UIDs name the backlog's messages, INTERNALDATE is the message's age
        by_uid = {m.uid: m for m in svc.list(View.ALL)}
        for i in (0, 17, DEFAULT_SIZE // 2, DEFAULT_SIZE - 1):
            gen = demo.backlog.messages[i]
            m = by_uid[demo.uid(i)]
            assert m.message_id == gen.message_id
            assert abs((m.internaldate - gen.internaldate).total_seconds()) < 1
            assert set(m.flags) == set(gen.flags)
    finally:
        svc.close()


def test_list_with_the_address_template_decodes_every_key(demo: DemoServers) -> None:
    svc = TriageService(demo.connection_settings(), read_only=True,
                        analysis=AnalysisConfig(address=ADDRESS_TEMPLATE), retry=RetryPolicy(attempts=1, base=0.1))
    try:
        listed = {m.uid: m for m in svc.list(View.ALL)}
    finally:
        svc.close()
    assert len(listed) == DEFAULT_SIZE
    wrong = [(i, gen.kind, listed[demo.uid(i)].kind) for i, gen in enumerate(demo.backlog.messages)
             if listed[demo.uid(i)].kind != gen.kind]
    assert not wrong, wrong[:5]


def test_list_with_the_address_template_within_one_chunk(small: DemoServers) -> None:
    """The same decoding through the server, below the size that trips the engine bug above."""
    svc = TriageService(small.connection_settings(), read_only=True, analysis=AnalysisConfig(address=ADDRESS_TEMPLATE))
    try:
        listed = {m.uid: m for m in svc.list(View.ALL)}
    finally:
        svc.close()
    assert len(listed) == SMALL
    for i, gen in enumerate(small.backlog.messages):
        m = listed[small.uid(i)]
        assert (m.kind, m.key) == (gen.kind, gen.key), (i, gen.tags)


def test_redis_holds_the_promised_keys(demo: DemoServers) -> None:
    r = demo.redis_client()
    try:
        keys = sorted(r.scan_iter(match=f"{KEY_PREFIX}delivered:*", count=1000))
        assert len(keys) == len(demo.backlog.locks)
        first = demo.uid(0)
        for lk in demo.backlog.locks:
            uid = demo.uid(lk.index) if lk.index is not None else first - lk.gone_below
            key = f"{KEY_PREFIX}delivered:{uid}"
            assert r.get(key) == str(lk.value), key
            ttl = r.ttl(key)
            if lk.ttl is None:
                assert ttl == -1, key  # an INCR whose EXPIRE never ran
            else:
                assert 0 < ttl <= lk.ttl, (key, ttl, lk.ttl)
        assert any(int(r.get(k)) > 1 for k in keys)  # INCR-style counters
    finally:
        r.close()


def test_lock_service_sees_them_through_redis_py(demo: DemoServers) -> None:
    from triage_tui.services.locks import LockService, RedisSettings

    locks = LockService(RedisSettings(url=demo.redis_url, key_prefix=KEY_PREFIX), read_only=True)
    try:
        for _ in range(3):  # each read starts with EVALSHA -> NOSCRIPT on a fresh connection
            states = locks.states_for_uids(demo.uids)
            assert sum(1 for s in states.values() if s.present) == \
                sum(1 for lk in demo.backlog.locks if lk.index is not None)
            locks.close()
        held = {demo.uid(lk.index): lk for lk in demo.backlog.locks if lk.index is not None}
        states = locks.states_for_uids(held)
        for uid, lk in held.items():
            assert states[uid].counter == (lk.style == "incr")
    finally:
        locks.close()


def test_mark_seen_undo_and_expunge_against_pymap(small: DemoServers) -> None:
    svc = TriageService(small.connection_settings(), read_only=False)
    try:
        uidvalidity, unseen = svc.search(View.UNSEEN)
        junk = unseen[:25]
        r = svc.execute(svc.plan_flags("mark-seen", uidvalidity, junk))
        assert r.ok and r.changed == junk
        assert set(junk).isdisjoint(search(small, "UNSEEN"))
        undo, _ = svc.plan_undo()
        assert svc.execute(undo).ok
        assert set(junk) <= set(search(small, "UNSEEN"))
        # the crash trap: -FLAGS \Seen on \Seen-not-\Deleted messages makes them UNSEEN again
        trap = search(small, "SEEN", "UNDELETED")
        assert trap and svc.execute(svc.plan_flags("mark-unseen", uidvalidity, trap)).ok
        assert set(trap) <= set(search(small, "UNSEEN"))
        deleted = search(small, "DELETED")
        part = deleted[: len(deleted) // 2]
        r = svc.execute(svc.plan_expunge(uidvalidity, part))  # exact UID EXPUNGE (UIDPLUS)
        assert r.ok and r.changed == part
        assert search(small, "DELETED") == deleted[len(part):]
        r = svc.execute(svc.plan_expunge(uidvalidity, None, all_deleted=True))
        assert r.ok and search(small, "DELETED") == []
        assert len(search(small, "ALL")) == SMALL - len(deleted)
    finally:
        svc.close()


def test_read_only_is_refused_and_pymap_says_no_under_examine(small: DemoServers) -> None:
    svc = TriageService(small.connection_settings(), read_only=True)
    try:
        uidvalidity, unseen = svc.search(View.UNSEEN)
        with pytest.raises(ReadOnlyRefused):
            svc.execute(svc.plan_flags("mark-seen", uidvalidity, unseen[:5]))
        _, done = svc.reader.wire.command(b"UID STORE %d +FLAGS.SILENT (\\Seen)" % unseen[0])
        assert done.status == "NO"  # unlike Dovecot, which answers OK and changes nothing
    finally:
        svc.close()
    assert set(unseen) == set(search(small, "UNSEEN"))


def test_consumer_is_down_then_ingests_all_but_the_held_messages(small: DemoServers) -> None:
    c = small.consumer
    assert not c.running and c.delivered == 0 and c.status == "mail_room: down"
    unseen = search(small, "UNSEEN")
    held = {small.uid(lk.index) for lk in small.backlog.locks if lk.index is not None}
    c.start()
    try:
        assert c.running
        assert wait_until(lambda: c.delivered == len(set(unseen) - held))
        assert c.status.startswith("mail_room: running, ")
    finally:
        c.stop()
    assert not c.running and "down" in c.status
    assert search(small, "UNSEEN") == sorted(set(unseen) & held)  # the held keys block their messages
    assert set(unseen) - held <= set(search(small, "DELETED"))  # delivered: \Seen \Deleted, not expunged
    r = small.redis_client()
    try:
        assert r.llen("queue:email_receiver") == c.delivered
    finally:
        r.close()
    c.start()  # restartable
    try:
        assert wait_until(lambda: c.running)
    finally:
        c.stop()


def test_idle_reports_changes_without_reconnecting(small: DemoServers) -> None:
    """pymap's split writes made imapclient's idle_check misread lines (reconnect per burst);
    the demo server writes whole responses."""
    from triage_tui.services.watch import MailboxWatcher, WatchConfig

    events: list[str] = []
    states: list[tuple[str, str]] = []
    w = MailboxWatcher(small.connection_settings(), on_change=events.append,
                       on_state=lambda m, d: states.append((m, d)), config=WatchConfig(check_every=0.2))
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    try:
        assert wait_until(lambda: ("idle", "") in states)
        for _ in range(3):
            small.consumer.cycle()
        assert wait_until(lambda: bool(events))
    finally:
        w.stop()
        t.join(10)
    assert "reconnected" not in events
    assert not [s for s in states if s[0] == "reconnecting"], states


def test_stop_releases_everything() -> None:
    servers = start_demo(150)
    assert len(servers.uids) == 150
    imap_port, redis_port, tmp = servers.imap.port, servers.redis.port, servers.tmpdir
    threads = [servers.imap._thread, servers.redis._thread]
    servers.consumer.start()
    threads.append(servers.consumer._consumer._thread)
    assert tmp.is_dir()
    servers.stop()
    servers.stop()  # idempotent
    assert not tmp.exists()
    for port in (imap_port, redis_port):
        with pytest.raises(OSError), socket.create_connection((HOST, port), timeout=1):
            pass
    assert not [t for t in threads if t is not None and t.is_alive()]


def test_a_given_backlog_is_served_as_is() -> None:
    b = build_backlog(150, seed=11, now=datetime(2025, 1, 1, tzinfo=UTC))
    with start_demo(backlog=b) as servers:
        assert servers.backlog is b
        assert len(search(servers, "ALL")) == 150
