"""Undo in the TUI, against the real Dovecot: the dialog says what the CLI says (the re-ingest
warning, word for word from the one constant; what undo leaves alone and why), and the status
line after it names what was left alone. The server's state is checked through a separate
connection."""

from __future__ import annotations

import asyncio
import time

from tests.mailgen import backlog
from tests.tui.conftest import loaded, wait_for
from triage_tui.domain.model import View
from triage_tui.services.journal import AuditJournal
from triage_tui.services.triage import LEFT_CHANGED, REINGEST_WARNING, TriageService
from triage_tui.tui.app import TriageApp
from triage_tui.tui.screens.confirm import ConfirmScreen

NOW = time.time()


def _body(app: TriageApp) -> str:
    return str(app.screen.query_one("#confirm-body").render())


def test_undo_dialog_warns_of_reingest_and_names_what_it_leaves(mailbox, make_service):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(12, now=NOW))
    cli_svc = TriageService(mailbox.settings(), read_only=False, journal=AuditJournal())
    try:
        uv, unseen = cli_svc.search(View.UNSEEN)
        cli_svc.execute(cli_svc.plan_flags("mark-seen", uv, unseen))
    finally:
        cli_svc.close()
    c = mailbox.client()  # mail_room takes two meanwhile
    c.select_folder("INBOX")
    c.add_flags([4, 5], [b"\\Deleted"], silent=True)
    c.logout()
    app = TriageApp(make_service(mailbox), watcher_factory=None)

    async def go() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await loaded(pilot)
            await pilot.press("u")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the undo dialog")
            body = " ".join(_body(app).split())
            assert " ".join(REINGEST_WARNING.split()) in body, body
            assert f"will leave 2 alone: {LEFT_CHANGED} (UIDs 4:5)" in body, body
            assert "10 messages will be marked unseen again" in body
            await pilot.press("y")
            await wait_for(pilot, lambda: not app._busy, what="the undo")
            text = app.status_line.text
            assert "undo: 10 of 12 restored" in text and f"left 2 alone: {LEFT_CHANGED} (UIDs 4:5)" in text, text

    asyncio.run(go())
    assert mailbox.search("SEEN") == [4, 5]


def test_mark_unseen_dialog_uses_the_same_warning(mailbox, make_service):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(4, now=NOW, seen_every=1))
    app = TriageApp(make_service(mailbox), watcher_factory=None)

    async def go() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await loaded(pilot)
            await pilot.press("2")
            await loaded(pilot)
            await pilot.press("U")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the dialog")
            assert " ".join(REINGEST_WARNING.split()) in " ".join(_body(app).split())
            await pilot.press("escape")

    asyncio.run(go())
    assert mailbox.search("UNSEEN") == []
