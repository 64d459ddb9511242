"""Lock visibility against real Dovecot + real redis-server (also TLS and Sentinel): pipelined reads,
the SCAN join, counters, warnings, and Redis failures that must not take the IMAP side down."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.mailgen import backlog
from tests.servers import _base_tmp, _require, _wait_port, free_port, make_tls_material, start_redis
from triage_tui.domain.model import Message
from triage_tui.services.journal import AuditJournal
from triage_tui.services.locks import (
    COUNTER_NOTE,
    LockService,
    LockUnavailable,
    RedisSettings,
    annotate_safely,
    mask_url,
)
from triage_tui.services.triage import TriageService

NOW = time.time()
PREFIX = "mail_room:gitlab:"


# -- helpers shared with test_release.py ------------------------------------------------------------


def locks_for(url: str, *, read_only: bool = False, prefix: str = PREFIX, client: Any = None,
              **kw: Any) -> LockService:
    return LockService(RedisSettings(url=url, key_prefix=prefix, **kw), read_only=read_only,
                       journal=AuditJournal(), client=client)


def triage_for(mailbox: Any, read_only: bool = False) -> TriageService:
    s = TriageService(mailbox.settings(), read_only=read_only, journal=AuditJournal())
    s.connect()
    return s


def redis_env(mailbox: Any, url: str, **extra: str) -> dict[str, str]:
    return {**mailbox.env(), "TRIAGE_REDIS_URL": url, **extra}


def count_round_trips(client: Any) -> dict[str, int]:
    """Patch a redis-py client to count direct commands and pipeline executions (round trips)."""
    calls = {"direct": 0, "pipelines": 0, "pipelined_commands": 0}
    orig_ec, orig_pipe = client.execute_command, client.pipeline

    def execute_command(*a: Any, **k: Any) -> Any:
        calls["direct"] += 1
        return orig_ec(*a, **k)

    def pipeline(*a: Any, **k: Any) -> Any:
        p = orig_pipe(*a, **k)
        orig_exec = p.execute

        def execute(*a2: Any, **k2: Any) -> Any:
            calls["pipelines"] += 1
            calls["pipelined_commands"] += len(p.command_stack)
            return orig_exec(*a2, **k2)

        p.execute = execute
        return p

    client.execute_command, client.pipeline = execute_command, pipeline
    return calls


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    base: Path

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def tls_redis() -> Iterator[tuple[int, Path]]:
    """A redis-server speaking only TLS, with a throwaway CA. Yields (port, ca_file)."""
    base = _base_tmp("triage-redis-tls-")
    ca, crt, key = make_tls_material(base)
    port = free_port()
    log = base / "redis.log"
    log.touch()
    proc = subprocess.Popen(
        [_require("redis-server"), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(crt), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
         "--tls-auth-clients", "no", "--dir", str(base), "--save", "", "--logfile", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    p = Proc(proc, base)
    try:
        _wait_port(port, proc, log)
        yield port, ca
    finally:
        p.stop()


@contextlib.contextmanager
def sentinel_for(master_port: int, name: str = "gitlab-redis") -> Iterator[int]:
    base = _base_tmp("triage-sentinel-")
    port = free_port()
    conf = base / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {base}\nlogfile {base}/sentinel.log\n"
                    f"sentinel monitor {name} 127.0.0.1 {master_port} 1\n"
                    f"sentinel down-after-milliseconds {name} 60000\n")
    (base / "sentinel.log").touch()
    proc = subprocess.Popen([_require("redis-server"), str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    p = Proc(proc, base)
    try:
        _wait_port(port, proc, base / "sentinel.log")
        yield port
    finally:
        p.stop()


def seed_keys(client: Any, items: dict[str, tuple[str, int | None]]) -> None:
    """key -> (value, ttl seconds or None for no expiry)."""
    pipe = client.pipeline(transaction=False)
    for k, (v, ttl) in items.items():
        if ttl:
            pipe.set(k, v, ex=ttl)
        else:
            pipe.set(k, v)
    pipe.execute()


# -- pipelined reads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("script", [True, False], ids=["script", "pipeline-fallback"])
def test_annotate_reads_in_one_round_trip_per_chunk(redis_server, redis_client, script):  # type: ignore[no-untyped-def]
    n = 12_000
    pipe = redis_client.pipeline(transaction=False)
    for uid in range(1, n + 1, 2):  # odd UIDs locked
        pipe.set(f"{PREFIX}delivered:{uid}", "1", ex=600 - uid % 500)
    pipe.set(f"{PREFIX}delivered:4", "1")  # no expiry at all
    pipe.set(f"{PREFIX}delivered:6", "7", ex=600)  # a pre-0.10 counter
    pipe.hset(f"{PREFIX}delivered:8", "x", "1")  # not a string: shown as "?"
    pipe.execute()
    ls = locks_for(redis_server.url)
    ls.read_with_script = script
    ls.annotate([Message(uid=1, uidvalidity=1)])  # connect and load the script before counting
    calls = count_round_trips(ls.client)
    messages = [Message(uid=u, uidvalidity=1) for u in range(1, n + 1)]
    t0 = time.perf_counter()
    locked = ls.annotate(messages)
    elapsed = time.perf_counter() - t0
    assert locked == n // 2 + 3
    if script:  # one EVALSHA per 5000 keys, nothing per key
        assert calls == {"direct": 3, "pipelines": 0, "pipelined_commands": 0}
    else:  # one pipeline per 5000 keys: TIME + MGET + 5000 PTTL
        assert calls == {"direct": 0, "pipelines": 3, "pipelined_commands": n + 2 * 3}
    assert elapsed < 1.5, elapsed
    m1, m2, m3, m4, m5, m6, m7, m8 = messages[:8]
    assert m1.lock == "1" and 590 <= (m1.lock_ttl or 0) <= 600
    assert m2.lock is None and m2.lock_ttl is None
    assert m4.lock == "1" and m4.lock_ttl == -1  # -1: no expiry
    assert m6.lock == "7" and m8.lock == "?" and m8.lock_ttl == -1
    assert m1.to_json()["lock_ttl"] == m1.lock_ttl and m1.to_json()["lock"] == "1"
    states = ls.read_keys([f"{PREFIX}delivered:{u}" for u in (1, 2, 6)])
    assert [(s.value, s.present, s.counter) for s in states] == [("1", True, False), (None, False, False),
                                                                  ("7", True, True)]


def test_scripting_refused_falls_back_to_the_pipeline(redis_server, redis_client):  # type: ignore[no-untyped-def]
    redis_client.set(f"{PREFIX}delivered:3", "1", ex=100)
    redis_client.acl_setuser("reader", enabled=True, passwords=["+reader-pass"], keys=["*"],
                             commands=["+@all", "-@scripting"])
    try:
        ls = locks_for(f"redis://reader:reader-pass@127.0.0.1:{redis_server.port}/0")
        assert set(ls.states_for_uids([3, 4])) == {3}
        assert ls.read_with_script is False
    finally:
        redis_client.acl_deluser("reader")


def test_annotate_100k_well_under_two_seconds(redis_server, redis_client):  # type: ignore[no-untyped-def]
    pipe = redis_client.pipeline(transaction=False)
    for uid in range(1, 100_001):
        pipe.set(f"{PREFIX}delivered:{uid}", "1", ex=600)
    pipe.execute()
    ls = locks_for(redis_server.url)
    ls.check()
    messages = [Message(uid=u, uidvalidity=1) for u in range(1, 100_001)]
    t0 = time.perf_counter()
    assert ls.annotate(messages) == 100_000
    assert time.perf_counter() - t0 < 2.0


# -- the join ------------------------------------------------------------------------------------------


def seed_join_case(mailbox: Any, redis_client: Any) -> None:
    items = backlog(10, now=NOW)
    flags = {1: "S", 2: "S", 3: "S", 4: "ST"}
    mailbox.seed([(raw, ts, flags.get(i + 1, "")) for i, (raw, ts, _f) in enumerate(items)])
    seed_keys(redis_client, {
        f"{PREFIX}delivered:5": ("1", 300),  # stuck
        f"{PREFIX}delivered:6": ("1", 30),  # stuck
        f"{PREFIX}delivered:7": ("4", 600),  # stuck, pre-0.10 counter
        f"{PREFIX}delivered:2": ("1", 400),  # \Seen: harmless
        f"{PREFIX}delivered:4": ("1", 400),  # \Deleted: harmless
        f"{PREFIX}delivered:99": ("1", 500),  # no such UID: gone (and beyond UIDNEXT)
        f"{PREFIX}something_else": ("x", None),  # under the prefix, not a lock
        "other_prefix:delivered:8": ("1", 600),  # outside the prefix: never listed
        "mail_room:gitlabX:delivered:9": ("1", 600),  # a prefix that only starts the same
    })


def test_report_joins_keys_with_the_mailbox_using_scan(mailbox, redis_server, redis_client):  # type: ignore[no-untyped-def]
    seed_join_case(mailbox, redis_client)
    redis_client.config_resetstat()
    ls = locks_for(redis_server.url)
    rep = ls.report(triage_for(mailbox))
    stats = redis_client.info("commandstats")
    assert "cmdstat_scan" in stats and "cmdstat_keys" not in stats
    assert rep.counts == {"stuck": 3, "seen": 1, "deleted": 1, "gone": 1, "other": 1}
    assert rep.stuck_uids == [5, 6, 7]
    assert [e.uid for e in rep.counters] == [7]
    assert {e.key for e in rep.entries}.isdisjoint({"other_prefix:delivered:8", "mail_room:gitlabX:delivered:9"})
    assert rep.natural_expiry_s() is None  # the counter never expires while mail_room runs
    assert any("UIDNEXT" in w and "99" in w for w in rep.warnings)
    doc = rep.to_json()
    assert doc["counts"]["stuck"] == 3 and doc["counter_note"] == COUNTER_NOTE
    assert doc["stuck_ttl_distribution"] == {"<1m": 1, "1-5m": 1, "5-10m": 1}


def test_locks_command_text_and_json(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    seed_join_case(mailbox, redis_client)
    r = cli(["locks"], env=redis_env(mailbox, redis_server.url))
    assert r.code == 0, r.err
    assert "stuck UIDs: 5:7" in r.out
    assert "never expires while any instance runs" in r.out
    assert "counter (pre-0.10)" in r.out
    r = cli(["locks", "--json"], env=redis_env(mailbox, redis_server.url))
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["counts"]["stuck"] == 3 and doc["stuck_uids"] == "5:7"
    states = {e["uid"]: e["state"] for e in doc["entries"] if e["uid"] is not None}
    assert states == {2: "seen", 4: "deleted", 5: "stuck", 6: "stuck", 7: "stuck", 99: "gone"}


def test_locks_needs_redis(mailbox, cli):  # type: ignore[no-untyped-def]
    r = cli(["locks"], env=mailbox.env())
    assert r.code == 2 and "needs mail_room's Redis" in r.err


# -- warnings --------------------------------------------------------------------------------------


def test_two_mailboxes_sharing_the_prefix(dovecot, mailbox, redis_server, redis_client):  # type: ignore[no-untyped-def]
    from tests.conftest import Mailbox

    mailbox.seed(backlog(3, now=NOW))
    other = Mailbox(dovecot, dovecot.new_user("sd"))
    other.seed(backlog(2, now=NOW))
    assert locks_for(redis_server.url).report(triage_for(mailbox)).warnings == []
    rep = locks_for(redis_server.url).report(triage_for(other))
    assert any(mailbox.user in w and "collide" in w for w in rep.warnings)
    rep = locks_for(redis_server.url, prefix="other:").report(triage_for(other))
    assert rep.warnings == []  # another prefix: no collision
    rep = locks_for(redis_server.url, shared_with=("service_desk_email",)).report(triage_for(mailbox))
    assert any("service_desk_email" in w for w in rep.warnings)


def test_uidvalidity_reset_with_keys_for_low_uids(dovecot, mailbox, redis_server, redis_client):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(5, now=NOW))
    seed_keys(redis_client, {f"{PREFIX}delivered:{u}": ("1", 600) for u in (2, 3)})
    assert not any("UIDVALIDITY" in w for w in locks_for(redis_server.url).report(triage_for(mailbox)).warnings)
    old = mailbox.uidvalidity()
    r = dovecot.doveadm("mailbox", "update", "-u", mailbox.user, "--uid-validity", str(old + 7), "INBOX")
    assert r.returncode == 0, r.stderr
    assert mailbox.uidvalidity() == old + 7
    rep = locks_for(redis_server.url).report(triage_for(mailbox))
    warn = [w for w in rep.warnings if "UIDVALIDITY changed" in w]
    assert warn and f"from {old} to {old + 7}" in warn[0] and "2 key(s)" in warn[0]
    # recorded: the next look does not warn again
    assert not any("UIDVALIDITY" in w for w in locks_for(redis_server.url).report(triage_for(mailbox)).warnings)


def test_uidvalidity_fallback_is_the_journal(mailbox, redis_server, redis_client):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(3, now=NOW))
    seed_keys(redis_client, {f"{PREFIX}delivered:1": ("1", 600)})
    s = mailbox.settings()
    AuditJournal().append({"phase": "end", "server": s.server, "user": s.user, "mailbox": "INBOX",
                           "uidvalidity": mailbox.uidvalidity() - 1, "action": "mark-seen"})
    rep = locks_for(redis_server.url).report(triage_for(mailbox))
    assert any("UIDVALIDITY changed" in w for w in rep.warnings)


# -- connection variants and failures ------------------------------------------------------------


def test_db_number_from_url(redis_server, redis_client):  # type: ignore[no-untyped-def]
    db5 = type(redis_client)(host="127.0.0.1", port=redis_server.port, db=5, decode_responses=True)
    db5.set(f"{PREFIX}delivered:3", "1", ex=100)
    try:
        ls = locks_for(f"redis://127.0.0.1:{redis_server.port}/5")
        assert set(ls.states_for_uids([3])) == {3}
        assert locks_for(redis_server.url).states_for_uids([3]) == {}
    finally:
        db5.flushdb()


def test_redis_down_is_one_line_and_imap_keeps_working(mailbox, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(3, now=NOW))
    dead = start_redis()
    url = dead.url
    dead.stop()
    ls = locks_for(url)
    with pytest.raises(LockUnavailable) as ei:
        ls.annotate([Message(uid=1, uidvalidity=1)])
    text = str(ei.value)
    assert text.startswith("Redis unavailable: ") and "\n" not in text and ei.value.exit_code == 3
    msgs = [Message(uid=1, uidvalidity=1)]
    t0 = time.monotonic()
    err = annotate_safely(ls, msgs)
    err2 = annotate_safely(ls, [Message(uid=2, uidvalidity=1)])
    assert time.monotonic() - t0 < 0.5  # the second call does not wait for another timeout
    assert err == err2 and err is not None and err.startswith("Redis unavailable: ")
    assert msgs[0].to_json()["lock_error"] == err and msgs[0].lock is None
    r = cli(["locks"], env=redis_env(mailbox, url))
    assert r.code == 3 and "Redis unavailable: " in r.err and len(r.err.strip().splitlines()) == 1
    r = cli(["list", "--json"], env=redis_env(mailbox, url))
    assert r.code == 0 and len(r.lines) == 3


def test_wrong_password_is_masked_everywhere(mailbox, redis_client):  # type: ignore[no-untyped-def]
    server = start_redis()
    try:
        server.client().config_set("requirepass", "right-horse-battery")
        url = f"redis://:wrong-staple-9931@127.0.0.1:{server.port}/0"
        ls = locks_for(url)
        with pytest.raises(LockUnavailable) as ei:
            ls.check()
        assert "authentication failed" in str(ei.value)
        assert "wrong-staple-9931" not in str(ei.value) and "wrong-staple-9931" not in repr(ls.settings)
        assert mask_url(url) == f"redis://:***@127.0.0.1:{server.port}/0"
        assert ls.settings.display == mask_url(url)
        good = locks_for(f"redis://:right-horse-battery@127.0.0.1:{server.port}/0")
        assert good.states_for_uids([1]) == {}
        assert "right-horse-battery" not in json.dumps(good.guard.context)
    finally:
        server.stop()
    journal = AuditJournal().path
    assert not journal.exists() or "right-horse" not in journal.read_text()


def test_tls_with_and_without_the_ca(redis_client):  # type: ignore[no-untyped-def]
    with tls_redis() as (port, ca):
        url = f"rediss://127.0.0.1:{port}/2"
        with pytest.raises(LockUnavailable) as ei:
            locks_for(url).check()
        assert "TLS failure" in str(ei.value) and "--redis-ca-file" in str(ei.value)
        ls = locks_for(url, ca_file=str(ca))
        ls.check()
        ls.client.set(f"{PREFIX}delivered:8", "1", ex=60)
        assert ls.states_for_uids([8])[8].value == "1"
        ls.close()


def test_sentinel_finds_the_master(redis_server, redis_client):  # type: ignore[no-untyped-def]
    redis_client.set(f"{PREFIX}delivered:12", "1", ex=120)
    with sentinel_for(redis_server.port) as sport:
        settings = RedisSettings(url="redis://gitlab-redis/0", sentinels=[("127.0.0.1", sport)],
                                 master="gitlab-redis", key_prefix=PREFIX)
        ls = LockService(settings, read_only=True, journal=AuditJournal())
        assert ls.states_for_uids([12, 13]).keys() == {12}
        assert "sentinel master gitlab-redis" in ls.settings.display
        assert RedisSettings(sentinel_password="s-pass").sentinel_password is not None
        assert "s-pass" not in repr(RedisSettings(sentinel_password="s-pass"))
        bad = LockService(RedisSettings(sentinels=[("127.0.0.1", sport)], master="nope"), read_only=True)
        with pytest.raises(LockUnavailable) as ei:
            bad.check()
        assert "no Sentinel knows a master named 'nope'" in str(ei.value)


def test_cli_sentinel_flags_reach_the_service(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(2, now=NOW))
    redis_client.set(f"{PREFIX}delivered:2", "1", ex=120)
    with sentinel_for(redis_server.port) as sport:
        r = cli(["--redis-sentinel", f"127.0.0.1:{sport}", "--redis-master", "gitlab-redis", "locks", "--json"],
                env=mailbox.env())
    assert r.code == 0, r.err
    assert json.loads(r.out)["stuck_uids"] == "2"
