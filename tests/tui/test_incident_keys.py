"""The demo incident in at most 15 keys, at 80×24, through the whole production path
(``triage-tui demo``: parser, demo servers, settings, Context, ``commands.tui.run``; only
``App.run`` is swapped for a Pilot session): launch, ``P`` (the plan), ``A`` (apply), ``y`` (ignore
stale, bots and junk), the typed count of the crash-trapped keys + Enter, the typed count of the
rest's keys + Enter. Then mail_room (the demo's stand-in, started by the release) picks the
remaining mail up and the watch says so. Every key pressed is counted; the servers are checked
afterwards on connections of their own (IMAP flags, Redis keys, the journal)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import imapclient
import pytest

from tests.tui.conftest import loaded, wait_for
from triage_tui import cli
from triage_tui.demo import server as demo_server
from triage_tui.domain import plan as P
from triage_tui.services.journal import AuditJournal
from triage_tui.tui.app import TriageApp
from triage_tui.tui.screens.confirm import ConfirmScreen
from triage_tui.tui.screens.plan import PlanScreen

KEY_BUDGET = 15


def play(app: TriageApp, seen: dict[str, Any]) -> None:
    async def go() -> None:
        keys: list[str] = []

        async def press(*ks: str) -> None:
            keys.extend(ks)
            await pilot.press(*ks)

        async def confirm(step: int) -> None:
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=30,
                           what=f"the confirmation of step {step}")
            req = app.screen.request
            seen.setdefault("titles", []).append(req.title)
            await pilot.pause(0.05)
            # at 80x24 the whole dialog is on screen: the typed box, the buttons and the keys line
            for part in ("#confirm-keys", "#confirm-buttons") + (("#confirm-typed",) if req.typed else ()):
                r = app.screen.query_one(part).region
                assert r.height > 0 and r.bottom <= 23, (part, r)
            await press(*(list(req.typed) + ["enter"] if req.typed is not None else ["y"]))

        started = time.monotonic()
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            await press("P")
            await wait_for(pilot, lambda: isinstance(app.screen, PlanScreen), what="the plan screen")
            screen = app.screen
            await wait_for(pilot, lambda: screen.plan is not None, timeout=30, what="the plan")
            plan = screen.plan
            seen["plan"] = plan
            seen["footer"] = str(screen.query_one("#plan-keys").render())
            await press("A")
            for i in range(1, len(plan.steps) + 1):
                await confirm(i)
            await wait_for(pilot, lambda: screen.finished, timeout=30, what="the steps")
            seen["status"] = screen.status_text
            await wait_for(pilot, lambda: (w := app.reingest_watch) is not None and w.finished, timeout=45,
                           what="mail_room to pick everything up")
            seen["watch"] = app.reingest_watch.status
            seen["pulse"] = " ".join(app.query_one("#pulse").text_lines())
            seen["seconds"] = time.monotonic() - started
            seen["keys"] = keys

    asyncio.run(go())


@pytest.fixture
def demo_run(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    servers: list[Any] = []
    real_start = demo_server.start_demo

    def start(*a: Any, **kw: Any) -> Any:
        s = real_start(*a, **kw)
        servers.append(s)
        return s

    def run(self: TriageApp, **_kw: Any) -> int:
        try:
            play(self, seen)
            seen["server_state"] = server_state(servers[0], seen["plan"])
        except BaseException as e:  # the CLI would turn it into an exit code: keep it for the test
            seen["error"] = e
            return 1
        return 0

    monkeypatch.setattr(demo_server, "start_demo", start)
    monkeypatch.setattr(TriageApp, "run", run)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setenv("TRIAGE_DEMO", "0")
    monkeypatch.setenv("TRIAGE_DEMO_IMAP_PASSWORD", "x")
    return seen


def server_state(demo: Any, plan: P.IncidentPlan) -> dict[str, Any]:
    """What the servers say, on connections of their own (while the demo still runs)."""
    c = imapclient.IMAPClient(demo_server.HOST, port=demo.imap.port, ssl=False)
    try:
        c.login(demo_server.DEMO_USER, demo_server.DEMO_PASSWORD)
        c.select_folder("INBOX", readonly=True)
        flags = {u: set(f[b"FLAGS"]) for u, f in c.fetch(c.search(["ALL"]), ["FLAGS"]).items()}
        unseen = set(c.search(["UNSEEN"]))
    finally:
        c.logout()
    return {"flags": flags, "unseen": unseen}


def test_the_demo_incident_in_at_most_15_keys(demo_run: dict[str, Any]) -> None:
    with contextlib.redirect_stderr(open(os.devnull, "w")):  # noqa: SIM115 - closed with the process
        code = cli.main(["demo"])  # the default demo: the README's numbers
    s = demo_run
    if "error" in s:
        raise s["error"]
    assert code == 0
    keys = s["keys"]
    print(f"\nthe demo incident in {len(keys)} keys: {' '.join(keys)} ({s['seconds']:.0f} s)")
    assert len(keys) <= KEY_BUDGET, keys
    # the README prints this very sequence near its top
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index(f"## The incident in {len(keys)} keys"):]
    printed = section.split("```")[1].split()
    typed = " ".join(keys).replace(" enter", " Enter")
    for count in re.findall(r"(?:\d )+(?=Enter)", typed):
        typed = typed.replace(count, "<count> ", 1)
    assert printed == typed.split(), (printed, keys)  # and the heading's N is len(keys) (found above)
    assert keys[:2] == ["P", "A"] and keys[2] == "y"
    assert "P plan · A apply" in s["footer"]
    plan: P.IncidentPlan = s["plan"]
    assert [st.action for st in plan.steps] == [P.IGNORE, P.UNSEE_RELEASE, P.RELEASE]
    assert s["status"].startswith("done:"), s["status"]
    st = s["watch"]
    assert st.done and not st.failed and st.remaining_unseen == 0
    assert "picked up" in s["pulse"]

    state = s["server_state"]
    flags = state["flags"]
    ignored = plan.steps[0].uids
    given = set(plan.steps[1].uids) | set(plan.steps[2].uids)
    # ignored: \Seen, never ingested (not \Deleted, still in the mailbox)
    assert all(b"\\Seen" in flags[u] and b"\\Deleted" not in flags[u] for u in ignored)
    # given to GitLab: picked up by mail_room (gone or \Deleted), none left UNSEEN
    assert not (given & state["unseen"])
    assert all(u not in flags or b"\\Deleted" in flags[u] for u in given)
    # what is left UNSEEN is only what the operator was asked to review
    review = {u for b in plan.buckets if b.action == P.REVIEW for u in b.uids}
    assert state["unseen"] <= review
    # the journal: one mark-seen op over exactly the ignored UIDs, and the released keys are exactly
    # mail_room's keys of the given UIDs (as many as the counts typed)
    records = list(AuditJournal().records())
    released = {k for r in records if r.get("phase") == "progress" and "keys" in r for k, _o, _n in r["keys"]}
    typed = sum(int(k) for k in "".join(keys[3:]).split("enter") if k)
    assert released and len(released) == typed
    assert released <= {f"{demo_server.KEY_PREFIX}delivered:{u}" for u in given}
