"""GitLab's Sidekiq queues, read-only: where "re-ingested" really ends.

mail_room delivers each message as ``LPUSH <namespace>queue:<queue>`` of a JSON job
``{"class": "EmailReceiverWorker" | "ServiceDeskEmailReceiverWorker", "args": [raw message],
"queue", "jid", "retry": false, "enqueued_at"}`` (queue ``email_receiver`` on older GitLab,
``default`` on newer) and ``SADD <namespace>queues <queue>``. After a release, the watch shows
those jobs arriving: each queue's length, how it changed since the release, and the oldest job's
age and class.

Rules, and why:

- Read-only, and nothing is loaded on the server: one ``EVAL`` of a read-only Lua script (never
  ``SCRIPT LOAD``; ``EVALSHA`` first, ``EVAL`` on ``NOSCRIPT``, as :mod:`.locks` does). Where
  scripting is refused, a pipeline of ``LLEN`` + ``SISMEMBER`` gives the lengths and nothing more.
- A job carries the whole raw message (megabytes): the script reads the oldest one (``LINDEX key
  -1``; LPUSH puts the newest at the head) *inside* Redis and returns only its ``enqueued_at``
  and ``class``. Jobs up to :data:`DECODE_LIMIT` bytes are decoded with ``cjson`` (under
  ``pcall``); larger ones are searched for the two fields (plain ``string.find``: inside a JSON
  string every ``"`` is escaped, so ``"class":`` can only match a key), which costs Redis far
  less than decoding megabytes every few seconds.
- ``LLEN`` cannot filter by class: the ``default`` queue holds all of GitLab's jobs, and is
  labelled so.
- Sidekiq 8 writes ``enqueued_at`` in integer milliseconds, older ones in float seconds: both read.
- Text taken from Redis (a job's class) is shown inert (control and bidi characters visible).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from triage_tui.domain.text import inert
from triage_tui.errors import UsageError
from triage_tui.services.redislib import redis  # imported on first use (see redislib)

DEFAULT_QUEUES: tuple[str, ...] = ("email_receiver", "default")
EMAIL_WORKERS = ("EmailReceiverWorker", "ServiceDeskEmailReceiverWorker")
#: Jobs up to this size are decoded with cjson; larger ones are searched for the two fields.
DECODE_LIMIT = 256 * 1024
NO_QUEUE = "no Sidekiq queue seen on this Redis (GitLab's queues may live on another Redis)"
#: Queues watched at most (each costs a few commands inside one script call).
MAX_QUEUES = 32

# KEYS[1] = the `queues` set, KEYS[2..] = the queue lists; ARGV = the queue names, then the decode limit.
# Per queue: {LLEN or its error text (WRONGTYPE, NOPERM), SISMEMBER, enqueued_at as a string or false,
# class or false}.
_PEEK_LUA = """
local t = redis.call('TIME')
local limit = tonumber(ARGV[#ARGV])
local function find_field(job, name)
  local s, e = string.find(job, '"' .. name .. '":', 1, true)
  if not s then return nil end
  local rest = string.sub(job, e + 1, e + 300)
  local num = string.match(rest, '^%s*(-?[%d%.eE+]+)')
  if num then return num end
  return string.match(rest, '^%s*"([^"\\\\]*)"')
end
local out = {}
for i = 2, #KEYS do
  local n = redis.pcall('LLEN', KEYS[i])
  if type(n) == 'table' then n = tostring(n.err or n['err'] or 'error') end
  local known = redis.pcall('SISMEMBER', KEYS[1], ARGV[i - 1])
  if type(known) ~= 'number' then known = 0 end
  local enq, cls = false, false
  if type(n) == 'number' and n > 0 then
    local job = redis.call('LINDEX', KEYS[i], -1)
    if type(job) == 'string' then
      if #job <= limit then
        local ok, dec = pcall(cjson.decode, job)
        if ok and type(dec) == 'table' then
          if type(dec.enqueued_at) == 'number' then enq = tostring(dec.enqueued_at) end
          if type(dec.class) == 'string' then cls = string.sub(dec.class, 1, 200) end
        end
      else
        local e = find_field(job, 'enqueued_at')
        local c = find_field(job, 'class')
        if e then enq = e end
        if c then cls = string.sub(c, 1, 200) end
      end
    end
  end
  out[#out + 1] = {n, known, enq, cls}
end
return {t[1], t[2], out}
"""
_PEEK_SHA = hashlib.sha1(_PEEK_LUA.encode("utf-8"), usedforsecurity=False).hexdigest()


def _text(v: Any) -> str | None:
    if v is None or v is False:
        return None
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _epoch_seconds(v: Any) -> float | None:
    """``enqueued_at`` as Unix seconds: Sidekiq < 8 writes float seconds, Sidekiq 8 integer ms."""
    try:
        f = float(_text(v) or "")
    except ValueError:
        return None
    if f != f or f in (float("inf"), float("-inf")) or f <= 0:
        return None
    return f / 1000 if f > 1e11 else f


def age_text(seconds: float) -> str:
    s = max(0.0, seconds)
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.0f} min"
    if s < 86400 * 2:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.0f} d"


@dataclass(frozen=True)
class QueueLook:
    queue: str
    length: int | None  # None: unreadable (see ``error``)
    known: bool  # listed in Sidekiq's ``queues`` set
    oldest_enqueued_at: float | None = None  # Unix seconds
    oldest_class: str | None = None
    error: str | None = None  # WRONGTYPE (not a list), NOPERM (an ACL), ...

    @property
    def not_a_list(self) -> bool:
        return bool(self.error and self.error.startswith("WRONGTYPE"))

    @property
    def seen(self) -> bool:
        return self.known or bool(self.length) or self.length is None

    @property
    def all_jobs(self) -> bool:
        """The ``default`` queue holds every GitLab job, not only the mail ones."""
        return self.queue == "default"


@dataclass
class SidekiqLook:
    server_time: float  # Unix seconds, Redis's clock (ages are measured with it)
    queues: list[QueueLook]
    scripted: bool  # False: scripting refused, lengths only

    @property
    def seen(self) -> bool:
        return any(q.seen for q in self.queues)

    def lengths(self) -> dict[str, int]:
        return {q.queue: q.length or 0 for q in self.queues}

    def oldest_age(self, q: QueueLook) -> float | None:
        return None if q.oldest_enqueued_at is None else max(0.0, self.server_time - q.oldest_enqueued_at)


class SidekiqProbe:
    """Reads the configured queues on a Redis (given as a callable returning a redis-py client, so
    that the connection stays the caller's: the locks' one)."""

    def __init__(self, client: Callable[[], Any], queues: Iterable[str] = DEFAULT_QUEUES, *,
                 namespace: str = "") -> None:
        qs = list(dict.fromkeys(q for q in queues if q))
        if not qs:
            qs = list(DEFAULT_QUEUES)
        self.queues = qs[:MAX_QUEUES]
        self.namespace = namespace or ""
        self._client = client
        self.scripted = True

    def key(self, queue: str) -> str:
        return f"{self.namespace}queue:{queue}"

    def look(self) -> SidekiqLook:
        client = self._client()
        keys = [f"{self.namespace}queues", *(self.key(q) for q in self.queues)]
        if self.scripted:
            args = [*self.queues, str(DECODE_LIMIT)]
            try:
                try:
                    res = client.evalsha(_PEEK_SHA, len(keys), *keys, *args)
                except redis.exceptions.NoScriptError:
                    res = client.eval(_PEEK_LUA, len(keys), *keys, *args)
            except redis.exceptions.ResponseError:
                self.scripted = False  # NOPERM, scripting disabled, a proxy without EVAL: lengths only
            else:
                now = int(res[0]) + int(res[1]) / 1e6
                looks = []
                for q, row in zip(self.queues, res[2], strict=True):
                    n, err = (int(row[0]), None) if isinstance(row[0], int) else (None, _text(row[0]))
                    looks.append(QueueLook(q, n, bool(int(row[1])), _epoch_seconds(row[2]), _text(row[3]), err))
                return SidekiqLook(now, looks, True)
        pipe = client.pipeline(transaction=False)
        pipe.time()
        for q in self.queues:
            pipe.llen(self.key(q))
            pipe.sismember(keys[0], q)
        res = pipe.execute(raise_on_error=False)
        if isinstance(res[0], Exception):
            raise res[0]
        now = int(res[0][0]) + int(res[0][1]) / 1e6
        looks = []
        for i, q in enumerate(self.queues):
            n, known = res[1 + 2 * i], res[2 + 2 * i]
            looks.append(QueueLook(q, None if isinstance(n, Exception) else int(n),
                                   not isinstance(known, Exception) and bool(known),
                                   error=str(n) if isinstance(n, Exception) else None))
        return SidekiqLook(now, looks, False)


@dataclass
class SidekiqStatus:
    """One look, against the lengths at release time; or the error that prevented it."""

    look: SidekiqLook | None
    baseline: dict[str, int] | None = None
    error: str | None = None
    #: True on the first failure in a row: the CLI notes an error once, then keeps watching quietly
    first_error: bool = False
    namespace: str = ""

    def since(self, q: QueueLook) -> int | None:
        if self.baseline is None or q.length is None or q.queue not in self.baseline:
            return None
        return q.length - self.baseline[q.queue]

    def parts(self) -> list[str]:
        if self.error is not None:
            return [f"Sidekiq queues unreadable ({self.error})"]
        look = self.look
        if look is None:
            return []
        if not look.seen:
            return [NO_QUEUE]
        out = []
        for q in look.queues:
            if not q.seen:
                continue
            name = "default queue (all GitLab jobs)" if q.all_jobs else f"{inert(q.queue, limit=60)} queue"
            if q.length is None:
                out.append(f"{name}: not a Sidekiq list" if q.not_a_list else
                           f"{name}: unreadable ({inert(q.error or 'error', limit=120)})")
                continue
            text = f"{name}: {q.length} job(s)"
            d = self.since(q)
            if d is not None:
                text += f" ({d:+d} since release)"
            age = look.oldest_age(q)
            if age is not None:
                text += f", oldest {age_text(age)} old"
            if q.oldest_class and q.length:
                text += (" (" if age is not None else ", oldest ") + inert(q.oldest_class, limit=60) + (
                    ")" if age is not None else "")
            out.append(text)
        if not look.scripted:
            out.append("oldest job unknown: scripting refused")
        return out

    def text(self) -> str:
        return "Sidekiq: " + "; ".join(self.parts()) if self.parts() else ""

    def key(self) -> tuple[Any, ...]:
        """What changed, for a printer that prints on change: not the ``default`` queue's length,
        which every GitLab job moves (it would print a line per look on a busy instance)."""
        if self.look is None:
            return (self.error,)
        return tuple((q.queue, q.length) for q in self.look.queues if not q.all_jobs)

    def to_json(self) -> dict[str, Any]:
        look = self.look
        queues = []
        if look is not None:
            for q in look.queues:
                age = look.oldest_age(q)
                queues.append({"queue": q.queue, "key": f"{self.namespace}queue:{q.queue}", "seen": q.seen,
                               "length": q.length, "since_release": self.since(q),
                               "all_gitlab_jobs": q.all_jobs,
                               "oldest_age_s": None if age is None else round(age, 1),
                               "oldest_class": q.oldest_class, "error": q.error})
        return {"seen": None if look is None else look.seen, "queues": queues,
                "oldest_read": None if look is None else look.scripted,
                "note": NO_QUEUE if look is not None and not look.seen else None, "error": self.error}


@dataclass
class SidekiqWatch:
    """The queues over a watch: a baseline taken at release time, then one look per poll. A failed
    look never raises: it becomes a status with ``error`` (``first_error`` on the first in a row)."""

    probe: SidekiqProbe
    baseline: SidekiqLook | None = None
    failing: bool = False
    errors: int = 0
    last: SidekiqStatus | None = field(default=None, repr=False)

    def snapshot(self) -> SidekiqLook | None:
        """Take the baseline (at release time); None if the queues could not be read."""
        try:
            self.baseline = self.probe.look()
        except Exception:  # noqa: BLE001 - the queues are extra information: never break a release
            self.baseline = None
        return self.baseline

    def poll(self) -> SidekiqStatus:
        base = self.baseline.lengths() if self.baseline is not None else None
        try:
            look = self.probe.look()
        except Exception as e:  # noqa: BLE001 - errors never break the watch
            self.errors += 1
            first = not self.failing
            self.failing = True
            st = SidekiqStatus(None, base, error=_short_error(e), first_error=first, namespace=self.probe.namespace)
        else:
            self.failing = False
            st = SidekiqStatus(look, base, namespace=self.probe.namespace)
        self.last = st
        return st


def _short_error(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    if not text.startswith(("Redis unavailable", type(e).__name__)):
        text = f"{type(e).__name__}: {text}"
    return inert(text, limit=200)


def queue_names(values: Sequence[str] | None) -> tuple[str, ...]:
    """Configured queue names (``--sidekiq-queue`` repeated, or a list), defaults when none."""
    names = tuple(dict.fromkeys(v.strip() for v in values or () if v and v.strip()))
    if len(names) > MAX_QUEUES:
        raise UsageError(f"at most {MAX_QUEUES} Sidekiq queues can be watched (--sidekiq-queue given {len(names)})")
    return names or DEFAULT_QUEUES


__all__ = ["DEFAULT_QUEUES", "EMAIL_WORKERS", "NO_QUEUE", "QueueLook", "SidekiqLook", "SidekiqProbe",
           "SidekiqStatus", "SidekiqWatch", "age_text", "queue_names"]
