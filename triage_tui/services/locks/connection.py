"""mail_room's Redis: settings, the connection, and reading the arbitration keys (one round trip
per 5000 keys, never ``KEYS``). Errors surface as :class:`LockUnavailable` (exit code 3).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from triage_tui.domain.model import Message
from triage_tui.domain.redact import mask_host, mask_url, register
from triage_tui.domain.redact import scrub as scrub_secrets
from triage_tui.domain.redisurl import check_redis_url
from triage_tui.errors import TriageError, UsageError
from triage_tui.services.guard import MutationGuard
from triage_tui.services.imap import Secret
from triage_tui.services.journal import AuditJournal
from triage_tui.services.redislib import redis  # imported on first use (see redislib)

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
    #: GitLab's Sidekiq queues on this Redis that the watch after a release reads (read-only)
    sidekiq_queues: tuple[str, ...] = ("email_receiver", "default")
    #: the Sidekiq namespace (older GitLab: ``resque:gitlab:``), prepended to ``queue:<name>``
    sidekiq_namespace: str = ""

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


# -- the connection and the reads ------------------------------------------------------------


class LockReader:
    """The connection to mail_room's Redis and every read of its keys; :class:`LockService` adds
    the report, the plan, the (guarded) release and the watcher. Connects lazily: constructing it
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

    #: For a Graph mailbox: the Graph id a UID stands for (mail_room's key is
    #: ``<prefix>delivered:<graph message id>``), and back. None: IMAP, the key names the UID.
    key_namer: Callable[[int], str | None] | None = None
    uid_of_ident: Callable[[str], int | None] | None = None

    def key_for(self, uid: int) -> str:
        if self.key_namer is not None:
            ident = self.key_namer(int(uid))
            # a UID the map does not know names no message: a key no mail_room can have written
            return f"{self.prefix}{DELIVERED}{ident}" if ident else f"{self.prefix}{DELIVERED}?unknown-uid-{int(uid)}"
        return f"{self.prefix}{DELIVERED}{int(uid)}"

    def uid_of_key(self, k: KeyState) -> int | None:
        """The UID a ``delivered:`` key names (through the Graph id map for a Graph mailbox)."""
        if self.uid_of_ident is None:
            return k.uid(self.prefix)
        rest = k.key[len(self.prefix):] if k.key.startswith(self.prefix) else ""
        if not rest.startswith(DELIVERED) or len(rest) == len(DELIVERED):
            return None
        return self.uid_of_ident(rest[len(DELIVERED):])

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

    def failed_within(self, seconds: float) -> bool:
        """Whether the last Redis call failed less than ``seconds`` ago (none has worked since):
        callers that only annotate wait that long before asking a down or hung Redis again."""
        return self.last_error is not None and time.monotonic() - self.last_error_at < seconds

    def _connect(self) -> Any:
        from redis.backoff import NoBackoff  # noqa: PLC0415 - redis is imported when a client is made
        from redis.retry import Retry  # noqa: PLC0415

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
        keys = [self.key_for(m.uid) for m in messages]
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



def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
