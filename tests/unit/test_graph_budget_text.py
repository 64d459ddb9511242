"""Where a Graph plan's request budget is said (pure: plans built here, no server): the CLI's dry
run / confirmation gives it a line of its own after a UID list that can run to 200 characters,
release's un-see step says what it spends (CLI and the TUI's re-ingest screen share describe()),
and the incident plan's un-see-and-release confirmation says it briefly; IMAP plans unchanged."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from triage_tui.commands._flow import describe
from triage_tui.domain import plan as P
from triage_tui.services.incident import PreparedStep
from triage_tui.services.locks.release import ReleasePlan
from triage_tui.services.plan_types import Plan
from triage_tui.tui.controllers.incident import IncidentController

UIDS = list(range(1, 4000, 2))  # no two adjacent: the compressed UID list is as long as it gets


def graph_plan(action: str = "mark-seen") -> Plan:
    p = Plan(action=action, uidvalidity=7, uids=UIDS, requested=len(UIDS))
    p.budget = {"batches": 100, "requests": 2003, "patches": 2000}
    return p


def test_the_cli_gives_the_graph_budget_a_line_of_its_own_after_the_uids() -> None:
    lines = describe(graph_plan()).splitlines()
    uid_line = next(i for i, x in enumerate(lines) if x.startswith("UIDVALIDITY 7; UIDs "))
    assert lines[uid_line].endswith("...") and "Graph" not in lines[uid_line]
    assert lines[uid_line + 1] == ("Graph budget: 100 Graph $batch request(s), about 2,003 of the mailbox's "
                                   "~10,000 requests per 10 minutes (shared with mail_room)")
    imap = Plan(action="mark-seen", uidvalidity=7, uids=[1, 2, 3], requested=3)
    assert describe(imap).splitlines()[-1] == "UIDVALIDITY 7; UIDs 1:3; 1 IMAP command(s)"


def release_plan(mark: Plan | None) -> ReleasePlan:
    return ReleasePlan(uidvalidity=7, prefix="mail_room:gitlab:", redis="redis://localhost:6379", mode="ttl",
                       ttl_s=0, waves=1, wave_interval_s=30.0, selected=len(UIDS), targets=[], unlocked=UIDS,
                       not_unseen=[], measured_at_ms=0, mark_unseen=mark)


def test_release_says_what_its_un_see_step_spends_on_graph_only() -> None:
    lines = release_plan(graph_plan("mark-unseen")).describe()
    i = next(i for i, x in enumerate(lines) if x.startswith("step 1: remove \\Seen from 2000"))
    assert lines[i + 1].startswith("step 1 spends 100 Graph $batch request(s), about 2,003 of the mailbox's")
    imap = Plan(action="mark-unseen", uidvalidity=7, uids=[1, 2], requested=2)
    assert not any("spends" in x or "Graph" in x for x in release_plan(imap).describe())
    assert not any("spends" in x for x in release_plan(None).describe())


def test_the_incident_confirmation_of_an_un_see_step_says_the_budget_briefly() -> None:
    host = SimpleNamespace(clock=lambda: datetime(2026, 3, 1, tzinfo=UTC), size=SimpleNamespace(height=24))
    ctl = IncidentController(host)  # type: ignore[arg-type]
    step = P.Step(action=P.UNSEE_RELEASE, uids=tuple(UIDS), buckets=("seen-stuck",))
    req = ctl._request(1, PreparedStep(step, release=release_plan(graph_plan("mark-unseen"))))
    assert "Graph: 100 $batch request(s), ~2,003 of ~10,000 per 10 min" in req.lines
    assert all(len(x) <= 76 for x in req.lines[:2])  # fits the 80-column dialog without wrapping
    imap = Plan(action="mark-unseen", uidvalidity=7, uids=[1, 2], requested=2)
    req = ctl._request(1, PreparedStep(step, release=release_plan(imap)))
    assert not any("Graph" in x for x in req.lines)
