"""Guarantee 1 of issue 11 against a real Dovecot: hostile messages among normal ones cost only
their own row. ``list --json`` lists every message with the right problems, plain ``list`` and a
filter still work, ``peek`` works on each one (text and JSON), and nothing changed a flag."""

from __future__ import annotations

import json
import time

from tests.mailgen import ADDRESS, addr, message

NOW = time.time()
KEY = "grp-proj-42-glimt-tok-issue"


def _hostile() -> list[tuple[str, bytes]]:
    """(what, raw message), in UID order."""
    return [
        ("normal", message(subject="Normal one", key=KEY, date=NOW - 7200)),
        ("date +2400", message(subject="Date +2400", key=KEY, date="Mon, 9 Mar 2026 10:00:00 +2400")),
        ("received +9999", message(subject="Received +9999", key=KEY, date=NOW - 7200, extra=[
            ("Received", "from a.example by mx.example with ESMTPS; Mon, 9 Mar 2026 10:00:05 +9999"),
            ("Received", "from b.example by a.example with ESMTPS; Mon, 9 Mar 2026 10:00:00 +0000")])),
        ("impersonating From", message(subject="Your pull request was merged", key=KEY, date=NOW - 7200,
                                        from_="noreply@github.com <attacker@evil.example>")),
        ("NUL and 8-bit", message(subject="x", key=KEY, date=NOW - 7200).replace(
            b"Subject: x", b"Subject: NUL\x00here \xff\xfe =?zlib?B?eJwLSS0uAQAEKgHe?= =?idna?Q?x?=").replace(
            b"From: Alice Example", b"From: \xe9\x00ve")),
        ("date -9999 and year 0", message(subject="Date -9999", key=KEY, date="Mon, 1 Jan 0 00:00:00 -9999")),
        ("year 9999", message(subject="Year 9999", key=KEY, date="Fri, 31 Dec 9999 23:59:59 -1200")),
        ("normal 2", message(subject="Normal two", key=KEY, date=NOW - 60)),
    ]


def test_hostile_messages_cost_only_their_own_row(mailbox, cli):  # type: ignore[no-untyped-def]
    msgs = _hostile()
    mailbox.seed([(raw, time.time() - 3600 + i, "") for i, (_, raw) in enumerate(msgs)])  # not NOW: the suite may be slow
    before = mailbox.flags()
    env = {**mailbox.env(), "TRIAGE_ADDRESS": ADDRESS}

    r = cli(["list", "--json"], env=env)
    assert r.code == 0, r.err
    rows = {row["uid"]: row for row in map(json.loads, r.lines)}
    assert sorted(rows) == mailbox.search("UNSEEN") == list(range(1, len(msgs) + 1))
    problems = {uid: row["problems"] for uid, row in rows.items()}
    assert problems == {
        1: [], 2: ["unparseable Date: Mon, 9 Mar 2026 10:00:00 +2400"], 3: [], 4: [], 5: [],
        6: ["unparseable Date: Mon, 1 Jan 0 00:00:00 -9999"],
        7: ["implausible Date: Fri, 31 Dec 9999 23:59:59 -1200 (age counts from delivery)"], 8: [],
    }
    for row in rows.values():  # every row keeps what could be read: key, handler, age
        assert row["kind"] == "new_issue" and row["project_id"] == 42 and row["to"] == addr(KEY)
        assert 3500 < row["age_seconds"] < 3700
    imp = rows[4]
    assert imp["from"] == "noreply@github.com <attacker@evil.example>" and imp["from_addr"] == "attacker@evil.example"
    assert imp["suspicious"] and not imp["bot"]
    assert imp["suspicious_reason"].startswith("display name impersonates noreply@github.com")
    assert "here ÿþ x" in rows[5]["subject"] and rows[5]["from_addr"] == "alice@example.org"  # Dovecot: NUL -> 0x80
    assert rows[7]["date"] == "9999-12-31T23:59:59-12:00"

    r = cli(["list"], env=env)
    assert r.code == 0, r.err
    lines = {int(line.split()[0]): line for line in r.lines[1:]}
    assert sorted(lines) == list(range(1, len(msgs) + 1))
    for uid in (2, 6, 7):
        assert lines[uid].split()[2].endswith("~"), lines[uid]
    assert lines[4].split()[2] == "..!..", lines[4]
    assert "attacker@evil.example" in lines[4] and "github" not in lines[4].split("new_issue")[0]

    r = cli(["list", "--json", "--filter", "suspicious or subject:Date"], env=env)
    assert r.code == 0, r.err
    assert [json.loads(line)["uid"] for line in r.lines] == [2, 4, 6]

    for uid, (what, _) in enumerate(msgs, start=1):
        r = cli(["peek", str(uid)], env=env)
        assert r.code == 0 and "internal error" not in r.err, (what, r.err)
        assert "GitLab key: new_issue  project 42" in r.out, what
        rj = cli(["peek", "--json", str(uid)], env=env)
        assert rj.code == 0, (what, rj.err)
        analysis = json.loads(rj.out)["analysis"]
        assert analysis["classification"]["problems"] == problems[uid], what
    r = cli(["peek", "2"], env=env)
    assert "Problems: unparseable Date: Mon, 9 Mar 2026 10:00:00 +2400" in r.out
    r = cli(["peek", "3"], env=env)
    assert "Warning: hop 2: unparseable date Mon, 9 Mar 2026 10:00:05 +9999" in r.out
    r = cli(["peek", "4"], env=env)
    assert "suspicious: display name impersonates noreply@github.com" in r.out

    assert mailbox.flags() == before, "listing and peeking must not change any flag"
