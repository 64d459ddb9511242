"""The incident plan screen (``P``) against real Dovecot and real Redis: the buckets as the CLI's
plan computes them, keep/ignore per bucket and per message, apply step by step (one confirmation
each, typed counts where the CLI types them), and the ways it must stop cleanly: read-only, an
empty mailbox, a cancelled or failing step, esc mid-apply, a UIDVALIDITY change, keys typed before
the plan is there. Every check of what changed reads the mailbox and Redis directly."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.conftest import Mailbox
from tests.integration.test_plan import EXPECTED, key, seed
from tests.mailgen import message
from tests.tui.conftest import loaded, wait_for
from tests.tui.fakes import FakeLocks, FakeService, fixed_clock, lock_ttls, sample_messages
from triage_tui.domain import plan as P
from triage_tui.domain import uidset
from triage_tui.domain.model import TRIAGE_KEYWORD
from triage_tui.domain.width import cell_len
from triage_tui.services.journal import AuditJournal
from triage_tui.services.locks import LockService, RedisSettings
from triage_tui.tui.app import TriageApp
from triage_tui.tui.screens.confirm import ConfirmScreen
from triage_tui.tui.screens.plan import PlanScreen
from triage_tui.tui.screens.reingest import ReingestScreen


def make_app(svc: Any, redis_url: str | None, *, read_only: bool = False) -> TriageApp:
    locks = (LockService(RedisSettings(url=redis_url), read_only=read_only, journal=svc.journal)
             if redis_url else None)
    return TriageApp(svc, lock_service=locks, watcher_factory=None, reingest_poll_cycle=0.5, reingest_interval=0.15)


async def open_plan(pilot: Any) -> PlanScreen:
    app = pilot.app
    await pilot.press("P")
    await wait_for(pilot, lambda: isinstance(app.screen, PlanScreen), what="the plan screen")
    screen = app.screen
    await wait_for(pilot, lambda: screen.plan is not None or "✗" in screen.empty_text, what="the plan")
    return screen


async def answer(pilot: Any, *, cancel: bool = False) -> ConfirmScreen:
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="a step's confirmation")
    dialog = app.screen
    typed = dialog.request.typed
    await pilot.pause(0.05)
    # at 80x24 the whole dialog is on screen: the typed box, the buttons and the keys line
    for part in ("#confirm-keys", "#confirm-buttons") + (("#confirm-typed",) if typed is not None else ()):
        r = dialog.query_one(part).region
        assert r.height > 0 and r.bottom <= app.size.height - 1, (part, r, app.size)
    if cancel:
        await pilot.press("escape")
    else:
        await pilot.press(*(list(typed) + ["enter"] if typed is not None else ["y"]))
    return dialog


def ranges(plan: P.IncidentPlan) -> dict[str, str]:
    return {b.name: b.ranges for b in plan.buckets if b.count}


def test_same_buckets_as_the_cli_then_moves_and_apply(mailbox, make_service, redis_server, redis_client):  # type: ignore[no-untyped-def]
    seed(mailbox, redis_client)  # UNSEEN 1-8, seen-stuck 9-11, \Deleted 12; locks on 1, 2, 4, 5, 7, 9
    app = make_app(make_service(mailbox), redis_server.url)
    seen: dict[str, Any] = {}

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            screen = await open_plan(pilot)
            assert ranges(screen.plan) == EXPECTED  # the CLI's plan, bucket for bucket
            # the review rows: UID 7 under problems, UID 4 under suspicious
            assert [r.uid for r in screen.rows if r.uid is not None] == [7, 4]
            # move: the stale bucket to keep (release), message 4 (suspicious) to ignore, message 7 keep
            screen.cursor = screen.rows.index(next(r for r in screen.rows if r.bucket == "stale" and r.uid is None))
            await pilot.press("k")
            screen.cursor = screen.rows.index(next(r for r in screen.rows if r.uid == 4))
            await pilot.press("i")
            screen.cursor = screen.rows.index(next(r for r in screen.rows if r.uid == 7))
            await pilot.press("k")
            steps = {s.action: uidset.compress(s.uids) for s in screen.plan.steps}
            assert steps == {P.IGNORE: "2:4", P.UNSEE_RELEASE: "9", P.RELEASE: "1,5:8"}
            await pilot.press("A")
            titles = []
            for _ in range(3):
                titles.append((await answer(pilot)).request)
            await wait_for(pilot, lambda: screen.finished, what="the run")
            seen["titles"], seen["status"] = titles, screen.status_text
            seen["lines"] = str(screen.query_one("#plan-steps").render())
            await wait_for(pilot, lambda: app.reingest_watch is not None, what="the watch")
            seen["targets"] = sorted(app.reingest_watch.watcher.targets)
            await wait_for(pilot, lambda: "watch: re-ingest" in str(screen.query_one("#plan-steps").render()),
                           what="the watch on the plan screen")
            await pilot.press("I")  # the re-ingest screen shows the same watch, over the plan
            await wait_for(pilot, lambda: isinstance(app.screen, ReingestScreen), what="the watch screen")
            assert app.screen.watching is app.reingest_watch
            app.reingest_stop_watch()  # nothing consumes here

    asyncio.run(go())
    ignore, unsee, release = seen["titles"]
    assert ignore.typed is None and "ignore 3 message(s)" in ignore.title  # y: undoable
    assert unsee.typed == "1" and release.typed == "3"  # key counts typed, as the re-ingest screen does
    assert seen["status"].startswith("done: step(s) 1, 2, 3"), seen["status"]
    assert "✓ 1." in seen["lines"] and "✓ 3." in seen["lines"]
    assert seen["targets"] == [1, 5, 6, 7, 8, 9], "one watch over both release steps"
    flags = mailbox.flags()
    assert all(flags[u] == {"\\Seen", TRIAGE_KEYWORD} for u in (2, 3, 4))
    assert flags[9] == set() and flags[1] == set() and flags[11] == {"\\Seen"} and "\\Deleted" in flags[12]
    assert {u for u in range(1, 13) if redis_client.exists(key(u))} == {2, 4}  # released: 1, 5, 7, 9
    ops = [r for r in AuditJournal().records() if r.get("phase") == "begin"]
    assert [r.get("action") for r in ops][:1] == ["mark-seen"]


def test_read_only_shows_the_plan_and_refuses_apply(mailbox, make_service, redis_server, redis_client):  # type: ignore[no-untyped-def]
    seed(mailbox, redis_client)
    before = mailbox.flags()
    app = make_app(make_service(mailbox, read_only=True), redis_server.url, read_only=True)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            screen = await open_plan(pilot)
            assert ranges(screen.plan) == EXPECTED
            await pilot.press("A")
            await pilot.pause(0.2)
            assert not isinstance(app.screen, ConfirmScreen)
            assert "read-only" in screen.status_text and "disabled" in screen.status_text

    asyncio.run(go())
    assert mailbox.flags() == before
    assert all(redis_client.ttl(key(u)) > 500 for u in (1, 2, 4, 5, 7, 9))


def test_empty_mailbox_no_step_no_dialog(mailbox, make_service, redis_server):  # type: ignore[no-untyped-def]
    app = make_app(make_service(mailbox), redis_server.url)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            screen = await open_plan(pilot)
            assert screen.plan is not None and not screen.plan.steps and not screen.rows
            await pilot.press("k", "i", "X", "A")
            await pilot.pause(0.2)
            assert isinstance(app.screen, PlanScreen) and "nothing to do" in screen.status_text

    asyncio.run(go())


def test_cancel_at_step_2_stops_there_and_esc_mid_apply_stops_after_the_step(mailbox, make_service,  # type: ignore[no-untyped-def]
                                                                             redis_server, redis_client):
    seed(mailbox, redis_client)
    app = make_app(make_service(mailbox), redis_server.url)
    seen: dict[str, Any] = {}

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            screen = await open_plan(pilot)
            await pilot.press("A")
            await answer(pilot)  # step 1: y
            await answer(pilot, cancel=True)  # step 2: esc
            await wait_for(pilot, lambda: screen.finished, what="the stop")
            seen["cancel"] = screen.status_text
            assert isinstance(app.screen, PlanScreen), "esc in the dialog cancels the step, not the screen"
            seen["flags1"] = mailbox.flags()
            # a new plan (R), then y and at once esc: step 1 runs to its end, nothing after it is asked
            await pilot.press("R")
            await wait_for(pilot, lambda: not screen.computing and not screen.finished, what="the new plan")
            seen["steps2"] = [s.action for s in screen.plan.steps]
            screen.cursor = screen.rows.index(next(r for r in screen.rows if r.uid == 4))
            await pilot.press("i", "A")  # a fresh ignore step: the suspicious message
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="step 1's dialog")
            with app._io_lock:  # step 1 is being sent (its worker waits here) when esc comes
                await pilot.press("y", "escape")
                await wait_for(pilot, lambda: not isinstance(app.screen, (PlanScreen, ConfirmScreen)),
                               what="the screen to close")
                assert app.incident.running and app.incident.stopping
            await wait_for(pilot, lambda: not app.incident.running, what="the run to stop")
            seen["closed"] = not isinstance(app.screen, (PlanScreen, ConfirmScreen))
            seen["status"] = app.status_line.text

    asyncio.run(go())
    assert "step 2 (unsee-release) cancelled: nothing of it was sent" in seen["cancel"]
    assert "done before it: step(s) 1" in seen["cancel"]
    f = seen["flags1"]
    assert f[1] == {"\\Seen", TRIAGE_KEYWORD} and f[9] == {"\\Seen"}
    assert seen["steps2"] == [P.UNSEE_RELEASE, P.RELEASE]  # step 1's work is done: not planned again
    assert seen["closed"]
    assert "stopped by you before step 2" in seen["status"] and "done before it: step(s) 1" in seen["status"]
    flags = mailbox.flags()
    assert flags[4] == {"\\Seen", TRIAGE_KEYWORD}  # the step that was sent finished
    assert flags[9] == {"\\Seen"} and redis_client.exists(key(5)) and redis_client.exists(key(9))


def test_uidvalidity_change_before_apply_is_refused_cleanly(mailbox: Mailbox, make_service, redis_server,  # type: ignore[no-untyped-def]
                                                           redis_client):
    seed(mailbox, redis_client)
    app = make_app(make_service(mailbox), redis_server.url)
    seen: dict[str, Any] = {}

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            screen = await open_plan(pilot)
            old = mailbox.uidvalidity()
            r = mailbox.server.doveadm("mailbox", "update", "-u", mailbox.user, "--uid-validity", str(old + 11),
                                       "INBOX")
            assert r.returncode == 0, r.stderr
            await pilot.press("A")
            await wait_for(pilot, lambda: screen.finished, what="the refusal")
            seen["status"] = screen.status_text
            seen["dialog"] = isinstance(app.screen, ConfirmScreen)

    before = None
    asyncio.run(go())
    assert not seen["dialog"]
    assert seen["status"].startswith("STOPPED before step 1: UIDVALIDITY changed"), seen["status"]
    assert "done before it: nothing" in seen["status"]
    flags = mailbox.flags()
    assert before is None and flags[1] == set() and flags[9] == {"\\Seen"}
    assert all(redis_client.ttl(key(u)) > 500 for u in (1, 2, 4, 5, 7, 9))


def test_redis_lost_at_the_release_step_stops_naming_what_was_done(mailbox, make_service, redis_server,  # type: ignore[no-untyped-def]
                                                                   redis_client):
    seed(mailbox, redis_client)
    app = make_app(make_service(mailbox), "redis://127.0.0.1:1/0")  # no Redis there

    async def go() -> str:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            screen = await open_plan(pilot)
            assert screen.plan is not None and not screen.plan.locks_read
            await pilot.press("A")
            await answer(pilot)  # step 1 (IMAP only) runs
            await wait_for(pilot, lambda: screen.finished, what="the stop")
            assert not isinstance(app.screen, ConfirmScreen)
            return screen.status_text

    status = asyncio.run(go())
    assert status.startswith("STOPPED before step 2:") and "Redis" in status, status
    assert "done before it: step(s) 1" in status and "Traceback" not in status
    flags = mailbox.flags()
    assert flags[1] == {"\\Seen", TRIAGE_KEYWORD} and flags[9] == {"\\Seen"} and flags[5] == set()


def test_keys_typed_before_the_plan_is_there_change_nothing(mailbox, make_service, redis_server, redis_client):  # type: ignore[no-untyped-def]
    seed(mailbox, redis_client)
    before = mailbox.flags()
    app = make_app(make_service(mailbox), redis_server.url)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            with app._io_lock:  # the listing for the plan waits: every key below comes before the plan
                await pilot.press("P", "A", "y", "k", "i", "A", "y", "4", "enter")
                screen = app.screen
                assert isinstance(screen, PlanScreen) and screen.plan is None
                assert "not computed yet" in screen.status_text
            await wait_for(pilot, lambda: screen.plan is not None, what="the plan")
            await pilot.pause(0.3)
            assert not isinstance(app.screen, ConfirmScreen) and not app.incident.running
            with app._io_lock:  # R lists again; A before the new plan is there applies nothing
                await pilot.press("R", "A", "y")
                assert screen.computing and "A once the new plan is shown" in screen.status_text
            await wait_for(pilot, lambda: not screen.computing, what="the new plan")
            await pilot.pause(0.3)
            assert not isinstance(app.screen, ConfirmScreen) and not app.incident.running

    asyncio.run(go())
    assert mailbox.flags() == before


def test_hostile_and_wide_text_is_shown_inert_on_one_line(mailbox, make_service, redis_server):  # type: ignore[no-untyped-def]
    fresh = time.time() - 600
    evil = "Please verify your email \x1b[2J\x1b]0;pwned\x07 \u202egnp.exe\u2028done: all"
    mailbox.seed([(message(subject=evil, from_="=?utf-8?b?5p2O5piO5p2O5piO5p2O5piO5p2O5piO5p2O5piO?= <li@example.cn>",
                           date=fresh), fresh, "")] * 3)
    app = make_app(make_service(mailbox), redis_server.url)

    async def go() -> list[str]:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            screen = await open_plan(pilot)
            assert [r.uid for r in screen.rows if r.uid is not None] == [1, 2, 3]  # suspicious: a row each
            await pilot.press("down")
            out = [str(w.render()) for w in (screen.query_one("#plan-list"), screen.query_one("#plan-detail"),
                                             screen.query_one("#plan-steps"))]
            lst = screen.query_one("#plan-list")
            lines = [str(x) for x in lst.render().split("\n")]
            assert all(cell_len(x) <= lst.size.width for x in lines), lines
            await pilot.press("i", "i", "i")  # one key per message: the cursor moves on
            assert {s.action for s in screen.plan.steps} == {P.IGNORE} and screen.plan.steps[0].count == 3
            return out

    shown = "\n".join(asyncio.run(go()))
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown and "\u2028" not in shown
    assert "\\x1b" in shown and "\\u202e" in shown  # shown, as escapes


def test_a_step_that_fails_halfway_stops_the_run_and_later_steps_never_run() -> None:
    """A Redis error halfway through the release step (the lock service's result says so): the
    expunge step after it is never asked, the status names what was done, and the watch still
    starts for the keys that were released. (In-memory services: what Redis does on an error
    halfway is tested against redis-server in tests/faults.)"""
    msgs = sample_messages(60)
    for m in msgs[::10]:
        m.flags = ("\\Seen", "\\Deleted")
    svc = FakeService(msgs)
    locks = FakeLocks(lock_ttls(msgs))
    real = locks.release

    def broken(plan: Any, mailbox: Any, progress: Any = None) -> Any:
        r = real(plan, mailbox, progress)
        r.error = "Redis went away after the first batch"
        return r

    locks.release = broken  # type: ignore[method-assign]
    app = TriageApp(svc, lock_service=locks, clock=fixed_clock, watcher_factory=None, reingest_interval=0.05)
    asked: list[str] = []

    async def go() -> str:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            screen = await open_plan(pilot)
            await pilot.press("X")  # the optional expunge step, last
            assert [s.action for s in screen.plan.steps] == [P.IGNORE, P.RELEASE, P.EXPUNGE]
            await pilot.press("A")
            asked.append((await answer(pilot)).request.title)
            asked.append((await answer(pilot)).request.title)
            await wait_for(pilot, lambda: screen.finished, what="the stop")
            assert not isinstance(app.screen, ConfirmScreen), "the expunge step is never asked"
            await wait_for(pilot, lambda: app.reingest_watch is not None, what="the watch of what was released")
            return screen.status_text

    status = asyncio.run(go())
    assert "STOPPED: step 2 (release) did not finish" in status and "Redis went away" in status, status
    assert "done before it: step(s) 1" in status
    assert [p.action for p in svc.executed] == ["mark-seen"]  # no expunge was sent
    assert any("\\Deleted" in m.flags for m in svc.messages.values())
