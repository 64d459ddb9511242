"""The Graph client (:mod:`triage_tui.services.graph`) against the Graph-compatible test server,
over real HTTP: paging, ``$batch``, back-off on 429/503, token renewal, secrets never shown.
The server's state and wire log are the evidence, never the client's own reply."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from triage_tui.demo.graphserver import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_MAILBOX,
    DEMO_TENANT,
    Answer,
    GraphServer,
)
from triage_tui.errors import AuthenticationFailed, ConfigError, ConnectionFailed, MailboxMissing, TriageError
from triage_tui.services.graph import GraphClient, GraphError, GraphSettings, GraphThrottled
from triage_tui.services.imap import Secret

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
N = 45
HEADERS = ["internetMessageHeaders", "receivedDateTime", "subject", "isRead"]


def raw_message(i: int) -> bytes:
    return (f"From: Bot <bot{i}@example.org>\r\nTo: incoming+key{i}@gitlab.example.com\r\n"
            f"Subject: note {i}\r\nMessage-ID: <m{i}@example.org>\r\n\r\nbody {i}\r\n").encode()


def fill(srv: GraphServer, n: int = N) -> None:
    for i in range(n):
        srv.add_message(DEMO_MAILBOX, raw_message(i), received=BASE + timedelta(minutes=i), is_read=i % 3 == 0)


@pytest.fixture
def server() -> Iterator[GraphServer]:
    srv = GraphServer().start()
    fill(srv)
    yield srv
    srv.stop()


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def settings(srv: GraphServer, **kw: Any) -> GraphSettings:
    return GraphSettings(tenant_id=DEMO_TENANT, client_id=DEMO_CLIENT_ID, client_secret=Secret(DEMO_CLIENT_SECRET),
                         mailbox=DEMO_MAILBOX, graph_endpoint=srv.url, azure_ad_endpoint=srv.url, **kw)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(server: GraphServer, sleeps: Sleeps) -> Iterator[GraphClient]:
    c = GraphClient(settings(server), sleep=sleeps)
    yield c
    c.close()


def unread(client: GraphClient, top: int = 1000) -> list[dict[str, Any]]:
    return list(client.list_messages(filter="isRead eq false", select=HEADERS, top=top))


# --- reading ------------------------------------------------------------------------------------------

def test_paging_filter_and_select(server: GraphServer, client: GraphClient) -> None:
    server.reset_log()
    got = unread(client, top=7)
    assert len(got) == 30 and len({m["id"] for m in got}) == 30
    assert all(m["isRead"] is False and m["internetMessageHeaders"] for m in got)
    assert server.counts() == {"token": 1, "GET": 5}  # 30 messages, 7 a page
    assert client.stats.http == {"GET": 5} and client.stats.token == 1 and client.stats.budget == 5
    # the default page is Graph's largest: one request per 1,000 messages
    server.reset_log()
    assert len(list(client.list_messages(folder="inbox"))) == N
    assert server.counts() == {"GET": 1}  # the token is reused


def test_mime_does_not_mark_read_and_reading_sends_no_writes(server: GraphServer, client: GraphClient) -> None:
    server.reset_log()
    msg = unread(client)[0]
    assert client.get_mime(msg["id"]) == raw_message(N - 1)
    assert client.get_message(msg["id"], ["subject"])["subject"] == f"note {N - 1}"
    assert client.folder_info()["unreadItemCount"] == 30
    assert server.find(DEMO_MAILBOX, msg["id"]).is_read is False  # type: ignore[union-attr]
    counts = server.counts()
    assert set(counts) == {"GET", "token"} and counts["token"] == 1
    assert server.batch_log == []


def test_missing_mailbox_and_message_are_one_line_errors(server: GraphServer, sleeps: Sleeps) -> None:
    other = GraphSettings(**{**settings(server).__dict__, "mailbox": "nobody@example.com"})
    with GraphClient(other) as c, pytest.raises(MailboxMissing) as e:
        list(c.list_messages())
    assert "ErrorInvalidUser" in str(e.value) and "\n" not in str(e.value) and e.value.exit_code == 2
    with GraphClient(settings(server), sleep=sleeps) as c, pytest.raises(GraphError) as e2:
        c.get_mime("AAMkNOPE")
    assert e2.value.status == 404 and e2.value.code == "ErrorItemNotFound" and e2.value.exit_code == 1


# --- writing through $batch ---------------------------------------------------------------------------

def test_set_read_in_batches_of_twenty(server: GraphServer, client: GraphClient) -> None:
    ids = [m["id"] for m in unread(client)]
    server.reset_log()
    results = client.set_read(ids, True)
    assert [r.status for r in results] == [200] * 30 and [r.request.url.rsplit("/", 1)[-1] for r in results][:1]
    assert server.counts() == {"POST": 2}  # 30 = 20 + 10
    assert len(server.batch_log) == 30 and {m for m, _ in server.batch_log} == {"PATCH"}
    assert all(m.is_read for m in server.messages(DEMO_MAILBOX))
    assert client.stats.subrequests == {"PATCH": 30} and client.stats.batches == 2
    # undo: back to unread, exactly those
    assert {r.status for r in client.set_read(ids, False)} == {200}
    assert sum(not m.is_read for m in server.messages(DEMO_MAILBOX)) == 30


def test_delete_moves_to_deleteditems_and_ids_change(server: GraphServer, client: GraphClient) -> None:
    msgs = unread(client)[:3]
    results = client.delete([m["id"] for m in msgs])
    assert [r.status for r in results] == [204] * 3
    moved = list(client.list_messages(folder="deleteditems", select=["internetMessageId"]))
    assert sorted(m["internetMessageId"] for m in moved) == sorted(f"<m{i}@example.org>" for i in (43, 44, 41))
    assert not {m["id"] for m in moved} & {m["id"] for m in msgs}
    # a second delete of the old ids: 404 per request, reported, not raised
    again = client.delete([m["id"] for m in msgs])
    assert {r.status for r in again} == {404} and all("ErrorItemNotFound" in r.error for r in again)


def test_immutable_ids_are_kept_across_the_move(server: GraphServer, sleeps: Sleeps) -> None:
    with GraphClient(settings(server, immutable_ids=True), sleep=sleeps) as c:
        msg = unread(c)[0]
        assert [r.status for r in c.delete([msg["id"]])] == [204]
        assert c.get_message(msg["id"], ["parentFolderId"])["parentFolderId"] == "folder-deleteditems"


def test_at_most_four_requests_in_flight(server: GraphServer, sleeps: Sleeps) -> None:
    server.latency = 0.01
    server.concurrency_limit = 4  # Exchange's MailboxConcurrency: a fifth would get 429
    with GraphClient(settings(server), sleep=sleeps) as c:
        ids = [m.regular_id for m in server.messages(DEMO_MAILBOX)] * 4  # 180 requests, 9 batches
        results = c.set_read(ids, True)
    assert {r.status for r in results} == {200} and len(results) == 180
    assert 1 < server.peak_in_flight(DEMO_MAILBOX) <= 4
    assert sleeps == [] and server.count("POST") == 9


# --- throttling and outages -------------------------------------------------------------------------------

def test_429_retry_after_is_honoured(server: GraphServer, client: GraphClient, sleeps: Sleeps) -> None:
    server.throttle(2, retry_after=7)
    assert len(unread(client)) == 30
    assert sleeps == [7.0, 7.0] and client.stats.retries == 2
    assert client.stats.http["GET"] == 3  # the throttled requests count against the budget too


def test_429_inside_a_batch_is_retried_after_its_retry_after(server: GraphServer, client: GraphClient,
                                                            sleeps: Sleeps) -> None:
    ids = [m["id"] for m in unread(client)]
    server.throttle(5, retry_after=3, in_batch=True)
    results = client.set_read(ids, True)
    assert [r.status for r in results] == [200] * 30
    # the five throttled ones: usually in one batch (one wait, one resend); with batches in
    # flight at once, the server may spread them over two on a loaded machine
    assert sleeps and set(sleeps) == {3.0} and len(sleeps) <= 2
    assert client.stats.subrequests["PATCH"] == 35
    assert all(m.is_read for m in server.messages(DEMO_MAILBOX))


def test_503_is_retried_with_backoff_when_no_retry_after(server: GraphServer, client: GraphClient,
                                                        sleeps: Sleeps) -> None:
    server.fail_503(1)
    assert len(unread(client)) == 30
    assert len(sleeps) == 1 and 0 < sleeps[0] <= 2
    server.fail_503(1, retry_after=4)
    assert len(unread(client)) == 30
    assert sleeps[1] == 4.0


def test_throttling_gives_up_in_one_line(server: GraphServer, sleeps: Sleeps) -> None:
    with GraphClient(settings(server, max_retry_after=60), sleep=sleeps) as c:
        server.throttle(1, retry_after=3600)
        with pytest.raises(GraphThrottled) as e:
            unread(c)
        assert "3600 s" in str(e.value) and "\n" not in str(e.value) and sleeps == []
        server.throttle(100, retry_after=1)
        with pytest.raises(GraphThrottled) as e:
            unread(c)
        assert "after 6 retries" in str(e.value) and sleeps == [1.0] * 6
    server.throttle(0)


def test_all_the_waits_of_one_request_stay_within_max_retry_after(server: GraphServer, sleeps: Sleeps) -> None:
    """Each wait was bounded, not their sum: 429 with Retry-After 600, six times, kept a listing
    silent an hour (found by an adversary)."""
    with GraphClient(settings(server, max_retry_after=60), sleep=sleeps) as c:
        server.throttle(100, retry_after=25)
        with pytest.raises(GraphThrottled) as e:
            unread(c)
        assert sleeps == [25.0, 25.0] and "spent" in str(e.value) and "\n" not in str(e.value)
    server.throttle(0)


def test_an_answer_dripping_a_byte_at_a_time_is_cut_at_the_deadline() -> None:
    """The timeout bounds each read: a server sending a byte now and then held a listing without
    end (found by an adversary: 120 s and counting, nothing printed). The whole exchange now has
    a deadline of four timeouts."""
    import socket
    import threading
    import time

    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n")
            try:
                while not stop.is_set():
                    conn.sendall(b" ")
                    time.sleep(0.2)
            except OSError:
                pass
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{lsock.getsockname()[1]}"
    s = GraphSettings(tenant_id=DEMO_TENANT, client_id=DEMO_CLIENT_ID, client_secret=Secret(DEMO_CLIENT_SECRET),
                      mailbox=DEMO_MAILBOX, graph_endpoint=url, azure_ad_endpoint=url, timeout=0.5)
    t0 = time.monotonic()
    try:
        with GraphClient(s) as c, pytest.raises(ConnectionFailed, match="did not finish its answer within 2 s"):
            c.token()
    finally:
        stop.set()
        lsock.close()
    assert time.monotonic() - t0 < 6


def test_json_nested_too_deep_is_one_line(server: GraphServer, sleeps: Sleeps) -> None:
    """A body of 100,000 nested arrays was an internal error (RecursionError) (found by an adversary)."""
    deep = b"[" * 100_000 + b"]" * 100_000

    class Deep(GraphServer):
        def handle(self, method, target, headers, body, *, in_batch=False):  # type: ignore[no-untyped-def]
            if "/messages" in target and method == "GET" and not in_batch:
                return Answer(200, {"Content-Type": "application/json"}, deep, binary=True)
            return super().handle(method, target, headers, body, in_batch=in_batch)

    with Deep() as srv:
        fill(srv, 2)
        with GraphClient(settings(srv), sleep=sleeps) as c, pytest.raises(GraphError, match="nested too deep"):
            unread(c)


# --- the token ------------------------------------------------------------------------------------------

def test_expired_token_is_renewed_mid_operation(server: GraphServer, client: GraphClient) -> None:
    pages = client.list_messages(filter="isRead eq false", top=10)
    first = [next(pages) for _ in range(10)]
    server.expire_tokens()  # between two pages
    rest = list(pages)
    assert len(first) + len(rest) == 30
    assert client.stats.token == 2
    ids = [m["id"] for m in first]
    server.expire_tokens()  # before a batch
    assert {r.status for r in client.set_read(ids, True)} == {200}
    assert client.stats.token == 3


def test_short_lived_token_is_renewed_before_it_expires(sleeps: Sleeps) -> None:
    import time

    with GraphServer(token_lifetime=1) as srv:
        fill(srv, 3)
        with GraphClient(settings(srv), sleep=sleeps) as c:
            unread(c)
            time.sleep(1.05)
            unread(c)
        assert srv.counts() == {"token": 2, "GET": 2}  # renewed up front: no 401 on the wire


class RefusingServer(GraphServer):
    """Answers 401 to every Graph request, and an error description that quotes the secret."""

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes | None, *,
               in_batch: bool = False) -> Answer:
        ans = super().handle(method, target, headers, body, in_batch=in_batch)
        if target.endswith("/token") and ans.status != 200:
            ans.body["error_description"] += f" (you sent {self.client_secret} / {body!r})"
        if "/v1.0/" in target and ans.status == 200:
            auth = headers.get("Authorization", "")
            return Answer(401, {"Content-Type": "application/json"},
                          {"error": {"code": "InvalidAuthenticationToken", "message": f"bad token {auth}"}})
        return ans


def test_secrets_never_in_errors_reprs_or_logs(caplog: pytest.LogCaptureFixture, sleeps: Sleeps) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-s3cret-value!"
    with RefusingServer() as srv:
        fill(srv, 2)
        srv.client_secret = wrong  # so that the right one is refused and echoed back
        s = settings(srv)
        c = GraphClient(s, sleep=sleeps)
        with pytest.raises(AuthenticationFailed) as e:
            unread(c)
        text = str(e.value)
        assert "invalid_client" in text and "AADSTS7000215" in text and "\n" not in text
        srv.client_secret = DEMO_CLIENT_SECRET
        with pytest.raises(AuthenticationFailed) as e2:
            unread(c)
        token = c._token.reveal() if c._token else ""
        assert token and "refused a fresh token" in str(e2.value)
        assert srv.counts()["token"] == 3  # renewed once after the first 401, then gave up
        everything = " ".join([text, repr(e.value), str(e2.value), repr(e2.value), repr(c), repr(s), str(s),
                               caplog.text, repr(c.stats.as_dict())])
        # ours, in every spelling the server could echo (it quoted the form body back: masked there too);
        # ``wrong`` is the server's own value, which the client cannot know and so cannot hide
        for secret in (DEMO_CLIENT_SECRET, token, token[9:]):
            assert secret not in everything
        assert "client_secret=***" in text
        c.close()


def test_next_link_to_another_host_is_not_followed(sleeps: Sleeps) -> None:
    class Redirecting(GraphServer):
        evil = ""

        def handle(self, method: str, target: str, headers: dict[str, str], body: bytes | None, *,
                   in_batch: bool = False) -> Answer:
            ans = super().handle(method, target, headers, body, in_batch=in_batch)
            if isinstance(ans.body, dict) and "@odata.nextLink" in ans.body:
                ans.body["@odata.nextLink"] = self.evil + "/v1.0/users/x/messages?$skiptoken=a"
            return ans

    with Redirecting() as srv, GraphServer() as evil:
        srv.evil = evil.url
        fill(srv, 5)
        with GraphClient(settings(srv), sleep=sleeps) as c, pytest.raises(GraphError) as e:
            unread(c, top=2)
        assert "not following it" in str(e.value)
        assert evil.log == []


# --- configuration and connection failures -------------------------------------------------------------

def test_plaintext_to_a_remote_host_is_refused() -> None:
    s = GraphSettings(DEMO_TENANT, DEMO_CLIENT_ID, Secret(DEMO_CLIENT_SECRET), DEMO_MAILBOX,
                      graph_endpoint="http://graph.example.com")
    with pytest.raises(ConfigError, match="plaintext"):
        GraphClient(s)
    with pytest.raises(ConfigError, match="secret is empty"):
        GraphClient(GraphSettings(DEMO_TENANT, DEMO_CLIENT_ID, Secret(""), DEMO_MAILBOX))
    with pytest.raises(ConfigError):
        GraphClient(GraphSettings(DEMO_TENANT, DEMO_CLIENT_ID, Secret("x"), DEMO_MAILBOX,
                                  graph_endpoint="ftp://graph.example.com"))


def test_nobody_listening_is_a_connection_error() -> None:
    from tests.servers import free_port

    port = free_port()
    s = GraphSettings(DEMO_TENANT, DEMO_CLIENT_ID, Secret(DEMO_CLIENT_SECRET), DEMO_MAILBOX,
                      graph_endpoint=f"http://127.0.0.1:{port}", azure_ad_endpoint=f"http://127.0.0.1:{port}",
                      timeout=2)
    with GraphClient(s) as c, pytest.raises(ConnectionFailed) as e:
        unread(c)
    assert "\n" not in str(e.value) and e.value.exit_code == 3 and DEMO_CLIENT_SECRET not in str(e.value)


def test_server_gone_mid_batch_keeps_what_is_known(sleeps: Sleeps) -> None:
    srv = GraphServer().start()
    fill(srv, 5)
    c = GraphClient(settings(srv), sleep=sleeps)
    ids = [m["id"] for m in unread(c)]
    srv.stop()
    with pytest.raises(TriageError) as e:
        c.delete(ids)
    assert isinstance(e.value, ConnectionFailed)
    assert getattr(e.value, "partial", None) == [None] * len(ids)  # the outcome is unknown, not "failed"
    c.close()


def test_lost_answer_is_resent_only_when_harmless(server: GraphServer, client: GraphClient) -> None:
    msgs = unread(client)
    server.reset_log()
    server.drop_answers(1)
    assert len(unread(client)) == 30  # a GET: sent again on a new connection
    assert server.counts() == {"GET": 2}
    server.drop_answers(1)
    assert {r.status for r in client.set_read([m["id"] for m in msgs[:3]], True)} == {200}  # PATCH: idempotent
    server.drop_answers(1)
    with pytest.raises(ConnectionFailed) as e:
        client.delete([m["id"] for m in msgs[3:5]])
    assert "unknown" in str(e.value) and getattr(e.value, "partial", None) == [None, None]
    # it was applied: the operator must re-list, which is what the message says
    assert len(server.messages(DEMO_MAILBOX, "deleteditems")) == 2
    assert server.count("DELETE") == 0 and len([m for m, _ in server.batch_log if m == "DELETE"]) == 2


def test_mime_through_a_batch_is_base64(server: GraphServer, client: GraphClient) -> None:
    from triage_tui.services.graph import BatchRequest, decode_batch_binary

    msg = unread(client)[0]
    [result] = client.batch([BatchRequest("GET", client.message_path(msg["id"]) + "/$value")])
    assert result.ok and decode_batch_binary(result) == raw_message(N - 1)
    assert server.find(DEMO_MAILBOX, msg["id"]).is_read is False  # type: ignore[union-attr]


def test_garbage_answers_are_one_line_errors(sleeps: Sleeps) -> None:
    class Garbage(GraphServer):
        def handle(self, method: str, target: str, headers: dict[str, str], body: bytes | None, *,
                   in_batch: bool = False) -> Answer:
            ans = super().handle(method, target, headers, body, in_batch=in_batch)
            if "$batch" in target:
                return Answer(200, {"Content-Type": "text/html"}, b"<html>\x1b[2J</html>", binary=True)
            if "/messages" in target and method == "GET":
                return Answer(200, {}, {"value": "not a list"})
            return ans

    with Garbage() as srv:
        fill(srv, 2)
        with GraphClient(settings(srv), sleep=sleeps) as c:
            with pytest.raises(GraphError) as e:
                unread(c)
            assert "no list of messages" in str(e.value)
            with pytest.raises(GraphError) as e:
                c.set_read([m.regular_id for m in srv.messages(DEMO_MAILBOX)], True)
            assert "not JSON" in str(e.value) and "\x1b" not in str(e.value) and "\n" not in str(e.value)
