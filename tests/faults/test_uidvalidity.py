"""A UIDVALIDITY change between listing and acting, in the TUI against Dovecot: the action is
refused with a clear message, nothing on the server changes, nothing is journaled as begun,
the marks (UIDs that now name other messages) are dropped and the view is listed again.

The change is made by Dovecot itself (``doveadm mailbox update --uid-validity``), the same
thing a restored backup or a recreated mailbox does to a live session."""

from __future__ import annotations

import asyncio
import time

from tests.conftest import Mailbox
from tests.faults.conftest import FAST_RETRY
from tests.mailgen import ADDRESS, backlog
from tests.tui.conftest import loaded, wait_for
from triage_tui.domain.analysis import AnalysisConfig
from triage_tui.services.journal import AuditJournal
from triage_tui.services.triage import TriageService
from triage_tui.tui.app import TriageApp
from triage_tui.tui.screens.confirm import ConfirmScreen


def _bump_uidvalidity(mb: Mailbox) -> tuple[int, int]:
    old = mb.uidvalidity()
    r = mb.server.doveadm("mailbox", "update", "-u", mb.user, "--uid-validity", str(old + 11), "INBOX")
    assert r.returncode == 0, r.stderr
    assert mb.uidvalidity() == old + 11
    return old, old + 11


def _app(mb: Mailbox) -> tuple[TriageApp, list[tuple[str, str]]]:
    svc = TriageService(mb.settings(), read_only=False, journal=AuditJournal(), retry=FAST_RETRY,
                        analysis=AnalysisConfig(address=ADDRESS))
    app = TriageApp(svc, watcher_factory=None)
    said: list[tuple[str, str]] = []
    shown = app.status

    def status(text: str, kind: str = "info") -> None:
        said.append((text, kind))
        shown(text, kind)

    app.status = status  # type: ignore[method-assign]
    return app, said


def _flag_actions_journaled() -> list[dict[str, object]]:
    return [r for r in AuditJournal().records() if r.get("action") in ("mark-seen", "mark-unseen")]


def _check_refused_and_relisted(app: TriageApp, said: list[tuple[str, str]], old: int, new: int) -> None:
    errors = [t for t, k in said if k == "error"]
    assert any(f"UIDVALIDITY changed from {old} to {new}" in t and "list again" in t for t in errors), said
    assert app._uidvalidity == new
    assert not app.model.marks, "marks on UIDs of the old UIDVALIDITY must not survive"
    assert all(m.uidvalidity == new for m in app.model.messages.values())


def test_uidvalidity_changed_before_planning(mailbox: Mailbox) -> None:
    mailbox.seed(backlog(12, now=time.time()))
    app, said = _app(mailbox)
    olds: dict[str, int] = {}

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            await pilot.press("space", "space", "space")
            assert len(app.model.marks) == 3
            olds["old"], olds["new"] = _bump_uidvalidity(mailbox)
            await pilot.press("S")
            await wait_for(pilot, lambda: app._uidvalidity == olds["new"] and not app._loading and not app._busy,
                           timeout=20, what="the refusal and the re-list")
            assert not isinstance(app.screen, ConfirmScreen), "a plan on stale UIDs must not reach the dialog"
            assert len(app.model.messages) == 12

    asyncio.run(go())
    _check_refused_and_relisted(app, said, olds["old"], olds["new"])
    assert mailbox.search("SEEN") == []
    assert _flag_actions_journaled() == []


def test_uidvalidity_changed_while_the_confirmation_is_open(mailbox: Mailbox) -> None:
    mailbox.seed(backlog(12, now=time.time()))
    app, said = _app(mailbox)
    olds: dict[str, int] = {}

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            await pilot.press("a", "S")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
            olds["old"], olds["new"] = _bump_uidvalidity(mailbox)  # the operator hesitates...
            await pilot.press("y")
            await wait_for(pilot, lambda: app._uidvalidity == olds["new"] and not app._loading and not app._busy,
                           timeout=20, what="the refusal and the re-list")
            assert len(app.model.messages) == 12

    asyncio.run(go())
    _check_refused_and_relisted(app, said, olds["old"], olds["new"])
    assert mailbox.search("SEEN") == [], "a STORE went out under the new UIDVALIDITY"
    assert _flag_actions_journaled() == [], "the refusal comes before the journal's begin record"
