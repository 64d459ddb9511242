"""Provenance of a \\Seen message, and the warning before re-ingesting old mail (pure).

A seen-stuck message (\\Seen, not \\Deleted, without triage-tui's keyword) shows its *evidence*:
whether mail_room's lock on it is still held, held with no expiry, or expired (mail_room took it
once: a message it marked \\Seen had a lock), and its age. Un-seeing or releasing mail older than
the stale limit re-ingests it: :func:`stale_warning` says how many, before anything is changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from triage_tui.domain.age import format_age
from triage_tui.domain.model import Message

#: lock evidence words (JSON values and the plain/TUI cell)
HELD, NO_EXPIRY, EXPIRED, UNKNOWN = "held", "no-expiry", "expired", "unknown"


def lock_state(m: Message, locks_read: bool) -> str:
    """held: mail_room's key is there with a TTL (it took the message less than a lock ago);
    no-expiry: a key that never expires (only a release frees it); expired: no key (its lock ran
    out); unknown: the locks were not read (no Redis configured, or Redis unavailable)."""
    if not locks_read or m.extra.get("lock_error"):
        return UNKNOWN
    if m.lock is None:
        return EXPIRED
    if m.lock_ttl is not None and m.lock_ttl < 0:
        return NO_EXPIRY
    return HELD


def evidence(m: Message, now: datetime, locks_read: bool, stale_after: timedelta | None = None) -> dict[str, Any]:
    """The JSON ``evidence`` of a seen-stuck row (``locks_read``: the lock service annotated it)."""
    age = m.age_seconds(now)
    out: dict[str, Any] = {"lock": lock_state(m, locks_read), "lock_ttl": m.lock_ttl,
                           "age_seconds": round(age, 3) if age is not None else None}
    if stale_after is not None:
        out["older_than_stale_limit"] = age is not None and age > stale_after.total_seconds()
    return out


def evidence_cell(m: Message, locks_read: bool) -> str:
    """The lock evidence in at most 10 columns (the row shows the age): ``held 9m``, ``no-expiry``,
    ``expired``, ``?`` (locks not read)."""
    state = lock_state(m, locks_read)
    if state == HELD:
        return f"held {format_age(m.lock_ttl)}" if m.lock_ttl else "held"
    return "?" if state == UNKNOWN else state


def stale_warning(ages: Iterable[float | None], stale_after: timedelta, stale_text: str | None = None,
                  verb: str = "un-seeing or releasing") -> str | None:
    """``12 of 45 are older than the stale limit (2d): releasing them re-ingests mail up to 3w
    old (GitLab acts on each one now)``; None when none is. An unknown age counts as not older."""
    ages = list(ages)
    limit = stale_after.total_seconds()
    old = [a for a in ages if a is not None and a > limit]
    if not old:
        return None
    text = stale_text or format_age(limit)
    return (f"{len(old):,} of {len(ages):,} are older than the stale limit ({text}): {verb} them re-ingests "
            f"mail up to {format_age(max(old))} old (GitLab acts on each one now)")


def reingest_warning(uids: Iterable[int], ages: Mapping[int, float | None], stale_after: timedelta,
                     unsee: bool = False) -> str | None:
    """The re-ingest plan's warning over the UIDs it un-sees or releases (``ages``: UID -> age in
    seconds; a UID without one counts as not older)."""
    return stale_warning([ages.get(u) for u in sorted(set(uids))], stale_after,
                         verb="un-seeing and releasing" if unsee else "releasing")
