"""The Graph-compatible test server, over real HTTP, with a bare ``http.client`` (not our Graph
client, so a bug in one cannot hide a bug in the other): the shapes, statuses and headers Graph
documents, and the fault knobs the client's tests rely on."""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest

from triage_tui.demo.graphserver import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_MAILBOX,
    DEMO_TENANT,
    GraphServer,
)

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
USER = f"/v1.0/users/{DEMO_MAILBOX}"


def raw_message(i: int, **extra: str) -> bytes:
    head = {
        "From": f'"Bot {i}" <bot{i}@example.org>',
        "To": f"incoming+key{i}@gitlab.example.com",
        "Subject": f"=?utf-8?q?r=C3=A9sum=C3=A9?= {i}",
        "Message-ID": f"<msg{i}@example.org>",
        **extra,
    }
    return ("".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\nbody\r\n").encode()


@pytest.fixture
def server() -> Iterator[GraphServer]:
    srv = GraphServer().start()
    for i in range(25):
        srv.add_message(DEMO_MAILBOX, raw_message(i), received=BASE + timedelta(minutes=i), is_read=i % 5 == 0)
    yield srv
    srv.stop()


class Wire:
    def __init__(self, srv: GraphServer) -> None:
        self.srv = srv
        self.conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)

    def send(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             *, token: str | None = "auto", form: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        h = dict(headers or {})
        data: bytes | None = None
        if form is not None:
            data = urlencode(form).encode()
            h["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if token == "auto":
            token = self.token()
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        if path.startswith("http"):
            s = urlsplit(path)
            path = s.path + "?" + s.query
        self.conn.request(method, path, body=data, headers=h)
        resp = self.conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()

    def json(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        status, _, data = self.send(method, path, body, **kw)
        return status, (json.loads(data) if data else None)

    def token(self, secret: str = DEMO_CLIENT_SECRET) -> str:
        status, _, data = self.send("POST", f"/{DEMO_TENANT}/oauth2/v2.0/token", token=None, form={
            "grant_type": "client_credentials", "client_id": DEMO_CLIENT_ID, "client_secret": secret,
            "scope": "https://graph.microsoft.com/.default"})
        assert status == 200, data
        return str(json.loads(data)["access_token"])


@pytest.fixture
def wire(server: GraphServer) -> Iterator[Wire]:
    w = Wire(server)
    yield w
    w.conn.close()


def unread_query(**extra: str) -> str:
    q = {"$filter": "isRead eq false", **extra}
    return f"{USER}/mailFolders/inbox/messages?" + urlencode(q, quote_via=quote)


# --- token -------------------------------------------------------------------------------------------

def test_token_endpoint_shapes(wire: Wire) -> None:
    status, _, data = wire.send("POST", f"/{DEMO_TENANT}/oauth2/v2.0/token", token=None, form={
        "grant_type": "client_credentials", "client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET,
        "scope": "https://graph.microsoft.com/.default"})
    doc = json.loads(data)
    assert status == 200 and doc["token_type"] == "Bearer" and doc["expires_in"] > 0 and doc["access_token"]
    for form, want_status, want_error in [
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_secret": ""}, 401, "invalid_client"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"scope": "Mail.Read"}, 400, "invalid_scope"),
        ({"client_id": "someone-else"}, 400, "unauthorized_client"),
    ]:
        full = {"grant_type": "client_credentials", "client_id": DEMO_CLIENT_ID,
                "client_secret": DEMO_CLIENT_SECRET, "scope": "https://graph.microsoft.com/.default", **form}
        status, _, data = wire.send("POST", f"/{DEMO_TENANT}/oauth2/v2.0/token", token=None, form=full)
        doc = json.loads(data)
        assert (status, doc["error"]) == (want_status, want_error)
        assert doc["error_description"].startswith("AADSTS")
        assert DEMO_CLIENT_SECRET not in data.decode()
    status, _, data = wire.send("POST", "/other-tenant/oauth2/v2.0/token", token=None, form={})
    assert status == 400 and "AADSTS90002" in json.loads(data)["error_description"]


def test_graph_needs_a_valid_token(server: GraphServer, wire: Wire) -> None:
    for token, fragment in [(None, "empty"), ("not-a-token", "not well formed")]:
        status, headers, data = wire.send("GET", unread_query(), token=token)
        err = json.loads(data)["error"]
        assert status == 401 and err["code"] == "InvalidAuthenticationToken" and fragment in err["message"]
        assert headers["www-authenticate"].startswith("Bearer")
    tok = wire.token()
    assert wire.send("GET", unread_query(), token=tok)[0] == 200
    server.expire_tokens()
    status, _, data = wire.send("GET", unread_query(), token=tok)
    assert status == 401 and "expired" in json.loads(data)["error"]["message"]
    assert wire.send("GET", unread_query())[0] == 200  # a new token works


def test_short_token_lifetime_expires_by_itself() -> None:
    with GraphServer(token_lifetime=0.3) as srv:
        srv.add_message(DEMO_MAILBOX, raw_message(1))
        w = Wire(srv)
        tok = w.token()
        assert w.send("GET", unread_query(), token=tok)[0] == 200
        time.sleep(0.4)
        assert w.send("GET", unread_query(), token=tok)[0] == 401


# --- listing -----------------------------------------------------------------------------------------

def test_filter_select_paging_and_order(wire: Wire) -> None:
    url: str | None = unread_query(**{"$select": "subject,receivedDateTime,internetMessageHeaders", "$top": "7"})
    pages = []
    while url:
        status, doc = wire.json("GET", url)
        assert status == 200
        pages.append(doc["value"])
        url = doc.get("@odata.nextLink")
        if url:
            assert "$skiptoken=" in url and url.startswith(wire.srv.url + "/v1.0/")
    got = [m for p in pages for m in p]
    assert [len(p) for p in pages] == [7, 7, 6]
    assert len(got) == 20 and all(not m.get("isRead") for m in got)
    assert set(got[0]) == {"@odata.etag", "id", "subject", "receivedDateTime", "internetMessageHeaders"}
    # newest first by default, subject decoded, headers raw and in order
    assert got[0]["subject"] == "résumé 24" and got[-1]["subject"] == "résumé 1"
    assert got[0]["internetMessageHeaders"][0] == {"name": "From", "value": '"Bot 24" <bot24@example.org>'}
    assert got[0]["internetMessageHeaders"][2]["value"] == "=?utf-8?q?r=C3=A9sum=C3=A9?= 24"
    assert got[0]["receivedDateTime"] == "2026-03-01T12:24:00Z"

    status, doc = wire.json("GET", f"{USER}/mailFolders/inbox/messages?$filter=isRead%20eq%20true&$top=100")
    assert status == 200 and [m["subject"] for m in doc["value"]][:2] == ["résumé 20", "résumé 15"]
    assert "internetMessageHeaders" not in doc["value"][0]  # only when selected, as in Graph
    assert doc["value"][0]["from"] == {"emailAddress": {"name": "Bot 20", "address": "bot20@example.org"}}
    assert doc["value"][0]["toRecipients"][0]["emailAddress"]["address"] == "incoming+key20@gitlab.example.com"
    assert doc["value"][0]["internetMessageId"] == "<msg20@example.org>"
    assert "@odata.nextLink" not in doc


def test_orderby_rules_and_date_filter(wire: Wire) -> None:
    status, doc = wire.json("GET", f"{USER}/mailFolders/inbox/messages?$orderby=receivedDateTime&$top=3")
    assert status == 200 and [m["subject"] for m in doc["value"]] == ["résumé 0", "résumé 1", "résumé 2"]
    # Exchange's rule: a property in $orderby must lead the $filter
    status, doc = wire.json("GET", unread_query(**{"$orderby": "receivedDateTime"}))
    assert status == 400 and doc["error"]["code"] == "InefficientFilter"
    q = {"$filter": "receivedDateTime ge 2026-03-01T12:20:00Z and isRead eq false", "$orderby": "receivedDateTime asc"}
    status, doc = wire.json("GET", f"{USER}/mailFolders/inbox/messages?" + urlencode(q, quote_via=quote))
    assert status == 200 and [m["subject"] for m in doc["value"]] == [f"résumé {i}" for i in (21, 22, 23, 24)]


@pytest.mark.parametrize("query, code", [
    ({"$filter": "isRead eq maybe"}, "BadRequest"),
    ({"$filter": "subject eq 'x'"}, "BadRequest"),
    ({"$filter": "receivedDateTime ge yesterday"}, "BadRequest"),
    ({"$select": "subject,nonsense"}, "RequestBroker--ParseUri"),
    ({"$top": "0"}, "BadRequest"),
    ({"$top": "1001"}, "BadRequest"),
    ({"$top": "-1"}, "BadRequest"),
    ({"$skiptoken": "forged"}, "BadRequest"),
    ({"$expand": "attachments"}, "BadRequest"),
    ({"$orderby": "subject"}, "BadRequest"),
])
def test_bad_queries_are_400_with_graphs_shape(wire: Wire, query: dict[str, str], code: str) -> None:
    status, doc = wire.json("GET", f"{USER}/mailFolders/inbox/messages?" + urlencode(query, quote_via=quote))
    assert status == 400 and doc["error"]["code"] == code and "request-id" in doc["error"]["innerError"]


def test_unknown_user_folder_and_message_are_404(wire: Wire) -> None:
    status, doc = wire.json("GET", "/v1.0/users/nobody@example.com/mailFolders/inbox/messages")
    assert status == 404 and doc["error"]["code"] == "ErrorInvalidUser"
    status, doc = wire.json("GET", f"{USER}/mailFolders/archive/messages")
    assert status == 404 and doc["error"]["code"] == "ErrorItemNotFound"
    for method in ("GET", "PATCH", "DELETE"):
        status, doc = wire.json(method, f"{USER}/messages/AAMkNOPE", {"isRead": True} if method == "PATCH" else None)
        assert status == 404 and doc["error"]["code"] == "ErrorItemNotFound"
    status, doc = wire.json("GET", f"{USER}/mailFolders/Inbox")  # well-known names are case-insensitive
    assert status == 200 and doc["totalItemCount"] == 25 and doc["unreadItemCount"] == 20


# --- one message ---------------------------------------------------------------------------------------

def first_unread(wire: Wire) -> dict[str, Any]:
    status, doc = wire.json("GET", unread_query(**{"$top": "1"}))
    assert status == 200
    return dict(doc["value"][0])


def test_value_gives_raw_mime_and_does_not_mark_read(server: GraphServer, wire: Wire) -> None:
    msg = first_unread(wire)
    status, headers, data = wire.send("GET", f"{USER}/messages/{quote(msg['id'], safe='')}/$value")
    assert status == 200 and data == raw_message(24) and headers["content-type"].startswith("text/plain")
    stored = server.find(DEMO_MAILBOX, msg["id"])
    assert stored is not None and stored.is_read is False


def test_patch_is_read_both_ways(server: GraphServer, wire: Wire) -> None:
    msg = first_unread(wire)
    path = f"{USER}/messages/{quote(msg['id'], safe='')}"
    status, doc = wire.json("PATCH", path, {"isRead": True})
    assert status == 200 and doc["isRead"] is True and doc["@odata.etag"] != msg["@odata.etag"]
    assert server.find(DEMO_MAILBOX, msg["id"]).is_read is True  # type: ignore[union-attr]
    assert wire.json("PATCH", path, {"isRead": False})[1]["isRead"] is False
    for bad in ({"isRead": "yes"}, {"subject": "x"}, [1]):
        status, doc = wire.json("PATCH", path, bad)
        assert status == 400 and doc["error"]["code"] == "BadRequest"
    status, _, _ = wire.send("PATCH", path, headers={"Content-Type": "application/json"})
    assert status == 400


def test_delete_moves_to_deleteditems_with_a_new_id(server: GraphServer, wire: Wire) -> None:
    msg = first_unread(wire)
    assert wire.send("DELETE", f"{USER}/messages/{quote(msg['id'], safe='')}")[0] == 204
    assert wire.json("GET", f"{USER}/messages/{quote(msg['id'], safe='')}")[0] == 404  # the old id is gone
    status, doc = wire.json("GET", f"{USER}/mailFolders/deleteditems/messages")
    assert status == 200 and len(doc["value"]) == 1
    moved = doc["value"][0]
    assert moved["id"] != msg["id"] and moved["internetMessageId"] == "<msg24@example.org>"
    assert moved["parentFolderId"] == "folder-deleteditems"
    # deleting from Deleted Items removes it for good
    assert wire.send("DELETE", f"{USER}/messages/{quote(moved['id'], safe='')}")[0] == 204
    assert server.messages(DEMO_MAILBOX, "deleteditems") == []


def test_immutable_ids_survive_the_move(wire: Wire) -> None:
    prefer = {"Prefer": 'IdType="ImmutableId"'}
    status, doc = wire.json("GET", unread_query(**{"$top": "1"}), headers=prefer)
    imm = doc["value"][0]["id"]
    assert imm != first_unread(wire)["id"]  # the regular id differs
    assert wire.send("DELETE", f"{USER}/messages/{quote(imm, safe='')}", headers=prefer)[0] == 204
    status, doc = wire.json("GET", f"{USER}/messages/{quote(imm, safe='')}", headers=prefer)
    assert status == 200 and doc["id"] == imm and doc["parentFolderId"] == "folder-deleteditems"


# --- $batch ----------------------------------------------------------------------------------------------

def test_batch_answers_each_request(server: GraphServer, wire: Wire) -> None:
    ids = [m["id"] for m in wire.json("GET", unread_query(**{"$top": "3"}))[1]["value"]]
    reqs = [
        {"id": "1", "method": "PATCH", "url": f"/users/{DEMO_MAILBOX}/messages/{quote(ids[0], safe='')}",
         "body": {"isRead": True}, "headers": {"Content-Type": "application/json"}},
        {"id": "2", "method": "GET", "url": f"/users/{DEMO_MAILBOX}/messages/{quote(ids[1], safe='')}/$value"},
        {"id": "3", "method": "DELETE", "url": f"/users/{DEMO_MAILBOX}/messages/{quote(ids[2], safe='')}"},
        {"id": "4", "method": "GET", "url": f"/users/{DEMO_MAILBOX}/messages/AAMkNOPE"},
    ]
    status, doc = wire.json("POST", "/v1.0/$batch", {"requests": reqs})
    assert status == 200
    by_id = {r["id"]: r for r in doc["responses"]}
    assert by_id["1"]["status"] == 200 and by_id["1"]["body"]["isRead"] is True
    assert by_id["2"]["status"] == 200 and base64.b64decode(by_id["2"]["body"]).startswith(b"From: ")
    assert by_id["3"]["status"] == 204 and "body" not in by_id["3"]
    assert by_id["4"]["status"] == 404 and by_id["4"]["body"]["error"]["code"] == "ErrorItemNotFound"
    assert server.batch_log[0][0] == "PATCH" and len(server.batch_log) == 4


@pytest.mark.parametrize("payload", [
    {"requests": [{"id": str(i), "method": "GET", "url": f"/users/{DEMO_MAILBOX}/mailFolders/inbox"}
                  for i in range(21)]},
    {"requests": []},
    {"requests": [{"id": "1", "method": "GET"}]},
    {"requests": [{"id": "1", "method": "GET", "url": "/me"}, {"id": "1", "method": "GET", "url": "/me"}]},
    {"nothing": True},
    [1, 2],
])
def test_batch_limits_are_400(wire: Wire, payload: Any) -> None:
    status, doc = wire.json("POST", "/v1.0/$batch", payload)
    assert status == 400 and doc["error"]["code"] == "BadRequest"


def test_batch_of_twenty_is_fine_and_nested_batch_is_refused(wire: Wire) -> None:
    reqs = [{"id": str(i), "method": "GET", "url": f"/users/{DEMO_MAILBOX}/mailFolders/inbox"} for i in range(20)]
    status, doc = wire.json("POST", "/v1.0/$batch", {"requests": reqs})
    assert status == 200 and {r["status"] for r in doc["responses"]} == {200}
    status, doc = wire.json("POST", "/v1.0/$batch", {"requests": [{"id": "1", "method": "POST", "url": "/$batch",
                                                                   "body": {"requests": []}}]})
    assert status == 200 and doc["responses"][0]["status"] == 400


# --- faults and the wire log ------------------------------------------------------------------------------

def test_throttle_and_503_knobs(server: GraphServer, wire: Wire) -> None:
    tok = wire.token()
    server.throttle(2, retry_after=3)
    for _ in range(2):
        status, headers, data = wire.send("GET", unread_query(), token=tok)
        assert status == 429 and headers["retry-after"] == "3"
        assert json.loads(data)["error"]["code"] == "ApplicationThrottled"
    assert wire.send("GET", unread_query(), token=tok)[0] == 200
    server.fail_503(1, retry_after=2)
    status, headers, _ = wire.send("GET", unread_query(), token=tok)
    assert status == 503 and headers["retry-after"] == "2"
    assert wire.send("GET", unread_query(), token=tok)[0] == 200
    server.throttle(1, retry_after=5, in_batch=True)
    reqs = [{"id": str(i), "method": "GET", "url": f"/users/{DEMO_MAILBOX}/mailFolders/inbox"} for i in range(2)]
    status, doc = wire.json("POST", "/v1.0/$batch", {"requests": reqs}, token=tok)
    assert status == 200
    assert [(r["status"], r["headers"].get("Retry-After")) for r in doc["responses"]] == [(429, "5"), (200, None)]


def test_wire_log_counts_methods(server: GraphServer, wire: Wire) -> None:
    server.reset_log()
    first_unread(wire)
    assert server.counts() == {"token": 1, "GET": 1}
    assert server.count("POST") == 0 and server.count("POST", include_token=True) == 1


def test_concurrency_limit_and_peak(server: GraphServer) -> None:
    server.latency = 0.2
    server.concurrency_limit = 4
    w = Wire(server)
    tok = w.token()
    statuses: list[int] = []

    def one() -> None:
        statuses.append(Wire(server).send("GET", unread_query(), token=tok)[0])

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # the refused ones answer at once (no latency), so the peak is 5 or 6
    assert server.peak_in_flight(DEMO_MAILBOX) > 4
    assert statuses.count(200) == 4 and statuses.count(429) == 2


def test_hostile_messages_never_break_the_listing(server: GraphServer, wire: Wire) -> None:
    nasty = [
        b"Subject: =?utf-8?b?!!!?= \xff\xfe\r\nFrom: \xc3(\r\n\r\n",
        b"no header at all",
        b"",
        b"Subject: a\r\n folded\r\n\tagain\r\nFrom: <>\r\nTo: ,,,\r\n\r\n",
        b"Subject: \x1b[31mred\x07\r\nX-Long: " + b"x" * 200_000 + b"\r\n\r\n",
    ]
    for i, raw in enumerate(nasty):
        server.add_message(DEMO_MAILBOX, raw, received=BASE + timedelta(hours=1, minutes=i))
    status, doc = wire.json("GET", unread_query(**{"$select": "subject,from,internetMessageHeaders", "$top": "5"}))
    assert status == 200 and len(doc["value"]) == 5
    by_subject = {m["subject"]: m for m in doc["value"]}
    assert "a folded again" in by_subject
    assert "\x1b[31mred\x07" in by_subject  # data stays data: shown literally by the UI, not here
