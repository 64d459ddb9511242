"""Provenance, against the real Dovecot: ignored is not stuck.

mark-seen stores ``$TriageIgnored`` next to \\Seen in the same STORE (checked on the server from
a separate connection), mark-unseen and undo take it off (an undo of a mark-unseen gives it back
exactly where it was), the views are exact (ignored vs seen-stuck vs deleted, with crash-trapped
\\Seen mail and \\Deleted mail of both kinds), read-only stores nothing, and a mailbox that
refuses keywords (simulated: Dovecot always allows them) falls back to the journal and says so.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.conftest import Mailbox
from tests.mailgen import backlog
from triage_tui.domain import uidset
from triage_tui.domain.model import TRIAGE_KEYWORD, View
from triage_tui.services.imap import MailboxInfo
from triage_tui.services.journal import AuditJournal
from triage_tui.services.triage import NO_KEYWORDS_NOTE

NOW = time.time()
K = TRIAGE_KEYWORD
SEEN, DELETED = "\\Seen", "\\Deleted"


def store(mb: Mailbox, uids: list[int], flags: list[bytes], add: bool = True) -> None:
    """Another client (mail_room, the old runbook) changes flags."""
    c = mb.client()
    try:
        c.select_folder("INBOX")
        (c.add_flags if add else c.remove_flags)(uids, flags, silent=True)
    finally:
        c.logout()


def listed(cli: Any, mb: Mailbox, view: str, *extra: str) -> tuple[list[int], list[dict[str, Any]], str]:
    r = cli([*extra, "list", "--view", view, "--json"], env=mb.env())
    assert r.code == 0, r.err
    rows = [json.loads(line) for line in r.lines]
    return [row["uid"] for row in rows], rows, r.err


def begins(action: str) -> list[dict[str, Any]]:
    return [r for r in AuditJournal().records() if r.get("phase") == "begin" and r.get("action") == action]


def mixed(mb: Mailbox) -> dict[str, list[int]]:
    """UIDs 1-12 unseen, 13-16 crash-trapped \\Seen (no keyword), 17-18 \\Seen\\Deleted; then
    triage-tui ignores 1-6, mail_room takes 5 (\\Deleted) and the old runbook's mark-seen on 7."""
    flags = [""] * 12 + ["S"] * 4 + ["ST"] * 2
    mb.seed([(raw, ts, f) for (raw, ts, _), f in zip(backlog(18, now=NOW), flags, strict=True)])
    return {"unseen": list(range(1, 13)), "stuck": [13, 14, 15, 16], "seen_deleted": [17, 18]}


def test_mark_seen_sets_the_keyword_in_the_same_store_and_journals_it(mailbox: Mailbox, cli: Any) -> None:
    mailbox.seed(backlog(10, now=NOW, seen_every=4))  # 1, 5, 9 \Seen already (crash-trapped)
    r = cli(["mark-seen", "--uids", "1:6", "--yes"], env=mailbox.env())
    assert r.code == 0, r.err
    flags = mailbox.flags()
    assert {u for u, f in flags.items() if K in f} == {2, 3, 4, 6}, flags  # what this change changed
    assert flags[1] == flags[5] == {SEEN}, "already \\Seen: not ours, left without the keyword"
    assert mailbox.search(f"KEYWORD {K}") == [2, 3, 4, 6]
    b = begins("mark-seen")[-1]
    assert b["keyword"] == K and "keyword_refused" not in b
    # the whole journal of the op: the keyword was set by the one STORE of \Seen
    end = [x for x in AuditJournal().records() if x.get("op") == b["op"] and x["phase"] == "end"][0]
    assert end["result"] == "ok" and uidset.parse(end["changed"]) == [2, 3, 4, 6]


def test_views_are_exact(mailbox: Mailbox, cli: Any) -> None:
    ids = mixed(mailbox)
    assert cli(["mark-seen", "--uids", "1:6", "--yes"], env=mailbox.env()).code == 0
    store(mailbox, [5], [b"\\Deleted"])  # mail_room took an ignored one: \Seen\Deleted + keyword
    store(mailbox, [7], [b"\\Seen"])  # the old runbook: \Seen, no keyword
    store(mailbox, [17], [K.encode()])  # a \Deleted one with our mark
    expected = {
        "unseen": [8, 9, 10, 11, 12],
        "ignored": [1, 2, 3, 4, 6],
        "seen-stuck": [7, *ids["stuck"]],
        "deleted": [5, 17, 18],
        "seen": [1, 2, 3, 4, 6, 7, *ids["stuck"]],
    }
    for view, uids in expected.items():
        got, _, err = listed(cli, mailbox, view)
        assert got == sorted(uids), (view, got)
        assert NO_KEYWORDS_NOTE not in err
        # the views are the server's own: the same as a SEARCH from a separate connection
        assert got == mailbox.search(View(view).search), view
    # check counts the same
    r = cli(["check", "--json", "--observe", "0"], env=mailbox.env())
    steps = {s["name"]: s for s in json.loads(r.out)["steps"]}
    assert steps["mailbox"]["ignored"] == 5 and steps["mailbox"]["seen_stuck"] == 5
    assert steps["keywords"]["status"] == "pass"


def test_mark_unseen_removes_the_keyword_and_undo_gives_it_back_exactly(mailbox: Mailbox, cli: Any) -> None:
    mixed(mailbox)
    assert cli(["mark-seen", "--uids", "1:4", "--yes"], env=mailbox.env()).code == 0
    before = mailbox.flags()
    # restore two ignored and two crash-trapped in one go; \Seen\Deleted stays
    r = cli(["mark-unseen", "--uids", "3,4,13,14,17", "--yes"], env=mailbox.env())
    assert r.code == 0, r.err
    after = mailbox.flags()
    for u in (3, 4, 13, 14):
        assert after[u] == set(), u
    assert after[17] == {SEEN, DELETED}, "\\Deleted mail is never un-seen"
    assert after[1] == after[2] == {SEEN, K}
    assert begins("mark-unseen")[-1]["had_keyword"] == "3:4"
    r = cli(["undo", "--yes"], env=mailbox.env())
    assert r.code == 0, r.err
    assert mailbox.flags() == before, "undo restores the ignore mark only where it was"
    # undo of the mark-seen: \Seen and the keyword go together; 3 and 4 changed since (the
    # mark-unseen and its undo), so undo leaves them alone, whole
    r = cli(["undo", "--yes"], env=mailbox.env())
    assert r.code == 0, r.err
    flags = mailbox.flags()
    assert flags[1] == flags[2] == set()
    assert flags[3] == flags[4] == {SEEN, K}
    assert [u for u, f in flags.items() if K in f] == [3, 4]


def test_mark_unseen_view_restricts(mailbox: Mailbox, cli: Any) -> None:
    mixed(mailbox)
    assert cli(["mark-seen", "--uids", "1:2", "--yes"], env=mailbox.env()).code == 0
    r = cli(["mark-unseen", "--view", "ignored", "--all", "--yes"], env=mailbox.env())
    assert r.code == 0, r.err
    assert mailbox.search("SEEN") == [13, 14, 15, 16, 17, 18] and mailbox.search(f"KEYWORD {K}") == []
    r = cli(["mark-unseen", "--view", "seen-stuck", "--uids", "13", "--yes"], env=mailbox.env())
    assert r.code == 0, r.err
    assert mailbox.search("SEEN") == [14, 15, 16, 17, 18]


def test_read_only_sets_nothing(mailbox: Mailbox, cli: Any) -> None:
    mixed(mailbox)
    before = mailbox.flags()
    for args in (["mark-seen", "--all", "--yes"], ["mark-unseen", "--all", "--yes"]):
        r = cli(["--read-only", *args], env=mailbox.env())
        assert r.code == 4, r
    got, _, _ = listed(cli, mailbox, "ignored", "--read-only")
    assert got == []
    assert mailbox.flags() == before
    assert mailbox.search(f"KEYWORD {K}") == []


@pytest.fixture
def no_keywords(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mailbox like Exchange's: SELECT's PERMANENTFLAGS without \\*."""
    monkeypatch.setattr(MailboxInfo, "keywords_allowed", property(lambda self: None if self.readonly else False))


def test_no_keywords_falls_back_to_the_journal_and_says_so(mailbox: Mailbox, cli: Any, no_keywords: None) -> None:
    mixed(mailbox)
    r = cli(["mark-seen", "--uids", "1:6", "--yes"], env=mailbox.env())
    assert r.code == 0, r.err
    assert mailbox.search(f"KEYWORD {K}") == [], "the mailbox refuses keywords: none was sent"
    assert mailbox.search("SEEN UNDELETED") == [1, 2, 3, 4, 5, 6, 13, 14, 15, 16]
    b = begins("mark-seen")[-1]
    assert b["keyword"] is None and b["keyword_refused"]
    store(mailbox, [6], [b"\\Deleted"])  # mail_room took one: no longer in any \Seen view
    got, rows, err = listed(cli, mailbox, "ignored")
    assert got == [1, 2, 3, 4, 5] and NO_KEYWORDS_NOTE in err
    got, _, err = listed(cli, mailbox, "seen-stuck")
    assert got == [13, 14, 15, 16] and NO_KEYWORDS_NOTE in err
    # un-seeing two leaves them out of ignored; the undo puts them back
    assert cli(["mark-unseen", "--uids", "2,3,14", "--yes"], env=mailbox.env()).code == 0
    assert listed(cli, mailbox, "ignored")[0] == [1, 4, 5]
    assert listed(cli, mailbox, "seen-stuck")[0] == [13, 15, 16]
    assert cli(["undo", "--yes"], env=mailbox.env()).code == 0
    assert listed(cli, mailbox, "ignored")[0] == [1, 2, 3, 4, 5]
    assert listed(cli, mailbox, "seen-stuck")[0] == [13, 14, 15, 16]
    # check says where the decisions live
    r = cli(["check", "--json", "--observe", "0"], env=mailbox.env())
    steps = {s["name"]: s for s in json.loads(r.out)["steps"]}
    assert steps["keywords"]["status"] == "warn" and NO_KEYWORDS_NOTE in steps["keywords"]["detail"]
    assert steps["mailbox"]["ignored"] == 5 and steps["mailbox"]["seen_stuck"] == 4
    # undo of the mark-seen: they leave the journal's ignored view, except 2 and 3 which changed
    # since (undo leaves them alone, still \Seen, still ignored)
    assert cli(["undo", "--yes"], env=mailbox.env()).code == 0
    assert listed(cli, mailbox, "ignored")[0] == [2, 3]
    assert mailbox.search("SEEN UNDELETED") == [2, 3, 13, 14, 15, 16]
