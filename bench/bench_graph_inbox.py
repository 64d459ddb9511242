"""The Graph inbox through the one service layer (issue 14, step 2): what listing, marking and
undoing cost against the Graph-compatible test server, in HTTP requests and in requests counted
against Graph's per-mailbox budget (~10,000 per 10 minutes, shared with mail_room), per 1,000
messages, with wall times. Loopback, no TLS, 2 shared cores: times are noisy and optimistic.

    PYTHONPATH=. .venv/bin/python bench/bench_graph_inbox.py [-n 5000] [--seed 3]

The backlog is the demo's (:mod:`triage_tui.demo.backlog`): most messages unread, some read,
some in Deleted Items, as mail_room leaves them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from triage_tui.demo.backlog import ADDRESS_TEMPLATE, build_backlog  # noqa: E402
from triage_tui.demo.graphdemo import load  # noqa: E402
from triage_tui.demo.graphserver import (  # noqa: E402
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_MAILBOX,
    DEMO_TENANT,
    GraphServer,
)
from triage_tui.domain.analysis import AnalysisConfig  # noqa: E402
from triage_tui.domain.model import View  # noqa: E402
from triage_tui.services.graph import GraphSettings  # noqa: E402
from triage_tui.services.graphsession import GraphConnectionSettings, GraphSession  # noqa: E402
from triage_tui.services.imap import Secret  # noqa: E402
from triage_tui.services.journal import AuditJournal  # noqa: E402
from triage_tui.services.triage import TriageService  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-graph-inbox-"))
    backlog = build_backlog(min(args.n, 20000), seed=args.seed)
    with GraphServer() as srv:
        load(srv, backlog)
        g = GraphSettings(tenant_id=DEMO_TENANT, client_id=DEMO_CLIENT_ID, client_secret=Secret(DEMO_CLIENT_SECRET),
                          mailbox=DEMO_MAILBOX, graph_endpoint=srv.url, azure_ad_endpoint=srv.url)
        svc = TriageService(GraphConnectionSettings(user=DEMO_MAILBOX, mailbox="inbox", graph=g, state_dir=tmp),
                            read_only=False, journal=AuditJournal(tmp / "audit.jsonl"),
                            analysis=AnalysisConfig(address=ADDRESS_TEMPLATE), session_factory=GraphSession.open)
        out: dict[str, Any] = {"messages": len(backlog)}

        def step(name: str, fn: Callable[[], Any], per: int) -> Any:
            srv.reset_log()
            t = time.perf_counter()
            result = fn()
            dt = time.perf_counter() - t
            c = srv.counts()
            http = sum(v for k, v in c.items() if k != "token")
            budget = http - c["POST"] + len(srv.batch_log)  # a $batch counts by its requests
            out[name] = {"seconds": round(dt, 2), "messages": per, "http": http, "budget": budget,
                         "http_per_1000": round(1000 * http / max(1, per), 1),
                         "budget_per_1000": round(1000 * budget / max(1, per), 1)}
            return result

        uv, unseen = svc.search(View.UNSEEN)
        step("list unseen", lambda: svc.list(View.UNSEEN), len(unseen))
        plan = step("plan mark-seen", lambda: svc.plan_flags("mark-seen", uv, unseen), len(unseen))
        step("mark-seen", lambda: svc.execute(plan), len(unseen))
        undo = step("plan undo", lambda: svc.plan_undo()[0], len(unseen))
        step("undo", lambda: svc.execute(undo), len(unseen))
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
