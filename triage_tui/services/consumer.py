"""A mail_room-compatible consumer, for tests and the demo: the external system we triage around.

It does what mail_room 0.10+ does in one cycle (see ``docs/gitlab-mail.md`` §1), in the same
order, so that the effects an operator meets are real ones:

1. ``UID SEARCH UNSEEN``;
2. per UID ``SET <prefix>delivered:<uid> 1 NX EX 600`` (or, with ``legacy_incr``, the pre-0.10
   ``INCR`` + ``EXPIRE 600``, won when INCR returned 1): only won UIDs go on;
3. one ``UID FETCH <won> RFC822`` (which sets \\Seen);
4. ``LPUSH queue:<queue>`` of a Sidekiq-style JSON job per message;
5. ``STORE +FLAGS (\\Deleted)`` if ``delete_after_delivery``, then ``EXPUNGE`` if ``expunge_deleted``.

It is deliberately **not** part of triage-tui's mutation path (no guard, no journal): it stands
in for mail_room. Knobs reproduce the failure modes: ``crash_after_fetch`` (the seen trap:
fetched, \\Seen, never delivered or deleted) and :meth:`MailRoomConsumer.hold` (an instance that
claims keys and dies before fetching: the UNSEEN pile-up).

Works against Dovecot and pymap (whose UIDs start at 101 and which answers NO to STORE under
EXAMINE: we SELECT), with redis-server or fakeredis.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import imapclient
from imapclient import exceptions as imap_exc

from triage_tui.services.imap import ConnectionSettings, make_ssl_context

log = logging.getLogger("triage_tui.consumer")

DEFAULT_PREFIX = "mail_room:gitlab:"


@dataclass
class ConsumerOptions:
    key_prefix: str = DEFAULT_PREFIX
    queue: str = "email_receiver"  # GitLab < 16: email_receiver; newer: default
    worker: str = "EmailReceiverWorker"  # ServiceDeskEmailReceiverWorker for service_desk_email
    poll_interval: float = 1.0
    lock_ttl: int = 600
    legacy_incr: bool = False  # mail_room < 0.10: INCR + EXPIRE, whose TTL every poll refreshes
    delete_after_delivery: bool = True  # GitLab default
    expunge_deleted: bool = False  # GitLab default
    search_command: str = "UNSEEN"
    crash_after_fetch: bool = False  # the seen trap: fetched (\\Seen), never delivered
    name: str = "consumer"


@dataclass
class ConsumerStats:
    cycles: int = 0
    won: int = 0
    lost: int = 0  # SET NX (or INCR) lost: another instance (or a stale key) holds the UID
    delivered: list[int] = field(default_factory=list)
    crashed: list[int] = field(default_factory=list)
    errors: int = 0
    last_error: str | None = None
    last_cycle_at: float | None = None


class MailRoomConsumer:
    """One mail_room instance. ``cycle()`` runs one poll; ``start()``/``stop()`` poll in a thread.

    ``redis_client`` is any redis-py compatible client (a ``redis.Redis`` or a ``fakeredis`` one).
    """

    def __init__(self, imap: ConnectionSettings, redis_client: Any, options: ConsumerOptions | None = None) -> None:
        self.settings = imap
        self.redis = redis_client
        self.options = options or ConsumerOptions()
        self.stats = ConsumerStats()
        self._client: imapclient.IMAPClient | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # -- IMAP ---------------------------------------------------------------------------------

    def _connect(self) -> imapclient.IMAPClient:
        s = self.settings
        ssl_ctx = make_ssl_context(s) if s.security != "none" else None
        client = imapclient.IMAPClient(s.host, port=s.effective_port, ssl=s.security == "ssl",
                                       ssl_context=ssl_ctx, timeout=s.timeout)
        if s.security == "starttls":
            client.starttls(ssl_ctx)
        client.login(s.user, s.password.reveal() if s.password else "")
        client.select_folder(s.mailbox, readonly=False)
        return client

    def _imap(self) -> imapclient.IMAPClient:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _drop(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.logout()
            self._client = None

    def key(self, uid: int) -> str:
        return f"{self.options.key_prefix}delivered:{uid}"

    # -- arbitration ----------------------------------------------------------------------------

    def _claim(self, uid: int) -> bool:
        o = self.options
        k = self.key(uid)
        if o.legacy_incr:
            n = int(self.redis.incr(k))
            self.redis.expire(k, o.lock_ttl)
            return n == 1
        return bool(self.redis.set(k, "1", nx=True, ex=o.lock_ttl))

    def hold(self, uids: Iterable[int], ttl: int | None = None) -> int:
        """Claim keys and never fetch: an instance that died mid-cycle. Returns how many it won."""
        o = self.options
        won = 0
        for uid in uids:
            k = self.key(uid)
            if o.legacy_incr:
                won += int(self.redis.incr(k)) == 1
                self.redis.expire(k, ttl or o.lock_ttl)
            else:
                won += bool(self.redis.set(k, "1", nx=True, ex=ttl or o.lock_ttl))
        return won

    # -- one cycle --------------------------------------------------------------------------------

    def job(self, raw: bytes) -> str:
        return sidekiq_job(self.options, raw)

    def cycle(self) -> list[int]:
        """One mail_room poll. Returns the UIDs delivered in it."""
        o = self.options
        with self._lock:
            client = self._imap()
            client.noop()  # let the server report new mail and other sessions' flag changes
            unseen = sorted(int(u) for u in client.search(o.search_command.split()))
            won: list[int] = []
            for uid in unseen:
                if self._claim(uid):
                    won.append(uid)
                else:
                    self.stats.lost += 1
            self.stats.won += len(won)
            delivered: list[int] = []
            if won:
                fetched: dict[int, Any] = {}
                for i in range(0, len(won), 500):  # sets \Seen, as mail_room's FETCH does
                    fetched.update(client.fetch(won[i:i + 500], ["RFC822"]))
                if o.crash_after_fetch:
                    self.stats.crashed.extend(sorted(fetched))
                    self._drop()  # "the process dies": nothing delivered, nothing deleted
                    self.stats.cycles += 1
                    return []
                raws: list[bytes] = []
                for uid in won:
                    data = fetched.get(uid)
                    if data is None or b"RFC822" not in data:
                        continue  # expunged meanwhile
                    raws.append(data[b"RFC822"])
                    delivered.append(uid)
                enqueue(self.redis, o, raws)
                if o.delete_after_delivery and delivered:
                    client.add_flags(delivered, [imapclient.DELETED], silent=True)
                    if o.expunge_deleted:
                        client.expunge()
            self.stats.delivered.extend(delivered)
            self.stats.cycles += 1
            self.stats.last_cycle_at = time.monotonic()
            return delivered

    # -- the polling thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.cycle()
            except (imap_exc.IMAPClientError, OSError) as e:
                self.stats.errors += 1
                self.stats.last_error = f"IMAP: {e}"
                log.warning("%s: IMAP error, reconnecting: %s", self.options.name, e)
                with self._lock:
                    self._drop()
            except Exception as e:  # noqa: BLE001 - a consumer thread must survive Redis hiccups
                self.stats.errors += 1
                self.stats.last_error = f"{type(e).__name__}: {e}"
                log.warning("%s: cycle failed: %s", self.options.name, e)
            self._stop.wait(self.options.poll_interval)

    def start(self) -> MailRoomConsumer:
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"mail_room-{self.options.name}-{os.getpid()}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._lock:
            self._drop()

    def __enter__(self) -> MailRoomConsumer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sidekiq_job(options: ConsumerOptions, raw: bytes) -> str:
    """The Sidekiq job mail_room's ``sidekiq`` delivery method pushes for one message."""
    now = time.time()
    return json.dumps({
        "class": options.worker,
        "args": [raw.decode("utf-8", "replace")],
        "queue": options.queue,
        "jid": uuid.uuid4().hex[:24],
        "retry": False,
        "created_at": now,
        "enqueued_at": now,
    })


def enqueue(redis_client: Any, options: ConsumerOptions, raws: list[bytes]) -> None:
    """Deliver messages as mail_room does: ``LPUSH queue:<queue>`` a job each, ``SADD queues``."""
    if not raws:
        return
    pipe = redis_client.pipeline(transaction=False)
    for raw in raws:
        pipe.lpush(f"queue:{options.queue}", sidekiq_job(options, raw))
    pipe.sadd("queues", options.queue)
    pipe.execute()


def queued_jobs(redis_client: Any, queue: str = "email_receiver") -> list[dict[str, Any]]:
    """The jobs waiting in a Sidekiq queue, oldest first (LPUSH puts the newest at the head)."""
    raw = redis_client.lrange(f"queue:{queue}", 0, -1)
    return [json.loads(r) for r in reversed(raw)]


__all__ = ["ConsumerOptions", "ConsumerStats", "MailRoomConsumer", "enqueue", "queued_jobs", "sidekiq_job"]
