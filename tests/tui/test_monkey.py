"""A tired operator's hands: seeded random bursts of every bound key (and letters, digits, enter,
esc, tab, arrows) posted to the app as one terminal read, with short pauses between bursts.
The app must never fail, must stay responsive, and in read-only mode must never ask the service
to change anything. The bursts are the same on every run (seeded); a failure prints the keys."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from textual import events
from textual.binding import Binding

from tests.tui.fakes import FakeConsumer, FakeLocks, FakeService, fixed_clock, lock_ttls, sample_messages
from tests.tui.test_typeahead import burst
from triage_tui.services.locks import WatchStatus
from triage_tui.tui.app import TriageApp
from triage_tui.tui.keymap import binding_classes

#: keys that end the app or leave the terminal: a monkey that presses them stops the test, not a bug
_LEAVE = {"q", "ctrl+c", "ctrl+q", "ctrl+z", "ctrl+p"}


def _bound_keys() -> list[str]:
    keys = {k.strip() for cls in binding_classes() for b in getattr(cls, "BINDINGS", ()) if isinstance(b, Binding)
            for k in b.key.split(",")}
    return sorted(k for k in keys - _LEAVE if "+" not in k)


ALPHABET = sorted(set(_bound_keys()) | set("abcdefghijklmnoprstuvwxyz0123456789/:<>!\"' -") - _LEAVE) + [
    "enter", "escape", "tab", "up", "down", "pageup", "pagedown", "home", "end", "backspace", "space"]


def _one_key(k: str) -> list[str] | str:
    return [k] if len(k) > 1 else k


PASTES = ["subject:\"x\"", "\x1b[31mred\x1b[0m", "a\nb\rc", "\u202eevil", "S" * 3000, "", "\x00\x7f", "age>2d bot"]


async def _monkey(app: TriageApp, pilot: Any, rng: random.Random, bursts: int, log: list[str]) -> None:
    for _ in range(bursts):
        keys = [rng.choice(ALPHABET) for _ in range(rng.randint(1, 8))]
        if rng.random() < 0.1:  # a paste in the middle of the burst (bracketed paste)
            keys.insert(rng.randint(0, len(keys)), "paste:" + rng.choice(PASTES))
        log.append(" ".join(k[:20] for k in keys))
        for k in keys:
            if k.startswith("paste:"):
                ev = events.Paste(k[6:])
                ev.set_sender(app)
                app.post_message(ev)
            else:
                burst(app, _one_key(k))
        await pilot.pause(rng.choice((0.0, 0.01, 0.05)))
    for _ in range(20):  # let the last burst finish
        await pilot.pause(0.02)


def _run(seed: int, *, read_only: bool, bursts: int = 60, locks: bool = False, demo: bool = False) -> None:
    msgs = sample_messages(40)
    svc = FakeService(msgs, read_only=read_only)
    done = WatchStatus(1.0, 3, 0, 3, 0, 0, 0, 0.0, None, None, done=True)
    lock_service = FakeLocks(lock_ttls(msgs), read_only=read_only, statuses=[done]) if locks else None
    calls: list[str] = []
    real_execute = svc.execute

    def execute(plan: Any, progress: Any = None) -> Any:
        calls.append(plan.action)
        return real_execute(plan, progress)

    svc.execute = execute  # type: ignore[method-assign]
    app = TriageApp(svc, lock_service=lock_service, clock=fixed_clock, watcher_factory=None,
                    demo_consumer=FakeConsumer() if demo else None)
    quits: list[str] = []

    async def quit_() -> None:  # the palette's "quit" (q itself is not typed): the monkey stays
        quits.append("quit")

    app.action_quit = quit_  # type: ignore[method-assign]
    rng = random.Random(seed)
    log: list[str] = []

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            while app._loading or app._uidvalidity is None:
                await pilot.pause(0.02)
            await _monkey(app, pilot, rng, bursts, log)
            assert app.is_running, "the app ended"
            # still responsive: back to the list, and a key moves the cursor
            for _ in range(6):
                if len(app.screen_stack) == 1:
                    break
                await pilot.press("escape")
                await pilot.pause(0.05)

    try:
        asyncio.run(go())
    except BaseException:
        print("seed", seed, "bursts:\n" + "\n".join(log))
        raise
    assert app.return_code in (None, 0), (app.return_code, log)
    if read_only:
        assert calls == [], f"read-only: the service was asked to {calls}"
        assert lock_service is None or lock_service.released == [], "read-only: a lock was released"


def test_two_enters_in_the_command_palette_do_not_end_the_app() -> None:
    """': a enter enter' in one burst: the palette's second selection dismissed it again, which
    popped the list's own screen and ended the app with ScreenStackError."""
    app = TriageApp(FakeService(sample_messages(40)), clock=fixed_clock, watcher_factory=None)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            while app._loading or app._uidvalidity is None:
                await pilot.pause(0.02)
            for _ in range(3):
                burst(app, ":a", ["enter"], ["enter"], ["enter"])
                for _ in range(10):
                    await pilot.pause(0.02)
                await pilot.press("escape")
                await pilot.press("escape")
                await pilot.pause(0.05)
            assert app.is_running and len(app.screen_stack) >= 1

    asyncio.run(go())
    assert app.return_code in (None, 0)


@pytest.mark.parametrize("keys", [[":", "pagedown"], [":", "a", "pagedown"], [":", "pageup"], [":", "u", "6", "pagedown"],
                                  [":", *"theme", "enter", "enter", "pagedown", "pageup", "enter", "enter"]])
def test_a_page_key_right_after_opening_the_palette_does_not_end_the_app(keys: list[str]) -> None:
    """': pagedown' in one burst: Textual's option list had its options but not yet their lines,
    and the page key raised KeyError, which ended the app. The palette's "theme" command opens a
    second palette (Textual's own, before): the same."""
    app = TriageApp(FakeService(sample_messages(40)), clock=fixed_clock, watcher_factory=None)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            while app._loading or app._uidvalidity is None:
                await pilot.pause(0.02)
            burst(app, *[[k] if len(k) > 1 else k for k in keys])
            for _ in range(10):
                await pilot.pause(0.02)
            assert app.is_running

    asyncio.run(go())
    assert app.return_code in (None, 0)


@pytest.mark.parametrize("seed", [2, 103, 109])
def test_random_bursts_never_break_the_app(seed: int) -> None:
    _run(seed, read_only=False)


@pytest.mark.parametrize("seed", [11])
def test_random_bursts_in_read_only_mode_never_ask_for_a_change(seed: int) -> None:
    _run(seed, read_only=True)


def test_random_bursts_in_the_demo_with_its_mail_room_and_locks() -> None:
    """The demo's extra keys (M starts and stops its mail_room, the incident plan) and the
    re-ingest screen over locks, under the same bursts."""
    _run(300, read_only=False, locks=True, demo=True)
