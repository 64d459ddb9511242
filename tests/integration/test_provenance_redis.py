"""Seen-stuck rows show their evidence (mail_room's lock: held, no expiry, expired; the age), and
the re-ingest plan warns, with counts, before it releases or un-sees mail older than the stale
limit. Real Dovecot, real Redis."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.mailgen import backlog

PREFIX = "mail_room:gitlab:"
NOW = time.time()
DAY = 86400


def key(uid: int) -> str:
    return f"{PREFIX}delivered:{uid}"


def env(mailbox: Any, url: str | None = None) -> dict[str, str]:
    return {**mailbox.env(), **({"TRIAGE_REDIS_URL": url} if url else {})}


def test_seen_stuck_rows_show_lock_evidence_and_age(mailbox, redis_server, redis_client, cli) -> None:  # type: ignore[no-untyped-def]
    mailbox.seed([(raw, ts, "S") for raw, ts, _ in backlog(3, now=NOW - 10 * DAY, step=DAY)])  # 1-3: seen-stuck
    redis_client.set(key(1), "1", ex=300)  # held
    redis_client.set(key(2), "1")  # no expiry
    # 3: no key: its lock ran out
    r = cli(["list", "--view", "seen-stuck", "--json"], env=env(mailbox, redis_server.url))
    assert r.code == 0, r.err
    ev = {row["uid"]: row["evidence"] for row in map(json.loads, r.lines)}
    assert [ev[u]["lock"] for u in (1, 2, 3)] == ["held", "no-expiry", "expired"]
    assert 0 < ev[1]["lock_ttl"] <= 300 and ev[2]["lock_ttl"] == -1 and ev[3]["lock_ttl"] is None
    assert all(e["older_than_stale_limit"] for e in ev.values()) and ev[3]["age_seconds"] > 10 * DAY
    plain = cli(["list", "--view", "seen-stuck"], env=env(mailbox, redis_server.url))
    assert plain.code == 0, plain.err
    assert "LOCK" in plain.lines[0]
    rows = {int(line.split()[0]): line for line in plain.lines[1:]}
    assert "held" in rows[1] and "no-expiry" in rows[2] and "expired" in rows[3]
    # without Redis the locks are unknown, never "expired"
    r = cli(["list", "--view", "seen-stuck", "--json"], env=env(mailbox))
    assert {json.loads(x)["evidence"]["lock"] for x in r.lines} == {"unknown"}


def test_release_plan_warns_about_mail_older_than_the_stale_limit(mailbox, redis_server, redis_client, cli) -> None:  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(3, now=NOW - 20 * DAY, step=DAY) + backlog(2, now=NOW))  # 1-3 old, 4-5 fresh
    for u in range(1, 6):
        redis_client.set(key(u), "1", ex=600)
    r = cli(["release", "--all", "--dry-run"], env=env(mailbox, redis_server.url))
    assert r.code == 0, r.err
    assert "warning: 3 of 5 are older than the stale limit (2d): releasing them re-ingests mail up to 3w old" \
        in r.out, r.out
    r = cli(["release", "--uids", "4:5", "--dry-run", "--json"], env=env(mailbox, redis_server.url))
    assert json.loads(r.lines[-1])["warnings"] == []
    assert all(redis_client.pttl(key(u)) > 0 for u in range(1, 6)), "a dry run changed Redis"
