"""A GitLab host whose mailbox is read through Microsoft Graph, imported from its own files: a
rendered gitlab.yml (and mail_room's YAML) with ``inbox_method: microsoft_graph`` is all the
operator gives, and listing, mark-seen and undo work against the Graph test server over real HTTP
with the Redis locks of mail_room's arbitration; the client secret from those files (a canary)
appears in no output, error or file, whether it is right or wrong."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from triage_tui.demo.backlog import ADDRESS_TEMPLATE, build_backlog
from triage_tui.demo.graphdemo import load
from triage_tui.demo.graphserver import DEMO_CLIENT_ID, DEMO_MAILBOX, DEMO_TENANT, GraphServer

CANARY = "canary-graph-secret-7f3a9e"
WRONG = "canary-wrong-graph-secret-51c0"


@pytest.fixture
def graph() -> Iterator[GraphServer]:
    srv = GraphServer(client_secret=CANARY).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def backlog() -> Any:
    return build_backlog(size=150, seed=5, now=datetime.now(UTC))


def gitlab_yml(tmp: Path, srv: GraphServer, secret: str = CANARY) -> Path:
    p = tmp / "gitlab.yml"
    p.write_text(f"""\
production:
  incoming_email:
    enabled: true
    address: "{ADDRESS_TEMPLATE}"
    user: "{DEMO_MAILBOX}"
    mailbox: "inbox"
    delivery_method: webhook
    inbox_method: "microsoft_graph"
    inbox_options:
      tenant_id: "{DEMO_TENANT}"
      client_id: "{DEMO_CLIENT_ID}"
      client_secret: "{secret}"
      poll_interval: 60
      azure_ad_endpoint: "{srv.url}"
      graph_endpoint: "{srv.url}"
""")
    return p


def mail_room_yml(tmp: Path, srv: GraphServer, redis_url: str, secret: str) -> Path:
    p = tmp / "mail_room.yml"
    p.write_text(f"""\
:mailboxes:
  -
    :email: "{DEMO_MAILBOX}"
    :name: "inbox"
    :delete_after_delivery: true
    :inbox_method: microsoft_graph
    :inbox_options:
      :tenant_id: "{DEMO_TENANT}"
      :client_id: "{DEMO_CLIENT_ID}"
      :client_secret: "{secret}"
      :azure_ad_endpoint: "{srv.url}"
      :graph_endpoint: "{srv.url}"
    :delivery_method: sidekiq
    :delivery_options:
      :redis_url: "{redis_url}"
      :worker: EmailReceiverWorker
    :arbitration_method: redis
    :arbitration_options:
      :redis_url: "{redis_url}"
      :namespace: mail_room:gitlab
""")
    return p


def files_text(root: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file() and p.stat().st_size
                   < 50 << 20)


def test_gitlab_yml_alone_reaches_the_graph_mailbox(graph, backlog, cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    load(graph, backlog)
    gl = ["--gitlab-config", str(gitlab_yml(tmp_path, graph))]
    r = cli([*gl, "list", "--json"])
    assert r.code == 0, r.err
    rows = [json.loads(x) for x in r.lines]
    assert rows and all(row["key"] or row["no_key"] for row in rows)
    assert graph.counts()["token"] >= 1 and graph.counts()["GET"] > 0
    before = {m.regular_id: (m.is_read, tuple(m.categories)) for m in graph.messages(DEMO_MAILBOX)}
    r2 = cli([*gl, "mark-seen", "--bots", "--yes"])
    assert r2.code == 0, r2.err
    after = {m.regular_id: m.is_read for m in graph.messages(DEMO_MAILBOX)}
    assert any(after[g] and not before[g][0] for g in before)  # the server's state is the evidence
    journal = [json.loads(x) for x in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
    assert any(x.get("graph_ids") for x in journal if x["phase"] == "intent")
    r3 = cli([*gl, "undo", "--yes"])
    assert r3.code == 0, r3.err
    assert {m.regular_id: (m.is_read, tuple(m.categories)) for m in graph.messages(DEMO_MAILBOX)} == before
    shown = cli([*gl, "config", "show", "--json"])
    settings = json.loads(shown.out)["settings"]
    assert settings["triage.inbox"]["value"] == "graph" and settings["graph.client_secret"]["value"] == "********"
    for res in (r, r2, r3, shown):
        assert CANARY not in res.out + res.err
    assert CANARY not in files_text(tmp_path / "state")


def test_mail_room_yml_secret_wins_and_a_wrong_one_is_not_shown(graph, backlog, cli, tmp_path, redis_server) -> None:  # type: ignore[no-untyped-def]
    load(graph, backlog)
    gl = gitlab_yml(tmp_path, graph, secret=WRONG)  # mail_room's rendered file is what really runs
    mr = mail_room_yml(tmp_path, graph, redis_server.url, CANARY)
    r = cli(["--gitlab-config", str(gl), "--mail-room-config", str(mr), "locks", "--json"])
    assert r.code == 0, r.err
    r = cli(["--gitlab-config", str(gl), "list", "--json"])  # only the wrong secret: one line, no traceback
    assert r.code != 0 and len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    for s in (CANARY, WRONG):
        assert s not in r.out + r.err
    r = cli(["--debug", "--gitlab-config", str(gl), "list", "--json"])  # not even with --debug
    assert r.code != 0 and r.err.strip()
    for s in (CANARY, WRONG):
        assert s not in r.out + r.err
    # the environment outranks the file: the right secret from env over the wrong one in gitlab.yml
    r = cli(["--gitlab-config", str(gl), "list", "--json"], env={"TRIAGE_GRAPH_CLIENT_SECRET": CANARY})
    assert r.code == 0, r.err
    assert CANARY not in r.out + r.err and WRONG not in r.out + r.err
    assert CANARY not in files_text(tmp_path / "state") and WRONG not in files_text(tmp_path / "state")


def test_the_budget_is_said_on_its_own_line_and_in_releases_un_see_step(graph, backlog, cli, tmp_path,  # type: ignore[no-untyped-def]
                                                                        redis_server) -> None:
    load(graph, backlog)
    gl = ["--gitlab-config", str(gitlab_yml(tmp_path, graph))]
    r = cli([*gl, "mark-seen", "--all", "--dry-run"])
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    i = next(i for i, x in enumerate(lines) if x.startswith("UIDVALIDITY "))
    assert "Graph" not in lines[i] and lines[i + 1].startswith("Graph budget: ")
    assert "of the mailbox's ~10,000 requests per 10 minutes" in lines[i + 1]
    r = cli([*gl, "release", "--mark-unseen", "--all", "--dry-run"], env={"TRIAGE_REDIS_URL": redis_server.url})
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    i = next(i for i, x in enumerate(lines) if x.startswith("step 1: remove \\Seen"))
    assert lines[i + 1].startswith("step 1 spends ") and "Graph $batch request(s)" in lines[i + 1]
    assert CANARY not in r.out + r.err
