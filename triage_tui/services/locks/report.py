"""The report of ``triage-tui locks``: every key under the prefix joined with the mailbox (pure).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from triage_tui.domain import uidset
from triage_tui.domain.model import View
from triage_tui.domain.redact import mask_host
from triage_tui.errors import UidValidityChanged
from triage_tui.services.locks.connection import KeyState, ttl_seconds

if TYPE_CHECKING:
    from triage_tui.services.triage import TriageService

def ttl_distribution(pttls: Iterable[int]) -> dict[str, int]:
    """Buckets an operator reasons in: how long would waiting take?"""
    buckets = {"no-expiry": 0, "<1m": 0, "1-5m": 0, "5-10m": 0, ">10m": 0}
    for p in pttls:
        if p < 0:
            buckets["no-expiry"] += 1
        elif p < 60_000:
            buckets["<1m"] += 1
        elif p < 300_000:
            buckets["1-5m"] += 1
        elif p <= 600_000:
            buckets["5-10m"] += 1
        else:
            buckets[">10m"] += 1
    return {k: v for k, v in buckets.items() if v}


# -- the mailbox side ---------------------------------------------------------------------------


@dataclass
class MailboxSnapshot:
    """What the IMAP server says right now, for the join with the keys."""

    server: str
    user: str
    mailbox: str
    uidvalidity: int
    uidnext: int | None
    all: set[int]
    unseen: set[int]
    deleted: set[int]

    @property
    def identity(self) -> str:
        return f"{self.user}@{self.server}/{self.mailbox}"

    @classmethod
    def read(cls, triage: TriageService) -> MailboxSnapshot:
        uv1, all_ = triage.search(View.ALL)
        uv2, unseen = triage.search(View.UNSEEN)
        uv3, deleted = triage.search(View.DELETED)
        if not uv1 == uv2 == uv3:
            raise UidValidityChanged(f"UIDVALIDITY changed while reading ({uv1} → {uv3}): try again")
        info = triage.reader.mailbox
        s = triage.settings
        return cls(server=mask_host(s.server), user=s.user, mailbox=s.mailbox, uidvalidity=uv3,
                   uidnext=info.uidnext if info is not None else None,
                   all=set(all_), unseen=set(unseen), deleted=set(deleted))


# -- the report of `locks` ---------------------------------------------------------------------

#: Per delivered key, what its message is doing; only ``stuck`` blocks anything.
STATES = {
    "stuck": "locked and UNSEEN: mail_room skips it until the key expires",
    "seen": "locked, message \\Seen and not \\Deleted: harmless now (a seen-trap message needs "
            "mark-unseen to be re-ingested, and then this key blocks it until it expires)",
    "deleted": "locked, message \\Deleted (delivered, not expunged): harmless",
    "gone": "locked, no such UID in this mailbox (delivered and expunged, or another mailbox's): harmless",
    "other": "under the prefix but not a delivered:<uid> lock: not ours to judge",
}

COUNTER_NOTE = ("value above 1: the INCR+EXPIRE scheme of mail_room before 0.10; every poll of every "
                "running instance increments it and refreshes its TTL to 600 s, so it never expires while "
                "any instance runs: only deleting it (release --now) frees the message")


@dataclass
class LockEntry:
    key: str
    uid: int | None
    value: str | None
    pttl_ms: int
    state: str
    counter: bool

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "uid": self.uid, "value": self.value, "ttl": ttl_seconds(self.pttl_ms),
                "pttl_ms": self.pttl_ms, "state": self.state, "counter": self.counter}


@dataclass
class LockReport:
    prefix: str
    redis: str
    mailbox: str
    uidvalidity: int
    uidnext: int | None
    entries: list[LockEntry]
    warnings: list[str]
    unseen: int

    def by_state(self, state: str) -> list[LockEntry]:
        return [e for e in self.entries if e.state == state]

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(e.state for e in self.entries)
        return {s: c.get(s, 0) for s in STATES}

    @property
    def counters(self) -> list[LockEntry]:
        return [e for e in self.entries if e.counter]

    @property
    def stuck_uids(self) -> list[int]:
        return sorted(e.uid for e in self.entries if e.state == "stuck" and e.uid is not None)

    def natural_expiry_s(self, state: str = "stuck") -> float | None:
        """Seconds until the last key of ``state`` expires on its own; None = never (while mail_room runs)."""
        es = self.by_state(state)
        if not es:
            return 0.0
        if any(e.pttl_ms < 0 or e.counter for e in es):
            return None
        return max(e.pttl_ms for e in es) / 1000

    def to_json(self) -> dict[str, Any]:
        stuck = self.by_state("stuck")
        return {
            "prefix": self.prefix, "redis": self.redis, "mailbox": self.mailbox,
            "uidvalidity": self.uidvalidity, "uidnext": self.uidnext, "keys": len(self.entries),
            "unseen": self.unseen, "counts": self.counts, "counters": len(self.counters),
            "counter_note": COUNTER_NOTE if self.counters else None,
            "stuck_uids": uidset.compress(self.stuck_uids),
            "stuck_ttl_distribution": ttl_distribution(e.pttl_ms for e in stuck),
            "stuck_natural_expiry_s": self.natural_expiry_s(),
            "warnings": self.warnings, "entries": [e.to_json() for e in self.entries],
        }


def join(keys: Sequence[KeyState], snap: MailboxSnapshot, prefix: str,
         uid_of: Callable[[KeyState], int | None] | None = None) -> list[LockEntry]:
    """Classify every key under the prefix against the mailbox (pure). ``uid_of``: how a key
    names its UID (default: the number after ``delivered:``; a Graph mailbox maps its id)."""
    out: list[LockEntry] = []
    for k in keys:
        if not k.present or k.pttl_ms is None:
            continue
        uid = uid_of(k) if uid_of is not None else k.uid(prefix)
        if uid is None:
            state = "other"
        elif uid in snap.unseen:
            state = "stuck"
        elif uid in snap.deleted:
            state = "deleted"
        elif uid in snap.all:
            state = "seen"
        else:
            state = "gone"
        out.append(LockEntry(k.key, uid, k.value, k.pttl_ms, state, uid is not None and k.counter))
    out.sort(key=lambda e: (e.uid is None, e.uid or 0, e.key))
    return out
