"""`release --wait` against real Dovecot + real redis-server: a timeout while the keys are still held
says so (0 poll cycles observed, how many keys, when they expire), never "no lock was re-claimed in
two poll cycles"; progress lines come at least every few seconds, on stderr with --json."""

from __future__ import annotations

import json
import re
import time

from tests.integration.test_locks import redis_env
from tests.integration.test_release import hold_all, key
from tests.mailgen import backlog

NOW = time.time()


def test_timeout_while_keys_are_held_reports_what_was_observed(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(12, now=NOW))
    hold_all(mailbox, redis_client, range(1, 13))  # claimed by an instance that died: 600 s each
    t0 = time.monotonic()
    r = cli(["release", "--all", "--natural", "--wait", "--timeout", "3", "--interval", "1"],
            env=redis_env(mailbox, redis_server.url))
    assert r.code == 1, r.out + r.err
    assert time.monotonic() - t0 < 8
    last = r.lines[-1]
    assert last.startswith("not done: timed out after 3.0 s (--timeout 3, ")
    assert "0.0 poll cycles of mail_room observed with every key free" in last
    m = re.search(r"12 key\(s\) still held, the last expires in (\d+) s", last)
    assert m and 590 <= int(m.group(1)) <= 600, last
    assert "12 of 12 still UNSEEN, 0 picked up, 0 re-claimed" in last
    assert "re-claimed in two poll cycles" not in r.out and "is mail_room running" not in r.out
    progress = [ln for ln in r.lines if ln.startswith("[")]
    assert len(progress) >= 2 and all("12 key(s) still held" in ln for ln in progress)  # the first and the last look
    assert all(redis_client.ttl(key(u)) > 580 for u in range(1, 13))  # --natural touched nothing


def test_timeout_json_stdout_is_only_the_document_progress_on_stderr(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(4, now=NOW))
    hold_all(mailbox, redis_client, range(1, 5))
    r = cli(["release", "--all", "--yes", "--ttl", "120", "--wait", "--timeout", "1.5", "--interval", "0.5",
             "--json"], env=redis_env(mailbox, redis_server.url))
    assert r.code == 1, r.out + r.err
    docs = [json.loads(ln) for ln in r.lines]  # every stdout line is JSON
    assert docs[0]["changed"] == 4
    watch = docs[-1]["watch"]
    assert watch["reason"] == "timeout" and watch["held"] == 4 and watch["poll_cycles_free"] == 0
    assert watch["looks"] >= 3 and "4 key(s) still held, the last expires in" in watch["diagnosis"]
    assert "0/4 picked up" in r.err and "still held" in r.err
    assert all(100 < redis_client.ttl(key(u)) <= 120 for u in range(1, 5))
