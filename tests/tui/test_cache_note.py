"""The TUI says once why its listings are cold: a header cache given up (a damaged, locked,
full or read-only file) is one notification, not silence and not a line written over the
screen. Against the real Dovecot."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tests.mailgen import backlog
from tests.tui.conftest import ADDRESS, loaded
from triage_tui.domain.analysis import AnalysisConfig
from triage_tui.services.cache import HeaderCache
from triage_tui.services.journal import AuditJournal
from triage_tui.services.triage import TriageService
from triage_tui.tui.app import TriageApp


def _notes(app: TriageApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


def test_a_damaged_cache_is_one_notification_and_the_next_start_is_warm(mailbox: Any, tmp_path: Path) -> None:
    mailbox.seed(backlog(12, now=time.time()))
    path = tmp_path / "cache" / "box.sqlite3"
    path.parent.mkdir(mode=0o700)
    path.write_bytes(b"not a database\n" * 400)
    path.chmod(0o600)
    cfg = AnalysisConfig(address=ADDRESS)

    def app() -> TriageApp:
        svc = TriageService(mailbox.settings(), read_only=True, journal=AuditJournal(), analysis=cfg,
                            cache=HeaderCache(path, cfg, on_problem=lambda _t: None))
        return TriageApp(svc, watcher_factory=None)

    first = app()

    async def go(a: TriageApp, relist: bool) -> list[str]:
        async with a.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            if relist:
                await pilot.press("R")
                await pilot.pause(0.1)
                await loaded(pilot)
            return [n for n in _notes(a) if "header cache" in n]

    notes = asyncio.run(go(first, relist=True))
    first.service.close()
    assert len(notes) == 1 and "deleted" in notes[0], notes
    assert len(first.model) == 12
    second = app()
    assert asyncio.run(go(second, relist=False)) == []  # a new cache, made by the first start
    second.service.close()
    assert path.exists()
