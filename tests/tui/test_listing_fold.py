"""A listing's rows reach the model without stalling the event loop: batches are folded in a
slice at a time (a warm start posts ~90 batches of cached rows at once, and Textual handles its
whole message queue in one turn of the loop), and the GC freezes are spaced."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from tests.tui.conftest import loaded, wait_for
from tests.tui.fakes import FakeService, big_messages, fixed_clock
from triage_tui.tui.app import TriageApp
from triage_tui.tui.controllers import listing as L


def test_freezes_are_spaced_by_rows_and_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(L, "gc", SimpleNamespace(collect=lambda *a: calls.append("collect"),
                                                 freeze=lambda: calls.append("freeze")))
    clock = [100.0]
    monkeypatch.setattr(L.time, "perf_counter", lambda: clock[0])
    c = L.ListingController(host=None, watcher_factory=None)  # type: ignore[arg-type]
    c._freeze(L.FREEZE_EVERY - 1)
    assert calls == []
    c._freeze(1)
    assert calls == ["collect", "freeze"]
    c._freeze(L.FREEZE_EVERY * 3)  # a burst right after: waits for the gap...
    assert len(calls) == 2
    clock[0] += L.FREEZE_GAP
    c._freeze(1)  # ...which has passed now
    assert len(calls) == 4
    c._freeze(L.FREEZE_ALWAYS)  # or for this many rows, gap or not
    assert len(calls) == 6


def _app(n: int, chunk: int) -> TriageApp:
    return TriageApp(FakeService(big_messages(n), chunk=chunk), watcher_factory=None, clock=fixed_clock)


def test_a_burst_of_batches_gives_the_loop_a_turn_between_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """100 batches posted at once: with a slice of zero seconds each batch is folded in its own
    turn of the event loop (a task counting turns sees every one), and the listing ends after
    the last batch even though its end was posted before they were folded."""
    monkeypatch.setattr(L, "FOLD_SLICE", 0.0)
    monkeypatch.setattr(L, "POST_EVERY", 0.0)  # every batch its own message, all at once
    app = _app(5000, 50)
    turns = [0]
    seen: list[tuple[int, int]] = []
    orig = L.ListingController._add_batch

    def spy(self: L.ListingController, *args: Any) -> None:
        seen.append((turns[0], len(self.host.model)))
        orig(self, *args)

    monkeypatch.setattr(L.ListingController, "_add_batch", spy)

    async def count() -> None:
        while True:
            turns[0] += 1
            await asyncio.sleep(0)

    async def go() -> None:
        task = asyncio.get_running_loop().create_task(count())
        async with app.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            task.cancel()
            assert len(app.model) == 5000 and len(app.model.rows) == 5000
            assert app.model.rows == sorted(app.model.messages)  # big_messages: dates follow UIDs
            assert not app.listing.inbox and app.listing.done_waiting is None
            assert len(seen) == 100
            assert all(a[0] < b[0] for a, b in zip(seen, seen[1:], strict=False))  # one turn each
            await pilot.press("j")  # keys work after it
            assert app.list.cursor == 1

    asyncio.run(go())


def test_a_fast_stream_reaches_the_ui_in_few_messages_its_first_batch_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A warm start's cached rows come faster than the UI can fold them one message at a time
    (each a turn of the event loop taken from the listing thread): the first batch is posted at
    once, the others at most every POST_EVERY, and every row arrives, in order."""
    import time as _time

    monkeypatch.setattr(L, "POST_EVERY", 0.2)
    svc = FakeService(big_messages(3000), chunk=30)
    stream = svc.iter_messages

    def slow(*a: Any, **kw: Any) -> Any:
        for batch in stream(*a, **kw):
            _time.sleep(0.005)  # 100 batches in ~0.5 s
            yield batch

    svc.iter_messages = slow  # type: ignore[method-assign]
    app = TriageApp(svc, watcher_factory=None, clock=fixed_clock)
    posted: list[int] = []
    orig = L.ListingController.list_batch

    def spy(self: L.ListingController, msg: Any) -> None:
        posted.append(len(msg.batch))
        orig(self, msg)

    monkeypatch.setattr(L.ListingController, "list_batch", spy)

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            assert app.model.rows == list(range(1, 3001))

    asyncio.run(go())
    assert posted[0] == 30 and sum(posted) == 3000 and len(posted) <= 12, posted  # not 100 (a slow machine: a few more)


def test_a_reload_while_batches_wait_drops_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """R while an earlier listing's batches are still queued: those (and that listing's end)
    are dropped, the new listing shows every message once."""
    monkeypatch.setattr(L, "FOLD_SLICE", 0.0)
    app = _app(3000, 10)

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: len(app.model) > 0, what="the first rows")
            app.action_reload()
            await loaded(pilot)
            await wait_for(pilot, lambda: not app.listing.inbox, what="the inbox to empty")
            assert sorted(app.model.messages) == list(range(1, 3001))
            assert app.model.rows == list(range(1, 3001))
            assert not app._loading

    asyncio.run(go())


def test_a_large_batch_is_folded_in_parts_and_a_relist_of_them_keeps_marks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A service may hand over thousands of rows at once (cached rows): they are folded
    FOLD_ROWS at a time, each part in its own turn, the progress counting up to the total; a
    re-list (R) in such chunks keeps marks and the cursor and drops nothing."""
    monkeypatch.setattr(L, "FOLD_SLICE", 0.0)
    app = _app(10_000, 4_000)
    progress: list[int] = []
    orig = L.ListingController._add_batch

    def spy(self: L.ListingController, batch: Any, done: int, seen: Any) -> None:
        assert len(batch) <= L.FOLD_ROWS
        progress.append(done)
        orig(self, batch, done, seen)

    monkeypatch.setattr(L.ListingController, "_add_batch", spy)

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            assert progress == [1000 * i for i in range(1, 11)]
            assert app.model.rows == list(range(1, 10_001))
            app.model.mark_many([5, 6000, 9999])
            app.list.move_cursor(app.model.rows.index(7777))
            before = dict(app.model.messages)
            progress.clear()
            await pilot.press("R")
            await loaded(pilot)
            assert progress == [4000, 8000, 10_000]  # nothing changed: the chunks carry UIDs only
            assert app.model.marks == {5, 6000, 9999} and app.list.current == 7777
            assert app.model.rows == list(range(1, 10_001))
            assert all(app.model.messages[u] is m for u, m in before.items())  # rows kept, not rebuilt
            # another client flagged every message: whole chunks of changed rows, in parts
            svc = app.service
            svc.messages = {u: replace(m, flags=("\\Flagged",)) for u, m in svc.messages.items()}
            progress.clear()
            await pilot.press("R")
            await loaded(pilot)
            assert progress == [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10_000]
            assert app.model.rows == list(range(1, 10_001)) and len(app.model.messages) == 10_000
            assert all(m.flags == ("\\Flagged",) for m in app.model.messages.values())
            assert all(app.model.messages[u] is m for u, m in before.items())  # updated in place
            assert app.model.marks == {5, 6000, 9999} and app.list.current == 7777

    asyncio.run(go())
