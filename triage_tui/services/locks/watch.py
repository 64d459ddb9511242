"""Watching the pickup after a release: progress, re-claims, and a diagnosis built only from what
was observed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from triage_tui.services.locks.connection import DEFAULT_POLL_CYCLE, RECLAIM_SLACK_MS, _counter_value
from triage_tui.services.locks.report import MailboxSnapshot

if TYPE_CHECKING:
    from triage_tui.services.locks.connection import LockReader
    from triage_tui.services.sidekiq import SidekiqStatus, SidekiqWatch
    from triage_tui.services.triage import TriageService

# -- watching the pickup ------------------------------------------------------------------------

#: The question every "nothing consumes" diagnosis ends with (the rest of it is the observed numbers).
NO_RECLAIM = "is mail_room running and connected to this Redis?"
#: ``WatchStatus.reason`` codes, for programs (the text is for people).
REASON_NO_RECLAIM, REASON_TIMEOUT, REASON_UIDVALIDITY = "no-reclaim", "timeout", "uidvalidity"
#: mail_room's FETCH sets \Seen before it pushes the job: when the last message is picked up, its
#: job may not be in Sidekiq's queue yet. The last look re-reads the queues (Redis only, cheap) for
#: at most this long, until as many jobs arrived as messages were picked up.
SIDEKIQ_SETTLE_S, SIDEKIQ_SETTLE_STEP_S = 2.0, 0.1
#: mail_room sets \Seen when it fetches, delivers, and only then sets \Deleted: a message seen in
#: between is on its way, not stuck. When nothing is UNSEEN any more, the watcher keeps looking until
#: the \Seen-only messages stayed the same for this long (or the timeout), so that "N \Seen but not
#: \Deleted" names messages mail_room left that way, not ones it was delivering at that instant.
SEEN_SETTLE_S = 3.0


def _dur(s: float) -> str:
    return f"{s:.1f} s" if s < 60 else f"{s:.0f} s"


@dataclass
class WatchStatus:
    elapsed_s: float
    targeted: int
    remaining_unseen: int
    delivered: int  # gone or \\Deleted
    seen_only: int  # \\Seen, not \\Deleted: fetched (delete_after_delivery off, or a crash) or seen by hand
    held: int  # our keys not expired yet
    reclaimed: int  # re-claimed by mail_room since
    countdown_s: float | None  # until the last held key expires; None = never (counters)
    rate_per_s: float | None
    eta_s: float | None
    done: bool = False
    failed: bool = False
    diagnosis: str | None = None
    reason: str | None = None  # REASON_* when failed
    looks: int = 0  # how many times the watcher has looked (this one included)
    #: how long every targeted key has been observed free (None: some key still held)
    free_for_s: float | None = None
    poll_cycle_s: float = DEFAULT_POLL_CYCLE
    #: GitLab's Sidekiq queues on the same Redis (None: not watched)
    sidekiq: SidekiqStatus | None = None

    @property
    def picked_up(self) -> int:
        return self.targeted - self.remaining_unseen

    @property
    def cycles_free(self) -> float:
        """mail_room poll cycles observed with every key free (0 while any key is held)."""
        if self.free_for_s is None or self.poll_cycle_s <= 0:
            return 0.0
        return self.free_for_s / self.poll_cycle_s

    def held_text(self) -> str:
        cd = ("some never expire by themselves (pre-0.10 counters)" if self.countdown_s is None
              else f"the last expires in {_dur(self.countdown_s)}")
        return f"{self.held} key(s) still held, {cd}"

    def line(self) -> str:
        """One line of progress (plain text: the CLI prints it, the TUI may reuse it)."""
        parts = [f"{self.picked_up}/{self.targeted} picked up", f"{self.remaining_unseen} UNSEEN",
                 f"{self.delivered} delivered", f"{self.reclaimed} re-claimed"]
        if self.held:
            parts.append(self.held_text())
        elif self.free_for_s is not None and not self.done:
            parts.append(f"every key free for {_dur(self.free_for_s)} ({self.cycles_free:.1f} poll cycles "
                         "of mail_room)")
        if self.seen_only:
            parts.append(f"{self.seen_only} \\Seen only")
        if self.rate_per_s:
            parts.append(f"{self.rate_per_s:.1f}/s")
        if self.eta_s is not None and not self.done:
            parts.append(f"ETA {self.eta_s:.0f} s")
        line = f"[{self.elapsed_s:5.0f} s] " + ", ".join(parts)
        sq = self.sidekiq
        if sq is not None and (sq.error is None or sq.first_error) and sq.text():
            line += "; " + sq.text()  # an error is noted once, then the watch goes on quietly
        return line

    def to_json(self) -> dict[str, Any]:
        return {"elapsed_s": round(self.elapsed_s, 1), "targeted": self.targeted, "picked_up": self.picked_up,
                "remaining_unseen": self.remaining_unseen, "delivered": self.delivered, "seen_only": self.seen_only,
                "held": self.held, "reclaimed": self.reclaimed,
                "countdown_s": None if self.countdown_s is None else round(self.countdown_s, 1),
                "rate_per_s": self.rate_per_s, "eta_s": self.eta_s, "done": self.done, "failed": self.failed,
                "diagnosis": self.diagnosis, "reason": self.reason, "looks": self.looks,
                "free_for_s": None if self.free_for_s is None else round(self.free_for_s, 1),
                "poll_cycles_free": round(self.cycles_free, 2),
                "sidekiq": None if self.sidekiq is None else self.sidekiq.to_json()}


def _arrived(sq: SidekiqStatus) -> int:
    """Jobs added to the watched queues since the release; unknowable (no baseline, an error)
    counts as "all arrived", so that nothing waits on it."""
    if sq.error is not None or sq.look is None or sq.baseline is None:
        return 1 << 62
    return sum(max(0, sq.since(q) or 0) for q in sq.look.queues)


def diagnose_no_reclaim(st: WatchStatus) -> str:
    """Every key free for more than two poll cycles, nothing re-claimed, nothing picked up: the
    words say exactly that, with the numbers observed."""
    return (f"no lock was re-claimed and no message picked up in the {_dur(st.free_for_s or 0.0)} since every key "
            f"was free ({st.cycles_free:.1f} poll cycles of mail_room, {st.poll_cycle_s:g} s each; "
            f"{st.remaining_unseen} of {st.targeted} still UNSEEN): {NO_RECLAIM}")


def diagnose_timeout(st: WatchStatus, timeout: float) -> str:
    """Gave up at ``timeout``: what was seen, and what it does (not) allow to conclude."""
    head = (f"timed out after {_dur(st.elapsed_s)} (--timeout {timeout:g}, {st.looks} look(s)): "
            f"{st.cycles_free:.1f} poll cycles of mail_room observed with every key free")
    seen = f"{st.remaining_unseen} of {st.targeted} still UNSEEN, {st.picked_up} picked up, {st.reclaimed} re-claimed"
    if st.held:
        hint = ("release them with --now: they never expire by themselves while an old mail_room runs"
                if st.countdown_s is None else
                f"mail_room cannot take their messages before then: wait longer (--timeout above "
                f"{st.elapsed_s + st.countdown_s + st.poll_cycle_s:.0f}: the expiry plus one poll cycle) "
                "or release them now (--now)")
        return f"{head}; {st.held_text()}; {seen}: {hint}"
    if st.picked_up or st.reclaimed:
        return f"{head}; {seen}: mail_room is consuming but did not finish in time"
    return (f"{head}; {seen}: too short to tell whether mail_room is consuming (that takes two poll cycles "
            "with the keys free)")


class ReleaseWatcher:
    """Polls the mailbox and the keys after a release; pure (no printing, no sleeping in ``poll``).

    A message counts as picked up once it is no longer UNSEEN. A key counts as re-claimed when it
    exists with an expiry later than the one we left it with (a fresh ``SET NX EX 600``), or, for a
    pre-0.10 counter, when its value restarted at 1. If every key is observed free and none was
    re-claimed (and nothing moved) for two mail_room poll cycles, nothing is consuming: the watcher
    fails with :func:`diagnose_no_reclaim` instead of waiting forever. Every diagnosis is built
    from the status it is attached to (the numbers this watcher observed), never from a guess.
    """

    def __init__(self, locks: LockReader, mailbox: TriageService, uidvalidity: int,
                 targets: dict[int, int | None], *, counters: set[int] | None = None,
                 poll_cycle: float = DEFAULT_POLL_CYCLE, timeout: float | None = None,
                 clock: Callable[[], float] = time.monotonic, sidekiq: SidekiqWatch | None = None) -> None:
        self.locks = locks
        self.mailbox = mailbox
        self.uidvalidity = uidvalidity
        self.targets = dict(targets)
        self.counters = set(counters or ())
        self.poll_cycle = poll_cycle
        self.timeout = timeout
        self.clock = clock
        self.started = clock()
        self.reclaimed: set[int] = set()
        self.free_since: float | None = None
        self.first_pickup: float | None = None
        self.looks = 0
        self.seen_only: frozenset[int] = frozenset()
        self.seen_only_since: float | None = None
        self.last: WatchStatus | None = None
        self.sidekiq = sidekiq

    def poll(self) -> WatchStatus:
        st = self._poll()
        if self.sidekiq is not None:
            st.sidekiq = self.sidekiq.poll()  # never raises: an error is a status of its own
        return st

    def _poll(self) -> WatchStatus:
        now = self.clock()
        elapsed = now - self.started
        uids = sorted(self.targets)
        snap = MailboxSnapshot.read(self.mailbox)
        self.looks += 1
        if snap.uidvalidity != self.uidvalidity:
            st = WatchStatus(elapsed, len(uids), 0, 0, 0, 0, 0, 0.0, None, None, done=True, failed=True,
                             diagnosis=f"UIDVALIDITY changed from {self.uidvalidity} to {snap.uidvalidity}: "
                                       "the mailbox was reset; the targeted UIDs name other messages now",
                             reason=REASON_UIDVALIDITY, looks=self.looks, poll_cycle_s=self.poll_cycle)
            self.last = st
            return st
        states = self.locks.read_keys([self.locks.key_for(u) for u in uids]) if uids else []
        server_ms = states[0].read_at_ms if states else 0
        held = 0
        countdown: float | None = 0.0
        for u, ks in zip(uids, states, strict=True):
            if not ks.present or u in self.reclaimed:
                continue
            ours = self.targets[u]
            exp = ks.expires_at_ms
            if u in self.counters:
                if ks.value == "1" and (ours is None or exp is None or exp > ours + RECLAIM_SLACK_MS):
                    self.reclaimed.add(u)
                    continue
                if _counter_value(ks.value) not in (None, 1) or ours is None:
                    held += 1
                    countdown = None
                    continue
            if ours is not None and (exp is None or exp > ours + RECLAIM_SLACK_MS):
                self.reclaimed.add(u)
                continue
            held += 1
            if countdown is not None:
                countdown = None if exp is None else max(countdown, (exp - server_ms) / 1000)
        remaining = sum(1 for u in uids if u in snap.unseen)
        delivered = sum(1 for u in uids if u not in snap.all or u in snap.deleted)
        seen_only_now = frozenset(u for u in uids if u in snap.all and u not in snap.unseen and u not in snap.deleted)
        if seen_only_now != self.seen_only or self.seen_only_since is None:
            self.seen_only, self.seen_only_since = seen_only_now, now
        seen_only = len(seen_only_now)
        settled = not seen_only or now - self.seen_only_since >= SEEN_SETTLE_S
        picked = len(uids) - remaining
        if picked and self.first_pickup is None:
            self.first_pickup = now
        rate = eta = None
        if picked and self.first_pickup is not None and now - self.first_pickup > 0.5:
            rate = round(picked / (now - self.first_pickup), 2)
            eta = round(remaining / rate, 1) if rate else None
            if eta is not None and held:
                # a message behind a held key cannot be picked up before the key expires; keys
                # that never expire by themselves leave no honest ETA
                eta = None if countdown is None else max(eta, round(countdown, 1))
        if held:
            self.free_since = None  # "free for" means observed free without a break
        elif self.free_since is None:
            self.free_since = now
        st = WatchStatus(elapsed, len(uids), remaining, delivered, seen_only, held, len(self.reclaimed),
                         countdown if held else 0.0, rate, eta, looks=self.looks,
                         free_for_s=None if self.free_since is None else now - self.free_since,
                         poll_cycle_s=self.poll_cycle)
        if remaining == 0:  # every one picked up; while some are only \Seen, look again (SEEN_SETTLE_S)
            st.done = settled or (self.timeout is not None and elapsed > self.timeout)
        elif not self.reclaimed and picked == 0 and st.cycles_free > 2:
            st.done, st.failed, st.reason = True, True, REASON_NO_RECLAIM
            st.diagnosis = diagnose_no_reclaim(st)
        elif self.timeout is not None and elapsed > self.timeout:
            st.done, st.failed, st.reason = True, True, REASON_TIMEOUT
            st.diagnosis = diagnose_timeout(st, self.timeout)
        self.last = st
        return st

    def settle(self, st: WatchStatus, *, budget: float = SIDEKIQ_SETTLE_S,
               sleep: Callable[[float], None] = time.sleep) -> WatchStatus:
        """After a successful pickup, re-read the Sidekiq queues until the jobs of every picked-up
        message arrived (or ``budget`` seconds passed: Sidekiq may already be running them, or the
        queue watched is not the one mail_room writes). Never touches IMAP; returns ``st``."""
        if self.sidekiq is None or not st.done or st.failed or st.sidekiq is None:
            return st
        deadline = self.clock() + budget
        while _arrived(st.sidekiq) < st.picked_up and self.clock() < deadline:
            sleep(SIDEKIQ_SETTLE_STEP_S)
            st.sidekiq = self.sidekiq.poll()
        return st

    def run(self, on_status: Callable[[WatchStatus], None] | None = None, *, interval: float = 2.0,
            sleep: Callable[[float], None] = time.sleep, should_stop: Callable[[], bool] | None = None) -> WatchStatus:
        """Poll until done (or ``should_stop``); ``on_status`` sees every status. For CLIs and tests;
        the TUI drives :meth:`poll` from its own timer. The last look is taken just after the
        timeout, not up to ``interval`` later."""
        while True:
            st = self.poll()
            if st.done:
                self.settle(st, sleep=sleep)
            if on_status:
                on_status(st)
            if st.done or (should_stop is not None and should_stop()):
                return st
            wait = interval
            if self.timeout is not None:
                wait = min(interval, max(0.0, self.started + self.timeout - self.clock()) + 0.01)
            sleep(wait)
