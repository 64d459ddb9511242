"""mail_room's Redis arbitration locks: seeing them, joining them with the mailbox, releasing them.

mail_room claims each UNSEEN UID with ``SET <prefix>delivered:<uid> 1 NX EX 600`` (0.10+) or
``INCR`` + ``EXPIRE 600`` (older, "won" when INCR returned 1). A key held by an instance that never
fetched the message keeps that message UNSEEN and skipped by everyone until the key expires; with
the INCR scheme every poll refreshes the TTL, so it never expires while any instance runs. The
runbook's answer is "stop mail_room everywhere for > 10 minutes"; this module makes the same
thing targeted: shorten the TTL of exactly the keys whose message is still UNSEEN.

Rules this module keeps, and why:

- Reads take one round trip per 5000 keys (a read-only script returning TIME, the PTTLs and the
  few values that are not "1"; a TIME + MGET + PTTL pipeline where scripting is refused), so
  100k keys are read in a fraction of a second instead of 100k round trips.
- Listing uses ``SCAN MATCH`` with a large COUNT, never ``KEYS`` (which blocks a production Redis).
- Every write passes the :class:`~triage_tui.services.guard.MutationGuard` (read-only refusal,
  journal begin/progress/end with each key's name, old TTL and new TTL), only ever names keys
  built from the configured prefix, only targets messages that the server says are UNSEEN right
  before acting, and uses a Lua script that refuses to touch a key that was re-claimed since the
  plan (its expiry moved later, or a counter restarted at 1). Each script call is atomic, and
  redis-py's automatic retries are off, so after a failure the journal names the keys changed,
  the keys of the one batch whose reply was lost ("in doubt"), and the untouched rest.
- The password in a Redis URL is masked in every message, ``repr`` and journal record.

Connection failures surface as :class:`LockUnavailable` (exit code 3) whose text is
``Redis unavailable: <reason>``; the IMAP side never depends on Redis.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from triage_tui.domain import uidset
from triage_tui.domain.model import Message, View
from triage_tui.domain.redact import mask_host, mask_url, register
from triage_tui.domain.redact import scrub as scrub_secrets
from triage_tui.domain.redisurl import check_redis_url
from triage_tui.errors import TriageError, UidValidityChanged, UsageError
from triage_tui.services.guard import MutationGuard
from triage_tui.services.imap import Secret
from triage_tui.services.journal import AuditJournal, JournalWriteFailed

if TYPE_CHECKING:
    from triage_tui.services.triage import OpResult, Plan, TriageService

DEFAULT_KEY_PREFIX = "mail_room:gitlab:"
DELIVERED = "delivered:"
#: mail_room's fixed claim TTL (seconds).
MAIL_ROOM_TTL = 600
#: GitLab's default mail_room ``idle_timeout``: the longest gap between two polls of one instance.
DEFAULT_POLL_CYCLE = 60.0
READ_CHUNK = 5000  # keys per pipelined read round trip
WRITE_CHUNK = 1000  # keys per atomic release script call (also the "in doubt" granularity)
SCAN_COUNT = 10_000
#: Tolerance when comparing a key's expiry with the planned one (clock granularity, transit).
RECLAIM_SLACK_MS = 1500
STATE_FILE = "redis-locks.json"
ACTION = "release-locks"

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


# Read-only: server time, every key's PTTL as one comma-joined string, and the values of present
# keys only where they differ from mail_room's usual "1" (sparse: indexes + values; a non-string key
# reads as a nil value). One compact reply per chunk: redis-py's pure-Python parsing of one RESP
# element per key, not Redis, is what a 100k-key read spends its time on.
_READ_LUA = """
local t = redis.call('TIME')
local p, idx, vals = {}, {}, {}
for i, key in ipairs(KEYS) do
  local pt = redis.call('PTTL', key)
  p[i] = pt
  if pt ~= -2 then
    local v = redis.pcall('GET', key)
    if type(v) == 'table' then v = false end
    if v ~= '1' then
      idx[#idx + 1] = i
      vals[#vals + 1] = v
    end
  end
end
return {t[1], t[2], table.concat(p, ','), idx, vals}
"""


_READ_SHA = hashlib.sha1(_READ_LUA.encode("utf-8"), usedforsecurity=False).hexdigest()


def _eval_read_only(client: Any, keys: list[str]) -> Any:
    """Run the read script without ever loading it: ``EVALSHA``, and on ``NOSCRIPT`` (a fresh
    server, a ``SCRIPT FLUSH``, another node) plain ``EVAL`` of the source. redis-py's
    ``register_script`` would answer NOSCRIPT with ``SCRIPT LOAD``, a write to the server's
    script cache that a read-only session (``--read-only locks``, a dry run, the lock column)
    must not send."""
    try:
        return client.evalsha(_READ_SHA, len(keys), *keys)
    except redis.exceptions.NoScriptError:
        return client.eval(_READ_LUA, len(keys), *keys)


class LockUnavailable(TriageError):
    """Redis could not be reached or used. ``str()`` is the line the UI shows."""

    exit_code = 3

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"Redis unavailable: {reason}")


# -- settings ---------------------------------------------------------------------------------


@dataclass
class RedisSettings:
    """Where mail_room's arbitration keys live. ``url`` carries password, DB and TLS (``rediss://``);
    with ``sentinels`` the URL's host is ignored and ``master`` names the Sentinel service."""

    url: str | None = None
    sentinels: list[tuple[str, int]] = field(default_factory=list)
    master: str | None = None
    key_prefix: str | None = DEFAULT_KEY_PREFIX
    ca_file: str | None = None
    timeout: float = 5.0
    sentinel_password: Secret | str | None = None  # a plain str is accepted and wrapped
    #: Other configured mailboxes known to use this Redis and prefix (e.g. service_desk_email).
    shared_with: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.key_prefix is None:
            self.key_prefix = DEFAULT_KEY_PREFIX
        if isinstance(self.sentinel_password, str):
            self.sentinel_password = Secret(self.sentinel_password) if self.sentinel_password else None
        self.shared_with = tuple(self.shared_with or ())
        register(*self._secrets())

    @property
    def prefix(self) -> str:
        return self.key_prefix if self.key_prefix is not None else DEFAULT_KEY_PREFIX

    @property
    def password(self) -> str | None:
        """The password redis-py will send: the URL's userinfo, else its ``?password=``."""
        if not self.url:
            return None
        try:
            return redis.connection.parse_url(self.url).get("password")
        except ValueError:
            return None

    def _secrets(self) -> list[str]:
        """Every credential the URL or the settings carry, raw and decoded: a URL that redis-py
        refuses may still hold one (``redis//:pw@host``), so its userinfo and query are read
        leniently too."""
        sp = self.sentinel_password
        out = [sp.reveal() if isinstance(sp, Secret) else sp]
        if self.url:
            out.append(self.password)
            try:
                parts = urlsplit(self.url)
                userinfo = parts.netloc.rpartition("@")[0] or parts.path.rpartition("@")[0].lstrip("/")
                user, has_pw, pw = userinfo.partition(":")
                out += [pw, unquote(pw)] if has_pw else [user, unquote(user)]
                for name, value in parse_qsl(parts.query, keep_blank_values=True):
                    if "pass" in name.lower() or "user" in name.lower() or "token" in name.lower():
                        out.append(value)
            except ValueError:
                pass
        return [x for x in out if x]

    @property
    def db(self) -> int:
        if not self.url:
            return 0
        try:
            return int(redis.connection.parse_url(self.url).get("db") or 0)
        except ValueError:
            return 0

    @property
    def display(self) -> str:
        """Where, for people: never contains the password."""
        if self.sentinels:
            where = ",".join(mask_host(f"{h}:{p}") for h, p in self.sentinels)
            return f"sentinel master {self.master} via {where} db {self.db}"
        return mask_url(self.url)

    @property
    def identity(self) -> str:
        """A stable name for this Redis database (no credentials), for the state file."""
        if self.sentinels:
            return f"sentinel:{self.master}/{self.db}"
        try:
            parts = urlsplit(self.url or "")
            return f"{parts.hostname}:{parts.port or 6379}/{self.db}"
        except ValueError:
            return "?"

    def scrub(self, text: str) -> str:
        """Remove secrets from a message that may quote them (URLs, AUTH errors)."""
        if self.url:
            text = text.replace(self.url, self.display)
        return " ".join(scrub_secrets(text, self._secrets()).split())

    def __repr__(self) -> str:
        sentinels = [mask_host(f"{h}:{p}") for h, p in self.sentinels]
        return (f"RedisSettings(url={mask_url(self.url)!r}, sentinels={sentinels!r}, master={self.master!r}, "
                f"key_prefix={self.key_prefix!r}, ca_file={self.ca_file!r})")


# -- key state --------------------------------------------------------------------------------


def ttl_seconds(pttl_ms: int | None) -> int | None:
    """PTTL in ms → whole seconds for people (rounded up: 0.2 s left is "1 s", not "0")."""
    if pttl_ms is None:
        return None
    if pttl_ms < 0:
        return -1
    return math.ceil(pttl_ms / 1000)


def _secs(pttl_ms: int) -> float:
    """For the journal: seconds with ms precision; -1 no expiry, -2 absent."""
    return float(pttl_ms) if pttl_ms < 0 else round(pttl_ms / 1000, 3)


def _decode(raw: Any) -> str | None:
    if raw is None or raw is False:
        return None
    return raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else str(raw)


def _counter_value(value: str | None) -> int | None:
    if value is None or not value.isdigit():
        return None
    return int(value)


@dataclass(frozen=True, slots=True)
class KeyState:
    """One key as read: ``value is None`` means absent (or not a string); ``pttl_ms`` -1 = no expiry."""

    key: str
    value: str | None
    pttl_ms: int | None
    read_at_ms: int = 0  # Redis server time of the read

    @property
    def present(self) -> bool:
        return self.pttl_ms is not None and self.pttl_ms != -2

    @property
    def ttl(self) -> int | None:
        return ttl_seconds(self.pttl_ms) if self.present else None

    @property
    def counter(self) -> bool:
        """A pre-0.10 INCR lock that more than one poll has already incremented."""
        n = _counter_value(self.value)
        return n is not None and n > 1

    @property
    def expires_at_ms(self) -> int | None:
        """Absolute server-time expiry; None when absent or never."""
        if not self.present or self.pttl_ms is None or self.pttl_ms < 0:
            return None
        return self.read_at_ms + self.pttl_ms

    def uid(self, prefix: str) -> int | None:
        rest = self.key[len(prefix):] if self.key.startswith(prefix) else None
        if rest is None or not rest.startswith(DELIVERED):
            return None
        tail = rest[len(DELIVERED):]
        return int(tail) if tail.isdigit() else None


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


def join(keys: Sequence[KeyState], snap: MailboxSnapshot, prefix: str) -> list[LockEntry]:
    """Classify every key under the prefix against the mailbox (pure)."""
    out: list[LockEntry] = []
    for k in keys:
        if not k.present or k.pttl_ms is None:
            continue
        uid = k.uid(prefix)
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


# -- the service ------------------------------------------------------------------------------


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


class LockService:
    """Reads and (guarded) releases mail_room's arbitration keys. Connects lazily: constructing it
    never touches the network, so a UI can start while Redis is down."""

    def __init__(self, settings: RedisSettings, *, read_only: bool, journal: AuditJournal | None = None,
                 client: Any = None, state_path: Path | None = None) -> None:
        self.settings = settings
        self.read_only = read_only
        self.journal = journal or AuditJournal()
        self.state_path = state_path or self.journal.path.parent / STATE_FILE
        self._client: Any = client  # a redis.Redis (or compatible, e.g. fakeredis) once connected
        self._lock = threading.Lock()
        self._script: Any = None
        self.write_chunk = WRITE_CHUNK
        self.read_with_script = True
        self.last_error: LockUnavailable | None = None
        self.last_error_at: float = 0.0
        self.guard = MutationGuard(read_only=read_only, journal=self.journal,
                                   context={"redis": settings.display, "prefix": settings.prefix})

    @property
    def prefix(self) -> str:
        return self.settings.prefix

    def key_for(self, uid: int) -> str:
        return f"{self.prefix}{DELIVERED}{int(uid)}"

    # -- connection -----------------------------------------------------------------------------

    def _unavailable(self, e: BaseException) -> LockUnavailable:
        s = self.settings
        if isinstance(e, redis.sentinel.MasterNotFoundError):
            reason = f"no Sentinel knows a master named {s.master!r} ({s.display})"
        elif isinstance(e, redis.exceptions.AuthenticationError) or any(
                w in str(e) for w in ("WRONGPASS", "NOAUTH", "invalid password", "invalid username-password")):
            reason = f"authentication failed at {s.display} (check the password in --redis-url): {e}"
        elif isinstance(e, redis.exceptions.TimeoutError):
            reason = f"timed out after {s.timeout:g} s talking to {s.display}"
        elif isinstance(e, redis.exceptions.InvalidResponse | ValueError | UnicodeError):
            reason = (f"{s.display} did not answer like a Redis server (is that the IMAP, HTTP or another "
                      "service's port? Redis listens on 6379 by default)")
        elif "SSL" in str(e) or "certificate" in str(e).lower() or "TLS" in str(e):
            reason = f"TLS failure with {s.display}: {e} (give --redis-ca-file with the issuing CA)"
        elif isinstance(e, redis.exceptions.ConnectionError):
            reason = f"cannot connect to {s.display}: {e}"
        else:
            reason = f"{type(e).__name__} from {s.display}: {e}"
        err = LockUnavailable(s.scrub(reason))
        self.last_error, self.last_error_at = err, time.monotonic()
        return err

    def _connect(self) -> Any:
        s = self.settings
        register(*s._secrets())  # the last line of defence (cli) knows them from now on
        common: dict[str, Any] = {
            "socket_timeout": s.timeout, "socket_connect_timeout": s.timeout,
            # No silent retries: a release must know whether its command ran, and a dead Redis
            # should be reported in one timeout, not ten.
            "retry": Retry(NoBackoff(), 0), "client_name": "triage-tui",
            # SCAN decodes key names with surrogateescape: a name that is not UTF-8 must encode
            # back to its own bytes when it is read (strict would fail the whole listing)
            "encoding_errors": "surrogateescape",
        }
        if s.sentinels:
            if not s.master:
                raise UsageError("--redis-sentinel needs --redis-master (the Sentinel master name)")
            kw: dict[str, Any] = {}
            if s.url:
                check_redis_url(s.url)
                try:
                    parsed = redis.connection.parse_url(s.url)
                except ValueError as e:
                    raise UsageError(f"invalid --redis-url {mask_url(s.url)}: {s.scrub(str(e))}") from None
                kw = {k: parsed[k] for k in ("db", "username", "password") if k in parsed}
                if s.url.startswith("rediss://"):
                    kw["ssl"] = True
                    if s.ca_file:
                        kw["ssl_ca_certs"] = s.ca_file
            sentinel_kwargs: dict[str, Any] = {"socket_timeout": s.timeout, "socket_connect_timeout": s.timeout,
                                               "retry": Retry(NoBackoff(), 0)}
            if isinstance(s.sentinel_password, Secret) and s.sentinel_password:
                sentinel_kwargs["password"] = s.sentinel_password.reveal()
            sentinel = redis.sentinel.Sentinel(s.sentinels, sentinel_kwargs=sentinel_kwargs, **common, **kw)
            return sentinel.master_for(s.master)
        if not s.url:
            raise UsageError("no Redis configured: give --redis-url or --redis-sentinel with --redis-master")
        check_redis_url(s.url)  # redis-py reads redis://host/abc as DB 0: refuse it here
        extra: dict[str, Any] = {}
        if s.url.startswith("rediss://") and s.ca_file:
            extra["ssl_ca_certs"] = s.ca_file
        try:
            return redis.Redis.from_url(s.url, **common, **extra)
        except ValueError as e:
            raise UsageError(f"invalid --redis-url {mask_url(s.url)}: {s.scrub(str(e))}") from None

    @property
    def client(self) -> Any:
        """The connected client (PING checked once), or :class:`LockUnavailable`."""
        with self._lock:
            if self._client is None:
                client = self._connect()
                try:
                    client.ping()
                except redis.exceptions.ConnectionError as e:
                    client.close()
                    if "closed by server" in str(e):  # hung up on PING: an HTTP or TLS port, not Redis
                        raise self._unavailable(redis.exceptions.InvalidResponse(str(e))) from None
                    raise self._unavailable(e) from None
                except (redis.exceptions.RedisError, OSError, ValueError, UnicodeError) as e:
                    # garbage instead of RESP (e.g. Dovecot's "* OK ..." greeting) raises ValueError
                    with contextlib.suppress(Exception):
                        client.close()
                    raise self._unavailable(e) from None
                self._client = client
                self.last_error = None
            return self._client

    def check(self) -> str:
        """Connect and PING; returns a one-line description for a status bar."""
        try:
            self.client.ping()
        except redis.exceptions.RedisError as e:
            raise self._unavailable(e) from None
        return f"{self.settings.display} prefix {self.prefix!r}"

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                with contextlib.suppress(Exception):  # best effort
                    self._client.close()
                self._client = None
                self._script = None

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except redis.exceptions.RedisError as e:
            raise self._unavailable(e) from None
        except OSError as e:
            raise self._unavailable(e) from None

    # -- reading --------------------------------------------------------------------------------

    def read_keys(self, keys: Sequence[str]) -> list[KeyState]:
        """State of each key: one round trip per :data:`READ_CHUNK` keys (a read-only script doing
        TIME + PTTL + GET; if scripting is refused, a pipeline of TIME + MGET + PTTLs)."""
        out: list[KeyState] = []
        for now_ms, chunk, pttls, values in self._read_raw(keys):
            for k, p, v in zip(chunk, pttls, values, strict=True):
                out.append(KeyState(k, None, None, now_ms) if p == -2 else KeyState(k, v, p, now_ms))
        return out

    def _read_raw(self, keys: Sequence[str]) -> Iterator[tuple[int, list[str], list[int], list[str | None]]]:
        """Per chunk: (server ms, keys, PTTLs with -2 for absent, decoded values)."""
        client = self.client
        for start in range(0, len(keys), READ_CHUNK):
            chunk = list(keys[start:start + READ_CHUNK])
            yield (*self._read_chunk(client, chunk),)

    def _read_chunk(self, client: Any, chunk: list[str]) -> tuple[int, list[str], list[int], list[str | None]]:
        if self.read_with_script:
            try:
                res = _eval_read_only(client, chunk)
            except redis.exceptions.ResponseError:
                # NOPERM, scripting disabled, a proxy without EVAL: the pipeline reads the same
                self.read_with_script = False
            except (redis.exceptions.RedisError, OSError) as e:
                raise self._unavailable(e) from None
            else:
                raw = res[2]
                text = raw.decode("ascii") if isinstance(raw, bytes) else str(raw)
                pttls = [int(x) for x in text.split(",")] if text else []
                values: list[str | None] = [None if p == -2 else "1" for p in pttls]
                for i, v in zip(res[3], res[4], strict=True):
                    values[int(i) - 1] = _decode(v)
                return int(res[0]) * 1000 + int(res[1]) // 1000, chunk, pttls, values

        def run() -> list[Any]:
            pipe = client.pipeline(transaction=False)
            pipe.time()
            pipe.mget(chunk)
            for k in chunk:
                pipe.pttl(k)
            return list(pipe.execute())

        res = self._call(run)
        sec, usec = res[0]
        pttls = [int(p) for p in res[2:]]
        values = [None if p == -2 else _decode(v) for v, p in zip(res[1], pttls, strict=True)]
        return int(sec) * 1000 + int(usec) // 1000, chunk, pttls, values

    def states_for_uids(self, uids: Iterable[int]) -> dict[int, KeyState]:
        """uid → state of its ``delivered:`` key, for present keys only."""
        ulist = list(uids)
        states = self.read_keys([self.key_for(u) for u in ulist])
        return {u: s for u, s in zip(ulist, states, strict=True) if s.present}

    def annotate(self, messages: Sequence[Message]) -> int:
        """Fill ``lock``/``lock_ttl`` of each message (None when no key; ``lock_ttl`` -1 = no expiry,
        ``lock`` "?" = not a string key); returns how many are locked."""
        prefix = f"{self.prefix}{DELIVERED}"
        keys = [f"{prefix}{m.uid}" for m in messages]
        locked = 0
        i = 0
        for _now, _chunk, pttls, values in self._read_raw(keys):
            for p, v in zip(pttls, values, strict=True):
                m = messages[i]
                i += 1
                if p == -2:
                    m.lock, m.lock_ttl = None, None
                else:
                    m.lock = v if v is not None else "?"
                    m.lock_ttl = -1 if p < 0 else -(-p // 1000)
                    locked += 1
        return locked

    def server_time_ms(self) -> int:
        sec, usec = self._call(lambda: self.client.time())
        return int(sec) * 1000 + int(usec) // 1000

    def scan(self, *, delivered_only: bool = False) -> list[KeyState]:
        """Every key under the prefix (SCAN MATCH, never KEYS), with value and TTL."""
        pattern = _glob_escape(self.prefix) + (DELIVERED if delivered_only or not self.prefix else "") + "*"
        client = self.client

        def run() -> list[str]:
            found: list[str] = []
            for raw in client.scan_iter(match=pattern, count=SCAN_COUNT):
                k = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
                if k.startswith(self.prefix):
                    found.append(k)
            return found

        keys = sorted(set(self._call(run)))
        return self.read_keys(keys)

    # -- the join and the warnings ----------------------------------------------------------------

    def report(self, mailbox: TriageService) -> LockReport:
        """``triage-tui locks``: every key under the prefix joined with the mailbox, plus warnings."""
        keys = self.scan()
        snap = MailboxSnapshot.read(mailbox)
        entries = join(keys, snap, self.prefix)
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
        return ReleaseWatcher(self, mailbox, plan.uidvalidity, targets, counters=counters,
                              poll_cycle=poll_cycle, timeout=timeout)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


# -- watching the pickup ------------------------------------------------------------------------

#: The question every "nothing consumes" diagnosis ends with (the rest of it is the observed numbers).
NO_RECLAIM = "is mail_room running and connected to this Redis?"
#: ``WatchStatus.reason`` codes, for programs (the text is for people).
REASON_NO_RECLAIM, REASON_TIMEOUT, REASON_UIDVALIDITY = "no-reclaim", "timeout", "uidvalidity"


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
        return f"[{self.elapsed_s:5.0f} s] " + ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"elapsed_s": round(self.elapsed_s, 1), "targeted": self.targeted, "picked_up": self.picked_up,
                "remaining_unseen": self.remaining_unseen, "delivered": self.delivered, "seen_only": self.seen_only,
                "held": self.held, "reclaimed": self.reclaimed,
                "countdown_s": None if self.countdown_s is None else round(self.countdown_s, 1),
                "rate_per_s": self.rate_per_s, "eta_s": self.eta_s, "done": self.done, "failed": self.failed,
                "diagnosis": self.diagnosis, "reason": self.reason, "looks": self.looks,
                "free_for_s": None if self.free_for_s is None else round(self.free_for_s, 1),
                "poll_cycles_free": round(self.cycles_free, 2)}


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

    def __init__(self, locks: LockService, mailbox: TriageService, uidvalidity: int,
                 targets: dict[int, int | None], *, counters: set[int] | None = None,
                 poll_cycle: float = DEFAULT_POLL_CYCLE, timeout: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
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
        self.last: WatchStatus | None = None

    def poll(self) -> WatchStatus:
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
        seen_only = sum(1 for u in uids if u in snap.all and u not in snap.unseen and u not in snap.deleted)
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
        if remaining == 0:
            st.done = True
        elif not self.reclaimed and picked == 0 and st.cycles_free > 2:
            st.done, st.failed, st.reason = True, True, REASON_NO_RECLAIM
            st.diagnosis = diagnose_no_reclaim(st)
        elif self.timeout is not None and elapsed > self.timeout:
            st.done, st.failed, st.reason = True, True, REASON_TIMEOUT
            st.diagnosis = diagnose_timeout(st, self.timeout)
        self.last = st
        return st

    def run(self, on_status: Callable[[WatchStatus], None] | None = None, *, interval: float = 2.0,
            sleep: Callable[[float], None] = time.sleep, should_stop: Callable[[], bool] | None = None) -> WatchStatus:
        """Poll until done (or ``should_stop``); ``on_status`` sees every status. For CLIs and tests;
        the TUI drives :meth:`poll` from its own timer. The last look is taken just after the
        timeout, not up to ``interval`` later."""
        while True:
            st = self.poll()
            if on_status:
                on_status(st)
            if st.done or (should_stop is not None and should_stop()):
                return st
            wait = interval
            if self.timeout is not None:
                wait = min(interval, max(0.0, self.started + self.timeout - self.clock()) + 0.01)
            sleep(wait)


def annotate_safely(lock_service: LockService | None, messages: Sequence[Message], *,
                    retry_after: float = 15.0) -> str | None:
    """Fill lock fields if Redis is reachable; otherwise return "Redis unavailable: <reason>" and
    mark each message's JSON with it. After a failure, further calls within ``retry_after`` seconds
    answer at once (a listing of 100 batches must not wait 100 connection timeouts)."""
    if lock_service is None or not messages:
        return None
    err = lock_service.last_error
    if err is not None and time.monotonic() - lock_service.last_error_at < retry_after:
        message = str(err)
    else:
        try:
            lock_service.annotate(messages)
            return None
        except LockUnavailable as e:
            message = str(e)
    for m in messages:
        m.extra["lock_error"] = message
    return message


__all__ = [
    "ACTION", "COUNTER_NOTE", "DEFAULT_KEY_PREFIX", "NO_RECLAIM", "REASON_NO_RECLAIM", "REASON_TIMEOUT",
    "REASON_UIDVALIDITY", "KeyChange", "KeyState", "LockEntry",
    "LockReport", "LockService", "LockUnavailable", "MailboxSnapshot", "RedisSettings", "ReleasePlan",
    "ReleaseResult", "ReleaseTarget", "ReleaseWatcher", "WatchStatus", "annotate_safely", "join", "mask_url",
    "ttl_distribution",
]
