"""GitLab's Sidekiq queues in the watch after a release, against the REAL redis-server and Dovecot
with the mail_room-compatible consumer: the jobs arriving (length, "+N since release", oldest age
and class), read-only (``INFO commandstats``: no write, no SCRIPT LOAD), a 5 MB job not
transferred (``INFO stats`` output bytes), and errors that never break the watch."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import redis

from tests.integration.test_consumer import fast, wait_until
from tests.integration.test_locks import redis_env
from tests.integration.test_read_only_redis import READS, sent_during
from tests.integration.test_release import hold_all
from tests.mailgen import backlog
from triage_tui.services.consumer import MailRoomConsumer, queued_jobs
from triage_tui.services.sidekiq import NO_QUEUE, SidekiqProbe, SidekiqStatus, SidekiqWatch

NOW = time.time()


def probe(client: Any, *queues: str, namespace: str = "") -> SidekiqProbe:
    return SidekiqProbe(lambda: client, queues or ("email_receiver", "default"), namespace=namespace)


def job(cls: str = "EmailReceiverWorker", enqueued_at: float | int | None = None, raw: str = "Subject: x\r\n\r\nhi",
        queue: str = "email_receiver") -> str:
    return json.dumps({"class": cls, "args": [raw], "queue": queue, "jid": "abc", "retry": False,
                       "enqueued_at": time.time() if enqueued_at is None else enqueued_at})


def output_bytes(client: Any) -> int:
    return int(client.info("stats")["total_net_output_bytes"])


# -- release --wait, the whole way: keys held, released, the consumer delivers into the queue --------


def test_release_wait_shows_the_jobs_arriving_in_gitlabs_queue(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(6, now=NOW))
    hold_all(mailbox, redis_client, range(1, 7))  # an instance claimed everything and died
    # GitLab's queue already holds 2 older jobs (Sidekiq busy): "+N since release" counts only ours
    redis_client.lpush("queue:email_receiver", job(enqueued_at=time.time() - 120), job(enqueued_at=time.time() - 90))
    redis_client.sadd("queues", "email_receiver")
    consumer = MailRoomConsumer(mailbox.settings(), redis_client, fast(name="live"))
    with consumer:
        r = cli(["release", "--all", "--yes", "--wait", "--timeout", "20", "--interval", "0.3", "--json"],
                env=redis_env(mailbox, redis_server.url))
    assert r.code == 0, r.out + r.err
    docs = [json.loads(ln) for ln in r.lines]
    sk = docs[-1]["watch"]["sidekiq"]
    q = {x["queue"]: x for x in sk["queues"]}
    assert q["email_receiver"]["length"] == 8 == redis_client.llen("queue:email_receiver")
    assert q["email_receiver"]["since_release"] == 6
    assert 85 <= q["email_receiver"]["oldest_age_s"] < 200  # the oldest job, by Redis's clock
    assert q["email_receiver"]["oldest_class"] == "EmailReceiverWorker"
    assert q["default"]["seen"] is False and q["default"]["all_gitlab_jobs"] is True
    assert sk["note"] is None and sk["error"] is None and sk["oldest_read"] is True
    # the progress lines (stderr with --json) show the queue growing
    counts = [int(m.group(1)) for m in re.finditer(r"email_receiver queue: (\d+) job\(s\) \(\+\d+ since release\)",
                                                   r.err)]
    assert counts and counts[-1] == 8 and counts == sorted(counts), r.err
    assert re.search(r"oldest (1|2) min old \(EmailReceiverWorker\)", r.err), r.err
    assert "default queue" not in r.err  # never seen on this Redis: not shown


def test_release_wait_plain_text_default_queue_and_no_queue_note(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(3, now=NOW))
    hold_all(mailbox, redis_client, range(1, 4))
    r = cli(["release", "--all", "--yes", "--wait", "--timeout", "1", "--interval", "0.3"],
            env=redis_env(mailbox, redis_server.url))
    assert r.code == 1  # nothing consumes
    progress = [ln for ln in r.lines if ln.startswith("[")]
    assert progress and all(f"Sidekiq: {NO_QUEUE}" in ln for ln in progress), r.out


def test_release_wait_default_queue_is_labelled_all_gitlab_jobs(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    """Newer GitLab: the default queue, labelled as holding every job; Sidekiq 8's ms timestamps."""
    mailbox.seed(backlog(2, now=NOW))
    hold_all(mailbox, redis_client, range(1, 3))
    redis_client.lpush("queue:default", json.dumps({"class": "SomeOtherWorker", "args": [],
                                                    "enqueued_at": int(time.time() * 1000) - 5000}))  # Sidekiq 8: ms
    consumer = MailRoomConsumer(mailbox.settings(), redis_client, fast(name="new", queue="default"))
    with consumer:
        r = cli(["release", "--all", "--yes", "--wait", "--timeout", "20", "--interval", "0.3"],
                env=redis_env(mailbox, redis_server.url))
    assert r.code == 0, r.out
    last = [ln for ln in r.lines if ln.startswith("[")][-1]
    assert re.search(r"default queue \(all GitLab jobs\): \d+ job\(s\) \(\+\d+ since release\), oldest \d+ s old "
                     r"\(SomeOtherWorker\)", last), last
    assert "email_receiver" not in last


# -- read-only and bounded ------------------------------------------------------------------------


def test_one_look_is_read_only_loads_nothing_and_does_not_transfer_a_5mb_job(redis_client):  # type: ignore[no-untyped-def]
    huge = "Subject: big\r\n\r\n" + "x" * (5 * 1024 * 1024)
    redis_client.lpush("queue:email_receiver", job(raw=huge, enqueued_at=time.time() - 30))
    redis_client.lpush("queue:email_receiver", job(raw=huge))
    redis_client.sadd("queues", "email_receiver")
    redis_client.script_flush()
    p = probe(redis_client)
    looks: list[Any] = []
    before = output_bytes(redis_client)
    sent = sent_during(redis_client, lambda: looks.append(p.look()))
    transferred = output_bytes(redis_client) - before
    assert transferred < 100_000, transferred  # well under 1 MB for two 5 MB jobs
    writes = {k: n for k, n in sent.items() if k not in READS}
    assert not writes and not any(k.startswith("script") for k in sent), sent
    assert sent.get("eval") == 1 and sent.get("evalsha") == 1  # NOSCRIPT, then EVAL: nothing loaded
    q = looks[0].queues[0]
    assert q.length == 2 and q.oldest_class == "EmailReceiverWorker"
    assert 25 <= looks[0].oldest_age(q) < 60
    assert redis_client.llen("queue:email_receiver") == 2  # nothing popped


def test_big_jobs_are_searched_not_decoded_and_odd_jobs_never_fail(redis_client):  # type: ignore[no-untyped-def]
    p = probe(redis_client, "a", "b", "c", "d", "e", "f")
    t = time.time()
    # a: > 256 KB, whose raw message contains a decoy "enqueued_at" (escaped inside the JSON string)
    decoy = 'Subject: "enqueued_at": 1\r\n\r\n"class": "Evil"' + "y" * 300_000
    redis_client.lpush("queue:a", json.dumps({"class": "ServiceDeskEmailReceiverWorker", "args": [decoy],
                                              "enqueued_at": t - 10}))
    redis_client.lpush("queue:b", "not json at all {")  # garbage: length only
    redis_client.lpush("queue:c", json.dumps({"class": "\u202eKROW\x1b[31m", "enqueued_at": "soon"}))
    redis_client.set("queue:d", "a string, not a list")  # WRONGTYPE must not fail the others
    redis_client.sadd("queues", "e")  # known to Sidekiq, empty
    redis_client.lpush("queue:f", "[" * 5000 + "]" * 5000)  # deeper than cjson allows: pcall keeps it quiet
    look = p.look()
    q = {x.queue: x for x in look.queues}
    assert q["a"].oldest_class == "ServiceDeskEmailReceiverWorker" and 5 <= look.oldest_age(q["a"]) < 60
    assert q["b"].length == 1 and q["b"].oldest_class is None and q["b"].oldest_enqueued_at is None
    assert q["c"].oldest_enqueued_at is None
    assert q["d"].length is None and q["d"].seen
    assert q["e"].length == 0 and q["e"].seen
    assert q["f"].length == 1 and q["f"].oldest_class is None
    text = SidekiqStatus(look, {"a": 0}).text()
    assert "\u202e" not in text and "\x1b" not in text and "\\u202e" in text  # shown inert
    assert "d queue: not a Sidekiq list" in text and "f queue: 1 job(s)" in text
    assert "a queue: 1 job(s) (+1 since release)" in text


def test_namespace_and_scripting_refused_gives_lengths_only(redis_server, redis_client):  # type: ignore[no-untyped-def]
    redis_client.lpush("resque:gitlab:queue:email_receiver", job(), job())
    redis_client.sadd("resque:gitlab:queues", "email_receiver")
    redis_client.acl_setuser("noscript", enabled=True, passwords=["+pw"], keys=["*"],
                             commands=["+@all", "-eval", "-evalsha", "-script"])
    try:
        limited = redis.Redis(host=redis_client.connection_pool.connection_kwargs["host"],
                              port=redis_client.connection_pool.connection_kwargs["port"],
                              username="noscript", password="pw")
        p = probe(limited, namespace="resque:gitlab:")
        look = p.look()
        assert not look.scripted and look.queues[0].length == 2 and look.queues[0].oldest_class is None
        assert "oldest job unknown: scripting refused" in SidekiqStatus(look, None).text()
        limited.close()
        # an ACL that only allows mail_room's keys: each queue says why it is unreadable, nothing raises
        redis_client.acl_setuser("lockonly", enabled=True, passwords=["+pw"], keys=["mail_room:*"],
                                 commands=["+@all"])
        kw = redis_client.connection_pool.connection_kwargs
        limited = redis.Redis(host=kw["host"], port=kw["port"], username="lockonly", password="pw")
        look = probe(limited).look()
        # Redis refuses the EVAL itself (its KEYS are checked first): the pipeline then says why per queue
        assert all(q.length is None and "permissions" in (q.error or "") for q in look.queues), look
        text = SidekiqStatus(look, None).text()
        assert "email_receiver queue: unreadable (" in text and "not a Sidekiq list" not in text
        limited.close()
    finally:
        redis_client.acl_deluser("noscript", "lockonly")


def test_errors_never_break_the_watch_and_are_noted_once(redis_client):  # type: ignore[no-untyped-def]
    calls = {"n": 0}

    def client() -> Any:
        calls["n"] += 1
        if calls["n"] in (2, 3):
            raise redis.exceptions.ConnectionError("link lost")
        return redis_client

    w = SidekiqWatch(SidekiqProbe(client))
    assert w.snapshot() is not None
    redis_client.lpush("queue:email_receiver", job())
    a, b, c = w.poll(), w.poll(), w.poll()
    assert a.error and a.first_error and b.error and not b.first_error
    assert c.error is None and c.since(c.look.queues[0]) == 1  # type: ignore[union-attr]
    assert "link lost" in a.text() and a.to_json()["error"]


def test_consumer_jobs_read_back(mailbox, redis_client):  # type: ignore[no-untyped-def]
    """The probe reads what the consumer (mail_room's stand-in) writes: class and enqueued_at."""
    mailbox.seed(backlog(3, now=NOW))
    c = MailRoomConsumer(mailbox.settings(), redis_client, fast(worker="ServiceDeskEmailReceiverWorker"))
    c.cycle()
    c.stop()
    assert wait_until(lambda: len(queued_jobs(redis_client)) == 3)
    look = probe(redis_client).look()
    q = look.queues[0]
    assert q.length == 3 and q.known and q.oldest_class == "ServiceDeskEmailReceiverWorker"
    assert look.oldest_age(q) < 30


# -- configuration: --sidekiq-queue / --sidekiq-namespace / the mail_room file ----------------------


def test_configured_queue_and_namespace_are_read(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(2, now=NOW))
    hold_all(mailbox, redis_client, range(1, 3))
    consumer = MailRoomConsumer(mailbox.settings(), redis_client, fast(name="ns", queue="mail\u202ein"))
    with consumer:
        # the consumer writes queue:<name>; a namespace given means resque:gitlab:queue:<name> is read instead
        r = cli(["--sidekiq-queue", "mail\u202ein", "release", "--all", "--yes", "--wait", "--timeout", "20",
                 "--interval", "0.3", "--json"], env=redis_env(mailbox, redis_server.url))
    assert r.code == 0, r.out + r.err
    sk = json.loads(r.lines[-1])["watch"]["sidekiq"]
    assert [q["queue"] for q in sk["queues"]] == ["mail\u202ein"] and sk["queues"][0]["length"] == 2
    assert "\u202e" not in r.err and "mail\\u202ein queue: 2 job(s)" in r.err  # shown inert
    r = cli(["release", "--all", "--natural", "--wait", "--timeout", "0.3", "--interval", "0.1", "--json"],
            env=redis_env(mailbox, redis_server.url, TRIAGE_SIDEKIQ_QUEUES="mail\u202ein",
                          TRIAGE_SIDEKIQ_NAMESPACE="resque:gitlab:"))
    sk = json.loads(r.lines[-1])["watch"]["sidekiq"]
    assert sk["queues"][0]["key"] == "resque:gitlab:queue:mail\u202ein" and sk["note"] == NO_QUEUE
    too_many = [a for i in range(40) for a in ("--sidekiq-queue", f"q{i}")]
    r = cli([*too_many, "release", "--all", "--natural", "--wait", "--timeout", "0.3"],
            env=redis_env(mailbox, redis_server.url))
    assert r.code == 2 and "at most 32 Sidekiq queues" in r.out + r.err and "Traceback" not in r.out + r.err


# -- the last look waits (briefly) for the jobs: mail_room sets \Seen before it pushes -----------


def _done(picked: int) -> Any:
    from triage_tui.services.locks.watch import WatchStatus
    return WatchStatus(1.0, picked, 0, picked, 0, 0, picked, 0.0, None, None, done=True)


def test_settle_waits_for_the_jobs_of_every_picked_up_message(redis_client):  # type: ignore[no-untyped-def]
    import threading

    from triage_tui.services.locks.watch import ReleaseWatcher
    sk = SidekiqWatch(probe(redis_client))
    sk.snapshot()
    w = ReleaseWatcher(None, None, 1, {}, sidekiq=sk)  # type: ignore[arg-type]  # settle reads Redis only
    st = _done(3)
    st.sidekiq = sk.poll()
    redis_client.lpush("queue:email_receiver", job())  # one job in; two still on their way
    t = threading.Timer(0.5, lambda: redis_client.lpush("queue:email_receiver", job(), job()))
    t.start()
    t0 = time.monotonic()
    w.settle(st)
    t.join()
    assert 0.4 < time.monotonic() - t0 < 1.9
    assert st.sidekiq is not None and st.sidekiq.look is not None
    assert st.sidekiq.since(st.sidekiq.look.queues[0]) == 3


def test_settle_gives_up_after_its_budget_and_skips_failed_or_unknowable(redis_client):  # type: ignore[no-untyped-def]
    from triage_tui.services.locks.watch import ReleaseWatcher
    sk = SidekiqWatch(probe(redis_client))
    sk.snapshot()
    w = ReleaseWatcher(None, None, 1, {}, sidekiq=sk)  # type: ignore[arg-type]
    st = _done(2)
    st.sidekiq = sk.poll()
    t0 = time.monotonic()
    w.settle(st, budget=0.4)  # Sidekiq already ran them, or another queue: never waits for ever
    assert 0.35 < time.monotonic() - t0 < 1.5
    failed = _done(2)
    failed.failed, failed.sidekiq = True, sk.poll()
    t0 = time.monotonic()
    w.settle(failed)
    nobase = _done(2)
    nobase.sidekiq = SidekiqWatch(probe(redis_client)).poll()  # no baseline: nothing to count from
    w.settle(nobase)
    assert time.monotonic() - t0 < 0.2
