"""The lock column and the pulse-bar lock count, against real Dovecot and real Redis; and the
IMAP side keeps working when Redis is down. The re-ingest screen is in test_reingest.py."""

from __future__ import annotations

import asyncio
import time

from tests.mailgen import backlog
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
