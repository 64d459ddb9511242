"""Helpers for driving the real app with Pilot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.mailgen import ADDRESS
from triage_tui.domain.analysis import AnalysisConfig
from triage_tui.services.journal import AuditJournal
from triage_tui.services.triage import TriageService


async def wait_for(pilot: Any, cond: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Pump the app until ``cond()`` holds (workers post back asynchronously)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            app = pilot.app
            status = getattr(app.query_one("#status"), "text", "?")
            raise AssertionError(f"timed out waiting for {what or cond}; status line: {status!r}")
        await pilot.pause(0.02)


async def loaded(pilot: Any) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: not app._loading and app._uidvalidity is not None, what="the list to load")
    await pilot.pause(0.05)


@pytest.fixture
def make_service():  # type: ignore[no-untyped-def]
    """A real TriageService on a test mailbox (not connected: the app connects in a worker)."""
    made: list[TriageService] = []

    def make(mailbox: Any, *, read_only: bool = False) -> TriageService:
        svc = TriageService(mailbox.settings(), read_only=read_only, journal=AuditJournal(),
                            analysis=AnalysisConfig(address=ADDRESS))
        made.append(svc)
        return svc

    yield make
    for s in made:
        s.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)
