"""The TUI's exits: text from the journal, a server reply or Redis reaches the confirmation
dialog, the status line, the pulse bar and toasts inert and never parsed as markup."""

from __future__ import annotations

import asyncio
import json
import time
import unicodedata
from typing import Any

from tests.mailgen import message
from tests.tui.conftest import loaded, wait_for
from tests.tui.fakes import FakeService, sample_messages
from triage_tui.errors import Refused
from triage_tui.services.journal import _sealed, default_path
from triage_tui.tui.app import TriageApp
from triage_tui.tui.screens.confirm import ConfirmScreen
from triage_tui.tui.widgets.pulse import PulseBar, PulseState

NOW = time.time()
OSC52 = "\x1b]52;c;ZWNobyBwd25lZA==\x07"
TITLE = "\x1b]0;pwned\x07"


def _clean(text: str) -> bool:
    return not any(unicodedata.category(c) in {"Cc", "Cf", "Cs", "Zl", "Zp"} for c in text if c != "\n")


def test_undo_confirmation_from_a_hostile_journal_record(mailbox, make_service):  # type: ignore[no-untyped-def]
    mailbox.seed([(message(subject=f"m{i}", date=NOW - 60), NOW - 60, "") for i in range(3)])
    svc = make_service(mailbox)
    svc.connect()
    uv, uids = svc.search("unseen")
    svc.execute(svc.plan_flags("mark-seen", uv, uids[:2]))
    path = default_path()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for rec in records:
        rec.update(time=f"[bold]2026{TITLE}\u202e", os_user=f"root{OSC52}", host="h\u200b")
    # sealed again: a CRC is no defence against whoever can write the journal, only against a disk
    path.write_bytes(b"".join(_sealed(json.dumps({k: v for k, v in r.items() if k != "crc"})) for r in records))
    app = TriageApp(make_service(mailbox), watcher_factory=None)

    async def go() -> None:
        async with app.run_test(size=(140, 30)) as pilot:
            await loaded(pilot)
            await pilot.press("u")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the undo confirmation")
            screen = app.screen
            for wid in ("#confirm-title", "#confirm-body"):
                text = str(screen.query_one(wid).render())
                assert _clean(text), (wid, text)
            title = str(screen.query_one("#confirm-title").render())
            assert "[bold]2026\\x1b]0;pwned\\x07\\u202e" in title, title  # literal, visible, not markup
            await pilot.press("escape")

    asyncio.run(go())
    assert mailbox.search("SEEN") == uids[:2]  # nothing changed


class _HostileService(FakeService):
    def plan_undo(self) -> Any:
        raise Refused(f"nothing to undo: server said {OSC52} [b]x[/b] \u202e\u200b")


def test_status_line_pulse_and_toasts_show_server_text_inert() -> None:
    svc = _HostileService(sample_messages(5))
    app = TriageApp(svc, watcher_factory=None)

    async def go() -> None:
        async with app.run_test(size=(140, 30)) as pilot:
            await wait_for(pilot, lambda: app._uidvalidity is not None, what="the list")
            await pilot.press("u")
            await wait_for(pilot, lambda: "nothing to undo" in app.status_line.text, what="the refusal")
            shown = str(app.status_line.render())
            assert "\\x1b]52;c;" in shown and "[b]x[/b]" in shown and _clean(shown), shown
            bar = app.query_one("#pulse", PulseBar)
            bar.show(PulseState(server=f"imap{TITLE}.example\u202e", mailbox="IN\u200bBOX", connected=True,
                                filter=f"subject:{OSC52}", progress=f"expunge {OSC52}", live="idle",
                                reingest=f"re-ingest: Redis said {TITLE}", consumer="\x9b2J"))
            await pilot.pause(0.05)
            lines = bar.text_lines()
            assert any("imap\\x1b]0;pwned\\x07.example\\u202e" in line for line in lines), lines
            for line in lines:
                assert _clean(line), line
            for y in range(2):
                assert all(_clean(seg.text) for seg in bar.render_line(y))
            # the list's empty text (an error quoting a server reply)
            app.list.empty_text = f"listing failed: {OSC52}"
            app.model.clear()
            app.list.refresh()
            await pilot.pause(0.05)
            first = app.list.render_line(0).text
            assert "\\x1b]52;c;" in first and _clean(first), first

    asyncio.run(go())


def test_text_pasted_into_the_filter_input_is_echoed_inert() -> None:
    from textual import events

    from triage_tui.tui.widgets.bars import FilterInput

    app = TriageApp(FakeService(sample_messages(5)), watcher_factory=None)

    async def go() -> None:
        async with app.run_test(size=(140, 30)) as pilot:
            await wait_for(pilot, lambda: app._uidvalidity is not None, what="the list")
            await pilot.press("slash")
            box = app.query_one(FilterInput)
            await wait_for(pilot, lambda: box.has_focus, what="the filter input")
            box.post_message(events.Paste(f"subject:x{TITLE}\u202e\x1b[201~; rm -rf ~"))
            await pilot.pause(0.1)
            assert box.value == "subject:x\\x1b]0;pwned\\x07\\u202e\\x1b[201~; rm -rf ~", box.value
            assert box.cursor_position == len(box.value)
            box.value = f"set {OSC52}"
            assert box.value == "set \\x1b]52;c;ZWNobyBwd25lZA==\\x07"

    asyncio.run(go())


def test_the_preview_header_ends_lines_at_lf_only() -> None:
    from triage_tui.tui.screens.preview import shown_header

    header = "Subject: hi\x85X-Forged-1: y\x0cX-Forged-2: y\u2028X-Forged-3: y\r\nTo: a@b\r\n\r\n"
    lines = shown_header(header).split("\n")
    assert lines == ["Subject: hi\\x85X-Forged-1: y\\x0cX-Forged-2: y\\u2028X-Forged-3: y", "To: a@b", ""]
