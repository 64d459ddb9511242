"""The lock service: the report's warnings, planning, the only writer (journaled, atomic batches,
"in doubt" settled by reading back) and the watcher after a release.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from triage_tui.domain import uidset
from triage_tui.domain.model import Message, View
from triage_tui.domain.redact import mask_host
from triage_tui.errors import UidValidityChanged, UsageError
from triage_tui.services.journal import JournalWriteFailed
from triage_tui.services.locks.connection import (
    ACTION,
    DEFAULT_POLL_CYCLE,
    MAIL_ROOM_TTL,
    RECLAIM_SLACK_MS,
    LockReader,
    LockUnavailable,
    _secs,
)
from triage_tui.services.locks.release import KeyChange, ReleasePlan, ReleaseResult, ReleaseTarget
from triage_tui.services.locks.report import COUNTER_NOTE, LockEntry, LockReport, MailboxSnapshot, join
from triage_tui.services.locks.watch import ReleaseWatcher
from triage_tui.services.redislib import redis  # imported on first use (see redislib)
from triage_tui.services.sidekiq import SidekiqProbe, SidekiqWatch

if TYPE_CHECKING:
    from triage_tui.services.triage import Plan, TriageService

# Result codes of the release script.
_CHANGED, _GONE, _RECLAIMED, _SOONER, _WRONGTYPE = 1, 2, 3, 4, 5
_REASONS = {_GONE: "gone", _RECLAIMED: "reclaimed", _SOONER: "expires-sooner", _WRONGTYPE: "not-a-lock"}

# KEYS: the lock keys. ARGV, 4 per key: expected value, max PTTL (-1: must have no expiry,
# -3: no check), new TTL in ms (0: delete), counter flag ("1": pre-0.10 INCR key, whose value
# only grows while it is the same claim and whose TTL every poll refreshes).
_RELEASE_LUA = """
local out = {}
for i, key in ipairs(KEYS) do
  local b = (i - 1) * 4
  local expected = ARGV[b + 1]
  local max_pttl = tonumber(ARGV[b + 2])
  local new_ttl = tonumber(ARGV[b + 3])
  local counter = ARGV[b + 4] == '1'
  local t = redis.call('TYPE', key)
  if type(t) == 'table' then t = t['ok'] end
  if t == 'none' then
    out[i] = {2, -2, -2}
  elseif t ~= 'string' then
    out[i] = {5, -2, -2}
  else
    local v = redis.call('GET', key)
    local pttl = redis.call('PTTL', key)
    local same = (v == expected)
    if counter then
      local n, e = tonumber(v), tonumber(expected)
      same = (n ~= nil and e ~= nil and n >= e)
    elseif same and max_pttl ~= -3 then
      if max_pttl == -1 then
        same = (pttl == -1)
      else
        same = (pttl ~= -1 and pttl <= max_pttl)
      end
    end
    if not same then
      out[i] = {3, pttl, pttl}
    elseif new_ttl == 0 then
      redis.call('DEL', key)
      out[i] = {1, pttl, 0}
    elseif pttl ~= -1 and pttl <= new_ttl then
      out[i] = {4, pttl, pttl}
    else
      redis.call('PEXPIRE', key, new_ttl)
      out[i] = {1, pttl, new_ttl}
    end
  end
end
return out
"""



class ReleaseStopped(JournalWriteFailed):
    """The journal failed mid-release: no batch after it was sent. ``str()`` says exactly which
    keys changed; ``result`` holds them."""

    def __init__(self, reason: str, text: str, result: ReleaseResult) -> None:
        super().__init__(reason)
        self.args = (text,)
        self.result = result

    def __str__(self) -> str:
        return str(self.args[0])


def _release_stopped(e: JournalWriteFailed, result: ReleaseResult, total: int) -> ReleaseStopped:
    head = f"stopped: the audit journal could not be written ({e.reason})"
    n = len(result.changed)
    if n == 0 and not result.in_doubt:
        text = f"{head}; nothing was sent, no key was changed"
    else:
        text = (f"{head}; {n:,} of {total:,} key(s) were released (UIDs "
                f"{uidset.compress(sorted(c.uid for c in result.changed))[:200] or '-'})")
        if result.in_doubt:
            text += f", {len(result.in_doubt):,} in doubt"
        text += ", nothing else was sent"
    result.error = text
    return ReleaseStopped(e.reason, text, result)


class LockService(LockReader):
    """Reads and (guarded) releases mail_room's arbitration keys. Connects lazily: constructing it
    never touches the network, so a UI can start while Redis is down."""

    # -- the join and the warnings ----------------------------------------------------------------

    def report(self, mailbox: TriageService) -> LockReport:
        """``triage-tui locks``: every key under the prefix joined with the mailbox, plus warnings."""
        keys = self.scan()
        snap = MailboxSnapshot.read(mailbox)
        entries = join(keys, snap, self.prefix, self.uid_of_key)
        warnings = self.warnings(snap, entries)
        return LockReport(prefix=self.prefix, redis=self.settings.display, mailbox=snap.identity,
                          uidvalidity=snap.uidvalidity, uidnext=snap.uidnext, entries=entries,
                          warnings=warnings, unseen=len(snap.unseen))

    def warnings(self, snap: MailboxSnapshot, entries: Sequence[LockEntry], *, record: bool = True) -> list[str]:
        """Prefix sharing and UIDVALIDITY resets: the two ways a key names the wrong message.

        Keys hold only the UID, so (1) two mailboxes under one prefix collide, and (2) after a
        mailbox reset stale keys block new messages that reuse low UIDs. We remember, per Redis
        database and prefix, which mailboxes we saw and under which UIDVALIDITY (state file next
        to the audit journal; the journal itself is the fallback for the last UIDVALIDITY).
        """
        out: list[str] = []
        p = self.prefix
        if p and not p.endswith(":"):
            out.append(f"key prefix {p!r} does not end with ':': mail_room's namespace 'x' gives keys "
                       "'x:delivered:<uid>' (is --key-prefix missing its colon?)")
        for other in self.settings.shared_with:
            out.append(f"mailbox {other} is configured with the same Redis and prefix {p!r}: UIDs collide, "
                       "a key delivered:N may belong to either mailbox")
        state = self._load_state()
        slot = state.setdefault(f"{self.settings.identity}|{p}", {}).setdefault("mailboxes", {})
        now = datetime.now(UTC)
        for ident, rec in slot.items():
            if ident == snap.identity:
                continue
            try:
                seen = datetime.fromisoformat(rec.get("seen", ""))
            except ValueError:
                continue
            if now - seen < timedelta(days=30):
                out.append(f"mailbox {ident} also used prefix {p!r} on this Redis (seen {seen:%Y-%m-%d}): "
                           "UIDs collide between the two mailboxes")
        uids = [e.uid for e in entries if e.uid is not None]
        if snap.uidnext is not None:
            beyond = [u for u in uids if u >= snap.uidnext]
            if beyond:
                out.append(f"{len(beyond)} key(s) name UIDs at or above this mailbox's UIDNEXT {snap.uidnext} "
                           f"({uidset.compress(beyond)[:80]}): another mailbox shares the prefix, or they "
                           "predate a mailbox reset")
        mine = slot.get(snap.identity) or {}
        last_uv = mine.get("uidvalidity") or self._journal_uidvalidity(snap)
        if last_uv is not None and int(last_uv) != snap.uidvalidity:
            low = [u for u in uids if snap.uidnext is None or u < snap.uidnext]
            if low:
                blocking = [e.uid for e in entries if e.state == "stuck" and e.uid is not None]
                out.append(f"UIDVALIDITY changed from {last_uv} to {snap.uidvalidity} while {len(low)} key(s) "
                           f"exist for UIDs the new mailbox uses: stale keys block new messages with the same "
                           f"UID for up to {MAIL_ROOM_TTL} s ({len(blocking)} UNSEEN message(s) blocked now)")
        if record:
            slot[snap.identity] = {"uidvalidity": snap.uidvalidity, "uidnext": snap.uidnext,
                                   "seen": now.isoformat(timespec="seconds")}
            self._save_state(state)
        return out

    def _journal_uidvalidity(self, snap: MailboxSnapshot) -> int | None:
        last: int | None = None
        try:
            for rec in self.journal.records():
                if rec.get("server") == snap.server and rec.get("user") == snap.user \
                        and rec.get("mailbox") == snap.mailbox and rec.get("uidvalidity") is not None:
                    last = int(rec["uidvalidity"])
        except (OSError, ValueError, TypeError):
            return None
        return last

    def _load_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save_state(self, state: dict[str, Any]) -> None:
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.state_path.with_suffix(f".tmp{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(state, f, indent=1, sort_keys=True)
            os.replace(tmp, self.state_path)
        except OSError:
            pass  # a warning aid, never a reason to fail

    # -- planning ---------------------------------------------------------------------------------

    def plan_release(self, mailbox: TriageService, uidvalidity: int, uids: Iterable[int], *, ttl: int = 0,
                     natural: bool = False, waves: int = 1, wave_interval: float = 60.0,
                     mark_unseen: Plan | None = None) -> ReleasePlan:
        """Dry run (allowed in read-only mode). ``uids`` are the operator's selection; only those the
        server says are UNSEEN (or that ``mark_unseen`` will make UNSEEN) become targets."""
        if ttl < 0:
            raise UsageError("--ttl must be >= 0 (0 releases now)")
        if waves < 1:
            raise UsageError("--waves must be >= 1")
        if waves > 1 and wave_interval <= 0:
            raise UsageError("--wave-interval must be > 0")
        selected = sorted(set(uids))
        uv, unseen_list = mailbox.search(View.UNSEEN)
        if uv != uidvalidity:
            raise UidValidityChanged(f"UIDVALIDITY changed from {uidvalidity} to {uv}: list again before acting")
        eligible = set(unseen_list)
        if mark_unseen is not None:
            eligible |= set(mark_unseen.uids)
        chosen = [u for u in selected if u in eligible]
        not_unseen = [u for u in selected if u not in eligible]
        keys = [self.key_for(u) for u in chosen]
        states = self.read_keys(keys) if keys else []
        measured = states[0].read_at_ms if states else self.server_time_ms()
        targets: list[ReleaseTarget] = []
        unlocked: list[int] = []
        for u, st in zip(chosen, states, strict=True):
            if not st.present or st.pttl_ms is None:
                unlocked.append(u)
                continue
            targets.append(ReleaseTarget(uid=u, key=st.key, value=st.value if st.value is not None else "",
                                         pttl_ms=st.pttl_ms, expires_at_ms=st.expires_at_ms, counter=st.counter))
        per_wave = math.ceil(len(targets) / waves) if targets else 1
        for i, t in enumerate(targets):
            t.wave = i // per_wave
            want = int((ttl + t.wave * wave_interval) * 1000)
            # never lengthen: a key that expires sooner than asked is left alone (a counter is not:
            # its TTL is refreshed by every poll, so "sooner" is an illusion)
            t.new_ttl_ms = None if (want > 0 and 0 <= t.pttl_ms <= want and not t.counter) else want
        plan = ReleasePlan(uidvalidity=uidvalidity, prefix=self.prefix, redis=self.settings.display,
                           mode="natural" if natural else "ttl", ttl_s=ttl, waves=waves,
                           wave_interval_s=wave_interval, selected=len(selected), targets=targets,
                           unlocked=unlocked, not_unseen=not_unseen, measured_at_ms=measured,
                           mark_unseen=mark_unseen)
        if self.settings.shared_with:
            plan.warnings.append(f"prefix shared with {', '.join(self.settings.shared_with)}: a key may "
                                 "belong to the other mailbox's message with the same UID")
        if natural and plan.natural_expiry_s is None:
            plan.warnings.append("waiting alone will not free every key: " + COUNTER_NOTE)
        return plan

    # -- executing (the only writer) ---------------------------------------------------------------

    def _release_script(self) -> Any:
        if self._script is None:
            self._script = self.client.register_script(_RELEASE_LUA)
        return self._script

    def release(self, plan: ReleasePlan, mailbox: TriageService,
                progress: Callable[[int, int], None] | None = None) -> ReleaseResult:
        """Carry out a plan: optional mark-unseen (through the triage service), then re-check the
        mailbox and release the keys whose message is still UNSEEN, in atomic batches, journaled.

        A Redis error stops the release: nothing after the failing batch is sent, and the result
        (and the journal's end record) name the changed, in-doubt and untouched UIDs.
        """
        self.guard.refuse_if_read_only(ACTION)
        mark_result = None
        if plan.mark_unseen is not None and plan.mark_unseen.count:
            mark_result = mailbox.execute(plan.mark_unseen)
        uv, unseen_list = mailbox.search(View.UNSEEN)
        if uv != plan.uidvalidity:
            raise UidValidityChanged(f"UIDVALIDITY changed from {plan.uidvalidity} to {uv}: nothing was "
                                     "released; list again")
        unseen = set(unseen_list)
        todo = [t for t in plan.to_change if t.uid in unseen]
        gone_from_unseen = sorted(t.uid for t in plan.targets if t.uid not in unseen)
        for t in todo:
            if not t.key.startswith(self.prefix) or t.key != self.key_for(t.uid):
                raise AssertionError(f"refusing key outside the prefix: {t.key!r}")  # never reached
        now_ms = self.server_time_ms()
        result = ReleaseResult(op_id=None, uidvalidity=uv, released_at_ms=now_ms, not_unseen=gone_from_unseen,
                               mark_unseen=mark_result)
        result.sidekiq_before = self.sidekiq_watch().snapshot()  # "+N since release" (read-only; None on error)
        if plan.mode != "ttl" or not todo:
            self._fill_free_at(result, plan)
            return result
        script = self._release_script()
        server_id = self._server_id()
        try:
            self._release_batches(plan, todo, script, server_id, now_ms, gone_from_unseen, result, progress,
                                 mailbox.settings)
        except JournalWriteFailed as e:
            raise _release_stopped(e, result, len(todo)) from e
        self._fill_free_at(result, plan)
        return result

    def _release_batches(self, plan: ReleasePlan, todo: list[ReleaseTarget], script: Any, server_id: str | None,
                         now_ms: int, gone_from_unseen: list[int], result: ReleaseResult,
                         progress: Callable[[int, int], None] | None, s: Any) -> None:
        """The journaled batches of :meth:`release`. Write-ahead: each batch's keys are journaled
        as an ``intent`` before its script runs; a journal failure stops before the next batch."""
        uv = result.uidvalidity
        with self.guard.operation(ACTION, server=mask_host(s.server), user=s.user, mailbox=s.mailbox, uidvalidity=uv,
                                  ttl_s=plan.ttl_s, waves=plan.waves, wave_interval_s=plan.wave_interval_s,
                                  planned=plan.count, count=len(todo), targets=uidset.compress(t.uid for t in todo),
                                  not_unseen=uidset.compress(gone_from_unseen),
                                  key_record=["key", "old_ttl_s", "new_ttl_s"]) as op:
            result.op_id = op.id
            done = 0
            for start in range(0, len(todo), self.write_chunk):
                chunk = todo[start:start + self.write_chunk]
                argv: list[Any] = []
                for t in chunk:
                    if t.counter:
                        max_pttl = -3
                    elif t.expires_at_ms is None:
                        max_pttl = -1
                    else:
                        max_pttl = t.expires_at_ms - now_ms + RECLAIM_SLACK_MS
                    argv += [t.value, max_pttl, t.new_ttl_ms, "1" if t.counter else "0"]
                try:
                    self.guard.intent(op, uids=uidset.compress(t.uid for t in chunk), keys=len(chunk))
                except JournalWriteFailed:
                    result.untouched = [t.uid for t in todo[start:]]
                    raise
                try:
                    replies = [tuple(int(x) for x in r) for r in script(keys=[t.key for t in chunk], args=argv)]
                except (redis.exceptions.RedisError, OSError) as e:
                    if isinstance(e, redis.exceptions.ResponseError):
                        result.error = self.settings.scrub(f"Redis error: {e}")
                    else:
                        result.error = str(self._unavailable(e))
                    result.untouched = [t.uid for t in todo[start + len(chunk):]]
                    if not self._settle_in_doubt(op, chunk, now_ms, result, server_id):
                        result.error = (f"{result.error}; Redis restarted (or failed over) under the batch: "
                                        "keys not found as planned are in doubt")
                    break
                try:
                    self._record_chunk(op, chunk, replies, result)
                except JournalWriteFailed:
                    result.untouched = [t.uid for t in todo[start + len(chunk):]]
                    raise
                done += len(chunk)
                if progress:
                    progress(done, len(todo))
            op.outcome = {"changed_count": len(result.changed),
                          "changed_uids": uidset.compress(c.uid for c in result.changed),
                          "skipped": {r: uidset.compress(u) for r, u in result.skipped.items()},
                          "in_doubt": uidset.compress(result.in_doubt),
                          "untouched": uidset.compress(result.untouched)}
            if result.error:
                op.outcome["error"] = result.error
                op.result = "partial" if result.changed else "failed"
            elif not result.changed:
                op.result = "nothing"

    def _record_chunk(self, op: Any, chunk: Sequence[ReleaseTarget], replies: Sequence[tuple[int, ...]],
                      result: ReleaseResult, **extra: Any) -> None:
        """Account one batch's replies and journal every key it touched (name, old TTL, new TTL)."""
        touched: list[list[Any]] = []
        changed: list[int] = []
        skipped: dict[str, list[int]] = {}
        for t, (code, old, new) in zip(chunk, replies, strict=True):
            if code == _CHANGED:
                result.changed.append(KeyChange(t.uid, t.key, old, new))
                touched.append([t.key, _secs(old), _secs(new)])
                changed.append(t.uid)
            else:
                reason = _REASONS.get(code, str(code))
                result.skipped.setdefault(reason, []).append(t.uid)
                skipped.setdefault(reason, []).append(t.uid)
        self.guard.progress(op, keys=touched, changed_uids=uidset.compress(changed),
                            skipped={r: uidset.compress(u) for r, u in skipped.items()}, **extra)

    def _server_id(self) -> str | None:
        """Redis's ``run_id``: it changes when the server restarts, and differs on another server
        after a failover. None when INFO is refused (then restarts cannot be told apart)."""
        try:
            info = self.client.info("server")
        except (redis.exceptions.RedisError, OSError, LockUnavailable):
            return None
        run_id = info.get("run_id") if isinstance(info, dict) else None
        return str(run_id) if run_id else None

    def _settle_in_doubt(self, op: Any, chunk: Sequence[ReleaseTarget], sent_at_ms: int,
                         result: ReleaseResult, server_id: str | None = None) -> bool:
        """The batch whose reply was lost ran entirely or not at all (a script is atomic). If Redis
        answers again, read the keys back and decide which; otherwise they stay "in doubt".

        Reading back only proves something on the same server: after a restart without
        persistence (or a failover to a replica that lacks the keys) an absent key is not our
        doing. So when the server's ``run_id`` changed, a key found exactly as planned is
        untouched and every other one is in doubt. Returns False in that case."""
        try:
            states = self.read_keys([t.key for t in chunk])
        except LockUnavailable:
            result.in_doubt = [t.uid for t in chunk]
            return True
        now_id = self._server_id() if server_id is not None else None
        if server_id is not None and now_id is not None and now_id != server_id:
            for t, ks in zip(chunk, states, strict=True):
                planned, exp = t.expires_at_ms, ks.expires_at_ms
                same = ks.present and ((planned is None and exp is None) or (
                    planned is not None and exp is not None and abs(exp - planned) <= RECLAIM_SLACK_MS))
                (result.untouched if same else result.in_doubt).append(t.uid)
            result.untouched.sort()
            return False
        replies: list[tuple[int, ...]] = []
        settled: list[ReleaseTarget] = []
        for t, ks in zip(chunk, states, strict=True):
            planned = t.expires_at_ms
            now = ks.read_at_ms
            new = t.new_ttl_ms or 0
            if t.counter:
                result.in_doubt.append(t.uid)
                continue
            if not ks.present:
                # nothing but us deletes a lock: absent before its planned expiry means we did it
                if planned is None or planned > now + RECLAIM_SLACK_MS:
                    replies.append((_CHANGED, t.pttl_ms if planned is None else planned - sent_at_ms, new))
                else:
                    replies.append((_GONE, -2, -2))
                settled.append(t)
                continue
            exp = ks.expires_at_ms
            if (planned is None and exp is None) or (planned is not None and exp is not None
                                                     and abs(exp - planned) <= RECLAIM_SLACK_MS):
                result.untouched.append(t.uid)  # exactly as planned: the batch did not run
            elif exp is not None and exp <= sent_at_ms + new + RECLAIM_SLACK_MS and (
                    planned is None or exp < planned - RECLAIM_SLACK_MS):
                replies.append((_CHANGED, -1 if planned is None else planned - sent_at_ms, new))
                settled.append(t)
            else:
                replies.append((_RECLAIMED, ks.pttl_ms or 0, ks.pttl_ms or 0))
                settled.append(t)
        if settled:
            self._record_chunk(op, settled, replies, result, verified_after_error=True)
        result.untouched.sort()
        return True

    @staticmethod
    def _fill_free_at(result: ReleaseResult, plan: ReleasePlan) -> None:
        changed = {c.uid: c for c in result.changed}
        for t in plan.targets:
            if t.uid in changed:
                result.free_at_ms[t.uid] = result.released_at_ms + changed[t.uid].new_pttl_ms
            elif t.uid in result.skipped.get("gone", []):
                result.free_at_ms[t.uid] = result.released_at_ms
            elif t.counter:
                result.free_at_ms[t.uid] = None
            else:
                result.free_at_ms[t.uid] = t.expires_at_ms
        for u in plan.unlocked:
            result.free_at_ms[u] = plan.measured_at_ms
        if plan.mark_unseen is not None:
            for u in plan.mark_unseen.uids:
                result.free_at_ms.setdefault(u, plan.measured_at_ms)

    def changes_from_journal(self, op_id: str) -> list[tuple[str, float, float]]:
        """Every key a release changed, as recorded (key, old TTL s, new TTL s): the audit's answer."""
        out: list[tuple[str, float, float]] = []
        for rec in self.journal.records():
            if rec.get("op") == op_id and rec.get("phase") == "progress":
                out.extend((k, o, n) for k, o, n in rec.get("keys", []))
        return out

    # -- watching ---------------------------------------------------------------------------------

    def watcher(self, mailbox: TriageService, plan: ReleasePlan, result: ReleaseResult | None = None, *,
                poll_cycle: float = DEFAULT_POLL_CYCLE, timeout: float | None = None) -> ReleaseWatcher:
        """A watcher over the plan's messages: after ``release`` (pass its result) or, in natural
        mode, while the keys expire on their own."""
        if result is None:
            result = ReleaseResult(op_id=None, uidvalidity=plan.uidvalidity, released_at_ms=plan.measured_at_ms)
            self._fill_free_at(result, plan)
        targets = dict(result.free_at_ms)
        for u in result.not_unseen:
            targets.pop(u, None)
        counters = {t.uid for t in plan.targets if t.counter}
        sidekiq = self.sidekiq_watch()
        if result.sidekiq_before is not None:
            sidekiq.baseline = result.sidekiq_before
        else:
            sidekiq.snapshot()  # natural mode, or the look at release time failed
        return ReleaseWatcher(self, mailbox, plan.uidvalidity, targets, counters=counters,
                              poll_cycle=poll_cycle, timeout=timeout, sidekiq=sidekiq)

    def sidekiq_watch(self) -> SidekiqWatch:
        """GitLab's Sidekiq queues on this Redis (the locks' connection), read-only."""
        s = self.settings
        return SidekiqWatch(SidekiqProbe(lambda: self.client, s.sidekiq_queues, namespace=s.sidekiq_namespace))


def annotate_safely(lock_service: LockService | None, messages: Sequence[Message], *,
                    retry_after: float = 15.0) -> str | None:
    """Fill lock fields if Redis is reachable; otherwise return "Redis unavailable: <reason>" and
    mark each message's JSON with it. After a failure, further calls within ``retry_after`` seconds
    answer at once (a listing of 100 batches must not wait 100 connection timeouts)."""
    if lock_service is None or not messages:
        return None
    if lock_service.failed_within(retry_after):
        message = str(lock_service.last_error)
    else:
        try:
            lock_service.annotate(messages)
            return None
        except LockUnavailable as e:
            message = str(e)
    for m in messages:
        m.extra["lock_error"] = message
    return message
