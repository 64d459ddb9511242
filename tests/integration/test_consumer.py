"""The mail_room-compatible consumer against real Dovecot + real Redis (and pymap + fakeredis, the
demo's pair). Every check reads the server state (IMAP flags, Redis keys and queue) directly."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import fakeredis
import imapclient
import pytest

from tests.mailgen import backlog, message
from tests.servers import _wait_port, free_port
from triage_tui.services.consumer import ConsumerOptions, MailRoomConsumer, queued_jobs
from triage_tui.services.imap import ConnectionSettings, Secret

NOW = time.time()
PREFIX = "mail_room:gitlab:"


def wait_until(pred: Callable[[], bool], timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def subjects(jobs: list[dict]) -> list[str]:  # type: ignore[type-arg]
    out = []
    for j in jobs:
        for line in j["args"][0].splitlines():
            if line.startswith("Subject: "):
                out.append(line[len("Subject: "):])
    return out


def fast(**kw: object) -> ConsumerOptions:
    base: dict[str, object] = {"poll_interval": 0.05}
    base.update(kw)
    return ConsumerOptions(**base)  # type: ignore[arg-type]


def test_two_instances_deliver_each_unseen_message_exactly_once(mailbox, redis_client):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(30, now=NOW, seen_every=10))  # UIDs 1, 11, 21 are \Seen: never touched
    unseen = mailbox.search("UNSEEN")
    assert len(unseen) == 27
    a = MailRoomConsumer(mailbox.settings(), redis_client, fast(name="a"))
    b = MailRoomConsumer(mailbox.settings(), redis_client, fast(name="b"))
    with a, b:
        assert wait_until(lambda: redis_client.llen("queue:email_receiver") >= 27)
        time.sleep(0.3)  # a few more cycles: nothing may be delivered twice
    jobs = queued_jobs(redis_client)
    assert len(jobs) == 27
    assert sorted(subjects(jobs)) == sorted(f"Message {u - 1}" for u in unseen)
    j = jobs[0]
    assert j["class"] == "EmailReceiverWorker" and j["queue"] == "email_receiver" and j["retry"] is False
    assert len(j["jid"]) == 24 and isinstance(j["enqueued_at"], float)
    assert sorted(a.stats.delivered + b.stats.delivered) == unseen
    # arbitration keys as mail_room 0.10 leaves them: value "1", TTL ~600
    for uid in unseen:
        assert redis_client.get(f"{PREFIX}delivered:{uid}") == "1"
        assert 590 <= redis_client.ttl(f"{PREFIX}delivered:{uid}") <= 600
    flags = mailbox.flags()
    for uid in unseen:
        assert {"\\Seen", "\\Deleted"} <= flags[uid]
    for uid in (1, 11, 21):
        assert flags[uid] == {"\\Seen"}
        assert redis_client.exists(f"{PREFIX}delivered:{uid}") == 0


def test_held_keys_block_their_messages(mailbox, redis_client):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(8, now=NOW))
    dead = MailRoomConsumer(mailbox.settings(), redis_client, fast(name="dead"))
    assert dead.hold([2, 5, 7]) == 3
    live = MailRoomConsumer(mailbox.settings(), redis_client, fast(name="live"))
    try:
        delivered = live.cycle()
        assert delivered == [1, 3, 4, 6, 8]
        assert live.stats.lost == 3
        assert live.cycle() == []  # still blocked on the next poll
    finally:
        live.stop()
    assert mailbox.search("UNSEEN") == [2, 5, 7]
    assert len(queued_jobs(redis_client)) == 5


def test_legacy_incr_refreshes_the_ttl_every_poll(mailbox, redis_client):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(3, now=NOW))
    dead = MailRoomConsumer(mailbox.settings(), redis_client, fast(legacy_incr=True, name="dead"))
    assert dead.hold([2], ttl=5) == 1
    key = f"{PREFIX}delivered:2"
    assert redis_client.get(key) == "1" and redis_client.ttl(key) <= 5
    live = MailRoomConsumer(mailbox.settings(), redis_client, fast(legacy_incr=True, name="live"))
    try:
        assert live.cycle() == [1, 3]
        live.cycle()
    finally:
        live.stop()
    # every poll INCRs the held key and refreshes its TTL: it never expires while an instance runs
    assert int(redis_client.get(key)) == 3
    assert redis_client.ttl(key) > 590
    assert mailbox.search("UNSEEN") == [2]


def test_crash_after_fetch_leaves_the_seen_trap(mailbox, redis_client):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(4, now=NOW))
    c = MailRoomConsumer(mailbox.settings(), redis_client, fast(crash_after_fetch=True))
    try:
        assert c.cycle() == []
    finally:
        c.stop()
    assert c.stats.crashed == [1, 2, 3, 4]
    assert mailbox.search("UNSEEN") == []
    assert mailbox.search("SEEN UNDELETED") == [1, 2, 3, 4]
    assert redis_client.llen("queue:email_receiver") == 0
    assert all(redis_client.get(f"{PREFIX}delivered:{u}") == "1" for u in range(1, 5))


def test_expunge_and_options(mailbox, redis_client):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(3, now=NOW))
    opts = fast(expunge_deleted=True, queue="default", worker="ServiceDeskEmailReceiverWorker",
                key_prefix="sd:", lock_ttl=30)
    c = MailRoomConsumer(mailbox.settings(), redis_client, opts)
    try:
        assert c.cycle() == [1, 2, 3]
    finally:
        c.stop()
    assert mailbox.search("ALL") == []
    jobs = queued_jobs(redis_client, "default")
    assert [j["class"] for j in jobs] == ["ServiceDeskEmailReceiverWorker"] * 3
    assert 25 <= redis_client.ttl("sd:delivered:1") <= 30
    assert redis_client.smembers("queues") == {"default"}


def test_thread_picks_up_new_mail_and_stops(mailbox, redis_client):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(2, now=NOW))
    c = MailRoomConsumer(mailbox.settings(), redis_client, fast())
    c.start()
    try:
        assert wait_until(lambda: len(c.stats.delivered) == 2)
        cl = mailbox.client()
        try:
            cl.append("INBOX", message(subject="late arrival"))
        finally:
            cl.logout()
        assert wait_until(lambda: len(c.stats.delivered) == 3)
    finally:
        c.stop()
    assert c.stats.cycles >= 2 and c.stats.errors == 0
    assert subjects(queued_jobs(redis_client))[-1] == "late arrival"


# -- pymap + fakeredis (the demo's pair) --------------------------------------------------------


@contextlib.contextmanager
def pymap_server() -> Iterator[int]:
    port = free_port()
    log = Path(f"/var/tmp/triage-pymap-{os.getpid()}-{port}.log")
    exe = Path(sys.executable).with_name("pymap")
    with log.open("wb") as out:
        proc = subprocess.Popen([str(exe), "--no-tls", "--host", "127.0.0.1", "--port", str(port),
                                 "--no-service", "admin", "dict", "--demo-data"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_port(port, proc, log)  # type: ignore[arg-type]
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        log.unlink(missing_ok=True)


def test_consumer_against_pymap_and_fakeredis() -> None:
    r = fakeredis.FakeRedis(decode_responses=True)
    with pymap_server() as port:
        settings = ConnectionSettings(host="127.0.0.1", port=port, security="none", user="demouser",
                                      password=Secret("demopass"))
        c = imapclient.IMAPClient("127.0.0.1", port=port, ssl=False)
        c.login("demouser", "demopass")
        c.select_folder("INBOX")
        before = sorted(c.search(["UNSEEN"]))
        for i in range(3):
            c.append("INBOX", message(subject=f"pymap {i}"))
        unseen = sorted(c.search(["UNSEEN"]))
        assert min(unseen) >= 101  # pymap's UIDs start at 101
        consumer = MailRoomConsumer(settings, r, fast(name="pymap"))
        try:
            consumer.hold([unseen[-1]])  # one stuck key
            delivered = consumer.cycle()
        finally:
            consumer.stop()
        assert delivered == unseen[:-1]
        c.noop()
        assert sorted(c.search(["UNSEEN"])) == [unseen[-1]]
        assert set(delivered) <= set(c.search(["DELETED"]))
        c.logout()
    jobs = queued_jobs(r)
    assert len(jobs) == len(before) + 2
    assert {"pymap 0", "pymap 1"} <= set(subjects(jobs))
    assert r.get(f"{PREFIX}delivered:{unseen[-1]}") == "1"


@pytest.mark.parametrize("legacy", [False, True])
def test_consumer_with_fakeredis_on_dovecot(mailbox, legacy: bool) -> None:  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(3, now=NOW))
    r = fakeredis.FakeRedis()  # bytes responses: the consumer must not care
    c = MailRoomConsumer(mailbox.settings(), r, fast(legacy_incr=legacy))
    try:
        assert c.cycle() == [1, 2, 3]
        assert c.cycle() == []
    finally:
        c.stop()
    assert len(queued_jobs(r)) == 3
