"""Duplicate Message-IDs: one verdict everywhere, checked on the real Dovecot.

A message is a duplicate when a copy with the same Message-ID and a lower UID is in the view: the
first delivered copy is the original (GitLab would process each copy; ignoring the later ones
leaves the original to be processed once). Before, four paths gave three answers for the same
mailbox: ``list --filter suspicious`` flagged the copy it met second, ``plan`` every copy,
``mark-seen --filter suspicious`` and the TUI none at all (so ``mark-seen --filter '!suspicious'``
marked what ``list --filter '!suspicious'`` had shown it would keep); a narrowed listing (a
filter pushed down to the server, ``--uids``) judged among what it listed only."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from tests.conftest import Mailbox
from tests.mailgen import addr, message
from triage_tui.domain.analysis import AnalysisConfig
from triage_tui.services.journal import AuditJournal
from triage_tui.services.triage import TriageService

ADDRESS = "incoming+%{key}@incoming.gitlab.example.com"
KEY = "group-project-42-glimt-abc123def-issue"
NOW = time.time()
DAY = 86_400.0


def _received_only(subject: str, mid: str) -> bytes:
    """A copy whose key only Received names: a listing sends it in its last batch."""
    return message(subject=subject, message_id=mid, to="list@lists.example.org",
                   raw_headers=f"Received: from mx.example.org by gitlab.example.com for <{addr(KEY)}>; "
                               "Mon, 2 Nov 2026 10:00:00 +0000\r\n".encode())


def _seed(mailbox: Mailbox) -> None:
    mailbox.seed([
        (_received_only("original", "<x@example.org>"), NOW - 3 * DAY, ""),   # 1: given last
        (message(subject="copy", message_id="<x@example.org>"), NOW - 600, ""),  # 2: a later copy
        (message(subject="other", message_id="<y@example.org>"), NOW - 500, ""),  # 3
        (message(subject="again", message_id="<x@example.org>"), NOW - 400, ""),  # 4: a later copy
        (message(subject="seen", message_id="<z@example.org>"), NOW - 300, "S"),  # 5: not in the view
        (message(subject="z unseen", message_id="<z@example.org>"), NOW - 200, ""),  # 6: first in the view
    ])


def _env(mailbox: Mailbox) -> dict[str, str]:
    return {**mailbox.env(), "TRIAGE_ADDRESS": ADDRESS}


def _listed(cli: Any, env: dict[str, str], *args: str) -> list[int]:
    r = cli(["list", "--json", *args], env=env)
    assert r.code == 0, r.err
    return [json.loads(line)["uid"] for line in r.lines]


def test_list_plan_and_mark_seen_agree_on_the_duplicates(mailbox: Mailbox, cli: Any) -> None:
    _seed(mailbox)
    env = _env(mailbox)
    r = cli(["list", "--json"], env=env)
    rows = {d["uid"]: d for d in map(json.loads, r.lines)}
    assert list(rows) == [2, 3, 4, 6, 1]  # the original, whose key only Received names, comes last
    assert [u for u, d in rows.items() if d["suspicious"]] == [2, 4]
    assert "same Message-ID as UID 1, delivered earlier" in rows[2]["suspicious_reason"]
    assert _listed(cli, env, "--filter", "suspicious") == [2, 4]
    assert _listed(cli, env, "--filter", "!suspicious") == [3, 6, 1]
    # narrowed on the server, the original would not be listed: the filter is not pushed down
    assert _listed(cli, env, "--filter", "age<1d suspicious") == [2, 4]
    assert _listed(cli, env, "--filter", "subject:again suspicious") == [4]
    plan = json.loads(cli(["plan", "--json"], env=env).out)
    buckets = {b["name"]: b["uids"] for b in plan["buckets"]}
    assert buckets["suspicious"] == "2,4"
    # an explicit UID set is judged in the whole view, as listed
    r = cli(["mark-seen", "--uids", "4", "--filter", "suspicious", "--yes"], env=env)
    assert r.code == 0, r.err
    assert mailbox.search("SEEN") == [4, 5]
    r = cli(["mark-seen", "--filter", "suspicious", "--yes"], env=env)
    assert r.code == 0, r.err
    assert mailbox.search("SEEN") == [2, 4, 5]  # the originals (1, 6) are left to be processed


def test_the_tui_flags_a_copy_that_arrives_during_the_session(mailbox: Mailbox) -> None:
    from tests.tui.conftest import loaded, wait_for
    from triage_tui.tui.app import TriageApp

    _seed(mailbox)
    svc = TriageService(mailbox.settings(), read_only=True, journal=AuditJournal(),
                        analysis=AnalysisConfig(address=ADDRESS), cache=None)

    async def run() -> dict[int, bool]:
        app = TriageApp(svc, watcher_factory=None)
        async with app.run_test() as pilot:
            await loaded(pilot)
            shown = {u: m.suspicious for u, m in app.model.messages.items()}
            assert shown == {1: False, 2: True, 3: False, 4: True, 6: False}
            c = mailbox.client()
            try:  # a third copy of <y>, and <x>'s original read by another client
                c.append("INBOX", message(subject="late copy", message_id="<y@example.org>"))
                c.select_folder("INBOX")
                c.add_flags([1], [b"\\Seen"])
            finally:
                c.logout()
            app.request_sync("test", force=True)
            await wait_for(pilot, lambda: 7 in app.model.messages and 1 not in app.model.messages,
                           what="the sync")
            await pilot.pause()
            # the filter and the verdict sort see the new verdicts
            return {u: m.suspicious for u, m in app.model.messages.items()}

    try:
        after = asyncio.run(run())
    finally:
        svc.close()
    # 7 is a copy of 3; with 1 gone, 2 is <x>'s first copy in the view and 4 a copy of it
    assert after == {2: False, 3: False, 4: True, 6: False, 7: True}
