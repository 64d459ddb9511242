"""The Graph client's transport and request counts against the Graph-compatible test server
(issue 14). Loopback, no TLS: the connection-setup gap measured here is the smallest it can be;
against graph.microsoft.com each new connection costs one TCP and one or two TLS round trips more.

    PYTHONPATH=. .venv/bin/python bench/bench_graph.py [-n 2000] [--gets 500] [--rtt-ms 0]

* ``transport``: ``--gets`` single-message GETs, one after another, through
  ``urllib.request`` (a new connection per request, as urllib does) and through
  :class:`GraphClient` (``http.client`` with keep-alive); wall time per request, median of 3.
* ``requests``: listing the unread messages with the analysis' headers (``$select``
  ``internetMessageHeaders``...), marking them read and back (``$batch``), deleting 100: HTTP
  requests on the wire and requests counted against Graph's per-mailbox budget, per 1,000 messages.

``--rtt-ms`` adds that much server latency to every mailbox request (a crude stand-in for a WAN:
it does not model connection setup, so it understates urllib's cost).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from triage_tui.demo.graphserver import (  # noqa: E402
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_MAILBOX,
    DEMO_TENANT,
    GraphServer,
)
from triage_tui.services.graph import GraphClient, GraphSettings  # noqa: E402
from triage_tui.services.imap import Secret  # noqa: E402

HEADERS = ["internetMessageHeaders", "receivedDateTime", "subject", "isRead"]


def raw(i: int) -> bytes:
    return (f"Received: from mx{i % 7}.example.org by mx.gitlab.example.com; Mon, 2 Mar 2026 10:00:00 +0000\r\n"
            f"From: Bot {i} <bot{i}@example.org>\r\nTo: incoming+group-project-{i}-abcdef-issue@gitlab.example.com\r\n"
            f"Subject: Re: note {i}\r\nMessage-ID: <m{i}@example.org>\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n"
            f"\r\n{'body ' * 40}\r\n").encode()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--gets", type=int, default=500)
    ap.add_argument("--rtt-ms", type=float, default=0.0)
    args = ap.parse_args()
    srv = GraphServer(latency=args.rtt_ms / 1000).start()
    base = datetime(2026, 3, 1, tzinfo=UTC)
    for i in range(args.n):
        srv.add_message(DEMO_MAILBOX, raw(i), received=base + timedelta(seconds=i))
    s = GraphSettings(DEMO_TENANT, DEMO_CLIENT_ID, Secret(DEMO_CLIENT_SECRET), DEMO_MAILBOX,
                      graph_endpoint=srv.url, azure_ad_endpoint=srv.url)
    client = GraphClient(s)
    ids = [m.regular_id for m in srv.messages(DEMO_MAILBOX)]
    token = client.token().reveal()

    def with_urllib() -> float:
        t = time.perf_counter()
        for i in range(args.gets):
            url = f"{srv.url}/v1.0/users/{DEMO_MAILBOX}/messages/{quote(ids[i % len(ids)], safe='')}"
            req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                json.loads(resp.read())
        return (time.perf_counter() - t) / args.gets

    def with_client() -> float:
        t = time.perf_counter()
        for i in range(args.gets):
            client.get_message(ids[i % len(ids)])
        return (time.perf_counter() - t) / args.gets

    u = statistics.median(with_urllib() for _ in range(3))
    c = statistics.median(with_client() for _ in range(3))
    print(f"transport, {args.gets} sequential GETs, rtt {args.rtt_ms:g} ms: urllib.request {u * 1e3:.3f} ms/request, "
          f"http.client keep-alive {c * 1e3:.3f} ms/request ({u / c:.2f}x)")

    per_k = 1000 / args.n
    for name, run in [
        ("list unread with headers", lambda: sum(1 for _ in client.list_messages(filter="isRead eq false",
                                                                                 select=HEADERS))),
        ("mark read ($batch)", lambda: len(client.set_read(ids, True))),
        ("mark unread ($batch)", lambda: len(client.set_read(ids, False))),
    ]:
        srv.reset_log()
        before = client.stats.budget
        t = time.perf_counter()
        done = run()
        wall = time.perf_counter() - t
        wire = srv.count()
        print(f"{name}: {done} messages in {wall:.2f} s; HTTP requests {wire} ({wire * per_k:.1f} per 1,000), "
              f"budget {client.stats.budget - before} ({(client.stats.budget - before) * per_k:.0f} per 1,000)")
    client.close()
    srv.stop()


if __name__ == "__main__":
    main()
