"""``triage-tui check --inbox graph`` against the Graph test server (real HTTP, in-process) and the
real redis-server: every step passes on a healthy mailbox with the same ``--json`` shape as over
IMAP, only GETs and the token POST reach the wire, and a wrong secret, an unknown tenant or
client, an unknown mailbox or folder and an unreachable endpoint are each one FAIL line with a fix
(exit 1, no traceback, no secret or token in the output); ``--observe`` sees the Graph mail_room
stand-in consume."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.mailgen import backlog
from tests.servers import free_port
from triage_tui.commands.check import Checker
from triage_tui.demo.backlog import ADDRESS_TEMPLATE
from triage_tui.demo.graphserver import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_MAILBOX,
    DEMO_TENANT,
    GraphServer,
)
from triage_tui.services.graph import GraphSettings
from triage_tui.services.graphconsumer import GraphConsumerOptions, GraphMailRoomConsumer
from triage_tui.services.imap import Secret

PREFIX = "mail_room:gitlab:"
ORDER = ["config", "aad-dns", "aad-tcp", "aad-tls", "token", "dns", "tcp", "tls", "mailbox", "address", "redis",
         "consuming", "budget"]
CANARY = "canary-secret-7f3a9c"


@pytest.fixture
def graph() -> Iterator[GraphServer]:
    srv = GraphServer().start()
    yield srv
    srv.stop()


def env(srv: GraphServer, redis_url: str | None = None, **extra: str) -> dict[str, str]:
    e = {"TRIAGE_INBOX": "graph", "TRIAGE_GRAPH_ENDPOINT": srv.url, "TRIAGE_AZURE_AD_ENDPOINT": srv.url,
         "TRIAGE_GRAPH_TENANT_ID": DEMO_TENANT, "TRIAGE_GRAPH_CLIENT_ID": DEMO_CLIENT_ID,
         "TRIAGE_GRAPH_CLIENT_SECRET": DEMO_CLIENT_SECRET, "TRIAGE_GRAPH_MAILBOX": DEMO_MAILBOX,
         "TRIAGE_ADDRESS": ADDRESS_TEMPLATE, "TRIAGE_KEY_PREFIX": PREFIX}
    if redis_url:
        e["TRIAGE_REDIS_URL"] = redis_url
    return e | extra


def seed(srv: GraphServer, n: int, now: float, **kw: Any) -> list[str]:
    return [srv.add_message(DEMO_MAILBOX, raw, is_read="S" in flags, received=datetime.fromtimestamp(ts, UTC))
            for raw, ts, flags in backlog(n, now=now, **kw)]


def run_check(cli, e, *extra, observe="0"):  # type: ignore[no-untyped-def]
    r = cli([*extra, "check", "--json", "--observe", observe], env=e)
    assert "Traceback" not in r.err, r.err
    doc = json.loads(r.out)
    return r, doc, {s["name"]: s for s in doc["steps"]}


def state(srv: GraphServer) -> dict[str, tuple[bool, tuple[str, ...], str]]:
    return {m.regular_id: (m.is_read, tuple(m.categories), m.folder) for m in srv.messages(DEMO_MAILBOX)}


def test_check_passes_on_a_healthy_graph_mailbox_and_only_reads(graph, cli, redis_server, redis_client):  # type: ignore[no-untyped-def]
    ids = seed(graph, 4, now=time.time(), step=5)
    redis_client.set(f"{PREFIX}delivered:{ids[0]}", "1", ex=600)
    before = state(graph)
    graph.reset_log()
    r, doc, steps = run_check(cli, env(graph, redis_server.url))
    assert r.code == 0 and doc["ok"] is True and doc["failed"] == 0 and doc["warnings"] == 0, doc
    assert set(doc) == {"ok", "failed", "warnings", "steps"}  # the IMAP check's shape
    assert [s["name"] for s in doc["steps"]] == ORDER
    assert all(set(s) >= {"name", "status", "detail", "hint"} for s in doc["steps"])
    statuses = {n: s["status"] for n, s in steps.items()}
    # plain http on loopback: no TLS to check, said so
    assert statuses.pop("aad-tls") == statuses.pop("tls") == "skip"
    assert "loopback" in steps["tls"]["detail"] and "https" in steps["tls"]["detail"]
    assert statuses.pop("consuming") == "skip"  # --observe 0
    assert set(statuses.values()) == {"pass"}, statuses
    cfg = steps["config"]["detail"]
    assert DEMO_TENANT in cfg and DEMO_CLIENT_ID in cfg and DEMO_MAILBOX in cfg and "TRIAGE_GRAPH_CLIENT_SECRET" in cfg
    m = steps["mailbox"]
    assert m["unseen"] == 4 and m["exists"] == 4 and m["deleted"] == 0 and m["oldest_unseen_age_s"] < 3600
    assert steps["redis"]["delivered"] == 1 and "delivered:<graph id>" in steps["redis"]["detail"]
    # read-only on the wire: GETs and the token POST, nothing else; the budget line counts them
    counts = graph.counts()
    assert set(counts) <= {"GET", "token"} and counts["token"] == 1, counts
    assert steps["budget"]["requests"] == counts["GET"] and steps["budget"]["token_requests"] == 1
    assert "10,000 per 10 minutes" in steps["budget"]["detail"]
    assert state(graph) == before
    # the secret never appears, in either form of the output
    assert DEMO_CLIENT_SECRET not in r.out + r.err
    r = cli(["check", "--observe", "0"], env=env(graph, redis_server.url))
    assert r.code == 0 and r.lines[-1].startswith("check: OK"), r.out
    assert [line.split()[1] for line in r.lines if line[:4] in ("PASS", "WARN", "FAIL", "SKIP")] == ORDER
    assert DEMO_CLIENT_SECRET not in r.out + r.err and "eyJ0eXAi" not in r.out + r.err


def test_stale_unread_is_a_warning(graph, cli):  # type: ignore[no-untyped-def]
    seed(graph, 3, now=time.time() - 3 * 86400)
    r, doc, steps = run_check(cli, env(graph))
    assert steps["mailbox"]["status"] == "warn" and "unread mail older than" in steps["mailbox"]["hint"]
    assert r.code == 0


@pytest.mark.parametrize(("kw", "code", "fragment"), [
    ({"TRIAGE_GRAPH_CLIENT_SECRET": CANARY}, "AADSTS7000215", "Certificates & secrets"),
    ({"TRIAGE_GRAPH_TENANT_ID": "no-such-tenant"}, "AADSTS90002", "tenant_id"),
    ({"TRIAGE_GRAPH_CLIENT_ID": "not-the-app"}, "AADSTS700016", "client_id"),
])
def test_token_refusals_fail_with_the_aadsts_code_and_a_fix(graph, cli, kw, code, fragment) -> None:  # type: ignore[no-untyped-def]
    seed(graph, 1, now=time.time())
    r, doc, steps = run_check(cli, env(graph, **kw))
    t = steps["token"]
    assert r.code == 1 and t["status"] == "fail" and code in t["detail"] and t["aadsts"] == code
    assert fragment in t["hint"]
    assert steps["mailbox"]["status"] == "skip" and steps["consuming"]["status"] == "skip"
    assert [s["name"] for s in doc["steps"]] == ORDER
    h = cli(["check", "--observe", "0"], env=env(graph, **kw))
    for out in (r.out + r.err, h.out + h.err):
        assert CANARY not in out and "eyJ0eXAi" not in out and "Traceback" not in out
    assert h.code == 1 and sum(line.startswith("FAIL") for line in h.lines) == 1


@pytest.mark.parametrize(("kw", "code", "fragment"), [
    ({"TRIAGE_GRAPH_MAILBOX": "nobody@gitlab.example.com"}, "ErrorInvalidUser", "ApplicationAccessPolicy"),
    ({"TRIAGE_GRAPH_FOLDER": "nosuchfolder"}, "ErrorItemNotFound", "--graph-folder"),
])
def test_unknown_mailbox_or_folder_fails_with_a_fix(graph, cli, kw, code, fragment) -> None:  # type: ignore[no-untyped-def]
    seed(graph, 1, now=time.time())
    graph.reset_log()
    r, doc, steps = run_check(cli, env(graph, **kw), observe="1")
    m = steps["mailbox"]
    assert r.code == 1 and m["status"] == "fail" and code in m["detail"] and fragment in m["hint"], m
    assert steps["token"]["status"] == "pass" and steps["consuming"]["status"] == "skip"
    assert set(graph.counts()) <= {"GET", "token"}


def test_unreachable_endpoint_is_one_failing_line(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    e = {"TRIAGE_INBOX": "graph", "TRIAGE_GRAPH_ENDPOINT": url, "TRIAGE_AZURE_AD_ENDPOINT": url,
         "TRIAGE_GRAPH_TENANT_ID": DEMO_TENANT, "TRIAGE_GRAPH_CLIENT_ID": DEMO_CLIENT_ID,
         "TRIAGE_GRAPH_CLIENT_SECRET": CANARY, "TRIAGE_GRAPH_MAILBOX": DEMO_MAILBOX}
    r, doc, steps = run_check(cli, e)
    assert r.code == 1 and steps["aad-tcp"]["status"] == "fail" and steps["tcp"]["status"] == "fail"
    assert steps["token"]["status"] == "skip" and steps["mailbox"]["status"] == "skip"
    h = cli(["check", "--observe", "0"], env=e)
    assert h.code == 1 and "Traceback" not in h.err and CANARY not in h.out + h.err
    fails = [line for line in h.lines if line.startswith("FAIL")]
    assert [f.split()[1] for f in fails] == ["aad-tcp", "tcp"] and f"port {port}" in fails[0]
    # an unresolvable host, and a missing secret: a failing step, never a crash
    e2 = e | {"TRIAGE_GRAPH_ENDPOINT": "https://graph.invalid", "TRIAGE_AZURE_AD_ENDPOINT": "https://login.invalid"}
    r, doc, steps = run_check(cli, e2)
    assert r.code == 1 and steps["aad-dns"]["status"] == "fail" and steps["dns"]["status"] == "fail"
    for bad, why in (("http://127.0.0.1:99999", "invalid port"), ("ftp://u:pw@graph.example", "not an http(s) URL")):
        r, doc, steps = run_check(cli, e | {"TRIAGE_GRAPH_ENDPOINT": bad})
        assert r.code == 1 and steps["dns"]["status"] == "fail" and why in steps["dns"]["detail"]
        assert "pw" not in steps["dns"]["detail"] and steps["mailbox"]["status"] == "skip"
    e3 = {k: v for k, v in e.items() if k != "TRIAGE_GRAPH_CLIENT_SECRET"}
    r, doc, steps = run_check(cli, e3)
    assert r.code == 1 and steps["config"]["status"] == "fail" and "secret" in steps["config"]["detail"]
    assert steps["token"]["status"] == "skip"


def test_observe_sees_the_graph_mail_room_consume(graph, cli, redis_server, redis_client, monkeypatch):  # type: ignore[no-untyped-def]
    seed(graph, 3, now=time.time() - 3600)
    g = GraphSettings(tenant_id=DEMO_TENANT, client_id=DEMO_CLIENT_ID, client_secret=Secret(DEMO_CLIENT_SECRET),
                      mailbox=DEMO_MAILBOX, graph_endpoint=graph.url, azure_ad_endpoint=graph.url)
    mail_room = GraphMailRoomConsumer(g, redis_client, GraphConsumerOptions(key_prefix=PREFIX, poll_interval=0.05))
    started: list[threading.Thread] = []
    original = Checker._key_names

    def key_names_then_consume(self):  # type: ignore[no-untyped-def]
        names = original(self)  # the observation's first snapshot is taken: mail_room polls now
        if not started:
            t = threading.Thread(target=lambda: (time.sleep(0.2), mail_room.cycle()), daemon=True)
            t.start()
            started.append(t)
        return names

    monkeypatch.setattr(Checker, "_key_names", key_names_then_consume)
    r, doc, steps = run_check(cli, env(graph, redis_server.url), observe="2")
    started[0].join(10)
    mail_room.client.close()
    c = steps["consuming"]
    assert c["status"] == "pass" and c["picked_up"] == 3 and c["new_lock_keys"] == 3, c
    assert "unread" in c["detail"] and "polled" in c["detail"]
    assert r.code == 0, doc


def test_observe_fails_when_locks_hold_unread_mail(graph, cli, redis_server, redis_client):  # type: ignore[no-untyped-def]
    ids = seed(graph, 3, now=time.time() - 3600)
    for gid in ids[:2]:  # an instance that won the ids and died: the Graph crash trap looks the same
        redis_client.set(f"{PREFIX}delivered:{gid}", "1", ex=600)
    r, doc, steps = run_check(cli, env(graph, redis_server.url), observe="1")
    c = steps["consuming"]
    assert r.code == 1 and c["status"] == "fail" and c["held_unseen"] == 2, c
    assert "2 of them hold a lock key" in c["detail"] and "twice" in c["detail"]


def _https(srv: GraphServer, tmp_path) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """The test server behind TLS (its listening socket wrapped): (https URL, the CA file)."""
    import ssl  # noqa: PLC0415

    from tests.servers import make_tls_material  # noqa: PLC0415

    ca, crt, key = make_tls_material(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    httpd = srv._httpd
    assert httpd is not None
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    return f"https://localhost:{srv.port}", str(ca)


def test_https_endpoints_get_their_tls_checked(graph, cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    seed(graph, 2, now=time.time())
    url, ca = _https(graph, tmp_path)
    e = env(graph) | {"TRIAGE_GRAPH_ENDPOINT": url, "TRIAGE_AZURE_AD_ENDPOINT": url}
    # not trusted (no CA given): FAIL at aad-tls and tls, the token is not even asked for
    r, doc, steps = run_check(cli, e)
    assert r.code == 1 and steps["aad-tls"]["status"] == "fail" and "not trusted" in steps["aad-tls"]["detail"]
    assert steps["tls"]["status"] == "fail" and steps["token"]["status"] == "skip"
    # with the CA: verified, the certificate described, and the whole check passes over https
    r, doc, steps = run_check(cli, e | {"TRIAGE_IMAP_CA_FILE": ca})
    for name in ("aad-tls", "tls"):
        t = steps[name]
        # the throwaway certificate lives 2 days: the expiry warning is the IMAP check's
        assert t["status"] == "warn" and "expires in" in t["hint"], t
        assert t["verified"] is True and t["subject"] == "commonName=localhost", t
        assert t["version"] in ("TLSv1.2", "TLSv1.3") and 0 < t["expires_in_days"] < 3
    assert steps["token"]["status"] == "pass" and steps["mailbox"]["unseen"] == 2
    assert r.code == 0, doc


def test_throttled_check_fails_fast_instead_of_waiting_minutes(graph, cli) -> None:  # type: ignore[no-untyped-def]
    seed(graph, 2, now=time.time())
    graph.throttle(50, retry_after=300)
    start = time.monotonic()
    r, doc, steps = run_check(cli, env(graph))
    assert time.monotonic() - start < 20
    m = steps["mailbox"]
    assert r.code == 1 and m["status"] == "fail" and "429" in m["detail"], m
