"""A mailbox changing underneath: a mail_room-compatible consumer fetches, flags and expunges
while we list, mark seen and expunge. Vanished UIDs are reported, not errors; nothing is ingested
twice and nothing is lost."""

from __future__ import annotations

import threading
import time

from tests.mailgen import backlog
from triage_tui.domain.model import View
from triage_tui.services.consumer import ConsumerOptions, MailRoomConsumer, queued_jobs
from triage_tui.services.imap import Limits
from triage_tui.services.journal import AuditJournal
from triage_tui.services.triage import TriageService


def test_mark_seen_and_expunge_while_mail_room_consumes(mailbox, redis_client):  # type: ignore[no-untyped-def]
    n = 2000
    mailbox.seed(backlog(n, now=time.time()))
    svc = TriageService(mailbox.settings(), read_only=False, journal=AuditJournal(),
                        limits=Limits(max_count=50, window=4))
    uidvalidity, unseen = svc.search(View.UNSEEN)
    assert len(unseen) == n
    ours = [u for u in unseen if u % 2]  # we ignore the odd ones; mail_room races us for them
    consumer = MailRoomConsumer(mailbox.settings(), redis_client,
                                ConsumerOptions(poll_interval=0.02, expunge_deleted=True))
    listed: list[int] = []
    errors: list[BaseException] = []

    def lister() -> None:
        try:
            listed.extend(m.uid for m in svc.list(View.ALL))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    with consumer:
        t = threading.Thread(target=lister)
        t.start()
        result = svc.execute(svc.plan_flags("mark-seen", uidvalidity, ours))
        t.join(60)
        deadline = time.time() + 60
        while mailbox.search("UNSEEN") and time.time() < deadline:
            time.sleep(0.1)
    assert not errors, errors
    assert result.ok
    jobs = queued_jobs(redis_client)
    assert len(jobs) == len(consumer.stats.delivered)
    delivered = consumer.stats.delivered
    assert len(delivered) == len(set(delivered)), "a message was ingested twice"
    # every message is accounted for: delivered by mail_room, or marked seen by us and kept
    kept_seen = set(mailbox.search("SEEN UNDELETED"))
    assert set(delivered) | kept_seen == set(unseen)
    assert not (set(delivered) & kept_seen)
    assert set(result.changed) <= set(ours)
    assert kept_seen <= set(result.changed), "a kept \\Seen message must be one we marked"
    assert set(unseen) - set(ours) <= set(delivered), "mail_room must have taken every even UID"
    assert len(listed) == len(set(listed))


def test_expunge_exact_while_mail_room_deletes(mailbox, redis_client):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(600, now=time.time(), deleted_every=2, seen_every=2))  # odd UIDs: \Seen \Deleted
    svc = TriageService(mailbox.settings(), read_only=False, journal=AuditJournal(),
                        limits=Limits(max_count=25, window=4))
    uidvalidity, deleted = svc.search(View.DELETED)
    plan = svc.plan_expunge(uidvalidity, deleted)
    consumer = MailRoomConsumer(mailbox.settings(), redis_client, ConsumerOptions(poll_interval=0.02))
    with consumer:  # it delivers and \Deletes the even ones meanwhile; we expunge only our set
        result = svc.execute(plan)
        time.sleep(0.3)
    assert result.ok and result.changed == deleted
    left = set(mailbox.search("ALL"))
    assert not (left & set(deleted))
    assert left == set(range(2, 601, 2)), "mail_room's own \\Deleted messages are not ours to expunge"
