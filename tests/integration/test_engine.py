"""The engine against a real Dovecot: every test checks the server's state afterwards through a
separate connection, never through our own code."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.mailgen import backlog, message
from tests.proxy import LatencyProxy
from tests.servers import PASSWORD
from triage_tui.domain.model import TRIAGE_KEYWORD, View
from triage_tui.errors import ReadOnlyRefused, UidValidityChanged
from triage_tui.services.imap import Limits
from triage_tui.services.journal import AuditJournal
from triage_tui.services.triage import TriageService

NOW = time.time()


def seeded(mailbox, n=20, **kw):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(n, now=NOW, **kw))
    return mailbox


def svc(mailbox, read_only=False, **kw):  # type: ignore[no-untyped-def]
    s = TriageService(mailbox.settings(), read_only=read_only, journal=AuditJournal(), **kw)
    s.connect()
    return s


# -- reading ---------------------------------------------------------------------------------


def test_list_views_and_fields(mailbox):  # type: ignore[no-untyped-def]
    seeded(mailbox, 20, seen_every=3, deleted_every=5)
    before = mailbox.flags()
    s = svc(mailbox)
    unseen = s.list(View.UNSEEN)
    stuck = s.list(View.SEEN_STUCK)
    deleted = s.list(View.DELETED)
    assert [m.uid for m in unseen] == mailbox.search("UNSEEN")
    assert [m.uid for m in stuck] == mailbox.search("SEEN UNDELETED")
    assert [m.uid for m in deleted] == mailbox.search("DELETED")
    m = unseen[0]
    assert m.subject.startswith("Message ") and m.from_addr == "alice@example.org"
    assert m.internaldate is not None and m.internaldate.tzinfo is not None
    assert abs(m.internaldate.timestamp() - (NOW - 20 * 60 + (m.uid - 1) * 60)) < 2
    assert m.uidvalidity == mailbox.uidvalidity()
    s.close()
    assert mailbox.flags() == before, "listing must not change any flag"


def test_list_streams_in_chunks(mailbox):  # type: ignore[no-untyped-def]
    seeded(mailbox, 50)
    s = svc(mailbox, limits=Limits(max_count=10, window=2))
    batches = list(s.iter_list(View.UNSEEN))
    assert len(batches) >= 5 and all(len(b) <= 10 for b in batches)
    assert [m.uid for b in batches for m in b] == list(range(1, 51))


def test_peek_never_sets_seen(mailbox):  # type: ignore[no-untyped-def]
    seeded(mailbox, 3)
    s = svc(mailbox)
    p = s.peek(2)
    assert b"Subject: Message 1" in p.header and "\\Seen" not in p.flags
    assert mailbox.flags()[2] == set()


def test_list_json_cli(mailbox, cli):  # type: ignore[no-untyped-def]
    seeded(mailbox, 5, seen_every=2)
    r = cli(["list", "--json"], env=mailbox.env())
    assert r.code == 0, r.err
    rows = [json.loads(line) for line in r.lines]
    assert [row["uid"] for row in rows] == mailbox.search("UNSEEN")
    for key in ("uid", "uidvalidity", "internaldate", "age_seconds", "from", "subject", "to", "flags", "size"):
        assert key in rows[0]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$", rows[0]["internaldate"])
    assert rows[0]["age_seconds"] > 0 and rows[0]["size"] > 0


def test_wire_traffic_only_peeks(mailbox, cli):  # type: ignore[no-untyped-def]
    """Everything that reads goes through a recording proxy: no BODY[ without PEEK, no RFC822 fetch,
    and the listing's FETCH commands grow with N/chunk, not with N."""
    seeded(mailbox, 120, seen_every=4)
    with LatencyProxy(mailbox.server.imap_port) as proxy:
        env = {**mailbox.env(), "TRIAGE_IMAP_PORT": str(proxy.port), "TRIAGE_IMAP_SECURITY": "none"}
        for args in (["list", "--json"], ["--chunk", "50", "list", "--view", "seen-stuck"], ["peek", "3"],
                     ["peek", "--json", "4"], ["--read-only", "mark-seen", "--all", "--dry-run"]):
            assert cli(args, env=env).code == 0
        cmds = [c.upper() for c in proxy.commands()]
    fetches = [c for c in cmds if b" FETCH " in c]
    assert fetches, "expected FETCH commands"
    for c in cmds:
        assert b"BODY[" not in c.replace(b"BODY.PEEK[", b""), c
        assert not re.search(rb"RFC822(?![.](SIZE|HEADER))", c), c
    assert all(b" EXAMINE " in c or b" SELECT " not in c for c in cmds), "reads must use EXAMINE"
    assert len([c for c in fetches if b"HEADER.FIELDS" in c]) <= 2 + 1  # 90 unseen in one chunk, 30 stuck in one


def test_fetch_refuses_non_peek_items(mailbox):  # type: ignore[no-untyped-def]
    seeded(mailbox, 1)
    s = svc(mailbox)
    with pytest.raises(ValueError):
        list(s.reader.fetch_stream([1], "UID BODY[]"))
    with pytest.raises(ValueError):
        list(s.reader.fetch_stream([1], "UID RFC822"))
    assert mailbox.flags()[1] == set()


# -- read-only ---------------------------------------------------------------------------------


def test_read_only_changes_nothing(mailbox, cli):  # type: ignore[no-untyped-def]
    seeded(mailbox, 12, seen_every=3, deleted_every=4)
    before = mailbox.flags()
    env = mailbox.env()
    for args in (["mark-seen", "--all", "--yes"], ["mark-unseen", "--all", "--yes"], ["expunge", "--yes"],
                 ["expunge", "--all-deleted", "--yes"], ["undo", "--yes"]):
        r = cli(["--read-only", *args], env=env)
        assert r.code == 4, (args, r.out, r.err)
        assert "read-only" in r.err or "nothing to undo" in r.err
        assert "Traceback" not in r.err
    s = svc(mailbox, read_only=True)
    plan = s.plan_flags("mark-seen", s.connect().uidvalidity, mailbox.search("UNSEEN"))
    with pytest.raises(ReadOnlyRefused):
        s.execute(plan)
    assert mailbox.flags() == before
    assert not AuditJournal().path.exists() or "mark-seen" not in AuditJournal().path.read_text()


# -- writing -----------------------------------------------------------------------------------


def test_mark_seen_exact_set_and_journal(mailbox, cli):  # type: ignore[no-untyped-def]
    seeded(mailbox, 30, seen_every=5)
    before = mailbox.flags()
    r = cli(["mark-seen", "--uids", "3:12,20,25", "--yes", "--json"], env=mailbox.env())
    assert r.code == 0, r.err
    out = json.loads(r.lines[-1])
    expected = {u for u in [*range(3, 13), 20, 25] if "\\Seen" not in before[u]}
    assert out["changed"] == len(expected)
    after = mailbox.flags()
    for uid, flags in after.items():
        if uid in expected:
            assert flags == before[uid] | {"\\Seen", TRIAGE_KEYWORD}  # the decision, in the same STORE
        else:
            assert flags == before[uid], uid
    recs = list(AuditJournal().records())
    assert [r["phase"] for r in recs if r["op"] == out["op"]][0] == "begin"
    end = [r for r in recs if r["phase"] == "end"][-1]
    assert end["result"] == "ok" and end["action"] == "mark-seen"
    assert end["uidvalidity"] == mailbox.uidvalidity() and end["user"] == mailbox.user
    assert PASSWORD not in AuditJournal().path.read_text()


def test_mark_seen_older_than(mailbox, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(10, now=time.time()))  # one per minute, ages 10m..1m (30 s either side of 330 s)
    r = cli(["mark-seen", "--older-than", "330s", "--yes"], env=mailbox.env())
    assert r.code == 0, r.err
    assert mailbox.search("SEEN") == [1, 2, 3, 4, 5]


def test_mark_unseen_only_seen_stuck_then_undo(mailbox, cli):  # type: ignore[no-untyped-def]
    seeded(mailbox, 12, seen_every=2, deleted_every=4)
    before = mailbox.flags()
    r = cli(["mark-unseen", "--all", "--yes"], env=mailbox.env())
    assert r.code == 0, r.err
    after = mailbox.flags()
    for uid in after:
        if before[uid] == {"\\Seen"}:
            assert after[uid] == set(), uid
        else:  # \Seen\Deleted must stay seen: un-seeing it would make mail_room ingest it twice
            assert after[uid] == before[uid], uid
    r = cli(["undo", "--yes"], env=mailbox.env())
    assert r.code == 0, r.err
    assert mailbox.flags() == before
    r = cli(["undo", "--yes"], env=mailbox.env())
    assert r.code == 4 and "nothing to undo" in r.err


def test_undo_reverts_exactly_what_changed(mailbox, cli):  # type: ignore[no-untyped-def]
    seeded(mailbox, 10, seen_every=3)
    before = mailbox.flags()
    assert cli(["mark-seen", "--all", "--yes"], env=mailbox.env()).code == 0
    assert all("\\Seen" in f for f in mailbox.flags().values())
    r = cli(["undo", "--dry-run"], env=mailbox.env())
    assert r.code == 0 and "dry run" in r.out
    assert cli(["undo", "--yes"], env=mailbox.env()).code == 0
    assert mailbox.flags() == before  # the originally seen ones stay seen


def test_undo_refused_after_uidvalidity_change(mailbox, cli):  # type: ignore[no-untyped-def]
    seeded(mailbox, 5)
    assert cli(["mark-seen", "--all", "--yes"], env=mailbox.env()).code == 0
    assert mailbox.server.doveadm("mailbox", "update", "-u", mailbox.user, "--uid-validity", "777",
                                  "INBOX").returncode == 0
    before = mailbox.flags()
    r = cli(["undo", "--yes"], env=mailbox.env())
    assert r.code == 4 and "UIDVALIDITY changed" in r.err
    assert mailbox.flags() == before


def test_uidvalidity_change_between_plan_and_execute(mailbox):  # type: ignore[no-untyped-def]
    seeded(mailbox, 5)
    s = svc(mailbox)
    plan = s.plan_flags("mark-seen", s.connect().uidvalidity, [1, 2, 3])
    assert mailbox.server.doveadm("mailbox", "update", "-u", mailbox.user, "--uid-validity", "4242",
                                  "INBOX").returncode == 0
    with pytest.raises(UidValidityChanged):
        s.execute(plan)
    assert mailbox.search("SEEN") == []


def test_uidvalidity_flag_mismatch_cli(mailbox, cli):  # type: ignore[no-untyped-def]
    seeded(mailbox, 3)
    r = cli(["mark-seen", "--uids", "1", "--uidvalidity", "1", "--yes"], env=mailbox.env())
    assert r.code == 4 and "UIDVALIDITY" in r.err
    assert mailbox.search("SEEN") == []


def test_mutation_needs_yes_without_tty(mailbox, cli):  # type: ignore[no-untyped-def]
    seeded(mailbox, 3)
    r = cli(["mark-seen", "--all"], env=mailbox.env())
    assert r.code == 4 and "--yes" in r.err
    r = cli(["mark-seen", "--all"], env=mailbox.env(), stdin="n\n", tty=True)
    assert r.code == 4
    assert mailbox.search("SEEN") == []
    r = cli(["mark-seen", "--all"], env=mailbox.env(), stdin="y\n", tty=True)
    assert r.code == 0 and mailbox.search("SEEN") == [1, 2, 3]


def test_mark_seen_requires_a_selector(mailbox, cli):  # type: ignore[no-untyped-def]
    seeded(mailbox, 2)
    r = cli(["mark-seen", "--yes"], env=mailbox.env())
    assert r.code == 2 and "--all" in r.err


def test_expunge_exact_set_keeps_other_deleted(mailbox, cli):  # type: ignore[no-untyped-def]
    seeded(mailbox, 20, deleted_every=2)  # odd UIDs \Deleted
    deleted = mailbox.search("DELETED")
    r = cli(["expunge", "--uids", "1:9", "--yes", "--json"], env=mailbox.env())
    assert r.code == 0, r.err
    remaining = set(mailbox.search("ALL"))
    assert remaining == set(range(1, 21)) - {1, 3, 5, 7, 9}
    assert set(mailbox.search("DELETED")) == set(deleted) - {1, 3, 5, 7, 9}


def test_expunge_typed_confirmation(mailbox, cli):  # type: ignore[no-untyped-def]
    seeded(mailbox, 6, deleted_every=2)
    r = cli(["expunge"], env=mailbox.env(), stdin="yes\n", tty=True)
    assert r.code == 4 and len(mailbox.search("ALL")) == 6  # "yes" is not the count
    r = cli(["expunge"], env=mailbox.env(), stdin="3\n", tty=True)
    assert r.code == 0, r.err
    assert mailbox.search("ALL") == [2, 4, 6]


def test_expunge_all_deleted_reports_others(mailbox, cli):  # type: ignore[no-untyped-def]
    seeded(mailbox, 10, deleted_every=3)
    r = cli(["expunge", "--all-deleted", "--dry-run"], env=mailbox.env())
    assert r.code == 0 and "plain EXPUNGE" in r.out
    r = cli(["expunge", "--all-deleted", "--yes", "--json"], env=mailbox.env())
    assert r.code == 0
    assert mailbox.search("DELETED") == [] and len(mailbox.search("ALL")) == 6


def test_small_chunks_many_commands_same_result(mailbox):  # type: ignore[no-untyped-def]
    seeded(mailbox, 200)
    s = svc(mailbox, limits=Limits(max_count=7, max_bytes=64, window=3))
    uids = [u for u in range(1, 201) if u % 3]
    plan = s.plan_flags("mark-seen", s.connect().uidvalidity, uids)
    assert plan.commands >= 20  # 134 UIDs, 7 per command
    res = s.execute(plan)
    assert res.ok and res.changed == uids
    assert mailbox.search("SEEN") == uids


# -- malformed mail ------------------------------------------------------------------------------


def test_malformed_mail_is_listed(mailbox, cli):  # type: ignore[no-untyped-def]
    msgs = [
        message(subject="caf\xe9 8-bit", raw_headers=b"X-Junk: \xff\xfe\x80 raw bytes\r\n"),
        message(subject="=?utf-8?B?broken===?= =?x-unknown?Q?hi?= =?utf-8?q?ok=C3?="),
        message(date="not a date at all"),
        message(date="Mon, 01 Jan 0001 00:00:00 +0000"),
        message(date="Fri, 31 Dec 9999 23:59:59 +1400"),
        b"Subject: no from, no date, no key\r\n\r\nbody\r\n",
        b"\r\n\r\nheaderless\r\n",
        b"From: \xc3\x28 <bad@utf8>\r\nSubject: \x1b]52;c;ZXZpbA==\x07 [bold red]x[/]\r\n\r\nb\r\n",
    ]
    mailbox.seed([(m, NOW - 3600, "") for m in msgs])
    r = cli(["list", "--json"], env=mailbox.env())
    assert r.code == 0, r.err
    rows = [json.loads(line) for line in r.lines]
    assert len(rows) == len(msgs)
    assert "\x1b" not in r.out and "\\u001b" in r.out  # escapes stay escaped in JSON
    r = cli(["list"], env=mailbox.env())
    assert r.code == 0 and "\x1b" not in r.out and "\\x1b]52" in r.out
    for uid in range(1, len(msgs) + 1):
        assert cli(["peek", str(uid)], env=mailbox.env()).code == 0
    assert mailbox.search("SEEN") == []


# -- errors: one line, exit code, no traceback ---------------------------------------------------


def _one_line(r):  # type: ignore[no-untyped-def]
    assert "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) == 1, r.err
    assert PASSWORD not in r.err + r.out


def test_wrong_password(mailbox, cli):  # type: ignore[no-untyped-def]
    r = cli(["list"], env={**mailbox.env(), "TRIAGE_IMAP_PASSWORD": "wrong"})
    assert r.code == 3 and "authentication failed" in r.err
    _one_line(r)


def test_unreachable_port(mailbox, cli):  # type: ignore[no-untyped-def]
    from tests.servers import free_port

    r = cli(["list"], env={**mailbox.env(), "TRIAGE_IMAP_PORT": str(free_port())})
    assert r.code == 3 and "refused" in r.err
    _one_line(r)


def test_missing_mailbox(mailbox, cli):  # type: ignore[no-untyped-def]
    seeded(mailbox, 1)
    r = cli(["--mailbox", "Nope", "list"], env=mailbox.env())
    assert r.code == 2 and "does not exist" in r.err
    _one_line(r)


def test_untrusted_certificate_refused_then_ca_file(mailbox, cli):  # type: ignore[no-untyped-def]
    seeded(mailbox, 1)
    env = {k: v for k, v in mailbox.env().items() if k != "TRIAGE_IMAP_CA_FILE"}
    r = cli(["list"], env=env)
    assert r.code == 3 and "certificate" in r.err
    _one_line(r)
    assert cli(["--insecure-skip-verify", "list"], env=env).code == 0
    assert cli(["list"], env=mailbox.env()).code == 0


def test_starttls(mailbox, cli):  # type: ignore[no-untyped-def]
    seeded(mailbox, 2)
    env = {**mailbox.env(), "TRIAGE_IMAP_PORT": str(mailbox.server.imap_port), "TRIAGE_IMAP_SECURITY": "starttls"}
    r = cli(["list", "--json"], env=env)
    assert r.code == 0, r.err
    s = TriageService(mailbox.settings(port=mailbox.server.imap_port, security="starttls"), read_only=True)
    s.connect()
    assert s.tls.version and s.tls.version.startswith("TLS") and s.tls.verified


def test_starttls_not_offered_is_refused(cli):  # type: ignore[no-untyped-def]
    from tests.servers import start_dovecot

    plain = start_dovecot(tls=False)
    try:
        user = plain.new_user()
        env = {"TRIAGE_IMAP_HOST": "127.0.0.1", "TRIAGE_IMAP_PORT": str(plain.imap_port), "TRIAGE_IMAP_USER": user,
               "TRIAGE_IMAP_PASSWORD": PASSWORD, "TRIAGE_IMAP_SECURITY": "starttls"}
        r = cli(["list"], env=env)
        assert r.code == 3 and "STARTTLS" in r.err
        _one_line(r)
        assert "Login" not in plain.log() or "user=<" + user not in plain.log()
    finally:
        plain.stop()


def test_plaintext_to_remote_host_refused(cli):  # type: ignore[no-untyped-def]
    env = {"TRIAGE_IMAP_HOST": "imap.example.invalid", "TRIAGE_IMAP_USER": "x", "TRIAGE_IMAP_PASSWORD": "y"}
    r = cli(["--security", "none", "list"], env=env)
    assert r.code == 4 and "plaintext" in r.err
    _one_line(r)


def test_usage_errors(cli):  # type: ignore[no-untyped-def]
    r = cli(["list"])
    assert r.code == 2 and "no IMAP host" in r.err
    r = cli(["mark-seen", "--older-than", "soon"], env={"TRIAGE_IMAP_HOST": "h", "TRIAGE_IMAP_USER": "u",
                                                        "TRIAGE_IMAP_PASSWORD": "p"})
    assert r.code in (2, 3)
    r = cli(["bogus-command"])
    assert r.code == 2
    _one_line(r)


def test_password_file_permissions(mailbox, cli, tmp_path):  # type: ignore[no-untyped-def]
    seeded(mailbox, 1)
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(0o644)
    env = {k: v for k, v in mailbox.env().items() if k != "TRIAGE_IMAP_PASSWORD"}
    r = cli(["--password-file", str(pw), "list"], env=env)
    assert r.code == 2 and "chmod 600" in r.err
    pw.chmod(0o600)
    assert cli(["--password-file", str(pw), "list"], env=env).code == 0


def test_two_pass_listing_with_keys_outside_to(mailbox):  # type: ignore[no-untyped-def]
    """Messages whose key GitLab could find in Received (or later headers) are fetched a second
    time with Received, after the first pass: more messages than one chunk, on one connection."""
    from triage_tui.domain.analysis import AnalysisConfig

    now = time.time()
    key = "0123456789abcdef" * 2
    msgs = []
    for i in range(250):
        if i % 3 == 0:  # key only in Cc
            raw = message(subject=f"m{i}", to="b@example.com", extra={"Cc": f"incoming+{key}@example.com"})
        elif i % 3 == 1:  # key only in Received "for <...>"
            raw = message(subject=f"m{i}", to="b@example.com",
                          extra={"Received": f"from x by y with ESMTPS for <incoming+{key}@example.com>; "
                                             "Sat, 21 Nov 2026 10:00:00 +0000"})
        else:
            raw = message(subject=f"m{i}", to=f"incoming+{key}@example.com")
        msgs.append((raw, now - 60, ""))
    mailbox.seed(msgs)
    s = svc(mailbox, limits=Limits(max_count=40, window=4),
            analysis=AnalysisConfig(address="incoming+%{key}@example.com"))
    listed = s.list(View.UNSEEN)
    assert sorted(m.uid for m in listed) == list(range(1, 251))
    by_uid = {m.uid: m for m in listed}
    for uid, m in by_uid.items():
        i = uid - 1
        assert m.kind == "reply", (uid, m.kind, m.matched_header)
        assert m.matched_header.lower() == ("cc", "received", "to")[i % 3], (uid, m.matched_header)
