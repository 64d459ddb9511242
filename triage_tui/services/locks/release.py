"""A release of mail_room's locks as data: the plan (the dry run, shared by the CLI and the TUI) and
the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from triage_tui.domain import uidset
from triage_tui.services.locks.connection import ACTION
from triage_tui.services.locks.report import ttl_distribution

if TYPE_CHECKING:
    from triage_tui.services.triage import OpResult, Plan

# -- release plan and result ------------------------------------------------------------------


@dataclass
class ReleaseTarget:
    uid: int
    key: str
    value: str
    pttl_ms: int  # at plan time; -1 = no expiry
    expires_at_ms: int | None  # server time; None = never
    counter: bool
    wave: int = 0
    new_ttl_ms: int | None = None  # None: left alone (it expires sooner than asked)


@dataclass
class ReleasePlan:
    """A dry run: what ``release`` would do. Executing re-checks the mailbox and every key."""

    uidvalidity: int
    prefix: str
    redis: str
    mode: str  # "ttl": shorten TTLs | "natural": touch nothing, watch them expire
    ttl_s: int
    waves: int
    wave_interval_s: float
    selected: int
    targets: list[ReleaseTarget]
    unlocked: list[int]  # selected, UNSEEN, no key: free already (mail_room takes them next poll)
    not_unseen: list[int]  # selected but not UNSEEN: never released (that only risks duplicates)
    measured_at_ms: int
    mark_unseen: Plan | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def to_change(self) -> list[ReleaseTarget]:
        return [t for t in self.targets if t.new_ttl_ms is not None] if self.mode == "ttl" else []

    @property
    def count(self) -> int:
        """Keys the release will change: the number the operator types to confirm."""
        return len(self.to_change)

    @property
    def sooner(self) -> int:
        return sum(1 for t in self.targets if t.new_ttl_ms is None) if self.mode == "ttl" else 0

    @property
    def counters(self) -> int:
        return sum(1 for t in self.targets if t.counter)

    @property
    def mark_unseen_count(self) -> int:
        return self.mark_unseen.count if self.mark_unseen is not None else 0

    @property
    def natural_expiry_s(self) -> float | None:
        """Seconds until the last target key expires by itself; None = never while mail_room runs."""
        if not self.targets:
            return 0.0
        if any(t.pttl_ms < 0 or t.counter for t in self.targets):
            return None
        return max(t.pttl_ms for t in self.targets) / 1000

    def schedule(self) -> list[dict[str, Any]]:
        """Per wave: the TTL it gets and how many keys it changes."""
        if self.mode != "ttl":
            return []
        out = []
        for w in range(self.waves):
            members = [t for t in self.targets if t.wave == w]
            out.append({"wave": w + 1, "ttl_s": self.ttl_s + w * self.wave_interval_s,
                        "keys": sum(1 for t in members if t.new_ttl_ms is not None),
                        "already_sooner": sum(1 for t in members if t.new_ttl_ms is None),
                        "uids": uidset.compress(t.uid for t in members)})
        return out

    @property
    def effective_done_s(self) -> float | None:
        """When the last target is free after the chosen action (seconds from now)."""
        if self.mode == "natural":
            return self.natural_expiry_s
        if not self.targets:
            return 0.0
        if self.ttl_s > 0 and self.counters:
            return None  # a shortened counter is refreshed to 600 s by the next poll
        ends = []
        for t in self.targets:
            if t.new_ttl_ms is not None:
                ends.append(t.new_ttl_ms / 1000)
            elif t.pttl_ms >= 0:
                ends.append(t.pttl_ms / 1000)
        return max(ends) if ends else 0.0

    def describe(self) -> list[str]:
        """The dry run in words (shared by the CLI and the TUI's re-ingest screen)."""
        lines: list[str] = []
        if self.mark_unseen is not None:
            lines.append(f"step 1: remove \\Seen from {self.mark_unseen.count} seen-stuck message(s) "
                         f"({self.mark_unseen.skipped} need no change), so mail_room searches them again")
            if getattr(self.mark_unseen, "budget", None) is not None:  # a Graph mailbox
                lines.append(f"step 1 spends {self.mark_unseen.cost_text}")
        lines.append(f"{len(self.targets)} lock key(s) under {self.prefix!r} on {self.redis} hold UNSEEN "
                     f"messages (of {self.selected} selected)")
        if self.targets:
            dist = ttl_distribution(t.pttl_ms for t in self.targets)
            lines.append("current TTLs: " + ", ".join(f"{k} {v}" for k, v in dist.items()))
            nat = self.natural_expiry_s
            if nat is None:
                lines.append("if you just wait: some keys never expire while mail_room runs "
                             f"({self.counters} pre-0.10 counter(s), "
                             f"{sum(1 for t in self.targets if t.pttl_ms < 0)} without expiry)")
            else:
                at = datetime.fromtimestamp(self.measured_at_ms / 1000 + nat, UTC)
                lines.append(f"if you just wait: the last key expires in {nat:.0f} s (at {at:%H:%M:%S} UTC), "
                             "then mail_room picks the messages up on its next poll")
        if self.unlocked:
            lines.append(f"{len(self.unlocked)} selected UNSEEN message(s) hold no key: free already "
                         "(if they do not move, mail_room is not polling)")
        if self.not_unseen:
            lines.append(f"{len(self.not_unseen)} selected message(s) are not UNSEEN: their keys stay "
                         "untouched (releasing them only risks duplicates)")
        if self.mode == "natural":
            lines.append("action: none in Redis; watch the keys expire on their own")
        elif self.targets:
            verb = "delete now (TTL 0)" if self.ttl_s == 0 else f"shorten TTL to {self.ttl_s} s"
            lines.append(f"action: {verb} for {self.count} key(s)"
                         + (f"; {self.sooner} already expire sooner and stay as they are" if self.sooner else ""))
            if self.waves > 1:
                for w in self.schedule():
                    lines.append(f"  wave {w['wave']}: TTL {w['ttl_s']:.0f} s, {w['keys']} key(s)")
            if self.counters and self.ttl_s > 0:
                lines.append(f"warning: {self.counters} key(s) are pre-0.10 counters: the next poll of any "
                             "running instance resets their TTL to 600 s; use --now to free them")
            done = self.effective_done_s
            if done is not None:
                lines.append(f"after the action: every target is free within {done:.0f} s")
            else:
                lines.append("after the action: the counter keys stay held while mail_room runs")
        lines.extend(f"warning: {w}" for w in self.warnings)
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "action": ACTION, "mode": self.mode, "uidvalidity": self.uidvalidity, "prefix": self.prefix,
            "redis": self.redis, "ttl_s": self.ttl_s, "waves": self.waves, "wave_interval_s": self.wave_interval_s,
            "selected": self.selected, "locked": len(self.targets), "count": self.count, "already_sooner": self.sooner,
            "counters": self.counters, "uids": uidset.compress(t.uid for t in self.targets),
            "unlocked": uidset.compress(self.unlocked), "unlocked_count": len(self.unlocked),
            "not_unseen": uidset.compress(self.not_unseen), "not_unseen_count": len(self.not_unseen),
            "ttl_distribution": ttl_distribution(t.pttl_ms for t in self.targets),
            "natural_expiry_s": self.natural_expiry_s, "done_within_s": self.effective_done_s,
            "schedule": self.schedule(),
            "mark_unseen": self.mark_unseen.to_json() if self.mark_unseen is not None else None,
            "warnings": self.warnings,
        }


@dataclass
class KeyChange:
    uid: int
    key: str
    old_pttl_ms: int
    new_pttl_ms: int  # 0 = deleted


@dataclass
class ReleaseResult:
    op_id: str | None
    uidvalidity: int
    released_at_ms: int
    changed: list[KeyChange] = field(default_factory=list)
    skipped: dict[str, list[int]] = field(default_factory=dict)  # reason -> UIDs
    in_doubt: list[int] = field(default_factory=list)  # sent in the batch whose reply was lost
    untouched: list[int] = field(default_factory=list)  # never sent, because of an earlier error
    not_unseen: list[int] = field(default_factory=list)  # no longer UNSEEN at execution: left alone
    error: str | None = None
    mark_unseen: OpResult | None = None
    #: uid -> server-time ms at which its message is free (our new expiry); None = never.
    free_at_ms: dict[int, int | None] = field(default_factory=dict)
    #: GitLab's Sidekiq queues read just before the keys were released (a SidekiqLook, or None)
    sidekiq_before: Any = None

    @property
    def ok(self) -> bool:
        return self.error is None and (self.mark_unseen is None or self.mark_unseen.ok)

    def to_json(self) -> dict[str, Any]:
        return {
            "action": ACTION, "op": self.op_id, "uidvalidity": self.uidvalidity, "ok": self.ok,
            "changed": len(self.changed), "changed_uids": uidset.compress(c.uid for c in self.changed),
            "skipped": {r: uidset.compress(u) for r, u in self.skipped.items()},
            "in_doubt": uidset.compress(self.in_doubt), "untouched": uidset.compress(self.untouched),
            "not_unseen": uidset.compress(self.not_unseen), "error": self.error,
            "mark_unseen": self.mark_unseen.to_json() if self.mark_unseen is not None else None,
        }
