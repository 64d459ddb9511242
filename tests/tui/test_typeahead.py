"""Type-ahead after ``/``: keys that arrive in one burst (a laggy SSH link delivers them in one read)
go to the filter box, in order, however fast they come; keys after the key that closes the box go
to the list, in order, once the box has closed.

The rule, as the help and README say it:
- every key after the filter key goes to the filter box, until a key closes it (``enter`` that
  applies a filter, ``esc``); the keys after that one go to the list, in the order typed;
- ``enter`` on an empty box while no filter is applied changes nothing and does not close it (it
  says so): ``/`` ``enter`` ``a`` leaves "a" in the box and marks nothing; ``esc`` closes.

The bursts are posted to the app in one go, without yielding between keys, as Textual's driver
does with the keys of one terminal read. (``pilot.press`` waits for idle after every key and does
not reproduce the bug; these bursts marked every message before the fix.) The same through a real
pty, against the real Dovecot: tests/faults/test_process.py."""

from __future__ import annotations

import asyncio
import unicodedata
from typing import Any

from textual import events
from textual.keys import _character_to_key

from tests.tui.fakes import FakeService, fixed_clock, sample_messages
from triage_tui.tui.app import TriageApp
from triage_tui.tui.screens.preview import PreviewScreen


def make() -> TriageApp:
    return TriageApp(FakeService(sample_messages(40)), clock=fixed_clock, watcher_factory=None)


def key_event(key: str) -> events.Key:
    """The Key event Textual's driver makes for ``key`` (a character, or a key name like "enter")."""
    if len(key) == 1:
        name = _character_to_key(key) if not key.isalnum() else key
        return events.Key(name, key)
    char = {"enter": "\r", "escape": "\x1b", "space": " ", "tab": "\t", "backspace": "\x7f"}.get(key)
    if char is None:
        try:
            char = unicodedata.lookup(key.replace("_", " ").upper())
        except KeyError:
            char = None
    return events.Key(key, char)


def burst(app: TriageApp, *parts: str | list[str]) -> None:
    """Post every key of ``parts`` to the app at once ("abc" is three keys, ["enter"] one)."""
    for part in parts:
        for k in (part if isinstance(part, list) else list(part)):
            ev = key_event(k)
            ev.set_sender(app)
            app.post_message(ev)


async def ready(pilot: Any) -> None:
    while pilot.app._loading or pilot.app._uidvalidity is None:
        await pilot.pause(0.02)
    await pilot.pause(0.05)


async def settle(pilot: Any) -> None:
    for _ in range(5):
        await pilot.pause(0.05)


def box_value(app: TriageApp) -> str:
    return app.query_one("#filter-input").value  # type: ignore[no-any-return]


def bar_open(app: TriageApp) -> bool:
    return app.query_one("#filterbar").has_class("-open")


def run(scenario: Any) -> None:
    app = make()

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await ready(pilot)
            await scenario(app, pilot)

    asyncio.run(go())


def test_a_burst_after_slash_goes_to_the_box_in_order() -> None:
    async def scenario(app: TriageApp, pilot: Any) -> None:
        burst(app, "/abc")
        await settle(pilot)
        assert bar_open(app) and box_value(app) == "abc"
        assert app.focused is app.query_one("#filter-input")
        assert not app.model.marks, "a typed-ahead 'a' marked everything"
        assert app.model.sort_key == make().model.sort_key  # 's' would have sorted, 'b' marked bots…

    run(scenario)


def test_every_list_key_typed_ahead_is_text() -> None:
    """Letters that are list commands (a mark all, b bots, o stale, c clear, s sort, z group, q quit,
    v range, space mark) all land in the box."""
    async def scenario(app: TriageApp, pilot: Any) -> None:
        before = (app.model.sort_key, app.model.group_by)
        burst(app, "/from:bot subject:zq v", ["enter"])
        await settle(pilot)
        assert not bar_open(app) and app.model.filter_text == "from:bot subject:zq v"
        assert not app.model.marks and (app.model.sort_key, app.model.group_by) == before
        assert app.is_running

    run(scenario)


def test_slash_text_enter_then_a_marks_within_the_filter() -> None:
    """"/a" + "bc" + enter, then "a" in the same burst: the filter "abc"… is applied first, then the
    'a' typed after enter marks every message matching it (and only those)."""
    async def scenario(app: TriageApp, pilot: Any) -> None:
        burst(app, "/a", "bc", ["enter"])
        await settle(pilot)
        assert app.model.filter_text == "abc" and not bar_open(app)
        await pilot.press("escape")  # clears the filter
        await settle(pilot)
        assert app.model.filter is None and not bar_open(app)
        burst(app, "/bot", ["enter"], "a")
        await settle(pilot)
        assert app.model.filter_text == "bot" and not bar_open(app)
        matching = set(app.model.filtered)
        assert 0 < len(matching) < len(app.model)
        assert set(app.model.marks) == matching, "the 'a' after enter must mark the filtered set, in order"

    run(scenario)


def test_slash_enter_a_on_an_empty_box_marks_nothing() -> None:
    """The dangerous burst: '/' enter 'a'. Enter on an empty box (no filter applied) does not close
    it, so the 'a' is text in the box, not "mark all"."""
    async def scenario(app: TriageApp, pilot: Any) -> None:
        burst(app, "/", ["enter"], "a")
        await settle(pilot)
        assert not app.model.marks, "'/' enter 'a' marked every message"
        assert bar_open(app) and box_value(app) == "a"
        assert "empty filter" in app.status_line.text
        burst(app, ["escape"], "a")  # esc really closes it: an 'a' after that is the operator's
        await settle(pilot)
        assert not bar_open(app) and len(app.model.marks) == len(app.model.filtered) > 0

    run(scenario)


def test_escape_in_a_burst_cancels_and_the_rest_goes_to_the_list_in_order() -> None:
    async def scenario(app: TriageApp, pilot: Any) -> None:
        burst(app, "/xyz", ["escape"], ["space"])
        await settle(pilot)
        assert not bar_open(app) and app.model.filter is None
        assert len(app.model.marks) == 1  # the space after esc marked the cursor row, once
        assert app.focused is app.list

    run(scenario)


def test_enter_before_slash_is_not_overtaken() -> None:
    """'enter' (open the preview) then '/' in one burst: the preview opens, and the '/' is not run
    on the list underneath ahead of it."""
    async def scenario(app: TriageApp, pilot: Any) -> None:
        burst(app, ["enter"], "/ab")
        await settle(pilot)
        assert isinstance(app.screen, PreviewScreen)
        assert not app.model.marks

    run(scenario)


def test_a_syntax_error_keeps_the_box_and_the_rest_of_the_burst() -> None:
    async def scenario(app: TriageApp, pilot: Any) -> None:
        burst(app, "/subject:(", ["enter"], "a")
        await settle(pilot)
        # the box stays open with the cursor at the error; the 'a' typed after enter is text there
        assert bar_open(app) and box_value(app) == "subject:a(" and app.status_line.kind == "error"
        assert not app.model.marks

    run(scenario)


def test_slow_typing_still_works() -> None:
    async def scenario(app: TriageApp, pilot: Any) -> None:
        await pilot.press("slash", *"bot", "enter", "a")
        assert app.model.filter_text == "bot" and set(app.model.marks) == set(app.model.filtered)
        await pilot.press("slash", "enter")  # the box shows "bot": enter re-applies and closes
        assert not bar_open(app) and app.model.filter_text == "bot"

    run(scenario)


def test_a_paste_right_after_slash_goes_to_the_box() -> None:
    async def scenario(app: TriageApp, pilot: Any) -> None:
        burst(app, "/")
        paste = events.Paste("bot")
        paste.set_sender(app)
        app.post_message(paste)
        burst(app, ["enter"], "a")
        await settle(pilot)
        assert app.model.filter_text == "bot" and set(app.model.marks) == set(app.model.filtered)

    run(scenario)


def test_a_huge_burst_with_odd_characters() -> None:
    text = "subject:\"ünïcødé ✓ 日本\" " * 40

    async def scenario(app: TriageApp, pilot: Any) -> None:
        burst(app, "/" + text, ["enter"], "a")
        for _ in range(200):
            if not bar_open(app):
                break
            await pilot.pause(0.05)
        await settle(pilot)
        assert app.model.filter_text == text.strip()
        assert set(app.model.marks) == set(app.model.filtered)  # the 'a' after enter: all matching (none)

    run(scenario)


def test_keys_after_slash_wait_for_the_box_even_when_its_focus_comes_late() -> None:
    """CI once saw the key right after '/' reach the list (it sorted; the rest went to the box). The
    box's focus is a queued call: here it is made to come 0.3 s late, on a timer. The keys after
    '/' wait for it, whatever the order Textual runs things in; before the hold, 's' sorted the
    list and 'a' marked every message."""
    async def scenario(app: TriageApp, pilot: Any) -> None:
        box = app.query_one("#filter-input")
        real_focus = box.focus

        def late_focus(scroll_visible: bool = True) -> Any:
            app.set_timer(0.3, lambda: real_focus(scroll_visible))
            return box

        box.focus = late_focus  # type: ignore[method-assign]
        before = app.model.sort_key
        burst(app, "/sa")
        for _ in range(12):
            await pilot.pause(0.05)
        assert box_value(app) == "sa" and app.focused is box
        assert app.model.sort_key == before and not app.model.marks

    run(scenario)


def test_a_lost_focus_lets_the_keys_go_after_a_second() -> None:
    """If the box never gets the focus (a bug elsewhere), the held keys are not stuck: they go on
    after MAX_HOLD, to whatever has the focus."""
    from triage_tui.tui.keyorder import MAX_HOLD

    async def scenario(app: TriageApp, pilot: Any) -> None:
        box = app.query_one("#filter-input")
        box.focus = lambda scroll_visible=True: box  # type: ignore[method-assign]
        burst(app, "/", ["down"])
        cursor = app.list.cursor
        await pilot.pause(MAX_HOLD / 2)
        assert app.list.cursor == cursor  # still held
        await pilot.pause(MAX_HOLD + 0.3)
        assert app.list.cursor == cursor + 1

    run(scenario)
