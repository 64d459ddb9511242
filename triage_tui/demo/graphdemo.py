"""The demo backlog served through the Graph test server (``triage-tui demo --graph``).

The same incident as the IMAP demo (:mod:`triage_tui.demo.backlog`), loaded into
:class:`~triage_tui.demo.graphserver.GraphServer` as mail_room's Graph inbox would hold it:
``\\Seen`` messages are read, ``\\Deleted`` ones are in Deleted Items (mail_room soft-deletes),
and the arbitration keys in the demo Redis are ``<prefix>delivered:<graph message id>``. Its
mail_room is :class:`~triage_tui.services.graphconsumer.GraphMailRoomConsumer` (mail_room's Graph
inbox), behind the same controller as the IMAP demo's, down at start as in the story.
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
from triage_tui.demo.server import KEY_PREFIX, DemoConsumer, EmbeddedRedis, plant_locks
from triage_tui.services.graph import GraphSettings
from triage_tui.services.imap import Secret


class GraphDemoConsumer(DemoConsumer):
    """The demo's mail_room over Graph: :class:`DemoConsumer`'s start/stop/status for the UI, over
    :class:`~triage_tui.services.graphconsumer.GraphMailRoomConsumer`."""

    def __init__(self, graph: GraphSettings, redis_url: str, *, key_prefix: str = KEY_PREFIX,
                 poll_interval: float = 2.0) -> None:
        super().__init__(None, redis_url, key_prefix=key_prefix, poll_interval=poll_interval)  # type: ignore[arg-type]
        self.graph = graph

    def _get(self) -> Any:
        if self._consumer is None:
            import redis  # noqa: PLC0415

            from triage_tui.services.graphconsumer import (  # noqa: PLC0415
                GraphConsumerOptions,
                GraphMailRoomConsumer,
            )

            client = redis.Redis.from_url(self.redis_url, decode_responses=True, socket_timeout=10)
            self._consumer = GraphMailRoomConsumer(self.graph, client, GraphConsumerOptions(
                key_prefix=self.key_prefix, poll_interval=self.poll_interval, name="demo"))
        return self._consumer


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
    consumer: GraphDemoConsumer | None = None  # mail_room's Graph inbox, down at start
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
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                self.consumer.close()
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
    # a key whose message is long gone names an id no folder holds any more
    return plant_locks(demo.redis.client(), demo.backlog.locks,
                       lambda lk: demo.ids[lk.index] if lk.index is not None else "AAMk" + secrets.token_urlsafe(30))


def start_graph_demo(size: int, *, seed: int, backlog: Backlog | None = None,
                     poll_interval: float = 2.0) -> GraphDemo:
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
        demo.consumer = GraphDemoConsumer(GraphSettings(
            tenant_id=DEMO_TENANT, client_id=DEMO_CLIENT_ID, client_secret=Secret(DEMO_CLIENT_SECRET),
            mailbox=DEMO_MAILBOX, graph_endpoint=graph.url, azure_ad_endpoint=graph.url),
            redis_srv.url, poll_interval=poll_interval)
    except BaseException:
        if graph is not None:
            graph.stop()
        if redis_srv is not None:
            redis_srv.stop()
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    demo.started_in = time.perf_counter() - t0
    return demo


__all__ = ["GraphDemo", "GraphDemoConsumer", "load", "start_graph_demo"]
