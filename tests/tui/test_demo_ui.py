"""``triage-tui demo`` through the whole production path (CLI parser, demo servers, settings,
Context, ``commands.tui.run``), with only ``App.run`` swapped for a Pilot session: the pulse bar
says DEMO, ``M`` starts and stops the demo's mail_room, and a re-ingest starts it by itself and
its watch sees the pickups; over IMAP and over Graph (``demo --graph``, mail_room's Graph inbox)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from typing import Any

import pytest

from tests.tui.conftest import loaded, wait_for
from triage_tui import cli
from triage_tui.tui.app import TriageApp
from triage_tui.tui.screens.confirm import ConfirmScreen
from triage_tui.tui.screens.reingest import ReingestScreen


def pulse(app: TriageApp) -> str:
    return " ".join(app.query_one("#pulse").text_lines())


def play(app: TriageApp, seen: dict[str, Any]) -> None:
    """The runbook's consumer steps, at 80×24."""

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            # mark-seen's confirmation (cancelled): what it says of the cost
            await pilot.press("space", "S")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
            seen["confirm"] = list(app.screen.request.lines)
            await pilot.press("escape")
            await pilot.press("space")
            c = app.demo_consumer
            seen["badge"] = "DEMO" in pulse(app)
            seen["down"] = "mail_room: down" in pulse(app) and not c.running
            await pilot.press("M")
            await wait_for(pilot, lambda: c.running and "mail_room: running" in pulse(app), what="mail_room to start")
            seen["started"] = "polls every" in app.status_line.text
            await pilot.press("M")
            await wait_for(pilot, lambda: not c.running and "mail_room: down" in pulse(app), what="mail_room to stop")

            # the re-ingest starts mail_room by itself, and its watch sees the pickups
            await pilot.press("a", "I")
            await wait_for(pilot, lambda: isinstance(app.screen, ReingestScreen), what="the re-ingest screen")
            screen = app.screen
            await wait_for(pilot, lambda: screen.plan is not None and not screen.planning, what="the plan")
            seen["note"] = str(screen.query_one("#ri-plan").render())
            target = screen.typed_target()
            assert target is not None
            await pilot.press(*target, "enter")
            await wait_for(pilot, lambda: app.reingest_watch is not None and c.running
                           and "by itself" in app.status_line.text, what="the auto-start")
            seen["auto_status"] = app.status_line.text
            await wait_for(pilot, lambda: (st := app.reingest_watch.status) is not None and st.picked_up > 0,
                           timeout=15, what="pickups in the watch")
            seen["watch"] = str(screen.query_one("#ri-plan").render())
            seen["delivered"] = c.delivered

    asyncio.run(go())


@pytest.fixture
def demo_ui(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def run(self: TriageApp, **_kw: Any) -> int:
        try:
            play(self, seen)
        except BaseException as e:  # the CLI would turn it into an exit code: keep it for the test
            seen["error"] = e
            return 1
        return 0

    monkeypatch.setattr(TriageApp, "run", run)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    # what the demo sets for itself must not leak into other tests
    monkeypatch.setenv("TRIAGE_DEMO", "0")
    monkeypatch.setenv("TRIAGE_DEMO_IMAP_PASSWORD", "x")
    monkeypatch.setenv("TRIAGE_DEMO_GRAPH_SECRET", "x")
    return seen


@pytest.mark.parametrize("inbox", [(), ("--graph",)], ids=["imap", "graph"])
def test_demo_badge_and_its_mail_room_from_the_ui(demo_ui: dict[str, Any], inbox: tuple[str, ...]) -> None:
    with contextlib.redirect_stderr(open(os.devnull, "w")):  # noqa: SIM115 - closed with the process
        code = cli.main(["demo", *inbox, "--size", "200"])
    s = demo_ui
    if "error" in s:
        raise s["error"]
    assert code == 0
    assert s["badge"] and s["down"]
    assert s["started"]
    assert "starts by itself once you confirm" in s["note"]
    assert "started by itself after the re-ingest" in s["auto_status"]
    assert "picked up" in s["watch"] and "demo: mail_room: running" in s["watch"]
    assert s["delivered"] > 0
    # the Graph budget on a line of its own that fits the dialog at 80x24 (longer lines wrap)
    budget = [line for line in s["confirm"] if line.startswith("Graph: ")]
    assert len(budget) == (1 if inbox else 0) and all(len(line) <= 76 for line in budget), s["confirm"]
    assert any(line.startswith("UIDVALIDITY ") and line.endswith("audit-journaled") for line in s["confirm"])
