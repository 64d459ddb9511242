"""The Sidekiq part of a watch line, pure: an error is noted once, then the watch goes on quietly;
the default queue is labelled as every GitLab job; ages in Sidekiq 8 milliseconds; text inert."""

from __future__ import annotations

from triage_tui.services.locks import WatchStatus
from triage_tui.services.sidekiq import (
    NO_QUEUE,
    QueueLook,
    SidekiqLook,
    SidekiqStatus,
    _epoch_seconds,
    age_text,
)


def status(sq: SidekiqStatus | None) -> WatchStatus:
    return WatchStatus(3.0, 5, 2, 3, 0, 0, 1, 0.0, None, None, sidekiq=sq)


def test_line_notes_an_error_once_then_stays_quiet() -> None:
    first = SidekiqStatus(None, None, error="ConnectionError: link lost", first_error=True)
    again = SidekiqStatus(None, None, error="ConnectionError: link lost", first_error=False)
    assert "Sidekiq queues unreadable (ConnectionError: link lost)" in status(first).line()
    assert "Sidekiq" not in status(again).line()
    assert status(again).to_json()["sidekiq"]["error"] == "ConnectionError: link lost"
    assert status(None).to_json()["sidekiq"] is None and "Sidekiq" not in status(None).line()


def test_queue_text_default_label_since_release_and_inert_class() -> None:
    look = SidekiqLook(1_000_000.0, [
        QueueLook("email_receiver", 7, True, 1_000_000.0 - 95, "EmailReceiverWorker"),
        QueueLook("default", 40, True, 1_000_000.0 - 7200, "Evil\u202e\x1b[2J"),
        QueueLook("mailers", 0, False)], scripted=True)
    st = SidekiqStatus(look, {"email_receiver": 2, "default": 45})
    text = st.text()
    assert "email_receiver queue: 7 job(s) (+5 since release), oldest 2 min old (EmailReceiverWorker)" in text
    assert "default queue (all GitLab jobs): 40 job(s) (-5 since release), oldest 2.0 h old (Evil\\u202e\\x1b[2J)" \
        in text
    assert "mailers" not in text  # never seen on this Redis
    assert st.key() == (("email_receiver", 7), ("mailers", 0))  # the default queue moves with every job
    j = st.to_json()
    assert j["queues"][0] == {"queue": "email_receiver", "key": "queue:email_receiver", "seen": True, "length": 7,
                              "since_release": 5, "all_gitlab_jobs": False, "oldest_age_s": 95.0,
                              "oldest_class": "EmailReceiverWorker", "error": None}
    empty = SidekiqStatus(SidekiqLook(0.0, [QueueLook("email_receiver", 0, False)], True))
    assert empty.text() == f"Sidekiq: {NO_QUEUE}" and empty.to_json()["note"] == NO_QUEUE


def test_enqueued_at_seconds_or_milliseconds_and_junk() -> None:
    assert _epoch_seconds(b"1733267577.25") == 1733267577.25
    assert _epoch_seconds("1733267577250") == 1733267577.25  # Sidekiq 8: integer milliseconds
    for junk in (None, False, "", "nan", "inf", "-5", "0", "soon", b"\xff"):
        assert _epoch_seconds(junk) is None, junk
    assert [age_text(x) for x in (-3, 5, 125, 7200, 86400 * 3)] == ["0 s", "5 s", "2 min", "2.0 h", "3 d"]
