"""The incident plan (pure): buckets in order, disjoint, overrides, JSON, hostile rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from triage_tui.domain import plan as P
from triage_tui.domain.model import Message
from triage_tui.domain.outcome import DROPPED, HANDLED, REJECTED, UNKNOWN, Outcome

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STALE = timedelta(days=2)


def msg(uid: int, *, age_h: float | None = 1, verdict: str = HANDLED, bot: bool = False, suspicious: bool = False,
        problems: tuple[str, ...] = (), subject: str = "s", sender: str = "a@example.com",
        seen: bool = False) -> Message:
    return Message(uid=uid, uidvalidity=7, flags=("\\Seen",) if seen else (),
                   internaldate=None if age_h is None else NOW - timedelta(hours=age_h), from_addr=sender,
                   subject=subject, bot=bot, suspicious=suspicious, problems=problems,
                   outcome=Outcome(verdict, None, "r", False))


def compute(unseen, seen=(), deleted=(), overrides=None):
    return P.compute_plan(unseen, seen, uidvalidity=7, stale_after=STALE, deleted=deleted, now=NOW,
                          overrides=overrides)


def members(plan):
    return {b.name: list(b.uids) for b in plan.buckets if b.uids}


def test_buckets_in_order_and_disjoint():
    unseen = [msg(1, age_h=100), msg(2, bot=True), msg(3, verdict=DROPPED), msg(4, age_h=100, verdict=REJECTED),
              msg(5, suspicious=True), msg(6), msg(7, age_h=100, bot=True), msg(8, age_h=100, suspicious=True),
              msg(9, age_h=None)]
    seen = [msg(20, seen=True), msg(21, seen=True, age_h=100), msg(22, seen=True, verdict=REJECTED),
            msg(23, seen=True, age_h=None), msg(24, seen=True, verdict=UNKNOWN)]
    p = compute(unseen, seen, deleted=[30, 31])
    assert members(p) == {"bots": [2, 3, 7], "stale-rejected": [4], "stale": [1, 8], "suspicious": [5],
                          "release": [6, 9], "crash-trapped": [20, 24], "seen-left": [21, 22, 23],
                          "deleted": [30, 31]}
    all_uids = [u for b in p.buckets for u in b.uids]
    assert len(all_uids) == len(set(all_uids))
    assert [(s.action, list(s.uids)) for s in p.steps] == [
        ("ignore", [1, 2, 3, 4, 7, 8]), ("unsee-release", [20, 24]), ("release", [6, 9])]
    assert p.bucket("deleted").action == "skip"  # expunge is off by default
    assert p.bucket("suspicious").action == "review"


def test_duplicate_uid_counts_once_unseen_first():
    p = compute([msg(1), msg(1, bot=True)], [msg(1, seen=True)], deleted=[1])
    assert members(p) == {"release": [1]}


def test_hostile_problem_rows_are_never_ignored_on_a_degraded_verdict():
    bad = ("unparseable Date: \x1b[31mnope",)
    p = compute([msg(1, problems=bad), msg(2, problems=bad, bot=True), msg(3, problems=bad, verdict=DROPPED),
                 msg(4, problems=bad, age_h=100), msg(5, problems=bad, age_h=None),
                 msg(6, problems=bad, age_h=100, verdict=REJECTED)])
    assert members(p) == {"problems": [1, 2, 3, 5], "stale": [4, 6]}
    assert p.bucket("problems").action == "review"
    assert p.bucket("stale").with_problems == 2  # said, not silent
    assert [list(s.uids) for s in p.steps] == [[4, 6]]


def test_samples_raw_and_at_most_three():
    rows = [msg(i, subject=f"\u202eevil {i}\x00", sender="\x1b]0;x\x07b@x") for i in range(1, 6)]
    b = compute(rows).bucket("release")
    assert [s.uid for s in b.sample] == [1, 2, 3]
    assert b.sample[0].subject == "\u202eevil 1\x00"  # raw: the CLI makes it inert
    assert b.sample[0].age_seconds == 3600
    assert b.ranges == "1:5"


def test_overrides_move_buckets_and_messages():
    unseen = [msg(1, age_h=100), msg(2, suspicious=True), msg(3, suspicious=True), msg(4)]
    seen = [msg(20, seen=True), msg(21, seen=True, age_h=100)]
    o = P.Overrides(buckets={"stale": "keep", "crash-trapped": "ignore"}, uids={2: "ignore", 3: "keep", 21: "keep",
                                                                             4: "review"})
    p = compute(unseen, seen, overrides=o)
    assert p.bucket("stale").action == "release"
    assert p.bucket("crash-trapped").action == "leave"
    assert [(s.action, list(s.uids)) for s in p.steps] == [
        ("ignore", [2]), ("unsee-release", [21]), ("release", [1, 3])]
    assert p.action_of(4) == "review" and p.action_of(20) == "leave"
    # pure: the base plan is unchanged; applying no overrides gives the defaults back
    base = compute(unseen, seen)
    again = P.apply_overrides(p, P.Overrides())
    assert again.steps == base.steps and again.buckets == base.buckets


def test_include_expunge_and_bad_overrides():
    p = compute([], deleted=[5, 6], overrides=P.Overrides(include_expunge=True))
    assert [(s.action, list(s.uids)) for s in p.steps] == [("expunge", [5, 6])]
    with pytest.raises(ValueError, match="unknown bucket"):
        compute([], overrides=P.Overrides(buckets={"stael": "keep"}))
    with pytest.raises(ValueError, match="unknown choice"):
        compute([], overrides=P.Overrides(uids={1: "delete"}))


def test_json_round_trips_and_empty_plan():
    p = compute([msg(1, subject="\ud800 lone surrogate? no: \u0000")], deleted=[])
    doc = json.loads(json.dumps(p.to_json()))
    assert doc["buckets"][0]["name"] == "bots" and len(doc["buckets"]) == len(P.BUCKETS)
    assert doc["steps"] == [{"action": "release", "count": 1, "uids": "1", "buckets": ["release"]}]
    assert compute([]).steps == ()


def test_age_that_raises_is_unknown_not_a_crash():
    class Broken(Message):
        __slots__ = ()

        def age_seconds(self, now=None):
            raise OverflowError("boom")

    m = Broken(uid=1, uidvalidity=7, outcome=Outcome(HANDLED, None, "r", False))
    s = Broken(uid=2, uidvalidity=7, flags=("\\Seen",), outcome=Outcome(HANDLED, None, "r", False))
    p = compute([m], [s])
    assert members(p) == {"release": [1], "seen-left": [2]}


def test_large_plan_is_linear_enough():
    rows = [msg(i, bot=i % 3 == 0, age_h=100 if i % 5 == 0 else 1) for i in range(1, 20001)]
    p = compute(rows)
    assert sum(b.count for b in p.buckets) == 20000


def test_ignore_never_turns_into_an_expunge():
    p = compute([msg(1)], deleted=[5], overrides=P.Overrides(buckets={"deleted": "ignore"}, uids={5: "ignore"}))
    assert p.bucket("deleted").action == "skip" and all(s.action != "expunge" for s in p.steps)
    p = compute([msg(1)], deleted=[5, 6], overrides=P.Overrides(include_expunge=True, uids={6: "keep", 99: "keep"}))
    assert [(s.action, list(s.uids)) for s in p.steps if s.action == "expunge"] == [("expunge", [5])]
    assert p.unknown_uids() == [99]


def test_printed_commands_are_exact_or_absent():
    import argparse  # noqa: PLC0415

    from triage_tui.commands import plan as cmd  # noqa: PLC0415

    args = argparse.Namespace(keep=[], ignore=[], keep_uids=None, ignore_uids=None, include_expunge=False)
    small = compute([msg(1), msg(3)])
    assert "     triage-tui release --include-junk --uidvalidity 7 --uids 1,3" in cmd.lines(small, "INBOX", args)
    big = compute([msg(u) for u in range(1, 4000, 2)])  # 2000 single UIDs: ~10k characters
    text = "\n".join(cmd.lines(big, "INBOX", args))
    assert "--uids 1,3," not in text and "too long to print" in text and "--all" in text


def test_crash_trapped_with_a_held_lock_says_it_may_be_in_delivery():
    """A \\Seen message whose mail_room lock is still held was taken less than a lock ago: a running
    mail_room may still be delivering it. The bucket says how many, only when the locks were read."""
    held = msg(20, seen=True)
    held.lock, held.lock_ttl = "1", 420
    expired = msg(21, seen=True)
    for locks_read, expect in ((True, "1 still locked by mail_room"), (False, None)):
        p = P.compute_plan([], [held, expired], uidvalidity=7, stale_after=STALE, now=NOW, locks_read=locks_read)
        why = p.bucket("crash-trapped").why
        assert list(p.bucket("crash-trapped").uids) == [20, 21]  # still planned: the operator decides
        if expect:
            assert expect in why and "twice" in why
        else:
            assert "still locked" not in why
    p = P.compute_plan([], [expired], uidvalidity=7, stale_after=STALE, now=NOW, locks_read=True)
    assert "still locked" not in p.bucket("crash-trapped").why


def test_on_graph_the_release_bucket_says_a_held_lock_may_hide_a_delivered_message():
    """mail_room's Graph inbox marks a message read only after delivering it: a crash in between
    leaves it unread and locked, like one never downloaded. On Graph (only), the release bucket
    says how many are locked and that releasing them may deliver twice."""
    held = msg(5)
    held.lock, held.lock_ttl = "1", 300
    free = msg(6)
    graph = P.compute_plan([held, free], [], uidvalidity=7, stale_after=STALE, now=NOW, locks_read=True, graph=True)
    why = graph.bucket("release").why
    assert list(graph.bucket("release").uids) == [5, 6]  # still planned: the operator decides
    assert "1 of them are locked by mail_room" in why and "twice" in why
    imap = P.compute_plan([held, free], [], uidvalidity=7, stale_after=STALE, now=NOW, locks_read=True)
    assert "twice" not in imap.bucket("release").why
    unread_only = P.compute_plan([free], [], uidvalidity=7, stale_after=STALE, now=NOW, locks_read=True, graph=True)
    assert "locked" not in unread_only.bucket("release").why
    unknown = P.compute_plan([held], [], uidvalidity=7, stale_after=STALE, now=NOW, locks_read=False, graph=True)
    assert "locked by mail_room" not in unknown.bucket("release").why
