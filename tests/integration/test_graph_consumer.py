"""mail_room's Graph inbox stand-in (:class:`GraphMailRoomConsumer`) against the Graph test server
(real HTTP, in-process) and the real redis-server: it picks up unread mail in mail_room's order
(GET ``$value`` does not mark read; PATCH, then the soft DELETE), respects held locks, backs off on
429, leaves the Graph crash trap (delivered, unread, locked) when it dies before the PATCH, and
``release --wait`` over ``--inbox graph`` sees the released messages picked up."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.integration.test_consumer import subjects, wait_until
from tests.mailgen import backlog
from triage_tui.demo.backlog import ADDRESS_TEMPLATE
from triage_tui.demo.graphserver import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_MAILBOX,
    DEMO_TENANT,
    GraphServer,
)
from triage_tui.domain.uidset import parse
from triage_tui.services.consumer import queued_jobs
from triage_tui.services.graph import GraphSettings
from triage_tui.services.graphconsumer import GraphConsumerOptions, GraphMailRoomConsumer
from triage_tui.services.imap import Secret

PREFIX = "mail_room:gitlab:"
NOW = time.time()


@pytest.fixture
def graph() -> Iterator[GraphServer]:
    srv = GraphServer().start()
    yield srv
    srv.stop()


def settings(srv: GraphServer) -> GraphSettings:
    return GraphSettings(tenant_id=DEMO_TENANT, client_id=DEMO_CLIENT_ID, client_secret=Secret(DEMO_CLIENT_SECRET),
                         mailbox=DEMO_MAILBOX, graph_endpoint=srv.url, azure_ad_endpoint=srv.url)


def env(srv: GraphServer, redis_url: str) -> dict[str, str]:
    return {"TRIAGE_INBOX": "graph", "TRIAGE_GRAPH_ENDPOINT": srv.url, "TRIAGE_AZURE_AD_ENDPOINT": srv.url,
            "TRIAGE_GRAPH_TENANT_ID": DEMO_TENANT, "TRIAGE_GRAPH_CLIENT_ID": DEMO_CLIENT_ID,
            "TRIAGE_GRAPH_CLIENT_SECRET": DEMO_CLIENT_SECRET, "TRIAGE_GRAPH_MAILBOX": DEMO_MAILBOX,
            "TRIAGE_ADDRESS": ADDRESS_TEMPLATE, "TRIAGE_REDIS_URL": redis_url, "TRIAGE_KEY_PREFIX": PREFIX}


def seed(srv: GraphServer, n: int, **kw: Any) -> list[str]:
    return [srv.add_message(DEMO_MAILBOX, raw, is_read="S" in flags, received=datetime.fromtimestamp(ts, UTC))
            for raw, ts, flags in backlog(n, now=NOW, **kw)]


def consumer(srv: GraphServer, redis_client: Any, **kw: Any) -> GraphMailRoomConsumer:
    base: dict[str, Any] = {"poll_interval": 0.05, "backoff_base": 0.05}
    base.update(kw)
    return GraphMailRoomConsumer(settings(srv), redis_client, GraphConsumerOptions(**base))


def state(srv: GraphServer) -> dict[str, tuple[str, bool]]:
    """Message-ID -> (folder, isRead)."""
    return {m.internet_message_id: (m.folder, m.is_read) for m in srv.messages(DEMO_MAILBOX)}


def test_picks_up_unread_mail_in_mail_rooms_order(graph, redis_client) -> None:  # type: ignore[no-untyped-def]
    ids = seed(graph, 6, seen_every=3)  # 0 and 3 read: not mail_room's
    c = consumer(graph, redis_client)
    try:
        graph.reset_log()
        delivered = c.cycle()
    finally:
        c.stop()
    unread = [g for i, g in enumerate(ids) if i % 3]
    assert sorted(delivered) == sorted(unread)
    assert sorted(subjects(queued_jobs(redis_client))) == sorted(f"Message {i}" for i in (1, 2, 4, 5))
    job = queued_jobs(redis_client)[0]
    assert job["class"] == "EmailReceiverWorker" and job["queue"] == "email_receiver"
    assert redis_client.smembers("queues") == {"email_receiver"}
    for g in unread:  # the lock is keyed by the regular id mail_room saw, and kept after delivery
        assert 590 <= redis_client.ttl(f"{PREFIX}delivered:{g}") <= 600
    folders = sorted(f for f, _ in state(graph).values())
    assert folders == ["deleteditems"] * 4 + ["inbox"] * 2
    assert all(read for _, read in state(graph).values())
    # per message: $value, then PATCH isRead, then DELETE; no $batch, no immutable ids
    wire = [(m, p.split("?")[0].rsplit("/", 1)[-1]) for m, p in graph.log if "/messages/" in p]
    per = [wire[i:i + 3] for i in range(0, len(wire), 3)]
    assert len(per) == 4 and all([m for m, _ in p] == ["GET", "PATCH", "DELETE"] and p[0][1] == "$value" for p in per)
    assert graph.count("POST") == 0  # no $batch (the token POST is not counted)


def test_a_held_lock_is_skipped_until_released(graph, redis_client) -> None:  # type: ignore[no-untyped-def]
    ids = seed(graph, 3)
    dead = consumer(graph, redis_client, name="dead")
    assert dead.hold([ids[1]], ttl=600) == 1  # claimed by an instance that died
    dead.stop()
    live = consumer(graph, redis_client, name="live").start()
    try:
        assert wait_until(lambda: len(live.stats.delivered) == 2 and live.stats.lost >= 3)
        assert sorted(live.stats.delivered) == sorted([ids[0], ids[2]])
        msgid = next(m.internet_message_id for m in graph.messages(DEMO_MAILBOX) if m.regular_id == ids[1])
        assert state(graph)[msgid] == ("inbox", False)  # still unread, held
        redis_client.delete(f"{PREFIX}delivered:{ids[1]}")
        assert wait_until(lambda: len(live.stats.delivered) == 3)
    finally:
        live.stop()
    assert live.stats.delivered[-1] == ids[1]
    assert len(queued_jobs(redis_client)) == 3


def test_a_lock_expiring_frees_the_message(graph, redis_client) -> None:  # type: ignore[no-untyped-def]
    ids = seed(graph, 1)
    redis_client.set(f"{PREFIX}delivered:{ids[0]}", "1", px=600)
    live = consumer(graph, redis_client).start()
    try:
        assert wait_until(lambda: live.stats.lost >= 1)
        assert not live.stats.delivered
        assert wait_until(lambda: live.stats.delivered == ids, timeout=5)
    finally:
        live.stop()


def test_two_instances_deliver_each_message_once(graph, redis_client) -> None:  # type: ignore[no-untyped-def]
    seed(graph, 40)
    a = consumer(graph, redis_client, name="a", poll_interval=0.01).start()
    b = consumer(graph, redis_client, name="b", poll_interval=0.01).start()
    try:
        assert wait_until(lambda: len(a.stats.delivered) + len(b.stats.delivered) == 40, timeout=20)
        time.sleep(0.2)
    finally:
        a.stop()
        b.stop()
    assert len(queued_jobs(redis_client)) == 40
    assert len(set(subjects(queued_jobs(redis_client)))) == 40


def test_throttled_polls_back_off_exponentially_then_recover(graph, redis_client) -> None:  # type: ignore[no-untyped-def]
    seed(graph, 2)
    graph.throttle(3, retry_after=0.01)
    c = consumer(graph, redis_client, poll_interval=0.01, backoff_base=0.05, max_backoff=0.3)
    c.start()
    try:
        assert wait_until(lambda: len(c.stats.delivered) == 2, timeout=10)
    finally:
        c.stop()
    assert c.stats.throttled == 3
    assert c.stats.backoffs == [0.1, 0.2, 0.3]  # 2**n times the base, capped
    assert "429" in (c.stats.last_error or "")
    assert DEMO_CLIENT_SECRET not in (c.stats.last_error or "")


def test_crash_between_delivery_and_patch_is_the_graph_crash_trap(graph, redis_client, redis_server,  # type: ignore[no-untyped-def]
                                                                   cli) -> None:
    ids = seed(graph, 3)
    crashing = consumer(graph, redis_client, crash_after_delivery=1)
    assert crashing.cycle() == []
    crashing.stop()
    assert len(crashing.stats.crashed) == 1 and crashing.dead
    first = ids.index(crashing.stats.crashed[0])  # Graph lists newest first: Message 2
    assert subjects(queued_jobs(redis_client)) == [f"Message {first}"]  # GitLab has it
    assert all(s == ("inbox", False) for s in state(graph).values())  # but it is unread, as are the others
    assert all(redis_client.ttl(f"{PREFIX}delivered:{g}") > 590 for g in ids)  # and locked, 600 s
    assert graph.count("PATCH") == 0 and graph.count("DELETE") == 0
    assert crashing.cycle() == []  # a dead instance does nothing
    # what the operator sees: three unread, locked messages, all in the plan's release bucket (the
    # plan cannot tell the delivered one from the two never downloaded: the mailbox looks the same)
    e = env(graph, redis_server.url)
    rows = [json.loads(x) for x in cli(["list", "--json"], env=e).lines]
    assert len(rows) == 3 and all(r["lock"] is not None for r in rows)
    r = cli(["plan", "--json"], env=e)
    assert r.code == 0, r.err
    buckets = {b["name"]: b for b in json.loads(r.out)["buckets"]}
    assert sorted(parse(buckets["release"]["uids"])) == sorted(x["uid"] for x in rows)
    assert not buckets["crash-trapped"]["uids"]
    # once the locks go, a live mail_room delivers all three: that one a second time
    for g in ids:
        redis_client.delete(f"{PREFIX}delivered:{g}")
    live = consumer(graph, redis_client, name="live")
    try:
        assert sorted(live.cycle()) == sorted(ids)
    finally:
        live.stop()
    assert sorted(subjects(queued_jobs(redis_client))) == sorted([f"Message {first}"] + [f"Message {i}" for i in range(3)])


def test_release_wait_over_graph_reports_the_released_messages_picked_up(graph, redis_client, redis_server,  # type: ignore[no-untyped-def]
                                                                         cli) -> None:
    ids = seed(graph, 8)
    dead = consumer(graph, redis_client, name="dead")
    assert dead.hold(ids) == 8  # an instance claimed everything and died
    dead.stop()
    live = consumer(graph, redis_client, name="live", poll_interval=0.1).start()
    try:
        assert wait_until(lambda: live.stats.cycles > 2)
        assert not live.stats.delivered  # every id held: nothing moves
        r = cli(["release", "--all", "--yes", "--wait", "--poll-cycle", "1", "--interval", "0.1", "--timeout", "20"],
                env=env(graph, redis_server.url))
        assert r.code == 0, r.out + r.err
        assert "release-locks: 8 key(s) deleted" in r.out
        assert "done: all 8 targeted message(s) picked up (8 delivered)" in r.out
        time.sleep(0.3)  # more polls: nothing may come twice
    finally:
        live.stop()
    assert sorted(live.stats.delivered) == sorted(ids)
    assert len(queued_jobs(redis_client)) == 8
    assert all(f == "deleteditems" and read for f, read in state(graph).values())


def test_an_expired_token_is_renewed_between_and_within_polls(graph, redis_client) -> None:  # type: ignore[no-untyped-def]
    ids = seed(graph, 1)
    c = consumer(graph, redis_client)
    try:
        assert c.cycle() == ids
        graph.expire_tokens()
        more = seed(graph, 1)
        assert c.cycle() == more
    finally:
        c.stop()
    assert c.client.stats.token == 2 and c.stats.errors == 0


def test_a_message_gone_between_listing_and_download_is_skipped(graph, redis_client) -> None:  # type: ignore[no-untyped-def]
    ids = seed(graph, 2)
    c = consumer(graph, redis_client)
    listed = c.unread

    def racing() -> list[str]:
        out = listed()
        c.client.request("DELETE", c.client.message_path(ids[0]))  # read and deleted elsewhere meanwhile
        return out

    c.unread = racing  # type: ignore[method-assign]
    try:
        assert c.cycle() == [ids[1]]
    finally:
        c.stop()
    assert len(queued_jobs(redis_client)) == 1
    assert redis_client.exists(f"{PREFIX}delivered:{ids[0]}")  # claimed before the download, as mail_room does


def test_a_503_is_an_error_not_a_back_off_and_a_dead_server_does_not_kill_the_thread(graph, redis_client) -> None:  # type: ignore[no-untyped-def]
    seed(graph, 1)
    graph.fail_503(1, retry_after=0)
    c = consumer(graph, redis_client, poll_interval=0.05).start()
    try:
        assert wait_until(lambda: len(c.stats.delivered) == 1)
        assert c.stats.errors == 1 and c.stats.throttled == 0 and not c.stats.backoffs
        graph.stop()
        assert wait_until(lambda: c.stats.errors >= 3)
        assert c.running
        err = c.stats.last_error or ""
        assert "\n" not in err and "Traceback" not in err and DEMO_CLIENT_SECRET not in err
        assert "127.0.0.1" in err
    finally:
        c.stop()
    assert not c.running
