"""mail_room's Microsoft Graph inbox, for tests and the demo: the stand-in beside :mod:`.consumer`.

It does what mail_room 0.11.1's ``microsoft_graph`` inbox does in one poll (issue 14), in the
same order, so the effects an operator meets over Graph are real ones:

1. ``GET …/mailFolders/<folder>/messages?$filter=isRead eq false`` (``$select=id``), every page
   (``@odata.nextLink``), collected before anything changes (Graph pages by offset: marking
   messages read while paging would shift the later pages);
2. per id ``SET <prefix>delivered:<graph id> 1 NX EX 600``: only won ids go on (the same
   arbitration as over IMAP, keyed by the regular Graph id: mail_room sends no
   ``Prefer: IdType="ImmutableId"``);
3. per won id, in turn: ``GET …/messages/<id>/$value`` (does **not** mark it read), deliver it
   (the Sidekiq job the IMAP stand-in pushes: :func:`~triage_tui.services.consumer.enqueue`),
   ``PATCH {"isRead": true}``, and with ``delete_after_delivery`` ``DELETE`` (a soft delete: the
   message moves to Deleted Items under a new regular id).

Polls every ``poll_interval`` (mail_room: 60 s; no push notifications). A 429 or 509 answer ends
the poll and makes it back off ``min(max_backoff, backoff_base * 2**n)`` seconds, ``n`` counting
the throttled polls in a row (mail_room: 1 s base, at most 10 minutes); the Graph client itself
does not retry (``max_retries=0``), as mail_room's OAuth2 client does not.

The crash trap differs from IMAP's: ``crash_after_delivery=N`` makes the instance die after
delivering the N-th message of a poll, before its PATCH. That message stays unread with its lock
held (re-delivered, a duplicate, once the lock expires or is released), and the ids it had won but
not yet downloaded stay unread and locked too (an UNSEEN pile-up, as after :meth:`hold`).

Not part of triage-tui's mutation path (no guard, no journal): it stands in for mail_room.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from triage_tui.errors import TriageError
from triage_tui.services.consumer import ConsumerOptions, enqueue
from triage_tui.services.graph import GraphClient, GraphError, GraphSettings, GraphThrottled

log = logging.getLogger("triage_tui.graphconsumer")

#: the statuses mail_room's Graph inbox backs off on
BACKOFF_STATUS = frozenset({429, 509})
UNREAD = "isRead eq false"


@dataclass
class GraphConsumerOptions(ConsumerOptions):
    crash_after_delivery: int = 0  # die after the N-th delivery of a poll, before its PATCH (0: never)
    backoff_base: float = 1.0  # mail_room: 2**n seconds
    max_backoff: float = 600.0  # mail_room: at most 10 minutes


@dataclass
class GraphConsumerStats:
    cycles: int = 0
    won: int = 0
    lost: int = 0  # SET NX lost: another instance (or a stale key) holds the id
    delivered: list[str] = field(default_factory=list)  # Graph ids (before the soft delete)
    crashed: list[str] = field(default_factory=list)  # delivered, never marked read
    throttled: int = 0  # polls ended by a 429/509
    backoffs: list[float] = field(default_factory=list)  # the back-off waits, in order
    errors: int = 0
    last_error: str | None = None


class GraphMailRoomConsumer:
    """One mail_room instance on a Graph mailbox. ``cycle()`` runs one poll; ``start()``/``stop()``
    poll in a thread. ``redis_client``: any redis-py compatible client."""

    def __init__(self, graph: GraphSettings, redis_client: Any,
                 options: GraphConsumerOptions | None = None) -> None:
        self.settings = dataclasses.replace(graph, max_retries=0, immutable_ids=False)
        self.redis = redis_client
        self.options = options or GraphConsumerOptions()
        self.stats = GraphConsumerStats()
        self.client = GraphClient(self.settings)
        self.dead = False  # crashed (crash_after_delivery): polls no more until revived
        self._throttled_in_a_row = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def key(self, graph_id: str) -> str:
        return f"{self.options.key_prefix}delivered:{graph_id}"

    @property
    def running(self) -> bool:
        t = self._thread
        return bool(t is not None and t.is_alive())

    # -- arbitration ----------------------------------------------------------------------------

    def _claim(self, graph_id: str) -> bool:
        return bool(self.redis.set(self.key(graph_id), "1", nx=True, ex=self.options.lock_ttl))

    def hold(self, graph_ids: Iterable[str], ttl: int | None = None) -> int:
        """Claim keys and never download: an instance that died mid-poll. Returns how many it won."""
        return sum(bool(self.redis.set(self.key(g), "1", nx=True, ex=ttl or self.options.lock_ttl))
                   for g in graph_ids)

    # -- one poll ---------------------------------------------------------------------------------

    def unread(self) -> list[str]:
        return [m["id"] for m in self.client.list_messages(self.settings.folder, filter=UNREAD, select=["id"])]

    def cycle(self) -> list[str]:
        """One mail_room poll. Returns the Graph ids delivered (and marked read) in it."""
        o = self.options
        with self._lock:
            if self.dead:
                return []
            ids = self.unread()
            won: list[str] = []
            for gid in ids:
                if self._claim(gid):
                    won.append(gid)
                else:
                    self.stats.lost += 1
            self.stats.won += len(won)
            delivered: list[str] = []
            try:
                for gid in won:
                    try:
                        raw = self.client.get_mime(gid)
                    except GraphError as e:
                        if e.status == 404:
                            continue  # gone meanwhile (read and deleted elsewhere)
                        raise
                    enqueue(self.redis, o, [raw])
                    if o.crash_after_delivery and len(delivered) + 1 >= o.crash_after_delivery:
                        self.stats.crashed.append(gid)
                        self.dead = True  # "the process dies": no PATCH, no DELETE; the rest stay claimed
                        self.client.close()
                        return delivered
                    self._write("PATCH", gid, {"isRead": True})
                    if o.delete_after_delivery:
                        self._write("DELETE", gid, None)
                    delivered.append(gid)
                    self.stats.delivered.append(gid)
            finally:
                self.stats.cycles += 1
            return delivered

    def _write(self, method: str, gid: str, body: Any) -> None:
        what = "marking a message read" if method == "PATCH" else "deleting a message"
        resp = self.client.request(method, self.client.message_path(gid), json_body=body, what=what)
        if resp.status == 404:
            return  # deleted meanwhile: nothing left to mark
        if not 200 <= resp.status < 300:
            raise GraphError(f"{self.client.where}: {what} answered {resp.status}", status=resp.status)

    # -- the polling thread -----------------------------------------------------------------------

    def backoff(self) -> float:
        """The wait after a throttled poll (the n-th in a row): ``min(max, base * 2**n)``."""
        o = self.options
        n = min(self._throttled_in_a_row, 64)
        return float(min(o.max_backoff, o.backoff_base * 2.0 ** n))

    def _run(self) -> None:
        while not self._stop.is_set() and not self.dead:
            wait = self.options.poll_interval
            try:
                self.cycle()
                self._throttled_in_a_row = 0
            except GraphThrottled as e:
                if e.status in BACKOFF_STATUS:
                    self._throttled_in_a_row += 1
                    self.stats.throttled += 1
                    wait = self.backoff()
                    self.stats.backoffs.append(wait)
                    log.warning("%s: Graph answered %s: backing off %.1f s", self.options.name, e.status, wait)
                else:
                    self.stats.errors += 1
                self.stats.last_error = str(e)
            except (TriageError, OSError) as e:
                self.stats.errors += 1
                self.stats.last_error = f"Graph: {e}"
                log.warning("%s: Graph error: %s", self.options.name, e)
            except Exception as e:  # noqa: BLE001 - a consumer thread must survive Redis hiccups
                self.stats.errors += 1
                self.stats.last_error = f"{type(e).__name__}: {e}"
                log.warning("%s: poll failed: %s", self.options.name, e)
            self._stop.wait(wait)

    def start(self) -> GraphMailRoomConsumer:
        if self.running:
            return self
        self.dead = False  # a restarted mail_room
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"mail_room-graph-{self.options.name}-{os.getpid()}")
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with contextlib.suppress(Exception):
            self.client.close()

    def __enter__(self) -> GraphMailRoomConsumer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["BACKOFF_STATUS", "GraphConsumerOptions", "GraphConsumerStats", "GraphMailRoomConsumer"]
