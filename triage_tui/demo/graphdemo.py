"""The demo backlog served through the Graph test server (``triage-tui demo --graph``).

The same incident as the IMAP demo (:mod:`triage_tui.demo.backlog`), loaded into
:class:`~triage_tui.demo.graphserver.GraphServer` as mail_room's Graph inbox would hold it:
``\\Seen`` messages are read, ``\\Deleted`` ones are in Deleted Items (mail_room soft-deletes),
and the arbitration keys in the demo Redis are ``<prefix>delivered:<graph message id>``. There is
no mail_room stand-in for Graph yet (the IMAP demo's consumer speaks IMAP).
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triage_tui.demo.backlog import ADDRESS_TEMPLATE, Backlog, build_backlog
from triage_tui.demo.graphserver import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_MAILBOX,
    DEMO_TENANT,
    GraphServer,
)
from triage_tui.demo.server import KEY_PREFIX, EmbeddedRedis


@dataclass
class GraphDemo:
    backlog: Backlog
    graph: GraphServer
    redis: EmbeddedRedis
    tmpdir: Path
    #: the Graph (regular) id of each backlog message, in backlog order
    ids: list[str] = field(default_factory=list)
    lock_ids: dict[str, list[str]] = field(default_factory=dict)
    started_in: float = 0.0
    consumer: Any = None  # no mail_room stand-in for Graph
    _stopped: bool = False

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def env(self) -> dict[str, str]:
        """The ``TRIAGE_*`` variables that point the CLI at the Graph demo from another shell."""
        return {
            "TRIAGE_INBOX": "graph",
            "TRIAGE_GRAPH_ENDPOINT": self.graph.url,
            "TRIAGE_AZURE_AD_ENDPOINT": self.graph.url,
            "TRIAGE_GRAPH_TENANT_ID": DEMO_TENANT,
            "TRIAGE_GRAPH_CLIENT_ID": DEMO_CLIENT_ID,
            "TRIAGE_GRAPH_CLIENT_SECRET": DEMO_CLIENT_SECRET,
            "TRIAGE_GRAPH_MAILBOX": DEMO_MAILBOX,
            "TRIAGE_GRAPH_FOLDER": "inbox",
            "TRIAGE_ADDRESS": ADDRESS_TEMPLATE,
            "TRIAGE_REDIS_URL": self.redis.url,
            "TRIAGE_KEY_PREFIX": KEY_PREFIX,
            "TRIAGE_DEMO": "1",
        }

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            self.graph.stop()
        with contextlib.suppress(Exception):
            self.redis.stop()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self) -> GraphDemo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def load(server: GraphServer, backlog: Backlog, mailbox: str = DEMO_MAILBOX) -> list[str]:
    """Store the backlog in ``mailbox``; returns the message ids in backlog order."""
    ids = []
    for m in backlog.messages:
        deleted = "\\Deleted" in m.flags
        ids.append(server.add_message(mailbox, m.raw, is_read="\\Seen" in m.flags or deleted,
                                      received=m.internaldate, folder="deleteditems" if deleted else "inbox"))
    return ids


def _hold_locks(demo: GraphDemo) -> dict[str, list[str]]:
    client = demo.redis.client()
    held: dict[str, list[str]] = {}
    try:
        pipe = client.pipeline(transaction=False)
        for lk in demo.backlog.locks:
            # a key whose message is long gone names an id no folder holds any more
            gid = demo.ids[lk.index] if lk.index is not None else "AAMk" + secrets.token_urlsafe(30)
            key = f"{KEY_PREFIX}delivered:{gid}"
            if lk.style == "set":
                pipe.set(key, str(lk.value), ex=lk.ttl)
            else:
                pipe.incrby(key, lk.value)
                if lk.ttl is not None:
                    pipe.expire(key, lk.ttl)
            label = "gone" if lk.index is None else ("incr-no-ttl" if lk.style == "incr" and lk.ttl is None
                                                    else lk.style)
            held.setdefault(label, []).append(gid)
        pipe.execute()
    finally:
        client.close()
    return held


def start_graph_demo(size: int, *, seed: int, backlog: Backlog | None = None) -> GraphDemo:
    t0 = time.perf_counter()
    tmpdir = Path(tempfile.mkdtemp(prefix="triage-graph-demo-"))
    graph: GraphServer | None = None
    redis_srv: EmbeddedRedis | None = None
    try:
        backlog = backlog or build_backlog(size, seed=seed)
        graph = GraphServer().start()
        redis_srv = EmbeddedRedis(log_path=tmpdir / "redis.log")
        demo = GraphDemo(backlog=backlog, graph=graph, redis=redis_srv, tmpdir=tmpdir)
        demo.ids = load(graph, backlog)
        demo.lock_ids = _hold_locks(demo)
    except BaseException:
        if graph is not None:
            graph.stop()
        if redis_srv is not None:
            redis_srv.stop()
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    demo.started_in = time.perf_counter() - t0
    return demo


__all__ = ["GraphDemo", "load", "start_graph_demo"]
