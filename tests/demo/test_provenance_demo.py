"""The README's recipe against the demo backlog: after ``o b S`` (stale and bots marked \\Seen)
the seen-stuck view still holds only the crash-trapped messages (45 in the default demo, not
1,114): what the operator decided against is in the ignored view. pymap (the demo's IMAP server)
does not announce ``\\*`` in PERMANENTFLAGS, so the demo runs on the journal fallback, and says so."""

from __future__ import annotations

from collections.abc import Iterator

import imapclient
import pytest

from triage_tui.demo.backlog import ADDRESS_TEMPLATE
from triage_tui.demo.server import DEMO_PASSWORD, DEMO_USER, HOST, DemoServers, start_demo
from triage_tui.domain.analysis import AnalysisConfig
from triage_tui.domain.model import TRIAGE_KEYWORD, View
from triage_tui.services.journal import AuditJournal
from triage_tui.services.triage import NO_KEYWORDS_NOTE, TriageService


@pytest.fixture
def demo() -> Iterator[DemoServers]:
    servers = start_demo()
    yield servers
    servers.stop()


def test_stale_and_bots_ignored_leave_seen_stuck_at_the_crash_trapped(demo: DemoServers) -> None:
    expected = demo.backlog.view_counts()
    svc = TriageService(demo.connection_settings(), read_only=False, journal=AuditJournal(),
                        analysis=AnalysisConfig(address=ADDRESS_TEMPLATE))
    try:
        before = svc.counts()
        assert before.seen_stuck == expected["seen-stuck"] and before.ignored == 0
        unseen = svc.list(View.UNSEEN)
        chosen = [m.uid for m in unseen if m.stale or m.bot]  # o b
        assert len(chosen) > 500
        plan = svc.plan_flags("mark-seen", before.uidvalidity, chosen)
        result = svc.execute(plan)  # S
        assert result.ok and len(result.changed) == len(chosen)
        after = svc.counts()
        assert after.seen_stuck == before.seen_stuck, "ignoring mail must not grow the seen-stuck view"
        assert after.ignored == len(chosen) and after.unseen == before.unseen - len(chosen)
        assert after.keyword_note == NO_KEYWORDS_NOTE  # pymap: the journal stands in for the keyword
        assert svc.search(View.IGNORED)[1] == sorted(chosen)
        svc_seen_stuck = svc.search(View.SEEN_STUCK)[1]
    finally:
        svc.close()
    # the server, on a separate connection: no \* in pymap's PERMANENTFLAGS, so no keyword was sent
    c = imapclient.IMAPClient(HOST, port=demo.imap.port, ssl=False)
    try:
        c.login(DEMO_USER, DEMO_PASSWORD)
        sel = c.select_folder("INBOX")
        assert b"\\*" not in sel[b"PERMANENTFLAGS"]
        assert c.search(["KEYWORD", TRIAGE_KEYWORD]) == []
        assert sorted(c.search(["SEEN", "UNDELETED"])) == sorted(chosen + svc_seen_stuck)
    finally:
        c.logout()
    if expected["seen-stuck"] == 45:  # the README's numbers (default demo)
        assert after.seen_stuck == 45
