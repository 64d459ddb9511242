"""Guarantee 3 in the UI: Textual renders a crash with every frame's locals; a password or a Redis
URL held in a local must not reach the terminal that way."""

from __future__ import annotations

import asyncio

import pytest

from tests.tui.fakes import FakeService, fixed_clock, sample_messages
from triage_tui.tui.app import TriageApp

CANARY = "CANARY-local-pw-4c1e"


class _Boom(RuntimeError):
    pass


def test_crash_report_has_no_locals(capsys: pytest.CaptureFixture[str]) -> None:
    app = TriageApp(FakeService(sample_messages(3), read_only=True), clock=fixed_clock, watcher_factory=None)

    def crash() -> None:
        redis_url = f"redis://:{CANARY}@redis.internal/0"  # noqa: F841 - the local the report must not show
        raise _Boom("the crash")

    async def go() -> None:
        async with app.run_test() as pilot:
            app.call_later(crash)
            await pilot.pause(0.2)

    with pytest.raises(_Boom):
        asyncio.run(go())
    text = capsys.readouterr().err
    assert "the crash" in text and "_Boom" in text, text  # the report is there...
    assert CANARY not in text  # ...without the locals (source lines name the variable, not its value)
