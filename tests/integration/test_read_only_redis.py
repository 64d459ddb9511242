"""Read-only means nothing reaches Redis but reads: no SCRIPT LOAD, no SET/DEL/EXPIRE/PEXPIRE, no
SCRIPT anything, checked on the REAL redis-server through ``INFO commandstats`` (which also counts
the commands a Lua script runs) around `locks`, `release --dry-run` and `release --natural --wait`
(the TUI's lock column: tests/tui/test_read_only_locks.py). And the read script still works after a ``SCRIPT FLUSH`` (EVALSHA
answers NOSCRIPT, the source goes by EVAL, nothing is loaded)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from tests.integration.test_locks import locks_for, redis_env, triage_for
from tests.mailgen import backlog
from triage_tui.domain.model import View

NOW = time.time()
PREFIX = "mail_room:gitlab:"

#: Every command a read-only session may send (the read script's own TIME, PTTL, GET included).
READS = {"evalsha", "eval", "time", "pttl", "get", "mget", "scan", "ping", "info", "client|setname",
         "client|setinfo", "hello", "select", "type", "exists", "ttl",
         "llen", "lindex", "sismember"}  # the Sidekiq queues' lengths and oldest job (inside the script)


def key(uid: int) -> str:
    return f"{PREFIX}delivered:{uid}"


def commandstats(client: Any) -> dict[str, int]:
    return {name: int(v["calls"]) for name, v in client.info("commandstats").items()}


def sent_during(client: Any, action: Callable[[], Any]) -> dict[str, int]:
    """The commands the server executed while ``action`` ran (name -> calls), minus our own INFO."""
    before = commandstats(client)
    action()
    after = commandstats(client)
    diff = {k.removeprefix("cmdstat_"): n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
    diff["info"] = diff.get("info", 0) - 1  # the INFO that read `after`
    return {k: n for k, n in diff.items() if n > 0}


def assert_only_reads(sent: dict[str, int]) -> None:
    writes = {k: n for k, n in sent.items() if k not in READS}
    assert not writes, f"a read-only session sent {writes}"
    assert not any(k.startswith("script") for k in sent), sent


def seed(mailbox: Any, redis_client: Any, n: int = 6) -> None:
    mailbox.seed(backlog(n, now=NOW))
    for u in range(1, n + 1):
        redis_client.set(key(u), "1", ex=600)
    redis_client.set(key(2), "3", ex=300)  # a pre-0.10 counter


def test_read_only_locks_and_dry_run_send_no_write_and_load_no_script(mailbox, redis_server, redis_client,  # type: ignore[no-untyped-def]
                                                                         cli):
    seed(mailbox, redis_client)
    env = redis_env(mailbox, redis_server.url)
    for args in (["--read-only", "locks"], ["--read-only", "locks", "--json"],
                 ["--read-only", "release", "--all", "--dry-run"],
                 ["--read-only", "release", "--all", "--dry-run", "--json"],
                 ["--read-only", "release", "--all", "--natural", "--wait", "--timeout", "0.3",
                  "--interval", "0.1", "--json"]):
        redis_client.script_flush()  # a fresh script cache: the old code answered NOSCRIPT with SCRIPT LOAD
        box: dict[str, Any] = {}
        sent = sent_during(redis_client, lambda a=args, b=box: b.setdefault("r", cli(a, env=env)))
        r = box["r"]
        assert r.code in (0, 1), (args, r.out, r.err)
        assert "evalsha" in sent or "mget" in sent, (args, sent)  # the keys were read
        assert_only_reads(sent)
    assert redis_client.ttl(key(1)) > 590 and redis_client.get(key(2)) == "3"
    r = cli(["--read-only", "locks", "--json"], env=env)
    assert json.loads(r.out)["counts"]["stuck"] == 6


def test_read_script_survives_script_flush_between_calls(mailbox, redis_server, redis_client):  # type: ignore[no-untyped-def]
    seed(mailbox, redis_client, 3)
    ls = locks_for(redis_server.url, read_only=True)
    try:
        for _ in range(3):
            redis_client.script_flush()
            sent = sent_during(redis_client, lambda: ls.read_keys([key(1), key(2), key(3), key(9)]))
            assert sent.get("evalsha", 0) >= 1 and sent.get("eval", 0) >= 1, sent  # NOSCRIPT, then EVAL
            assert_only_reads(sent)
            # cached by EVAL: the next call is one EVALSHA
            sent = sent_during(redis_client, lambda: ls.read_keys([key(1)]))
            assert sent.get("evalsha") == 1 and "eval" not in sent, sent
            states = ls.read_keys([key(1), key(2), key(3), key(9)])
            assert [s.present for s in states] == [True, True, True, False]
            assert states[1].value == "3" and states[1].counter and 590_000 < states[0].pttl_ms <= 600_000
        assert ls.read_with_script  # never fell back to the pipeline
    finally:
        ls.close()


def test_writable_release_still_works_after_script_flush(mailbox, redis_server, redis_client):  # type: ignore[no-untyped-def]
    """The release script (write mode only) keeps redis-py's load-on-NOSCRIPT."""
    seed(mailbox, redis_client, 3)
    ls = locks_for(redis_server.url)
    svc = triage_for(mailbox)
    try:
        uv, unseen = svc.search(View.UNSEEN)
        plan = ls.plan_release(svc, uv, unseen)
        redis_client.script_flush()
        result = ls.release(plan, svc)
        assert result.ok and sorted(c.uid for c in result.changed) == [1, 2, 3]
        assert not any(redis_client.exists(key(u)) for u in (1, 2, 3))
    finally:
        svc.close()
        ls.close()
