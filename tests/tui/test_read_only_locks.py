"""The TUI's lock column in read-only mode sends only reads to the REAL Redis (no SCRIPT LOAD, no
write), also after a SCRIPT FLUSH under it."""

from __future__ import annotations

import asyncio

from tests.integration.test_read_only_redis import assert_only_reads, commandstats, key, seed
from tests.tui.conftest import loaded, wait_for
from triage_tui.services.journal import AuditJournal
from triage_tui.services.locks import LockService, RedisSettings
from triage_tui.tui.app import TriageApp


def test_tui_lock_column_refresh_sends_no_write(mailbox, make_service, redis_server, redis_client):  # type: ignore[no-untyped-def]
    seed(mailbox, redis_client, 5)
    redis_client.script_flush()
    before = commandstats(redis_client)
    locks = LockService(RedisSettings(url=redis_server.url), read_only=True, journal=AuditJournal())
    app = TriageApp(make_service(mailbox, read_only=True), lock_service=locks, watcher_factory=None)

    async def go() -> None:
        async with app.run_test(size=(120, 30)) as pilot:
            await loaded(pilot)
            await wait_for(pilot, lambda: app.pulse_state.locks_held == 5, what="the lock count")
            redis_client.script_flush()
            app._locks_all()  # a refresh after the cache was flushed
            await pilot.pause(0.3)
            await wait_for(pilot, lambda: app.pulse_state.locks_held == 5, what="the lock count again")

    asyncio.run(go())
    after = commandstats(redis_client)
    sent = {k.removeprefix("cmdstat_"): n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
    sent.pop("info", None)
    sent["script|flush"] = sent.get("script|flush", 0) - 1  # ours, above
    sent = {k: n for k, n in sent.items() if n > 0}
    assert "evalsha" in sent, sent
    assert_only_reads(sent)
    assert redis_client.get(key(2)) == "3" and all(redis_client.ttl(key(u)) > 250 for u in range(1, 6))
