"""The lock column and the pulse-bar lock count, against real Dovecot and real Redis; and the
IMAP side keeps working when Redis is down. The re-ingest screen is in test_reingest.py."""

from __future__ import annotations

import asyncio
import time

from tests.mailgen import backlog, message
from tests.servers import free_port
from tests.tui.conftest import loaded, wait_for
from triage_tui.services.journal import AuditJournal
from triage_tui.services.locks import LockService, RedisSettings
from triage_tui.tui.app import TriageApp

NOW = time.time()


def test_lock_ttls_show_in_the_list_and_the_pulse_bar(mailbox, make_service, redis_server, redis_client):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(5, now=NOW))
    redis_client.set("mail_room:gitlab:delivered:2", "1", ex=540)
    redis_client.set("mail_room:gitlab:delivered:4", "1", ex=120)
    locks = LockService(RedisSettings(url=redis_server.url), read_only=True, journal=AuditJournal())
    app = TriageApp(make_service(mailbox), lock_service=locks, watcher_factory=None)

    async def go() -> None:
        async with app.run_test(size=(120, 30)) as pilot:
            await loaded(pilot)
            await wait_for(pilot, lambda: app.pulse_state.locks_held == 2, what="the lock count")
            await pilot.pause(0.05)
            assert "locks 2" in "".join(app.query_one("#pulse").text_lines())
            header = app.query_one("#colhead").render()
            assert "LOCK" in str(header)
            text = "\n".join(app.list.render_line(y).text for y in range(6))
            assert "540s" in text or "539s" in text
            await pilot.press("slash", *"locked", "enter")
            assert sorted(app.model.filtered) == [2, 4]

    asyncio.run(go())


def test_redis_down_leaves_the_imap_side_working(mailbox, make_service):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(3, now=NOW))
    locks = LockService(RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0", timeout=0.5), read_only=True,
                        journal=AuditJournal())
    app = TriageApp(make_service(mailbox), lock_service=locks, watcher_factory=None)

    async def go() -> None:
        async with app.run_test(size=(100, 24)) as pilot:
            await loaded(pilot)
            assert len(app.model) == 3
            await wait_for(pilot, lambda: app.pulse_state.locks_error is not None, what="the Redis error")
            assert "Redis unavailable" in "".join(app.query_one("#pulse").text_lines())
            assert app.status_line.kind == "warn"

    asyncio.run(go())


def test_a_refresh_reads_the_new_rows_locks_and_every_lock_at_most_every_few_seconds(  # type: ignore[no-untyped-def]
        mailbox, make_service, redis_server, redis_client, monkeypatch):
    """A refresh reads the locks of the rows it adds with them. Every row's lock is read again
    at most once every LOCKS_EVERY seconds after refreshes (read after each one, 100k locks
    fought the event loop for the GIL whenever mail arrived): a lock taken meanwhile on an
    older row shows at the end of that time, and the pulse count follows the new rows at once."""
    from triage_tui.tui.controllers import listing

    # long enough for two refreshes on a loaded machine, before the deferred read is due
    monkeypatch.setattr(listing, "LOCKS_EVERY", 6.0)
    mailbox.seed(backlog(5, now=NOW))
    redis_client.set("mail_room:gitlab:delivered:2", "1", ex=540)
    locks = LockService(RedisSettings(url=redis_server.url), read_only=True, journal=AuditJournal())
    reads: list[int] = []
    annotate = locks.annotate

    def spy(messages):  # type: ignore[no-untyped-def]
        reads.append(len(messages))
        return annotate(messages)

    monkeypatch.setattr(locks, "annotate", spy)
    app = TriageApp(make_service(mailbox), lock_service=locks, watcher_factory=None)

    async def go() -> None:
        async with app.run_test(size=(120, 30)) as pilot:
            await loaded(pilot)
            await wait_for(pilot, lambda: app.pulse_state.locks_held == 1, what="the first lock count")
            assert reads == [5]
            redis_client.set("mail_room:gitlab:delivered:6", "1", ex=300)  # the next UID, locked on arrival
            redis_client.set("mail_room:gitlab:delivered:3", "1", ex=300)  # an older row, locked meanwhile
            for i in (6, 7):
                c = mailbox.client()
                c.append("INBOX", message(subject=f"new {i}"))
                c.logout()
                app.request_sync("test")
                await wait_for(pilot, lambda i=i: i in app.model.messages and not app._sync_running,
                               what=f"UID {i} listed")
            assert app.model.messages[6].lock is not None
            assert app.model.messages[3].lock is None  # not read again yet
            assert app.pulse_state.locks_held == 2
            assert sorted(reads[1:]) == [1, 1]  # the new rows only, each with its refresh
            await wait_for(pilot, lambda: app.model.messages[3].lock is not None, timeout=15,
                           what="the deferred read of every lock")
            assert reads[3:] == [7]  # once for both refreshes
            await wait_for(pilot, lambda: app.pulse_state.locks_held == 3, what="the exact count")

    asyncio.run(go())


def test_a_quiet_list_reads_its_locks_again_and_comes_back_after_redis_does(  # type: ignore[no-untyped-def]
        mailbox, make_service, monkeypatch):
    """With no mail arriving there is no refresh. Before, nothing read the locks again then: an
    expired lock stayed in the column and the count, and "Redis unavailable" stayed in the pulse
    bar after Redis was back, until the next mail (found by an adversary, 30 s and more)."""
    from tests.servers import start_redis
    from triage_tui.tui.controllers import listing

    monkeypatch.setattr(listing, "LOCKS_EVERY", 1.0)
    monkeypatch.setattr(listing, "LOCKS_RETRY", 1.0)
    mailbox.seed(backlog(3, now=NOW))
    redis = start_redis()
    port = redis.port
    client = redis.client()
    client.set("mail_room:gitlab:delivered:2", "1", px=1500)
    locks = LockService(RedisSettings(url=redis.url, timeout=0.5), read_only=True, journal=AuditJournal())
    app = TriageApp(make_service(mailbox), lock_service=locks, watcher_factory=None)
    again = None

    async def go() -> None:
        nonlocal again
        async with app.run_test(size=(120, 30)) as pilot:
            await loaded(pilot)
            await wait_for(pilot, lambda: app.pulse_state.locks_held == 1, what="the lock count")
            await wait_for(pilot, lambda: app.pulse_state.locks_held == 0 and app.model.messages[2].lock is None,
                           timeout=10, what="the expired lock gone without a refresh")
            redis.stop()
            await wait_for(pilot, lambda: app.pulse_state.locks_error is not None, timeout=10,
                           what="the Redis error")
            again = start_redis(port=port)
            again.client().set("mail_room:gitlab:delivered:3", "1", ex=300)
            await wait_for(pilot, lambda: app.pulse_state.locks_error is None and app.pulse_state.locks_held == 1,
                           timeout=10, what="the locks read again once Redis is back")
            assert "Redis unavailable" not in "".join(app.query_one("#pulse").text_lines())

    try:
        asyncio.run(go())
    finally:
        redis.stop()
        if again is not None:
            again.stop()
