"""Timed re-ingest against real Dovecot + real redis-server, with the mail_room-compatible consumer
as the other side. Every check reads Redis (TTLs, values, the Sidekiq queue), the IMAP flags and
the audit journal directly."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis

from tests.integration.test_consumer import fast, subjects, wait_until
from tests.integration.test_locks import locks_for, redis_env, seed_keys, triage_for
from tests.mailgen import backlog
from tests.servers import start_redis
from triage_tui.domain.model import TRIAGE_KEYWORD, View
from triage_tui.errors import ReadOnlyRefused
from triage_tui.services.consumer import ConsumerOptions, MailRoomConsumer, queued_jobs
from triage_tui.services.journal import AuditJournal
from triage_tui.services.locks import NO_RECLAIM

NOW = time.time()
PREFIX = "mail_room:gitlab:"


def key(uid: int, prefix: str = PREFIX) -> str:
    return f"{prefix}delivered:{uid}"


def pttls(client: Any, uids: list[int]) -> dict[int, int]:
    return {u: client.pttl(key(u)) for u in uids}


def journal_ops(action: str = "release-locks") -> list[dict[str, Any]]:
    return [r for r in AuditJournal().records() if r.get("action") == action]


def hold_all(mailbox: Any, client: Any, uids: Any, **kw: Any) -> MailRoomConsumer:
    dead = MailRoomConsumer(mailbox.settings(), client, ConsumerOptions(name="dead", **kw))
    dead.hold(uids)
    return dead


# -- the whole scenario ---------------------------------------------------------------------------


def test_backlog_junk_marked_seen_rest_released_and_ingested_once(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(30, now=NOW))
    hold_all(mailbox, redis_client, range(1, 31))  # an instance claimed everything and died
    # two live instances poll all along: every UID is held, so nothing moves
    a = MailRoomConsumer(mailbox.settings(), redis_client, fast(name="a")).start()
    b = MailRoomConsumer(mailbox.settings(), redis_client, fast(name="b")).start()
    try:
        assert wait_until(lambda: a.stats.cycles > 2 and b.stats.cycles > 2)
        assert redis_client.llen("queue:email_receiver") == 0
        # junk: the ten oldest, marked seen through the triage service
        svc = triage_for(mailbox)
        uv, unseen = svc.search(View.UNSEEN)
        svc.execute(svc.plan_flags("mark-seen", uv, unseen[:10]))
        junk_ttls = pttls(redis_client, list(range(1, 11)))
        env = redis_env(mailbox, redis_server.url)
        r = cli(["release", "--all", "--dry-run", "--json"], env=env)
        assert r.code == 0, r.err
        plan = json.loads(r.out)
        assert plan["count"] == 20 and plan["uids"] == "11:30" and plan["ttl_distribution"] == {"5-10m": 20}
        r = cli(["release", "--all", "--wait", "--poll-cycle", "1", "--interval", "0.1", "--timeout", "20"], env=env,
                stdin="20\n", tty=True)  # the operator types the key count
        assert r.code == 0, r.out + r.err
        assert "release-locks: 20 key(s) deleted" in r.out
        assert "done: all 20 targeted message(s) picked up (20 delivered)" in r.out
        time.sleep(0.3)  # more polls: nothing may come twice
    finally:
        a.stop()
        b.stop()
    jobs = queued_jobs(redis_client)
    assert sorted(subjects(jobs)) == sorted(f"Message {i}" for i in range(10, 30))
    assert len(jobs) == 20 and sorted(a.stats.delivered + b.stats.delivered) == list(range(11, 31))
    flags = mailbox.flags()
    assert all(flags[u] == {"\\Seen", TRIAGE_KEYWORD} for u in range(1, 11))  # junk kept (ignored), not ingested
    assert all({"\\Seen", "\\Deleted"} <= flags[u] for u in range(11, 31))
    after = pttls(redis_client, list(range(1, 11)))
    assert all(0 < junk_ttls[u] - after[u] < 60_000 for u in after)  # junk keys never touched
    end = [r for r in journal_ops() if r["phase"] == "end"]
    assert len(end) == 1 and end[0]["changed_uids"] == "11:30" and end[0]["result"] == "ok"
    touched = [k for r in journal_ops() if r["phase"] == "progress" for k in r["keys"]]
    assert sorted(t[0] for t in touched) == sorted(key(u) for u in range(11, 31))
    assert all(500 < t[1] <= 600 and t[2] == 0 for t in touched)  # name, old TTL, new TTL


def test_typed_confirmation_is_the_key_count(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(5, now=NOW))
    hold_all(mailbox, redis_client, range(1, 6))
    env = redis_env(mailbox, redis_server.url)
    r = cli(["release", "--all"], env=env, stdin="4\n", tty=True)
    assert r.code == 4 and "not confirmed" in r.err
    assert all(v > 0 for v in pttls(redis_client, [1, 2, 3, 4, 5]).values())
    r = cli(["release", "--all"], env=env)  # no TTY, no --yes
    assert r.code == 4 and "--yes" in r.err
    r = cli(["release", "--all"], env=env, stdin="5\n", tty=True)
    assert r.code == 0, r.err
    assert redis_client.exists(*[key(u) for u in range(1, 6)]) == 0


# -- safety rules ---------------------------------------------------------------------------------


def test_read_only_refuses_release_and_redis_is_unchanged(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(4, now=NOW))
    hold_all(mailbox, redis_client, range(1, 5))
    before = pttls(redis_client, [1, 2, 3, 4])
    env = redis_env(mailbox, redis_server.url)
    r = cli(["--read-only", "release", "--all", "--yes"], env=env)
    assert r.code == 4 and "read-only" in r.err
    r = cli(["--read-only", "release", "--all", "--dry-run"], env=env)
    assert r.code == 0 and "dry run" in r.out  # looking is allowed
    ls = locks_for(redis_server.url, read_only=True)
    svc = triage_for(mailbox, read_only=True)
    uv, uids = svc.search(View.UNSEEN)
    plan = ls.plan_release(svc, uv, uids)
    with pytest.raises(ReadOnlyRefused):
        ls.release(plan, svc)
    after = pttls(redis_client, [1, 2, 3, 4])
    assert all(0 <= before[u] - after[u] < 10_000 for u in after)
    assert all(redis_client.get(key(u)) == "1" for u in after)
    assert journal_ops() == []


def test_keys_outside_the_prefix_are_never_touched(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(3, now=NOW))
    others = {key(u, "other:"): ("1", 600) for u in (1, 2, 3)}
    others |= {key(u, "mail_room:gitlabX:"): ("1", 600) for u in (1, 2, 3)}
    others |= {f"{PREFIX}delivered:1:x": ("1", 600), f"{PREFIX}delivered": ("1", 600), "delivered:1": ("1", 600)}
    seed_keys(redis_client, others)
    seed_keys(redis_client, {key(u): ("1", 600) for u in (1, 2, 3)})
    r = cli(["release", "--all", "--yes"], env=redis_env(mailbox, redis_server.url))
    assert r.code == 0, r.err
    assert redis_client.exists(*[key(u) for u in (1, 2, 3)]) == 0
    for k in others:
        assert redis_client.get(k) == "1" and redis_client.ttl(k) > 590, k
    # and a custom prefix only touches its own keys
    seed_keys(redis_client, {key(u): ("1", 600) for u in (1, 2, 3)})
    r = cli(["--key-prefix", "other:", "release", "--uids", "2", "--yes"], env=redis_env(mailbox, redis_server.url))
    assert r.code == 0, r.err
    assert redis_client.exists(key(2, "other:")) == 0
    assert redis_client.exists(key(1, "other:"), key(2), key(2, "mail_room:gitlabX:")) == 3


def test_only_messages_still_unseen_are_released(mailbox, redis_server, redis_client):  # type: ignore[no-untyped-def]
    items = backlog(6, now=NOW)
    items[0] = (items[0][0], items[0][1], "S")  # UID 1 \Seen
    items[1] = (items[1][0], items[1][1], "ST")  # UID 2 \Deleted
    mailbox.seed(items)
    seed_keys(redis_client, {key(u): ("1", 600) for u in range(1, 7)})
    ls, svc = locks_for(redis_server.url), triage_for(mailbox)
    uv, _ = svc.search(View.ALL)
    plan = ls.plan_release(svc, uv, range(1, 7))
    assert [t.uid for t in plan.targets] == [3, 4, 5, 6] and plan.not_unseen == [1, 2]
    # between plan and execution, mail_room (or an operator) takes UID 4
    c = mailbox.client()
    c.select_folder("INBOX")
    c.add_flags([4], [b"\\Seen"], silent=True)
    c.logout()
    result = ls.release(plan, svc)
    assert result.not_unseen == [4]
    assert sorted(ch.uid for ch in result.changed) == [3, 5, 6]
    assert redis_client.exists(key(1), key(2), key(4)) == 3
    assert redis_client.exists(key(3), key(5), key(6)) == 0


def test_a_key_reclaimed_since_the_plan_is_left_alone(mailbox, redis_server, redis_client):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(3, now=NOW))
    seed_keys(redis_client, {key(1): ("1", 5), key(2): ("1", 5), key(3): ("1", 5)})
    ls, svc = locks_for(redis_server.url), triage_for(mailbox)
    uv, uids = svc.search(View.UNSEEN)
    plan = ls.plan_release(svc, uv, uids)
    redis_client.delete(key(2))
    redis_client.set(key(2), "1", nx=True, ex=600)  # expired meanwhile and claimed afresh by mail_room
    redis_client.delete(key(3))  # expired meanwhile
    result = ls.release(plan, svc)
    assert [c.uid for c in result.changed] == [1]
    assert result.skipped == {"reclaimed": [2], "gone": [3]}
    assert redis_client.ttl(key(2)) > 590


def test_ttl_never_lengthens_and_waves_stagger(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(7, now=NOW))
    seed_keys(redis_client, {key(u): ("1", 600) for u in range(1, 7)})
    seed_keys(redis_client, {key(7): ("1", 10)})
    env = redis_env(mailbox, redis_server.url)
    r = cli(["release", "--uids", "1:7", "--ttl", "30", "--waves", "3", "--wave-interval", "20", "--dry-run"], env=env)
    assert "wave 1: TTL 30 s, 3 key(s)" in r.out and "wave 3: TTL 70 s, 0 key(s)" in r.out
    assert "1 already expire sooner" in r.out
    r = cli(["release", "--uids", "1:7", "--ttl", "30", "--waves", "3", "--wave-interval", "20", "--yes", "--json"],
            env=env)
    assert r.code == 0, r.err
    doc = json.loads(r.lines[0])
    assert doc["changed_uids"] == "1:6" and doc["skipped"] == {}
    ttl = {u: redis_client.ttl(key(u)) for u in range(1, 8)}
    assert all(25 <= ttl[u] <= 30 for u in (1, 2, 3))
    assert all(45 <= ttl[u] <= 50 for u in (4, 5, 6))
    assert ttl[7] <= 10  # expires sooner than asked: left alone
    touched = {k: (o, n) for r in journal_ops() if r["phase"] == "progress" for k, o, n in r["keys"]}
    assert set(touched) == {key(u) for u in range(1, 7)}
    assert touched[key(1)][1] == 30.0 and touched[key(4)][1] == 50.0 and touched[key(4)][0] > 590


def test_pre_010_counters_need_deleting(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(4, now=NOW))
    hold_all(mailbox, redis_client, [3], legacy_incr=True)
    live = MailRoomConsumer(mailbox.settings(), redis_client, fast(legacy_incr=True, name="live")).start()
    try:
        assert wait_until(lambda: int(redis_client.get(key(3)) or 0) > 2)  # every poll increments it
        env = redis_env(mailbox, redis_server.url)
        r = cli(["release", "--uids", "3", "--ttl", "30", "--dry-run"], env=env)
        assert "pre-0.10 counters" in r.out and "use --now" in r.out
        r = cli(["release", "--uids", "3", "--natural", "--dry-run"], env=env)
        assert "never expire while mail_room runs" in r.out
        r = cli(["release", "--uids", "3", "--now", "--yes", "--wait", "--poll-cycle", "1", "--interval", "0.1",
                 "--timeout", "15"], env=env)
        assert r.code == 0, r.out + r.err
    finally:
        live.stop()
    assert sorted(live.stats.delivered) == [1, 2, 3, 4]
    assert sorted(subjects(queued_jobs(redis_client))) == [f"Message {i}" for i in range(4)]


def test_mark_unseen_combined_step_for_seen_stuck_messages(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(4, now=NOW))
    crashing = MailRoomConsumer(mailbox.settings(), redis_client, fast(crash_after_fetch=True))
    crashing.cycle()
    crashing.stop()
    assert mailbox.search("SEEN UNDELETED") == [1, 2, 3, 4]  # the seen trap, keys held 600 s
    env = redis_env(mailbox, redis_server.url)
    r = cli(["release", "--all", "--dry-run"], env=env)
    assert "0 lock key(s)" in r.out  # nothing UNSEEN: a plain release does nothing
    r = cli(["release", "--mark-unseen", "--uids", "2:4", "--dry-run"], env=env)
    assert "step 1: remove \\Seen from 3" in r.out and "3 lock key(s)" in r.out
    live = MailRoomConsumer(mailbox.settings(), redis_client, fast(name="live")).start()
    try:
        r = cli(["release", "--mark-unseen", "--uids", "2:4", "--yes", "--wait", "--poll-cycle", "1",
                 "--interval", "0.1", "--timeout", "15"], env=env)
        assert r.code == 0, r.out + r.err
        assert "mark-unseen: 3 message(s) changed" in r.out
    finally:
        live.stop()
    assert sorted(live.stats.delivered) == [2, 3, 4]
    assert len(queued_jobs(redis_client)) == 3
    assert mailbox.search("SEEN UNDELETED") == [1]
    assert [r["phase"] for r in journal_ops("mark-unseen")] == ["begin", "intent", "progress", "end"]  # written ahead


def test_natural_wait_touches_nothing(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(3, now=NOW))
    hold_all(mailbox, redis_client, [1, 2, 3])
    for u in (1, 2, 3):
        redis_client.pexpire(key(u), 800)
    live = MailRoomConsumer(mailbox.settings(), redis_client, fast(name="live")).start()
    try:
        r = cli(["release", "--all", "--natural", "--wait", "--poll-cycle", "1", "--interval", "0.1",
                 "--timeout", "15", "--json"], env=redis_env(mailbox, redis_server.url))
    finally:
        live.stop()
    assert r.code == 0, r.out + r.err
    watch = json.loads(r.lines[-1])["watch"]
    assert watch["done"] and not watch["failed"] and watch["reclaimed"] == 3 and watch["delivered"] == 3
    assert journal_ops() == []


def test_wait_without_mail_room_gives_the_diagnosis(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(3, now=NOW))
    hold_all(mailbox, redis_client, [1, 2, 3])
    t0 = time.monotonic()
    r = cli(["release", "--all", "--yes", "--wait", "--poll-cycle", "0.3", "--interval", "0.1"],
            env=redis_env(mailbox, redis_server.url))
    assert r.code == 1
    assert NO_RECLAIM in r.out
    assert time.monotonic() - t0 < 10
    assert mailbox.search("UNSEEN") == [1, 2, 3]


# -- a Redis error halfway -----------------------------------------------------------------------------


class FailingScripts:
    """Wraps a real client; the n-th call of the release script fails, before or after it ran on the
    server (as when a connection drops before the command left, or before its reply arrived)."""

    def __init__(self, real: Any, fail_on: int, after_running: bool) -> None:
        self.real, self.fail_on, self.after_running, self.calls = real, fail_on, after_running, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def register_script(self, lua: str) -> Any:
        script = self.real.register_script(lua)
        if "PEXPIRE" not in lua:
            return script  # the read script works

        def call(*a: Any, **k: Any) -> Any:
            self.calls += 1
            if self.calls == self.fail_on:
                if self.after_running:
                    script(*a, **k)
                    raise redis.exceptions.ConnectionError("Connection reset by peer (reply lost)")
                raise redis.exceptions.ConnectionError("Connection reset by peer (before sending)")
            return script(*a, **k)

        return call


@pytest.mark.parametrize("after_running", [False, True])
def test_error_halfway_journal_names_exactly_the_changed_keys(mailbox, redis_server, redis_client,  # type: ignore[no-untyped-def]
                                                                after_running):
    mailbox.seed(backlog(10, now=NOW))
    seed_keys(redis_client, {key(u): ("1", 600) for u in range(1, 11)})
    ls = locks_for(redis_server.url, client=FailingScripts(redis_server.client(), 2, after_running))
    ls.write_chunk = 4
    svc = triage_for(mailbox)
    uv, uids = svc.search(View.UNSEEN)
    result = ls.release(ls.plan_release(svc, uv, uids), svc)
    changed = list(range(1, 9)) if after_running else list(range(1, 5))
    rest = [u for u in range(1, 11) if u not in changed]
    assert result.error and result.error.startswith("Redis unavailable: ") and not result.ok
    assert sorted(c.uid for c in result.changed) == changed
    assert result.in_doubt == [] and result.untouched == rest  # the lost batch was read back and settled
    assert [u for u in range(1, 11) if not redis_client.exists(key(u))] == changed  # Redis agrees
    assert all(redis_client.ttl(key(u)) > 590 for u in rest)
    end = [r for r in journal_ops() if r["phase"] == "end"][0]
    assert end["result"] == "partial" and end["changed_count"] == len(changed)
    assert end["untouched"] == ("9:10" if after_running else "5:10") and end["in_doubt"] == ""
    assert sorted(k for k, _o, _n in ls.changes_from_journal(end["op"])) == sorted(key(u) for u in changed)


def test_redis_dies_halfway_rest_untouched_and_reported(mailbox, redis_client):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(10, now=NOW))
    server = start_redis()
    try:
        client = server.client()
        seed_keys(client, {key(u): ("1", 600) for u in range(1, 11)})
        ls = locks_for(server.url)
        ls.write_chunk = 3
        svc = triage_for(mailbox)
        uv, uids = svc.search(View.UNSEEN)
        plan = ls.plan_release(svc, uv, uids)
        seen: dict[int, int] = {}

        def after_batch(done: int, total: int) -> None:
            if done == 3:  # look at Redis with our own eyes, then pull the plug
                seen.update({u: client.exists(key(u)) for u in range(1, 11)})
                server.stop()

        result = ls.release(plan, svc, progress=after_batch)
    finally:
        server.stop()
    assert seen == {u: (0 if u <= 3 else 1) for u in range(1, 11)}
    assert [c.uid for c in result.changed] == [1, 2, 3]
    assert result.in_doubt == [4, 5, 6] and result.untouched == [7, 8, 9, 10]
    assert result.error is not None and "Redis unavailable" in result.error and "\n" not in result.error
    end = [r for r in journal_ops() if r["phase"] == "end"][0]
    assert (end["changed_uids"], end["in_doubt"], end["untouched"], end["result"]) == ("1:3", "4:6", "7:10", "partial")
    progress = [r for r in journal_ops() if r["phase"] == "progress"]
    assert [k for r in progress for k, _o, _n in r["keys"]] == [key(u) for u in (1, 2, 3)]


@pytest.mark.parametrize("fail_at", ["intent", "record"])
def test_journal_failure_stops_before_the_next_batch(mailbox, redis_server, redis_client, monkeypatch,  # type: ignore[no-untyped-def]
                                                     fail_at):
    """Write-ahead for releases too: each batch's intent is journaled before its script runs; when
    the journal can't be written, no later batch is sent and the error names exactly what changed."""
    from triage_tui.services.journal import JournalWriteFailed
    from triage_tui.services.locks import ReleaseStopped

    mailbox.seed(backlog(10, now=NOW))
    seed_keys(redis_client, {key(u): ("1", 600) for u in range(1, 11)})
    ls, svc = locks_for(redis_server.url), triage_for(mailbox)
    ls.write_chunk = 4
    uv, uids = svc.search(View.UNSEEN)
    plan = ls.plan_release(svc, uv, uids)
    real = AuditJournal.append
    seen = {"intent": 0, "record": 0}

    def append(self, record, **kw):  # type: ignore[no-untyped-def]
        if record.get("action") == "release-locks" and record.get("phase") in ("intent", "progress"):
            which = "intent" if record["phase"] == "intent" else "record"
            seen[which] += 1
            if which == fail_at and seen[which] == 2:  # the second batch's
                raise JournalWriteFailed("No space left on device")
        return real(self, record, **kw)

    monkeypatch.setattr(AuditJournal, "append", append)
    with pytest.raises(ReleaseStopped) as exc:
        ls.release(plan, svc)
    changed = [1, 2, 3, 4] if fail_at == "intent" else [1, 2, 3, 4, 5, 6, 7, 8]
    assert [u for u in range(1, 11) if not redis_client.exists(key(u))] == changed  # Redis agrees
    text = str(exc.value)
    assert text.startswith("stopped: the audit journal could not be written (No space left on device)")
    assert f"{len(changed)} of 10 key(s) were released (UIDs {changed[0]}:{changed[-1]})" in text
    assert "nothing else was sent" in text
    assert all(redis_client.ttl(key(u)) > 590 for u in range(len(changed) + 1, 11))
