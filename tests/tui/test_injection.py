"""Text from mail is data: Rich/Textual markup and terminal escape sequences in subjects, names
and headers are shown literally and inert, in the list, the confirmation and the preview.
Against the real Dovecot, so the bytes go through the real parser."""

from __future__ import annotations

import asyncio
import time

from tests.mailgen import message
from tests.tui.conftest import loaded, wait_for
from triage_tui.tui.app import TriageApp
from triage_tui.tui.screens.confirm import ConfirmScreen
from triage_tui.tui.screens.preview import PreviewScreen

NOW = time.time()
MARKUP = "[bold red]x[/]"
OSC52 = "\x1b]52;c;ZXZpbA==\x07"
CSI = "\x1b[2J\x1b[31m"


def _texts(widget) -> str:  # type: ignore[no-untyped-def]
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))


def test_markup_and_escapes_are_shown_literally(mailbox, make_service):  # type: ignore[no-untyped-def]
    mailbox.seed([
        (message(subject=MARKUP, from_='"[blink]Eve[/]" <eve@example.org>', date=NOW - 120), NOW - 120, ""),
        (message(subject=f"clip {OSC52} wipe {CSI}end", from_="Mallory <m@example.org>", date=NOW - 60), NOW - 60, ""),
    ])
    app = TriageApp(make_service(mailbox), watcher_factory=None)

    async def go() -> None:
        async with app.run_test(size=(180, 24)) as pilot:
            await loaded(pilot)
            shown = _texts(app.list)
            assert MARKUP in shown, shown
            assert "clip \\x1b]52;c;ZXZpbA==\\x07 wipe \\x1b[2J\\x1b[31mend" in shown
            assert "\x1b" not in shown and "\x07" not in shown
            # every segment the list produces is free of control characters
            for y in range(app.list.size.height):
                for seg in app.list.render_line(y):
                    assert not any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 for ch in seg.text), repr(seg.text)
            # the confirmation sample
            await pilot.press("a", "S")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            sample = str(app.screen.query_one("#confirm-sample").render())
            assert MARKUP in sample and "\\x1b]52" in sample and "\x1b" not in sample
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
            # the preview (title, analysis and raw header)
            await pilot.press("g", "enter")
            await wait_for(pilot, lambda: isinstance(app.screen, PreviewScreen))
            screen = app.screen
            await wait_for(pilot, lambda: bool(screen.header_text), what="the header")
            await pilot.pause(0.1)
            for wid in ("#preview-title", "#preview-header", "#preview-analysis"):
                text = str(screen.query_one(wid).render())
                assert "\x1b" not in text and "\x07" not in text
            assert MARKUP in str(screen.query_one("#preview-header").render())
            assert "[blink]Eve[/]" in str(screen.query_one("#preview-title").render())

    asyncio.run(go())
    assert mailbox.search("SEEN") == []
