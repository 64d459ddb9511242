"""Issue 12 §4, the UI half (pure UI: no server decides anything here).

Confirmation dialogs say that ``y`` confirms and what Enter does where the focus is *now*; the
typed count box is empty with a hint, never the number; pasted text in every typed-count box is
inert. At 80x24 the pulse bar keeps every count (compact numbers) and the status line keeps the
part of an error that says what was wrong.
"""

from __future__ import annotations

import asyncio
from typing import Any

from textual import events
from textual.app import App
from textual.widgets import Input, Static

from triage_tui.tui.screens.confirm import ConfirmRequest, ConfirmScreen


def _text(widget: Any) -> str:
    return str(widget.render())


class Host(App[None]):
    def __init__(self, request: ConfirmRequest) -> None:
        super().__init__()
        self.request = request
        self.result: bool | None = None

    def on_mount(self) -> None:
        def done(ok: bool | None) -> None:
            self.result = ok

        self.push_screen(ConfirmScreen(self.request), done)


def test_plain_confirmation_says_y_and_follows_the_focus() -> None:
    app = Host(ConfirmRequest(title="Mark 3 messages \\Seen?", lines=["three"], confirm_label="Mark seen (3)"))

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            keys = app.screen.query_one("#confirm-keys", Static)
            assert "y confirms" in _text(keys)
            assert "Cancel has focus" in _text(keys)
            await pilot.press("tab")
            assert app.screen.focused is not None and app.screen.focused.id == "confirm"
            assert "Cancel has focus" not in _text(keys)
            assert "Mark seen (3) has focus" in _text(keys)
            await pilot.press("shift+tab")
            assert "Cancel has focus" in _text(keys)
            await pilot.press("y")
            await pilot.pause()
            assert app.result is True

    asyncio.run(go())


def test_typed_confirmation_hint_is_not_the_number_and_paste_is_inert() -> None:
    app = Host(ConfirmRequest(title="Expunge 20?", lines=["cannot be undone"], typed="20",
                              confirm_label="Expunge (20)", danger=True))

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            box = app.screen.query_one("#confirm-typed", Input)
            assert box.value == ""
            assert "20" not in box.placeholder and box.placeholder == "type the count"
            keys = app.screen.query_one("#confirm-keys", Static)
            assert "type 20 + Enter confirms" in _text(keys) and "y confirms" not in _text(keys)
            assert "Cancel has focus" in _text(keys)
            await pilot.press("y")  # says why nothing happened, and stays
            assert "y does not confirm this: type 20" in _text(app.screen.query_one("#confirm-typed-help"))
            assert app.result is None and app.screen.focused.id == "cancel"
            await pilot.press("2")  # a digit while Cancel has focus moves focus to the box
            assert app.screen.focused is box
            assert "Cancel has focus" not in _text(keys) and "typing the count" in _text(keys)
            box.post_message(events.Paste("\x1b[2J\x07\u202e0"))
            await pilot.pause()
            assert "\x1b" not in box.value and "\x07" not in box.value and "\u202e" not in box.value
            assert "\\x1b" in box.value
            assert all(ch.isprintable() for ch in box.value)
            await pilot.press("enter")  # not the count: refused, the dialog stays
            assert app.result is None and isinstance(app.screen, ConfirmScreen)
            box.value = ""
            await pilot.press("2", "0", "enter")
            await pilot.pause()
            assert app.result is True

    asyncio.run(go())


def test_reingest_typed_box_pastes_inert(mailbox, make_service, redis_server, redis_client):  # type: ignore[no-untyped-def]
    """The re-ingest screen's count box (real Dovecot and Redis): a pasted ESC sequence shows as
    text and cannot confirm; Redis is unchanged afterwards."""
    import time

    from tests.mailgen import backlog
    from tests.tui.conftest import loaded
    from tests.tui.test_reingest import KEY, make_app, open_plan

    mailbox.seed(backlog(3, now=time.time()))
    for uid in (1, 2):
        redis_client.set(KEY.format(uid), "1", ex=540)
    app = make_app(make_service(mailbox), redis_server)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            screen = await open_plan(pilot, "a")
            box = screen.query_one("#ri-typed", Input)
            box.focus()
            await pilot.pause()
            box.post_message(events.Paste("\x1b]52;c;ZWNobyBoaQ==\x07"))  # longer than the box allows
            await pilot.pause()
            assert box.value == ""
            box.post_message(events.Paste("\x1b[2J\x07"))
            await pilot.pause()
            assert box.value == "\\x1b[2J\\x07", repr(box.value)
            await pilot.press("enter")
            await pilot.press("escape")

    asyncio.run(go())
    assert all(redis_client.ttl(KEY.format(u)) > 500 for u in (1, 2))


def test_b_after_o_says_both_counts() -> None:
    from tests.tui.fakes import FakeService, fixed_clock, sample_messages
    from triage_tui.tui.app import TriageApp

    svc = FakeService(sample_messages(200))
    app = TriageApp(svc, clock=fixed_clock, watcher_factory=None)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            while app._loading or app._uidvalidity is None:
                await pilot.pause(0.02)
            msgs = app.model.messages
            stale = {u for u, m in msgs.items() if m.stale}
            bots = {u for u, m in msgs.items() if m.bot}
            assert bots & stale and bots - stale, "the sample needs bots both stale and fresh"
            await pilot.press("o")
            assert app.status_line.text == f"marked {len(stale):,} stale messages"
            await pilot.press("b")
            total = len(stale | bots)
            assert app.model.marks == stale | bots and app.pulse_state.marks == total
            assert app.status_line.text == (f"{len(bots):,} bot messages: {len(bots - stale):,} newly marked "
                                            f"({len(bots & stale):,} already were); {total:,} marked in all")
            await pilot.press("b")  # nothing new
            assert f"0 newly marked ({len(bots):,} already were)" in app.status_line.text

    asyncio.run(go())


def test_marked_text() -> None:
    from triage_tui.tui.widgets.bars import marked_text

    assert marked_text("bot messages", 325, 1000, 1069) == \
        "325 bot messages: 69 newly marked (256 already were); 1,069 marked in all"
    assert marked_text("bot messages", 5, 0, 5) == "marked 5 bot messages"
    assert marked_text("bot messages", 5, 3, 8) == "marked 5 bot messages; 8 marked in all"
    assert marked_text("bot messages", 0, 3, 3) == "no bot messages to mark"


def test_status_line_keeps_what_was_wrong_at_80x24() -> None:
    from tests.tui.fakes import FakeService, fixed_clock, sample_messages
    from triage_tui.tui.app import TriageApp

    app = TriageApp(FakeService(sample_messages(40)), clock=fixed_clock, watcher_factory=None)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            while app._loading or app._uidvalidity is None:
                await pilot.pause(0.02)
            await pilot.press("slash", *"age>2", "enter")
            await pilot.pause(0.1)
            line = app.status_line
            assert line.kind == "error" and "has no unit" in line.text
            shown = line.shown_lines()
            assert len(shown) == 2 and line.size.height == 2
            assert all(len(x) <= 78 for x in shown)
            assert "has no unit" in shown[-1] and "units s m h d w" in shown[-1]  # the end is kept
            # what is on the screen (not just the widget's text): both lines, in the last rows
            screen = [app.screen._compositor.render_update(full=True)]  # noqa: F841 - forces a full frame
            rows = [str(line.render_line(y).text) for y in range(2)]
            assert "filter syntax error" in rows[0] and "has no unit" in rows[1]
            # a short status goes back to one line
            await pilot.press("escape")
            line.show("ok", "ok")
            await pilot.pause(0.05)
            assert line.size.height == 1

    asyncio.run(go())


def test_fit_status_never_loses_the_end() -> None:
    from rich.cells import cell_len

    from triage_tui.tui.widgets.bars import fit_status

    long = "✗ " + "x" * 300 + " the reason at the end"
    for width in (20, 40, 78, 118):
        out = fit_status(long, width)
        lines = out.split("\n")
        assert len(lines) == 2 and all(cell_len(x) <= width for x in lines), (width, lines)
        assert lines[1].endswith("the reason at the end"[-(width - 2):]) and lines[1].startswith("… ")
        assert lines[0].startswith("✗ x")
    cjk = "错误：" + "请帮我查看" * 40 + " 原因"
    lines = fit_status(cjk, 78).split("\n")
    assert all(cell_len(x) <= 78 for x in lines) and lines[1].endswith("原因")
    assert fit_status("short", 78) == "short"
    two = "a " * 60
    assert [len(x) for x in fit_status(two, 78).split("\n")] and len(fit_status(two, 78).split("\n")) == 2


def test_fit_status_leaves_out_the_general_middle_first() -> None:
    from triage_tui.tui.widgets.bars import fit_status

    t = ("✗ filter syntax error at position 5: expected an age like 90m, 36h, 2d or 1w: age '99999999999w' is "
         "more than 100 years (36500d): use a number with a unit: 90m, 36h, 2d, 1w (units s m h d w)")
    out = fit_status(t, 78)
    assert out.startswith("✗ filter syntax error at position 5: …: age '99999999999w' is more than 100")
    assert out.endswith("(units s m h d w)") and out.count("\n") == 1


def test_pulse_bar_keeps_every_count_at_80x24_with_large_counts() -> None:
    from tests.tui.fakes import FakeService, fixed_clock, sample_messages
    from triage_tui.tui.app import TriageApp

    app = TriageApp(FakeService(sample_messages(40)), clock=fixed_clock, watcher_factory=None)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            while app._loading or app._uidvalidity is None or app.pulse_state.unseen is None \
                    or app.pulse_state.seen_stuck is None or app.pulse_state.deleted is None:
                await pilot.pause(0.02)  # the counts arrive after the list: they would overwrite ours
            await pilot.pause(0.2)
            s = app.pulse_state
            s.unseen, s.seen_stuck, s.deleted = 123_456, 45_678, 9_876
            s.locks_configured, s.locks_held = True, 98_765
            s.oldest_unseen_age = 21 * 86400
            s.demo = True
            s.consumer, s.consumer_running = "mail_room: running, 812 delivered", True
            s.reingest = "re-ingest 12/20 · ETA 10 s"
            app._pulse()
            await pilot.pause(0.05)
            one, two = app.query_one("#pulse").text_lines()
            for piece in ("DEMO", "UNSEEN 123", "stuck 45", "\\Del 9", "locks 98"):
                assert piece in one, (piece, one)
            for piece in ("view unseen", "marked", "re-ingest 12/20", "mail_room: running"):
                assert piece in two, (piece, two)
            assert len(one) <= 80 and len(two) <= 80

    asyncio.run(go())
