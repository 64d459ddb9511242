"""The re-ingest screen against real Dovecot and real Redis, with a mail_room-compatible consumer
as the other side: plan, typed confirmation, release, the live watch (diagnosis first, then the
pickups once mail_room runs), the combined mark-unseen step, and read-only refusal. Every check
of what changed reads Redis and the mailbox directly, never the app."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.mailgen import backlog
from tests.tui.conftest import loaded, wait_for
from triage_tui.domain.model import View
from triage_tui.services.consumer import ConsumerOptions, MailRoomConsumer, queued_jobs
from triage_tui.services.journal import AuditJournal
from triage_tui.services.locks import NO_RECLAIM, REASON_NO_RECLAIM, LockService, RedisSettings
from triage_tui.tui.app import TriageApp
from triage_tui.tui.screens.reingest import ReingestScreen

NOW = time.time()
KEY = "mail_room:gitlab:delivered:{}"


def make_app(svc: Any, redis_server: Any, *, read_only: bool = False, **kw: Any) -> TriageApp:
    locks = LockService(RedisSettings(url=redis_server.url), read_only=read_only, journal=svc.journal)
    kw.setdefault("reingest_poll_cycle", 0.5)  # "two poll cycles" of a fast consumer: 1 s
    return TriageApp(svc, lock_service=locks, watcher_factory=None, reingest_interval=0.15, **kw)


async def open_plan(pilot: Any, *keys: str) -> ReingestScreen:
    app = pilot.app
    await pilot.press(*keys, "I")
    await wait_for(pilot, lambda: isinstance(app.screen, ReingestScreen), what="the re-ingest screen")
    screen = app.screen
    await wait_for(pilot, lambda: screen.plan is not None and not screen.planning, what="the plan")
    return screen


def test_release_then_watch_the_diagnosis_then_the_pickups(mailbox, make_service, redis_server,  # type: ignore[no-untyped-def]
                                                             redis_client):
    mailbox.seed(backlog(5, now=NOW))
    for uid in (1, 3, 4):
        redis_client.set(KEY.format(uid), "1", ex=540)
    redis_client.set(KEY.format(999), "1", ex=540)  # not in the selection: never touched
    svc = make_service(mailbox)
    app = make_app(svc, redis_server)
    consumer = MailRoomConsumer(mailbox.settings(), redis_client, ConsumerOptions(poll_interval=0.3, name="live"))

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            screen = await open_plan(pilot, "a")
            text = str(screen.query_one("#ri-plan").render())
            assert "3 lock key(s)" in text and "if you just wait" in text and "TTL 0" in text
            assert screen.typed_target() == "3"
            assert screen.focused is screen.query_one("#ri-cancel")  # Cancel has focus
            await pilot.press("enter")  # a reflexive Enter cancels
            assert not isinstance(app.screen, ReingestScreen)
            assert redis_client.ttl(KEY.format(1)) > 500, "cancel changed nothing"

            screen = await open_plan(pilot)  # the marks are still there
            await pilot.press("3", "enter")  # digits typed with Cancel focused go to the box
            await wait_for(pilot, lambda: app.reingest_watch is not None, what="the release")
            assert not any(redis_client.exists(KEY.format(u)) for u in (1, 3, 4))
            assert redis_client.ttl(KEY.format(999)) > 500
            # nothing consumes yet: after two (short) poll cycles the watch says so
            await wait_for(pilot, lambda: app.reingest_watch.status is not None
                           and app.reingest_watch.status.failed, what="the diagnosis")
            st = app.reingest_watch.status
            assert st.reason == REASON_NO_RECLAIM and st.diagnosis.endswith(NO_RECLAIM) and st.cycles_free > 2
            assert "is mail_room running" in str(screen.query_one("#ri-plan").render())
            assert "no Sidekiq queue seen on this Redis" in str(screen.query_one("#ri-plan").render())
            assert "nothing re-claimed" in "".join(app.query_one("#pulse").text_lines())

            consumer.start()  # mail_room comes back: the same watch sees the pickups
            await wait_for(pilot, lambda: app.reingest_watch.finished, timeout=15, what="the pickups")
            st = app.reingest_watch.status
            assert not st.failed and st.targeted == 5 and st.remaining_unseen == 0 and st.delivered == 5
            assert st.reclaimed >= 3
            assert "✓ done" in str(screen.query_one("#ri-plan").render())
            # "re-ingested" ends at GitLab's queue: the jobs are shown arriving there
            await wait_for(pilot, lambda: "email_receiver queue: 5 job(s) (+5 since release)"
                           in str(screen.query_one("#ri-plan").render()), what="the Sidekiq queue")
            assert app.reingest_watch.status.sidekiq.to_json()["queues"][0]["length"] == 5
            await pilot.press("escape")
            assert "✓ re-ingest 5/5" in "".join(app.query_one("#pulse").text_lines())

    try:
        asyncio.run(go())
    finally:
        consumer.stop()
    assert len(queued_jobs(redis_client)) == 5, "each message ingested exactly once"
    ops = [r for r in svc.journal.records() if r.get("phase") == "progress" and "keys" in r]
    assert sorted(k for r in ops for k, _old, _new in r["keys"]) == sorted(KEY.format(u) for u in (1, 3, 4))


def test_seen_stuck_combined_step_marks_unseen_and_releases(mailbox, make_service, redis_server,  # type: ignore[no-untyped-def]
                                                            redis_client):
    mailbox.seed(backlog(4, now=NOW, seen_every=2))  # UIDs 1 and 3: \Seen, not \Deleted (the crash trap)
    redis_client.set(KEY.format(1), "1", ex=540)
    redis_client.set(KEY.format(3), "1", ex=540)
    app = make_app(make_service(mailbox), redis_server, view=View.SEEN_STUCK)

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            screen = await open_plan(pilot, "a")
            assert "step 1: remove \\Seen from 2" in str(screen.query_one("#ri-plan").render())
            assert screen.typed_target() == "2"
            await pilot.press("2", "enter")
            await wait_for(pilot, lambda: app.reingest_watch is not None, what="the combined step")
            await pilot.press("x")  # stop watching: nothing consumes in this test
            assert app.reingest_watch.finished

    asyncio.run(go())
    assert sorted(mailbox.search("UNSEEN")) == [1, 2, 3, 4]
    assert not redis_client.exists(KEY.format(1)) and not redis_client.exists(KEY.format(3))


def test_shorten_ttl_in_waves(mailbox, make_service, redis_server, redis_client):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(4, now=NOW))
    for uid in range(1, 5):
        redis_client.set(KEY.format(uid), "1", ex=590)
    app = make_app(make_service(mailbox), redis_server)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            screen = await open_plan(pilot, "a")
            screen.query_one("#ri-mode-waves").value = True
            screen.query_one("#ri-ttl").value = "100"
            screen.query_one("#ri-waves").value = "2"
            screen.query_one("#ri-interval").value = "200"
            await wait_for(pilot, lambda: screen.plan is not None and screen.plan.waves == 2
                           and screen.plan.ttl_s == 100 and not screen.planning, what="the waves plan")
            assert "wave 2: TTL 300 s, 2 key(s)" in str(screen.query_one("#ri-plan").render())
            await pilot.press("4", "enter")
            await wait_for(pilot, lambda: app.reingest_watch is not None, what="the release")
            await pilot.press("x")

    asyncio.run(go())
    ttls = [redis_client.ttl(KEY.format(u)) for u in range(1, 5)]
    assert all(90 <= t <= 100 for t in ttls[:2]) and all(290 <= t <= 300 for t in ttls[2:]), ttls


def test_read_only_plans_and_watches_but_never_releases(mailbox, make_service, redis_server,  # type: ignore[no-untyped-def]
                                                         redis_client):
    mailbox.seed(backlog(3, now=NOW))
    for uid in (1, 2):
        redis_client.set(KEY.format(uid), "1", ex=540)
    svc = make_service(mailbox, read_only=True)
    app = make_app(svc, redis_server, read_only=True)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            screen = await open_plan(pilot, "a")
            assert screen.plan.mode == "natural"  # the only choice left
            for mode in ("now", "ttl", "waves"):
                assert screen.query_one(f"#ri-mode-{mode}").disabled
            assert "read-only mode" in str(screen.query_one("#ri-note").render())
            # even a plan that would write, handed straight to the app, is refused by the service
            plan = app.lock_service.plan_release(svc, app._uidvalidity, [1, 2], ttl=0)
            assert plan.count == 2
            app.reingest_execute(plan)
            await wait_for(pilot, lambda: screen.error is not None, what="the refusal")
            assert "read-only" in screen.error
            screen._request_plan()  # what changing the choice does: plan again
            await wait_for(pilot, lambda: screen.plan is not None and not screen.planning, what="the plan again")
            screen.query_one("#ri-go").focus()
            await pilot.press("enter")  # "Watch": nothing to type, nothing is written
            await wait_for(pilot, lambda: app.reingest_watch is not None and app.reingest_watch.status is not None,
                           what="the natural watch")
            assert app.reingest_watch.result is None and app.reingest_watch.status.held == 2

    asyncio.run(go())
    assert [redis_client.ttl(KEY.format(u)) > 500 for u in (1, 2)] == [True, True]
    assert not [r for r in AuditJournal(svc.journal.path).records() if r.get("action") == "release-locks"]
