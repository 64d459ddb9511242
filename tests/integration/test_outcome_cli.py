"""GitLab's verdict against the real Dovecot (list --json, peek) and the re-ingest selection
against the real Redis: stale mail GitLab would reject or drop keeps its lock unless asked."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.integration.test_locks import redis_env
from tests.mailgen import ADDRESS, addr, message
from triage_tui.services.consumer import ConsumerOptions, MailRoomConsumer

NOW = time.time()
DAY = 86400.0
HEX = "0123456789abcdef0123456789abcdef"
PREFIX = "mail_room:gitlab:"


def seed_mix(mailbox: Any) -> None:
    """UIDs: 1 auto-reply, 2 no key, 3 new issue, 4 reply (fresh); 5 no key, 6 auto-reply,
    7 new issue (three weeks old)."""
    old = NOW - 21 * DAY
    mailbox.seed([
        (message(subject="Out of office", extra={"Auto-Submitted": "auto-replied"}, date=NOW - 60), NOW - 60, ""),
        (message(subject="Hello?", key=None, date=NOW - 60), NOW - 60, ""),
        (message(subject="New bug", date=NOW - 60), NOW - 60, ""),
        (message(subject="Re: bug", to=addr(HEX), key=None, date=NOW - 60), NOW - 60, ""),
        (message(subject="old junk", key=None, date=old), old, ""),
        (message(subject="old auto", extra={"X-Autoreply": "yes"}, date=old), old, ""),
        (message(subject="old issue", date=old), old, ""),
    ])


def test_list_json_has_gitlabs_verdict_for_a_seeded_mix(mailbox, cli):  # type: ignore[no-untyped-def]
    seed_mix(mailbox)
    env = {**mailbox.env(), "TRIAGE_ADDRESS": ADDRESS}
    r = cli(["list", "--json"], env=env)
    assert r.code == 0, r.err
    rows = {d["uid"]: d for d in map(json.loads, r.out.splitlines())}
    got = {u: (d["gitlab_outcome"], d["gitlab_handler"]) for u, d in rows.items()}
    assert got == {1: ("dropped", None), 2: ("rejected", None), 3: ("handled", "create_issue"),
                   4: ("handled", "create_note"), 5: ("rejected", None), 6: ("dropped", None),
                   7: ("handled", "create_issue")}
    assert "Auto-Submitted: auto-replied" in rows[1]["gitlab_outcome_reason"]
    assert "writes to the sender" in rows[2]["gitlab_outcome_reason"]
    assert rows[3]["gitlab_needs_db"] is True
    # the filter language, locally (the server cannot evaluate it)
    r = cli(["list", "--json", "--filter", "outcome:rejected"], env=env)
    assert [json.loads(x)["uid"] for x in r.out.splitlines()] == [2, 5]
    r = cli(["list", "--json", "--filter", "outcome:dropped stale"], env=env)
    assert [json.loads(x)["uid"] for x in r.out.splitlines()] == [6]
    # peek: the same verdict, from the full header
    r = cli(["peek", "2"], env=env)
    assert r.code == 0 and "GitLab's verdict if re-ingested: ↩ rejected" in r.out
    r = cli(["peek", "--json", "3"], env=env)
    c = json.loads(r.out)["analysis"]["classification"]
    assert (c["gitlab_outcome"], c["gitlab_handler"]) == ("handled", "create_issue")
    # flags untouched: everything still UNSEEN
    assert mailbox.search("UNSEEN") == list(range(1, 8))


def test_release_leaves_stale_junk_locked_unless_asked(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    seed_mix(mailbox)
    dead = MailRoomConsumer(mailbox.settings(), redis_client, ConsumerOptions(name="dead"))
    assert dead.hold(range(1, 8)) == 7
    env = {**redis_env(mailbox, redis_server.url), "TRIAGE_ADDRESS": ADDRESS}
    r = cli(["release", "--all", "--dry-run", "--json"], env=env)
    assert r.code == 0, r.err
    sel = json.loads(r.out)["selection"]
    assert (sel["included"], sel["excluded"], sel["excluded_uids"]) == (5, 2, "5:6")
    r = cli(["release", "--all", "--yes"], env=env)
    assert r.code == 0, r.err
    assert "left out: 2 stale message(s) GitLab would reject or drop" in r.out and "--include-junk" in r.out
    # Redis afterwards: the stale rejected/dropped keep their lock, the rest are free
    assert {u: redis_client.exists(f"{PREFIX}delivered:{u}") for u in range(1, 8)} == {
        1: 0, 2: 0, 3: 0, 4: 0, 5: 1, 6: 1, 7: 0}
    r = cli(["release", "--all", "--yes", "--include-junk"], env=env)
    assert r.code == 0, r.err
    assert "included on request: 2 stale message(s)" in r.out
    assert all(redis_client.exists(f"{PREFIX}delivered:{u}") == 0 for u in range(1, 8))
