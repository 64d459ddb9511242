"""The incident plan: the runbook as one computed plan (pure).

From the listed messages of the views (UNSEEN, seen-stuck), the ``\\Deleted`` count and the lock
annotation, :func:`compute_plan` sorts every message into the first bucket that takes it and says,
per bucket, what would be done (its *action*), how many, which UIDs, a sample and why. The
buckets, in order:

=================  ======================================================  =================
bucket             takes                                                   default action
=================  ======================================================  =================
bots               UNSEEN auto-generated mail (bot verdict) or GitLab's    ignore
                   verdict ``dropped``
stale-rejected     UNSEEN, older than the stale limit, verdict ``rejected``  ignore
stale              the other UNSEEN mail older than the stale limit        ignore
problems           UNSEEN rows a header field of which could not be read   review
suspicious         UNSEEN sign-up/verification or duplicate mail           review
release            the rest of UNSEEN: release mail_room's locks, watch    release
crash-trapped      seen-stuck, not older than the stale limit, verdict     unsee-release
                   not rejected/dropped: a crashed mail_room's leftovers
seen-left          the other seen-stuck mail (old, junk, or of unknown     leave
                   age)
deleted            ``\\Deleted`` leftovers (a count only)                   expunge if asked
=================  ======================================================  =================

Why this order: the three ignore buckets differ only in the reason shown, so the most specific
reason wins (a stale bounce is a bot first). A row with problems (``~`` in the list) is never
ignored by a verdict its unreadable field could have degraded: only the stale bucket takes it,
whose age is the server's INTERNALDATE, not the sender's Date header. Anything not taken by an
ignore bucket that is suspicious is shown for review and left as it is (ignoring real mail by
default is the dangerous default; releasing a ticket-trick mail is the other one).

Actions: ``ignore`` (mark \\Seen with triage-tui's keyword: mail_room skips it), ``review``
(left as is, shown), ``release`` (UNSEEN stays; its lock is released now so mail_room takes it
on its next poll), ``unsee-release`` (remove \\Seen, then release), ``leave`` (a \\Seen message
left \\Seen), ``expunge``, ``skip`` (expunge not asked for).

The operator moves a bucket or a message between *keep* (give it to GitLab: release, or un-see
and release) and *ignore*: :class:`Overrides` (bucket name -> choice, UID -> choice), applied by
:func:`apply_overrides` without touching the computed plan. UID overrides win over bucket ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from triage_tui.domain import uidset
from triage_tui.domain.age import format_age
from triage_tui.domain.model import TRIAGE_KEYWORD, Message
from triage_tui.domain.outcome import DROPPED, REJECTED
from triage_tui.domain.provenance import HELD, lock_state
from triage_tui.domain.reingest import JUNK, verdict_of

IGNORE, REVIEW, RELEASE, UNSEE_RELEASE, LEAVE, EXPUNGE, SKIP = (
    "ignore", "review", "release", "unsee-release", "leave", "expunge", "skip")
ACTIONS = (IGNORE, REVIEW, RELEASE, UNSEE_RELEASE, LEAVE, EXPUNGE, SKIP)
#: what the operator may choose for a bucket or a message
KEEP = "keep"
CHOICES = (KEEP, IGNORE, REVIEW)

BOTS, STALE_REJECTED, STALE, PROBLEMS, SUSPICIOUS, RELEASE_REST, CRASH_TRAPPED, SEEN_LEFT, DELETED = (
    "bots", "stale-rejected", "stale", "problems", "suspicious", "release", "crash-trapped", "seen-left",
    "deleted")
BUCKETS = (BOTS, STALE_REJECTED, STALE, PROBLEMS, SUSPICIOUS, RELEASE_REST, CRASH_TRAPPED, SEEN_LEFT, DELETED)
UNSEEN_BUCKETS = (BOTS, STALE_REJECTED, STALE, PROBLEMS, SUSPICIOUS, RELEASE_REST)
SEEN_BUCKETS = (CRASH_TRAPPED, SEEN_LEFT)

#: the order steps run in (by action), then by bucket order: every ignore before any release
STEP_ORDER = (IGNORE, UNSEE_RELEASE, RELEASE, EXPUNGE)
SAMPLE = 3

_DEFAULT = {BOTS: IGNORE, STALE_REJECTED: IGNORE, STALE: IGNORE, PROBLEMS: REVIEW, SUSPICIOUS: REVIEW,
            RELEASE_REST: RELEASE, CRASH_TRAPPED: UNSEE_RELEASE, SEEN_LEFT: LEAVE, DELETED: SKIP}


#: what each step does, in the operator's words (the CLI's plan and the TUI's plan screen)
STEP_TEXT = {
    IGNORE: f"mark \\Seen with {TRIAGE_KEYWORD} (mail_room skips them; undo restores)",
    UNSEE_RELEASE: "remove \\Seen, then release their locks (mail_room ingests them again)",
    RELEASE: "release mail_room's locks now (mail_room takes them on its next poll)",
    EXPUNGE: "expunge the \\Deleted leftovers (permanent)",
}


def _why(name: str, limit: str) -> str:
    return {
        BOTS: "auto-generated mail: GitLab drops it without a word, or answering it starts a reply loop",
        STALE_REJECTED: f"older than {limit} and GitLab would reject it: it writes weeks-late rejections to the sender",
        STALE: f"older than {limit} (the runbook's upper limit): old mail surfacing on an issue confuses more "
               "than it helps",
        PROBLEMS: "a header field could not be read (~): its verdicts may be degraded, so it is not ignored on "
                  "them; left as is (peek UID says which field)",
        SUSPICIOUS: "sign-up/verification mail to a create address (the ticket trick) or a duplicate: left as is "
                    "for review; keep or ignore each",
        RELEASE_REST: "what GitLab should get: release mail_room's locks now so it takes them on its next poll, "
                      "then watch the pickup",
        CRASH_TRAPPED: f"\\Seen without triage-tui's mark, not older than {limit}, not junk: a crashed "
                       "mail_room's leftovers; remove \\Seen and release the lock",
        SEEN_LEFT: f"\\Seen without triage-tui's mark but older than {limit}, junk, or of unknown age: "
                   "un-seeing it would re-ingest it; left \\Seen",
        DELETED: "\\Deleted leftovers awaiting expunge (optional: --include-expunge)",
    }[name]


def _in_flight(held: int) -> str:
    """What the crash-trapped bucket adds when mail_room's lock on some of them is still held: it
    took them less than a lock ago, so a mail_room that is running may still be delivering them
    (fetched, \\Seen, not yet \\Deleted); un-seeing those can deliver them twice. The guarded
    store skips a message whose flags changed after the listing (mail_room's \\Deleted), which
    covers the usual seconds; a delivery that hangs longer is what this line is for."""
    if not held:
        return ""
    return (f". {held:,} still locked by mail_room (taken less than a lock ago): a running mail_room may "
            "be delivering them, and un-seeing them would deliver them twice; stop it first")


def _graph_trap(held: int) -> str:
    """What the release bucket adds on a Graph mailbox when mail_room holds locks on some of it.
    mail_room's Graph inbox downloads a message (which does not mark it read), delivers it, then
    PATCHes isRead: a crash in between leaves it unread with its lock, indistinguishable in the
    mailbox from one it took and never downloaded. Releasing that lock (or letting it expire)
    delivers it again: there is no \\Seen trap to tell them apart, as over IMAP."""
    if not held:
        return ""
    return (f". {held:,} of them are locked by mail_room: on Graph, one it delivered and then crashed before "
            "marking read looks the same, and releasing its lock delivers it twice (check mail_room's log, or "
            "let those locks expire)")


@dataclass(frozen=True)
class Sample:
    uid: int
    age_seconds: float | None
    sender: str  # raw: the CLI makes it inert, the TUI shows it as text
    subject: str

    def to_json(self) -> dict[str, Any]:
        return {"uid": self.uid, "age_seconds": round(self.age_seconds, 3) if self.age_seconds is not None else None,
                "from": self.sender, "subject": self.subject}


@dataclass(frozen=True)
class Bucket:
    name: str
    action: str
    uids: tuple[int, ...]
    sample: tuple[Sample, ...]
    why: str
    with_problems: int = 0  # rows with a reading problem (~) in this bucket: never silent

    @property
    def count(self) -> int:
        return len(self.uids)

    @property
    def ranges(self) -> str:
        return uidset.compress(self.uids)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "action": self.action, "count": self.count, "uids": self.ranges,
                "sample": [s.to_json() for s in self.sample], "why": self.why, "with_problems": self.with_problems}


@dataclass(frozen=True)
class Step:
    """One step of the plan: one action on a set of UIDs (one journal op when executed)."""

    action: str
    uids: tuple[int, ...]
    buckets: tuple[str, ...]  # where the UIDs come from

    @property
    def count(self) -> int:
        return len(self.uids)

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "count": self.count, "uids": uidset.compress(self.uids),
                "buckets": list(self.buckets)}


@dataclass(frozen=True)
class Overrides:
    """The operator's moves: bucket name -> choice, UID -> choice (``keep``, ``ignore`` or ``review``)."""

    buckets: Mapping[str, str] = field(default_factory=dict)
    uids: Mapping[int, str] = field(default_factory=dict)
    include_expunge: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"buckets": dict(self.buckets), "uids": {str(u): c for u, c in sorted(self.uids.items())},
                "include_expunge": self.include_expunge}


@dataclass(frozen=True)
class IncidentPlan:
    uidvalidity: int
    stale_after_s: float
    buckets: tuple[Bucket, ...]
    steps: tuple[Step, ...]
    overrides: Overrides = field(default_factory=Overrides)
    locks_read: bool = False
    #: UIDs whose effective action the overrides changed (uid -> action)
    moved: Mapping[int, str] = field(default_factory=dict)

    def unknown_uids(self) -> list[int]:
        """UIDs the overrides name that are in no bucket (gone, or never listed)."""
        known = {u for b in self.buckets for u in b.uids}
        return sorted(u for u in self.overrides.uids if u not in known)

    def bucket(self, name: str) -> Bucket:
        return next(b for b in self.buckets if b.name == name)

    def action_of(self, uid: int) -> str | None:
        for s in self.steps:
            if uid in s.uids:
                return s.action
        for b in self.buckets:
            if uid in b.uids:
                return self.moved.get(uid, b.action)
        return None

    def to_json(self) -> dict[str, Any]:
        return {"uidvalidity": self.uidvalidity, "stale_after_s": self.stale_after_s, "locks_read": self.locks_read,
                "buckets": [b.to_json() for b in self.buckets], "steps": [s.to_json() for s in self.steps],
                "overrides": self.overrides.to_json()}


def _age(m: Message, now: datetime) -> float | None:
    try:
        return m.age_seconds(now)
    except Exception:  # noqa: BLE001 - a broken date is "unknown age", never a crash
        return None


def _unseen_bucket(m: Message, age: float | None, stale_s: float) -> str:
    verdict = verdict_of(m)
    stale = age is not None and age > stale_s
    trusted = not m.problems  # verdicts of a row with a reading problem may be degraded
    if trusted and (m.bot or verdict == DROPPED):
        return BOTS
    if trusted and stale and verdict == REJECTED:
        return STALE_REJECTED
    if stale:  # INTERNALDATE: the server's delivery time, not the sender's Date header
        return STALE
    if m.problems:
        return PROBLEMS
    if m.suspicious:
        return SUSPICIOUS
    return RELEASE_REST


def _seen_bucket(m: Message, age: float | None, stale_s: float) -> str:
    if age is not None and age <= stale_s and verdict_of(m) not in JUNK:
        return CRASH_TRAPPED
    return SEEN_LEFT


def compute_plan(unseen: Iterable[Message], seen_stuck: Iterable[Message], *, uidvalidity: int,
                 stale_after: timedelta | float, deleted: Iterable[int] = (), now: datetime | None = None,
                 locks_read: bool = False, overrides: Overrides | None = None, graph: bool = False) -> IncidentPlan:
    """The incident plan over the listed messages. A UID listed twice (or in both views) counts
    once, in the first place it appears (UNSEEN first). ``deleted``: the \\Deleted UIDs.
    ``graph``: a Microsoft Graph mailbox, whose crash trap is unread mail (see :func:`_graph_trap`)."""
    stale_s = stale_after.total_seconds() if isinstance(stale_after, timedelta) else float(stale_after)
    now = now or datetime.now(UTC)
    members: dict[str, list[tuple[Message, float | None]]] = {n: [] for n in BUCKETS}
    taken: set[int] = set()
    for views, pick in ((unseen, _unseen_bucket), (seen_stuck, _seen_bucket)):
        for m in views:
            if m.uid in taken:
                continue
            taken.add(m.uid)
            age = _age(m, now)
            members[pick(m, age, stale_s)].append((m, age))
    deleted_uids = tuple(sorted(set(deleted) - taken))
    limit = format_age(stale_s)
    buckets: list[Bucket] = []
    for name in BUCKETS:
        if name == DELETED:
            buckets.append(Bucket(DELETED, SKIP, deleted_uids, (), _why(DELETED, limit)))
            continue
        rows = sorted(members[name], key=lambda r: r[0].uid)
        sample = tuple(Sample(m.uid, a, m.sender, m.subject) for m, a in rows[:SAMPLE])
        why = _why(name, limit)
        if name == CRASH_TRAPPED:
            why += _in_flight(sum(1 for m, _ in rows if lock_state(m, locks_read) == HELD))
        elif name == RELEASE_REST and graph:
            why += _graph_trap(sum(1 for m, _ in rows if lock_state(m, locks_read) == HELD))
        buckets.append(Bucket(name, _DEFAULT[name], tuple(m.uid for m, _ in rows), sample, why,
                              sum(1 for m, _ in rows if m.problems)))
    base = IncidentPlan(uidvalidity, stale_s, tuple(buckets), (), Overrides(), locks_read)
    return apply_overrides(base, overrides or Overrides())


def _resolve(bucket: str, choice: str, base: str) -> str:
    """A choice in terms of the bucket's kind of message (UNSEEN, seen-stuck, \\Deleted). The
    \\Deleted leftovers are only ever expunged through ``include_expunge``: keep spares them,
    ignore and review leave ``base`` (an "ignore" never turns into a permanent removal)."""
    if bucket == DELETED:
        return SKIP if choice == KEEP else base
    if bucket in SEEN_BUCKETS:
        return UNSEE_RELEASE if choice == KEEP else LEAVE  # already \\Seen: "ignore" leaves it so
    return {KEEP: RELEASE, IGNORE: IGNORE, REVIEW: REVIEW}[choice]


def check_overrides(overrides: Overrides) -> None:
    """Raise ValueError naming the first unknown bucket or choice."""
    for name, choice in overrides.buckets.items():
        if name not in BUCKETS:
            raise ValueError(f"unknown bucket {name!r}: the buckets are {', '.join(BUCKETS)}")
        if choice not in CHOICES:
            raise ValueError(f"unknown choice {choice!r} for bucket {name}: keep, ignore or review")
    for uid, choice in overrides.uids.items():
        if choice not in CHOICES:
            raise ValueError(f"unknown choice {choice!r} for UID {uid}: keep, ignore or review")


def apply_overrides(plan: IncidentPlan, overrides: Overrides) -> IncidentPlan:
    """The plan with the operator's moves (a new plan; buckets keep their members, each bucket's
    action and each moved UID's action change). Overrides replace the earlier ones."""
    check_overrides(overrides)
    buckets: list[Bucket] = []
    per_uid: dict[int, str] = {}
    moved: dict[int, str] = {}
    for b in plan.buckets:
        action = _DEFAULT[b.name]
        if b.name == DELETED:
            action = EXPUNGE if overrides.include_expunge else SKIP
        if b.name in overrides.buckets:
            action = _resolve(b.name, overrides.buckets[b.name], action)
        buckets.append(replace(b, action=action))
        for u in b.uids:
            a = action
            if u in overrides.uids:
                a = _resolve(b.name, overrides.uids[u], action)
                if a != action:
                    moved[u] = a
            per_uid[u] = a
    steps: list[Step] = []
    for action in STEP_ORDER:
        uids = sorted(u for u, a in per_uid.items() if a == action)
        if not uids:
            continue
        from_ = tuple(b.name for b in buckets if any(per_uid.get(u) == action for u in b.uids))
        steps.append(Step(action, tuple(uids), from_))
    return replace(plan, buckets=tuple(buckets), steps=tuple(steps), overrides=overrides, moved=moved)


__all__ = ["ACTIONS", "BUCKETS", "CHOICES", "EXPUNGE", "IGNORE", "KEEP", "LEAVE", "RELEASE", "REVIEW", "SKIP",
           "STEP_ORDER", "STEP_TEXT", "UNSEE_RELEASE", "Bucket", "IncidentPlan", "Overrides", "Sample", "Step",
           "apply_overrides", "check_overrides", "compute_plan"]
