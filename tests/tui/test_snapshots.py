"""Snapshots of the main screens at 80×24 (the SSH minimum) and 120×36, from an in-memory
service with a fixed clock so every run draws the same thing. ``--snapshot-update`` after a
deliberate change, then look at the SVGs."""

from __future__ import annotations

import pytest

from tests.tui.fakes import FakeConsumer, FakeLocks, FakeService, fixed_clock, lock_ttls, sample_messages
from triage_tui.domain.model import Message, View
from triage_tui.services.locks import WatchStatus
from triage_tui.tui.app import TriageApp

SIZES = [(80, 24), (120, 36)]


def make_app(*, read_only: bool = False, view: View = View.UNSEEN, theme: str | None = None,
             messages: list[Message] | None = None) -> TriageApp:
    msgs = messages if messages is not None else sample_messages(60)
    if view == View.DELETED:
        for m in msgs[::4]:
            m.flags = ("\\Seen", "\\Deleted")
    return TriageApp(FakeService(msgs, read_only=read_only), clock=fixed_clock, watcher_factory=None,
                     view=view, theme=theme)


async def ready(pilot) -> None:  # type: ignore[no-untyped-def]
    app = pilot.app
    while app._loading or app._uidvalidity is None:
        await pilot.pause(0.02)
    await pilot.pause(0.05)


def keys(*k: str):  # type: ignore[no-untyped-def]
    async def run(pilot) -> None:  # type: ignore[no-untyped-def]
        await ready(pilot)
        for key in k:
            await pilot.press(key)
        await pilot.pause(0.1)
        await pilot.wait_for_scheduled_animations()

    return run


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_list(snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(), terminal_size=size, run_before=keys("space", "space", "down", "space"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_grouped_by_sender_domain(snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(), terminal_size=size, run_before=keys("z", "z", "z", "enter"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_filter(snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    async def run(pilot) -> None:  # type: ignore[no-untyped-def]
        await ready(pilot)
        await pilot.press("slash", "b")  # typed keys reach the box; the rest is set at once (faster)
        pilot.app.query_one("#filter-input").value = "bot age>1d"
        await keys("enter", "a", "slash")(pilot)

    assert snap_compare(make_app(), terminal_size=size, run_before=run)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_confirm_mark_seen(snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(), terminal_size=size, run_before=keys("b", "S"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_confirm_expunge_typed(snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(view=View.DELETED), terminal_size=size, run_before=keys("a", "X", "1"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_preview(snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(), terminal_size=size, run_before=keys("down", "enter"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help(snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(), terminal_size=size, run_before=keys("question_mark"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_read_only(snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(read_only=True), terminal_size=size, run_before=keys("space", "S"))


def test_ansi_dark_theme(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app(theme="ansi-dark"), terminal_size=(80, 24), run_before=keys("space", "space"))


def test_no_color(snap_compare, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=keys("space", "space", "down"))


def reingest_app(*, read_only: bool = False, demo: bool = True) -> TriageApp:
    """The demo-like setup of the re-ingest screen: held keys on every third message, a scripted
    watch (keys expiring, then half picked up) and the demo's mail_room stand-in."""
    msgs = sample_messages(60)
    statuses = [WatchStatus(3.0, 20, 20, 0, 0, 4, 0, 27.0, None, None),
                WatchStatus(41.0, 20, 8, 12, 0, 0, 12, 0.0, 0.8, 10.0)]
    return TriageApp(FakeService(msgs, read_only=read_only), clock=fixed_clock, watcher_factory=None,
                     lock_service=FakeLocks(lock_ttls(msgs), read_only=read_only, statuses=statuses),
                     demo_consumer=FakeConsumer() if demo else None, demo_story="A demo incident.",
                     reingest_interval=0.05)


async def _until(pilot, cond) -> None:  # type: ignore[no-untyped-def]
    for _ in range(200):
        if cond():
            return
        await pilot.pause(0.02)
    raise AssertionError("the screen did not get there")


def reingest_keys(*, partial: bool = False, watch: bool = False, back: bool = False):  # type: ignore[no-untyped-def]
    """Mark the stale messages, open the re-ingest screen, type (part of) the key count."""
    async def run(pilot) -> None:  # type: ignore[no-untyped-def]
        app = pilot.app
        await ready(pilot)
        await pilot.press("o", "I")
        await _until(pilot, lambda: getattr(app.screen, "plan", None) is not None)
        target = app.screen.typed_target()
        await pilot.press(*(target[:1] if partial else [*target, "enter"]))
        if watch:
            await _until(pilot, lambda: app.reingest_watch is not None and app.reingest_watch.watcher.polls >= 2)
        if back:
            await pilot.press("escape")
        await pilot.pause(0.1)
        await pilot.wait_for_scheduled_animations()

    return run


def test_reingest_plan(snap_compare) -> None:  # type: ignore[no-untyped-def]
    # 80x24 only (the SSH minimum, where it is tightest); screenshots/reingest-plan.svg is wider
    assert snap_compare(reingest_app(), terminal_size=(80, 24), run_before=reingest_keys(partial=True))


def test_reingest_watch(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(reingest_app(), terminal_size=(80, 24), run_before=reingest_keys(watch=True))


def test_demo_pulse_with_a_watch_behind_the_list(snap_compare) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(reingest_app(), terminal_size=(80, 24),
                        run_before=reingest_keys(watch=True, back=True))


def plan_keys(*extra: str):  # type: ignore[no-untyped-def]
    """Open the incident plan (P) and wait for it; then ``extra`` keys."""
    async def run(pilot) -> None:  # type: ignore[no-untyped-def]
        app = pilot.app
        await ready(pilot)
        await pilot.press("P")
        await _until(pilot, lambda: getattr(app.screen, "plan", None) is not None)
        for key in extra:
            await pilot.press(key)
        await pilot.pause(0.1)
        await pilot.wait_for_scheduled_animations()

    return run


def test_incident_plan(snap_compare) -> None:  # type: ignore[no-untyped-def]
    # 80x24: the SSH minimum; the stale bucket moved to keep (k): the steps change
    assert snap_compare(reingest_app(), terminal_size=(80, 24), run_before=plan_keys("down", "down", "k"))
