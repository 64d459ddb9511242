"""Snapshots of the main screens at 80×24 (the SSH minimum) and 120×36, from an in-memory
service with a fixed clock so every run draws the same thing. ``--snapshot-update`` after a
deliberate change, then look at the SVGs."""

from __future__ import annotations

import pytest

from tests.tui.fakes import FakeService, fixed_clock, sample_messages
from triage_tui.domain.model import Message, View
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
    assert snap_compare(make_app(), terminal_size=size,
                        run_before=keys("slash", *"bot age>1d", "enter", "a", "slash"))


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
