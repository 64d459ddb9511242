"""Undo is exact and says so, against the real Dovecot.

``mark-seen`` marks UNSEEN messages whether or not they are \\Deleted; ``undo`` restores exactly
what is unchanged since our change (UNCHANGEDSINCE the MODSEQ the server gave it), so a message
that *was* \\Deleted before is restored, and one that *became* \\Deleted (mail_room took it) or was
otherwise changed since is left alone and named, with the reason, in the CLI output, ``--json``,
the journal and the plan. Also: a damaged or wrongly typed journal record is refused in one
line, never an internal error; ``expunge --all-deleted`` takes no selector; a plain EXPUNGE is
refused when more messages are \\Deleted than the count the operator confirmed.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.conftest import Mailbox
from tests.mailgen import backlog
from triage_tui.domain import uidset
from triage_tui.domain.model import TRIAGE_KEYWORD
from triage_tui.services.journal import AuditJournal, default_path
from triage_tui.services.triage import LEFT_CHANGED, LEFT_GONE, LEFT_NO_MODSEQ_DELETED, REINGEST_WARNING

NOW = time.time()


def store(mb: Mailbox, uids: list[int], flag: bytes, add: bool = True) -> None:
    """Another client (mail_room, a person) changes flags."""
    c = mb.client()
    try:
        c.select_folder("INBOX")
        (c.add_flags if add else c.remove_flags)(uids, [flag], silent=True)
    finally:
        c.logout()


def expunge_uids(mb: Mailbox, uids: list[int]) -> None:
    c = mb.client()
    try:
        c.select_folder("INBOX")
        c.uid_expunge(uids)
    finally:
        c.logout()


def ends(action: str) -> list[dict[str, Any]]:
    return [r for r in AuditJournal().records() if r.get("phase") == "end" and r.get("action") == action]


def test_undo_restores_was_deleted_and_names_what_became_deleted(mailbox: Mailbox, cli: Any) -> None:
    """The reported bug: 40 UNSEEN messages, 8 of them already \\Deleted. mark-seen marks all 40.
    Then mail_room takes 3 (\\Seen is already set, it flags them \\Deleted), someone un-sees 2 and
    one is expunged. undo restores the other 34, the 8 that were \\Deleted before included, and
    names the 6 it leaves alone, by reason."""
    mailbox.seed(backlog(40, now=NOW, deleted_every=5))  # UIDs 1, 6, 11, ... 36: \Deleted, unseen
    was_deleted = mailbox.search("DELETED")
    assert len(was_deleted) == 8 and mailbox.search("SEEN") == []
    r = cli(["mark-seen", "--all", "--yes"], env=mailbox.env())
    assert r.code == 0, r.err
    assert mailbox.search("UNSEEN") == []
    became_deleted, unseen_by_other, expunged = [2, 3, 4], [19, 20], [30]
    store(mailbox, became_deleted, b"\\Deleted")
    store(mailbox, unseen_by_other, b"\\Seen", add=False)
    store(mailbox, expunged, b"\\Deleted")  # as mail_room would
    expunge_uids(mailbox, expunged)
    before = mailbox.flags()

    dry = cli(["undo", "--dry-run"], env=mailbox.env())
    assert dry.code == 0, dry.err
    assert f"will leave 5 alone: {LEFT_CHANGED} (UIDs 2:4,19:20)" in dry.out, dry.out
    assert f"will leave 1 alone: {LEFT_GONE} (UIDs 30)" in dry.out, dry.out
    assert REINGEST_WARNING in dry.out
    assert mailbox.flags() == before, "a dry run changed something"

    r = cli(["undo", "--yes"], env=mailbox.env())
    assert r.code == 0, r.err
    assert "undo: 34 of 40 restored" in r.out, r.out
    assert f"left 5 alone: {LEFT_CHANGED} (UIDs 2:4,19:20)" in r.out
    assert f"left 1 alone: {LEFT_GONE} (UIDs 30)" in r.out
    after = mailbox.flags()
    restored = sorted(set(range(1, 41)) - {2, 3, 4, 19, 20, 30})
    for uid in restored:
        assert "\\Seen" not in after[uid], uid
    for uid in was_deleted:
        assert after[uid] == {"\\Deleted"}, f"UID {uid} was \\Deleted before mark-seen: restored to unseen"
    for uid in became_deleted:
        # left alone whole: mail_room's message stays \\Seen (and keeps our keyword)
        assert after[uid] == {"\\Seen", "\\Deleted", TRIAGE_KEYWORD}, "mail_room's message must stay \\Seen"
    for uid in unseen_by_other:  # left alone whole: another client's -FLAGS \Seen left our keyword on
        assert after[uid] == {TRIAGE_KEYWORD}
    # the journal's end record says the same
    end = ends("undo")[-1]
    assert end["result"] == "ok" and uidset.parse(end["changed"]) == restored
    left = {x["reason"]: x for x in end["left_alone"]}
    assert left[LEFT_CHANGED]["uids"] == "2:4,19:20" and left[LEFT_CHANGED]["count"] == 5
    assert left[LEFT_GONE]["uids"] == "30"
    r = cli(["undo", "--yes"], env=mailbox.env())
    assert r.code == 4 and "nothing to undo" in r.err


def test_undo_json_names_what_it_leaves(mailbox: Mailbox, cli: Any) -> None:
    mailbox.seed(backlog(10, now=NOW))
    assert cli(["mark-seen", "--all", "--yes"], env=mailbox.env()).code == 0
    store(mailbox, [5], b"\\Flagged")  # any change counts: a person flagged it
    r = cli(["undo", "--yes", "--json"], env=mailbox.env())
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["changed"] == 9 and out["requested"] == 10
    assert out["left_alone"] == [{"reason": LEFT_CHANGED, "count": 1, "uids": "5"}]
    assert mailbox.search("SEEN") == [5]


def test_change_between_plan_and_undo_is_left_alone_by_the_server(mailbox: Mailbox) -> None:
    """What another client changes after the plan is caught by UNCHANGEDSINCE on the server."""
    from triage_tui.services.triage import TriageService

    mailbox.seed(backlog(12, now=NOW))
    s = TriageService(mailbox.settings(), read_only=False, journal=AuditJournal())
    try:
        uv, unseen = s.search("unseen")
        s.execute(s.plan_flags("mark-seen", uv, unseen))
        plan, _ = s.plan_undo()
        assert plan.uids == list(range(1, 13)) and plan.left_alone == []
        store(mailbox, [7, 8], b"\\Deleted")  # mail_room takes two while the operator reads the plan
        res = s.execute(plan)
    finally:
        s.close()
    assert res.changed == [u for u in range(1, 13) if u not in (7, 8)]
    assert res.left_alone == [(LEFT_CHANGED, [7, 8])]
    assert mailbox.search("SEEN") == [7, 8]


def test_undo_of_mark_unseen_restores_seen_exactly(mailbox: Mailbox, cli: Any) -> None:
    mailbox.seed(backlog(8, now=NOW, seen_every=1))  # all \Seen
    assert cli(["mark-unseen", "--all", "--yes"], env=mailbox.env()).code == 0
    assert mailbox.search("SEEN") == []
    store(mailbox, [3], b"\\Seen")  # mail_room fetched one meanwhile
    r = cli(["undo", "--yes"], env=mailbox.env())
    assert r.code == 0, r.err
    assert mailbox.search("SEEN") == list(range(1, 9))
    assert f"left 1 alone: {LEFT_CHANGED} (UIDs 3)" in r.out
    assert REINGEST_WARNING not in r.out  # re-seeing ingests nothing


# -- damaged records ------------------------------------------------------------------------------

def _record(mb: Mailbox, *, legacy: bool = False, **over: Any) -> None:
    """An end record; ``legacy``: as a version before records carried a CRC wrote it (and
    before every chunk was journaled)."""
    s = mb.settings()
    rec = {"phase": "end", "op": "0123456789abcdef", "action": "mark-seen", "server": s.server, "user": s.user,
           "mailbox": "INBOX", "uidvalidity": mb.uidvalidity(), "changed": "1:3", "changed_count": 3,
           "result": "ok"}
    rec.update(over)
    rec = {k: v for k, v in rec.items() if v is not ...}
    if not legacy:
        AuditJournal().append(rec)
        return
    path = default_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps({"time": "2026-01-01T00:00:00.000+00:00", **rec}) + "\n")


@pytest.mark.parametrize(("over", "why"), [
    ({"changed": "1:abc"}, "changed is not a UID set"),
    ({"changed": 5}, "changed is not a UID set"),
    ({"changed": ["1", "2"]}, "changed is not a UID set"),
    ({"changed": "0:3"}, "outside 1..4294967295"),
    ({"changed": "1:4294967296"}, "outside"),
    ({"changed": "1:99999999"}, "names more than"),
    ({"changed": "1:3,\u202e5"}, "changed is not a UID set"),
    ({"uidvalidity": "abc"}, "uidvalidity is not a number"),
    ({"uidvalidity": -5}, "uidvalidity is not a number"),
    ({"uidvalidity": True}, "uidvalidity is not a number"),
    ({"uidvalidity": 1.5}, "uidvalidity is not a number"),
    ({"uidvalidity": ...}, "uidvalidity is not a number"),
    ({"op": "\x1b]52;c;ZWNobw==\x07"}, "op is not an operation id"),
    ({"op": 7}, "op is not an operation id"),
])
def test_undo_refuses_a_damaged_record_in_one_line(mailbox: Mailbox, cli: Any, over: dict[str, Any],
                                                   why: str) -> None:
    mailbox.seed(backlog(3, now=NOW, seen_every=1))
    before = mailbox.flags()
    _record(mailbox, **over)
    r = cli(["undo", "--yes"], env=mailbox.env())
    assert r.code in (4,), (r.code, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and why in lines[0] and "nothing was changed" in lines[0], r.err
    assert "internal error" not in r.err and "\x1b" not in r.err and "\u202e" not in r.err
    assert mailbox.flags() == before


def test_undo_refuses_damaged_chunk_records(mailbox: Mailbox, cli: Any) -> None:
    mailbox.seed(backlog(3, now=NOW, seen_every=1))
    s = mailbox.settings()
    base = {"op": "00000000000000aa", "action": "mark-seen", "server": s.server, "user": s.user, "mailbox": "INBOX"}
    j = AuditJournal()
    j.append({**base, "phase": "begin", "uidvalidity": mailbox.uidvalidity()})
    j.append({**base, "phase": "progress", "done": "1:3", "count": 3, "modseq": "NaN"})
    r = cli(["undo", "--yes"], env=mailbox.env())
    assert r.code == 4 and "modseq is not a positive number" in r.err and "internal error" not in r.err
    assert mailbox.search("SEEN") == [1, 2, 3]


def test_an_end_that_changed_something_but_not_what_is_refused(mailbox: Mailbox, cli: Any) -> None:
    mailbox.seed(backlog(3, now=NOW, seen_every=1))
    _record(mailbox, changed=...)
    r = cli(["undo", "--yes"], env=mailbox.env())
    assert r.code == 4 and "changed is missing" in r.err, r.err
    assert mailbox.search("SEEN") == [1, 2, 3]


def test_a_done_record_of_the_wrong_type_is_refused(mailbox: Mailbox, cli: Any) -> None:
    mailbox.seed(backlog(3, now=NOW, seen_every=1))
    s = mailbox.settings()
    base = {"op": "00000000000000bb", "action": "mark-seen", "server": s.server, "user": s.user, "mailbox": "INBOX"}
    j = AuditJournal()
    j.append({**base, "phase": "begin", "uidvalidity": mailbox.uidvalidity()})
    j.append({**base, "phase": "progress", "done": "1:2", "count": 2, "modseq": 3})
    j.append({**base, "phase": "progress", "done": [3], "count": 1, "modseq": 4})
    r = cli(["undo", "--yes"], env=mailbox.env())
    assert r.code == 4 and "is not a UID set" in r.err and "internal error" not in r.err, r.err
    assert mailbox.search("SEEN") == [1, 2, 3]


def test_a_journal_without_modseq_leaves_deleted_messages_alone_and_says_why(mailbox: Mailbox, cli: Any) -> None:
    """A record from before MODSEQs were journaled: whether a \\Deleted message was \\Deleted
    before our change can not be told, so it stays \\Seen, named with that reason."""
    mailbox.seed(backlog(6, now=NOW, seen_every=1, deleted_every=3))  # 1 and 4 \Seen \Deleted
    _record(mailbox, changed="1:6", legacy=True)
    r = cli(["undo", "--yes", "--json"], env=mailbox.env())
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["changed"] == 4
    assert out["left_alone"] == [{"reason": LEFT_NO_MODSEQ_DELETED, "count": 2, "uids": "1,4"}]
    assert mailbox.search("SEEN") == [1, 4]


def test_a_record_of_another_mailbox_is_never_undone_here(mailbox: Mailbox, cli: Any) -> None:
    mailbox.seed(backlog(3, now=NOW, seen_every=1))
    _record(mailbox, mailbox="Archive")
    _record(mailbox, mailbox=["INBOX"])
    _record(mailbox, user="someone-else")
    r = cli(["undo", "--yes"], env=mailbox.env())
    assert r.code == 4 and "nothing to undo" in r.err
    assert mailbox.search("SEEN") == [1, 2, 3]


def test_undo_skips_torn_lines_with_a_note(mailbox: Mailbox, cli: Any) -> None:
    mailbox.seed(backlog(4, now=NOW))
    assert cli(["mark-seen", "--all", "--yes"], env=mailbox.env()).code == 0
    path = AuditJournal().path
    with path.open("ab") as f:
        f.write(b'{"phase": "end", "op": "ffff", "act')  # a torn tail
    r = cli(["undo", "--dry-run"], env=mailbox.env())
    assert r.code == 0, r.err
    assert "1 damaged line(s) (torn, or changed on disk), skipped" in r.out
    assert cli(["undo", "--yes"], env=mailbox.env()).code == 0  # the append fences the torn line
    assert mailbox.search("SEEN") == []
    text = path.read_bytes()
    assert b'"act#\n{' in text and b'"phase": "fence"' in text


# -- expunge ----------------------------------------------------------------------------------------

def test_expunge_all_deleted_with_a_selector_is_a_usage_error(mailbox: Mailbox, cli: Any) -> None:
    mailbox.seed(backlog(20, now=NOW, deleted_every=1))
    for extra in (["--uids", "3"], ["--older-than", "1m"], ["--filter", "subject:x"], ["--bots"], ["--stale"]):
        r = cli(["expunge", "--all-deleted", *extra, "--yes"], env=mailbox.env())
        assert r.code == 2, (extra, r.err)
        assert "--all-deleted" in r.err and "drop --all-deleted" in r.err and extra[0] in r.err
        assert len(mailbox.search("ALL")) == 20
    r = cli(["expunge", "--uids", "3", "--yes"], env=mailbox.env())  # what the operator meant
    assert r.code == 0 and len(mailbox.search("ALL")) == 19 and 3 not in mailbox.search("ALL")


def _flag_more_then_confirm(monkeypatch: pytest.MonkeyPatch, mailbox: Mailbox, more: list[int]) -> None:
    """While the typed confirmation waits, another client flags more messages \\Deleted."""
    from triage_tui.context import Context

    original = Context.confirm

    def confirm(self: Context, question: str, *, yes: bool, typed: str | None = None) -> None:
        store(mailbox, more, b"\\Deleted")
        original(self, question, yes=yes, typed=typed)

    monkeypatch.setattr(Context, "confirm", confirm)


def test_plain_expunge_refused_when_the_set_grew_after_the_typed_count(mailbox: Mailbox, cli: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    mailbox.seed(backlog(40, now=NOW))
    store(mailbox, list(range(1, 21)), b"\\Deleted")
    _flag_more_then_confirm(monkeypatch, mailbox, list(range(21, 36)))
    r = cli(["expunge", "--all-deleted"], env=mailbox.env(), stdin="20\n", tty=True)
    assert r.code == 4, (r.code, r.out, r.err)
    assert "15 more message(s) were flagged \\Deleted since the plan (UIDs 21:35)" in r.err
    assert "nothing was expunged" in r.err
    assert len(mailbox.search("ALL")) == 40, "nothing may be expunged"


def test_exact_expunge_removes_only_the_confirmed_count(mailbox: Mailbox, cli: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    mailbox.seed(backlog(40, now=NOW))
    store(mailbox, list(range(1, 21)), b"\\Deleted")
    _flag_more_then_confirm(monkeypatch, mailbox, list(range(21, 36)))
    r = cli(["expunge"], env=mailbox.env(), stdin="20\n", tty=True)
    assert r.code == 0, r.err
    assert mailbox.search("ALL") == list(range(21, 41)), "only the 20 confirmed are gone"
    assert mailbox.search("DELETED") == list(range(21, 36))


def test_an_unreadable_journal_is_one_line(mailbox: Mailbox, cli: Any) -> None:
    mailbox.seed(backlog(2, now=NOW))
    AuditJournal().path.mkdir(parents=True)  # something that is not a file where the journal should be
    r = cli(["undo", "--yes"], env=mailbox.env())
    assert r.code == 1 and "the audit journal" in r.err and "can not be read (Is a directory)" in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1
    r = cli(["mark-seen", "--all", "--yes"], env=mailbox.env())  # no journal, no change
    assert r.code == 1 and "could not be written (Is a directory); nothing was sent" in r.err, r.err
    assert mailbox.search("SEEN") == []
