"""A Microsoft Graph-compatible test server: the mail subset mail_room and triage-tui use.

No Microsoft service is reachable from a test run or a newcomer's laptop, so the Graph inbox is
exercised against this server: stdlib ``ThreadingHTTPServer`` on a free loopback port, HTTP/1.1
with keep-alive, mailboxes held in memory as raw RFC 5322 messages. One server answers both the
Azure AD token endpoint and the Graph endpoint (point ``azure_ad_endpoint`` and ``graph_endpoint``
at :attr:`GraphServer.url`).

Covered (shapes from Microsoft's published docs: learn.microsoft.com/graph/json-batching,
/graph/paging, /graph/errors, /graph/throttling, /graph/outlook-immutable-id, /graph/api/message-delete):

- ``POST /<tenant>/oauth2/v2.0/token``: client-credentials grant (form body ``grant_type``,
  ``client_id``, ``client_secret``, ``scope`` ending in ``/.default``); answers
  ``{"token_type":"Bearer","expires_in":N,"access_token":...}``; AAD-shaped errors
  (``invalid_client`` 401 with ``AADSTS7000215``, ``unsupported_grant_type``/``invalid_request``
  /``invalid_scope`` 400, unknown tenant 400 ``AADSTS90002``). Tokens are opaque, not JWTs.
- ``GET /v1.0/users/<email>/mailFolders/<folder>/messages``: ``$filter`` (clauses joined by
  ``and``: ``isRead eq true|false``, ``receivedDateTime ge|gt|le|lt <ISO 8601>``), ``$select``,
  ``$top`` (1..1000, default 10), ``$skip``, ``$orderby=receivedDateTime [asc|desc]`` (default
  newest first). As Exchange does, an ``$orderby`` property must also lead the ``$filter``,
  else 400 ``InefficientFilter``. Paging by ``@odata.nextLink`` with an opaque ``$skiptoken``;
  the position is an *offset* (Graph's message paging is ``$skip``-based), so a message leaving
  the filtered set while a client pages (marked read, deleted) shifts the later pages: a client
  that changes what it lists while paging misses messages, as it would against Exchange.
- ``GET .../messages/<id>`` (also ``/users/<email>/messages/<id>``), ``GET .../messages/<id>/$value``
  (raw MIME, ``text/plain``; does not change ``isRead``), ``PATCH .../messages/<id>`` with
  ``{"isRead": bool}`` and/or ``{"categories": [...]}`` (the whole list is replaced, as in Graph;
  other properties: 400), honouring ``If-Match: <@odata.etag>`` (412 ``ErrorIrresolvableConflict``
  when the message changed since that etag; every change of ``isRead``, ``categories`` or folder
  gives a new etag), ``DELETE .../messages/<id>`` (204; moves to
  ``deleteditems`` and gives the message a new regular id; deleting from ``deleteditems`` removes
  it for good). Message properties: ``id``, ``internetMessageId``, ``subject`` (RFC 2047
  decoded), ``receivedDateTime``, ``isRead``, ``from``, ``toRecipients``, ``parentFolderId``,
  ``categories``, ``internetMessageHeaders`` (only when ``$select``-ed, as in Graph; raw header lines unfolded,
  not decoded; bytes that are not UTF-8 become U+FFFD), ``@odata.etag``.
- Ids: every message has a regular id (changes when it moves to another folder) and an immutable
  id (never changes). Both are accepted in URLs; answers carry the immutable one when the
  request had ``Prefer: IdType="ImmutableId"`` (per request, also inside ``$batch``).
- Well-known folder names ``inbox`` and ``deleteditems`` (case-insensitive); both folders always
  exist. ``GET /v1.0/users/<email>/mailFolders/<folder>`` gives its counts.
- ``POST /v1.0/$batch``: 1..20 requests (``id``, ``method``, ``url`` relative to ``/v1.0``,
  optional ``headers`` and JSON ``body``), executed in order, ``dependsOn`` ignored; answers
  ``{"responses":[{"id","status","headers","body"}]}``; binary bodies (``$value``) base64, as
  Graph does. More than 20, duplicate ids, a nested ``$batch`` or a malformed body: 400.
- Errors in Graph's shape ``{"error":{"code","message","innerError":{...}}}``: 401
  ``InvalidAuthenticationToken`` (missing, unknown or expired token, with ``WWW-Authenticate``),
  404 ``ErrorItemNotFound`` / ``ErrorInvalidUser``, 400 ``BadRequest`` /
  ``RequestBroker--ParseUri`` / ``InefficientFilter``, 405, 429 ``ApplicationThrottled`` and
  503 ``ServiceUnavailable`` with ``Retry-After``.

Fault injection for tests (thread-safe): :meth:`GraphServer.throttle` (the next N Graph requests,
or the next N requests inside batches, answer 429 with ``Retry-After``), :meth:`fail_503`,
:meth:`expire_tokens`, :meth:`drop_answers` (carry out the request, then cut the connection),
:meth:`stop` (cuts kept-alive connections too), ``token_lifetime``, ``concurrency_limit`` (429 ``MailboxConcurrency``
beyond N simultaneous requests to one mailbox, as Exchange does with 4). The wire is recorded:
:attr:`GraphServer.log` and :meth:`GraphServer.count` (read-only tests assert no PATCH, DELETE
or POST other than the token), :attr:`peak_in_flight` per mailbox.

Not covered: delta queries, ``$search``, ``$count``, ``$expand``, other ``$filter`` grammar
(``or``, functions, other properties), ``move``/``copy``/``permanentDelete`` actions, folder ids
other than the well-known names, child folders, attachments, sending mail, change
notifications, JWT access tokens (claims, audiences, signatures), certificates as client
credentials, ``dependsOn`` ordering, the request-id/date headers' exact values, national cloud
differences, Outlook's real throttling counters (only the injected faults and the concurrency
limit throttle).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.utils import getaddresses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

HOST = "127.0.0.1"
#: The test server's app registration. Not a secret: fixed values of a throwaway loopback server.
DEMO_TENANT = "demo-tenant"
DEMO_CLIENT_ID = "00000000-demo-4000-8000-triagetui000"
DEMO_CLIENT_SECRET = "demo-graph-secret-not-a-secret"
DEMO_MAILBOX = "incoming@gitlab.example.com"

MAX_BATCH = 20
MAX_TOP = 1000
DEFAULT_TOP = 10
WELL_KNOWN = ("inbox", "deleteditems")
#: Properties a message answer may carry; ``internetMessageHeaders`` only when selected.
PROPERTIES = ("id", "internetMessageId", "subject", "receivedDateTime", "isRead", "from",
              "toRecipients", "parentFolderId", "categories", "internetMessageHeaders")
_DEFAULT_PROPERTIES = tuple(p for p in PROPERTIES if p != "internetMessageHeaders")
_MAX_BODY = 64 * 1024 * 1024
_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,7})?(?:Z|[+-]\d\d:\d\d)")


class GraphHTTPError(Exception):
    """An answer that is not 2xx, raised inside a handler and turned into Graph's error shape."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass
class StoredMessage:
    raw: bytes
    folder: str
    is_read: bool
    received: datetime
    immutable_id: str
    regular_id: str
    headers: list[dict[str, str]] = field(default_factory=list)
    subject: str = ""
    internet_message_id: str = ""
    sender: dict[str, Any] | None = None
    to: list[dict[str, Any]] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    change: int = 1

    @property
    def etag(self) -> str:
        return f'W/"CQAAAB{self.change:08d}"'


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any = None          # JSON-able, or bytes for $value
    binary: bool = False


def _unfolded_headers(raw: bytes) -> list[dict[str, str]]:
    """Header lines of ``raw`` as Graph lists them: unfolded, in order, values not decoded."""
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
    out: list[dict[str, str]] = []
    for line in re.split(rb"\r?\n", head):
        if not line:
            continue
        text = line.decode("utf-8", "replace")
        if text[:1] in (" ", "\t") and out:
            out[-1]["value"] += " " + text.strip()
            continue
        name, colon, value = text.partition(":")
        if not colon or not name.strip() or " " in name.strip():
            continue  # a line that is not a header (mbox "From ", garbage) is not one in Exchange either
        out.append({"name": name.strip(), "value": value.strip()})
    return out


def _decoded(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # any RFC 2047 oddity: show the raw value, as Exchange does for junk
        return value


def _address(name: str, addr: str) -> dict[str, Any]:
    return {"emailAddress": {"name": _decoded(name) or addr, "address": addr}}


def _first(headers: list[dict[str, str]], name: str) -> str | None:
    lname = name.lower()
    for h in headers:
        if h["name"].lower() == lname:
            return h["value"]
    return None


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> datetime:
    if not _ISO.fullmatch(text):
        raise ValueError(text)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _new_id() -> str:
    # Exchange ids are long base64 strings with '=' padding and '-'/'_' or '+'/'/': the URL-unsafe
    # characters make clients that forget to quote them fail here as they would there.
    return base64.b64encode(b"AAMk" + secrets.token_bytes(30)).decode("ascii").replace("/", "+")


class _Mailbox:
    def __init__(self, email: str) -> None:
        self.email = email
        self.messages: dict[str, StoredMessage] = {}  # by immutable id
        self.by_regular: dict[str, str] = {}
        self.in_flight = 0
        self.peak_in_flight = 0

    def find(self, msg_id: str) -> StoredMessage | None:
        m = self.messages.get(msg_id)
        if m is not None:
            return m
        imm = self.by_regular.get(msg_id)
        return self.messages.get(imm) if imm else None


class GraphServer:
    """In-memory Graph mail service; start with :meth:`start` (or as a context manager)."""

    def __init__(self, *, tenant: str = DEMO_TENANT, client_id: str = DEMO_CLIENT_ID,
                 client_secret: str = DEMO_CLIENT_SECRET, token_lifetime: float = 3599,
                 concurrency_limit: int | None = None, latency: float = 0.0, host: str = HOST) -> None:
        self.tenant = tenant
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        self.concurrency_limit = concurrency_limit
        #: seconds each mailbox request takes (outside any lock): makes overlap visible to tests
        self.latency = latency
        self.host = host
        self._lock = threading.RLock()
        self._mailboxes: dict[str, _Mailbox] = {}
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._cursors: dict[str, int] = {}   # skiptoken -> offset
        self._throttle_requests = 0
        self._throttle_batch = 0
        self._throttle_after = 1.0
        self._fail_503 = 0
        self._fail_503_after: float | None = None
        self._drop_answers = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._connections: set[Any] = set()  # open client sockets: stop() cuts kept-alive ones too
        self._thread: threading.Thread | None = None
        self.log: list[tuple[str, str]] = []        # (method, path) of every HTTP request
        self.batch_log: list[tuple[str, str]] = []  # (method, url) of every request inside a batch
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> GraphServer:
        server = self

        class Handler(_Handler):
            graph = server

        httpd = ThreadingHTTPServer((self.host, 0), Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self.port = int(httpd.server_address[1])
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="graph-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection (as a crashed or restarted server would)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        with self._lock:
            conns = list(self._connections)
            self._connections.clear()
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> GraphServer:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- content ------------------------------------------------------------------------------

    def mailbox(self, email: str) -> _Mailbox:
        with self._lock:
            key = email.lower()
            mb = self._mailboxes.get(key)
            if mb is None:
                mb = self._mailboxes[key] = _Mailbox(email)
            return mb

    def add_message(self, email: str, raw: bytes, *, is_read: bool = False,
                    received: datetime | None = None, folder: str = "inbox",
                    categories: list[str] | tuple[str, ...] = ()) -> str:
        """Store ``raw`` in ``email``'s ``folder``; returns the message's (regular) id."""
        folder = folder.lower()
        if folder not in WELL_KNOWN:
            raise ValueError(f"unknown folder {folder!r}")
        headers = _unfolded_headers(raw)
        subject = _decoded(_first(headers, "Subject") or "")
        from_value = _first(headers, "From")
        sender = None
        if from_value is not None:
            pairs = [p for p in getaddresses([from_value]) if p[1]]
            if pairs:
                sender = _address(*pairs[0])
        to = [_address(n, a) for n, a in getaddresses([h["value"] for h in headers if h["name"].lower() == "to"])
              if a]
        msg = StoredMessage(raw=raw, folder=folder, is_read=is_read,
                            received=(received or datetime.now(UTC)).astimezone(UTC),
                            immutable_id=_new_id(), regular_id=_new_id(), headers=headers, subject=subject,
                            internet_message_id=_first(headers, "Message-ID") or "", sender=sender, to=to,
                            categories=list(categories))
        with self._lock:
            mb = self.mailbox(email)
            mb.messages[msg.immutable_id] = msg
            mb.by_regular[msg.regular_id] = msg.immutable_id
        return msg.regular_id

    def messages(self, email: str, folder: str | None = None) -> list[StoredMessage]:
        """The stored messages (for assertions), oldest first."""
        with self._lock:
            mb = self.mailbox(email)
            return sorted((m for m in mb.messages.values() if folder is None or m.folder == folder),
                          key=lambda m: (m.received, m.immutable_id))

    def find(self, email: str, msg_id: str) -> StoredMessage | None:
        with self._lock:
            return self.mailbox(email).find(msg_id)

    # --- fault knobs ---------------------------------------------------------------------------

    def throttle(self, n: int, retry_after: float = 1.0, *, in_batch: bool = False) -> None:
        """The next ``n`` Graph requests (``in_batch``: requests inside a ``$batch``) answer 429."""
        with self._lock:
            if in_batch:
                self._throttle_batch = n
            else:
                self._throttle_requests = n
            self._throttle_after = retry_after

    def fail_503(self, n: int = 1, retry_after: float | None = None) -> None:
        with self._lock:
            self._fail_503 = n
            self._fail_503_after = retry_after

    def drop_answers(self, n: int = 1) -> None:
        """The next ``n`` requests are carried out, then the connection is cut before the answer
        (a lost answer: the client cannot know whether its change was applied)."""
        with self._lock:
            self._drop_answers = n

    def expire_tokens(self) -> None:
        """Every token issued so far is expired from now on."""
        with self._lock:
            for t in self._tokens:
                self._tokens[t] = 0.0

    def count(self, method: str | None = None, *, include_token: bool = False) -> int:
        with self._lock:
            return sum(1 for m, p in self.log
                       if (method is None or m == method) and (include_token or not _is_token_path(p)))

    def counts(self) -> Counter[str]:
        """Requests by method, the token requests apart (``"token"``)."""
        with self._lock:
            return Counter("token" if _is_token_path(p) else m for m, p in self.log)

    def peak_in_flight(self, email: str) -> int:
        with self._lock:
            return self.mailbox(email).peak_in_flight

    def reset_log(self) -> None:
        with self._lock:
            self.log.clear()
            self.batch_log.clear()
            for mb in self._mailboxes.values():
                mb.peak_in_flight = 0

    # --- the token endpoint ------------------------------------------------------------------------

    def _token(self, tenant: str, form: dict[str, str]) -> Answer:
        def aad(status: int, error: str, code: int, text: str) -> Answer:
            return Answer(status, {"Content-Type": "application/json; charset=utf-8"},
                          {"error": error, "error_description": f"AADSTS{code}: {text}",
                           "error_codes": [code], "timestamp": _iso(datetime.now(UTC)),
                           "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4())})

        if tenant != self.tenant:
            return aad(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return aad(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        if form.get("client_id") != self.client_id:
            return aad(400, "unauthorized_client", 700016,
                       "Application was not found in the directory.")
        if not form.get("client_secret"):
            return aad(401, "invalid_client", 7000218,
                       "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
        if not secrets.compare_digest(form["client_secret"].encode(), self.client_secret.encode()):
            return aad(401, "invalid_client", 7000215, "Invalid client secret provided.")
        if not form.get("scope", "").endswith("/.default"):
            return aad(400, "invalid_scope", 1002012, "The provided value for scope is not valid. "
                       "Client credential flows must have a scope value with /.default suffixed to the resource identifier.")
        token = "eyJ0eXAi." + secrets.token_urlsafe(48)
        with self._lock:
            now = time.monotonic()
            self._tokens = {t: e for t, e in self._tokens.items() if e > now - 3600}
            self._tokens[token] = now + self.token_lifetime
        return Answer(200, {"Content-Type": "application/json; charset=utf-8"},
                      {"token_type": "Bearer", "expires_in": int(self.token_lifetime),
                       "ext_expires_in": int(self.token_lifetime), "access_token": token})

    def _check_token(self, authorization: str | None) -> None:
        www = {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'}
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise GraphHTTPError(401, "InvalidAuthenticationToken", "Access token is empty.", www)
        with self._lock:
            expiry = self._tokens.get(token.strip())
        if expiry is None:
            raise GraphHTTPError(401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed.", www)
        if expiry <= time.monotonic():
            raise GraphHTTPError(401, "InvalidAuthenticationToken",
                                 "Lifetime validation failed, the token is expired.", www)

    # --- Graph -----------------------------------------------------------------------------------

    def _faults(self, *, in_batch: bool) -> None:
        with self._lock:
            if in_batch and self._throttle_batch > 0:
                self._throttle_batch -= 1
                after = self._throttle_after
            elif not in_batch and self._throttle_requests > 0:
                self._throttle_requests -= 1
                after = self._throttle_after
            elif not in_batch and self._fail_503 > 0:
                self._fail_503 -= 1
                hdr = {} if self._fail_503_after is None else {"Retry-After": _seconds(self._fail_503_after)}
                raise GraphHTTPError(503, "ServiceUnavailable", "Service Unavailable", hdr)
            else:
                return
        raise GraphHTTPError(429, "ApplicationThrottled", "Too many requests. The request has been throttled.",
                             {"Retry-After": _seconds(after)})

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes | None, *,
               in_batch: bool = False) -> Answer:
        """One Graph request (``target`` is the path and query after the host); never raises."""
        try:
            return self._dispatch(method, target, headers, body, in_batch=in_batch)
        except GraphHTTPError as e:
            return _error(e)
        except Exception as e:  # a bug here must look like Graph's 500, not kill the connection
            return _error(GraphHTTPError(500, "InternalServerError", f"{type(e).__name__}"))

    def _dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes | None, *,
                  in_batch: bool) -> Answer:
        split = urlsplit(target)
        segments = [unquote(s) for s in split.path.split("/") if s]
        lower = {k.lower(): v for k, v in headers.items()}
        if method == "POST" and len(segments) == 4 and segments[1:] == ["oauth2", "v2.0", "token"] and not in_batch:
            try:
                form = dict(parse_qsl((body or b"").decode("utf-8"), keep_blank_values=True, strict_parsing=False))
            except UnicodeDecodeError:
                form = {}
            return self._token(segments[0], form)
        if not segments or segments[0] != "v1.0":
            raise GraphHTTPError(400, "BadRequest", "Invalid version.")
        if not in_batch:
            self._check_token(lower.get("authorization"))
        self._faults(in_batch=in_batch)
        rest = segments[1:]
        immutable = 'idtype="immutableid"' in lower.get("prefer", "").replace(" ", "").lower()
        if rest == ["$batch"]:
            if method != "POST" or in_batch:
                raise GraphHTTPError(405 if not in_batch else 400, "BadRequest", "Invalid batch request.")
            return self._batch(body, lower)
        if len(rest) < 2 or rest[0] != "users":
            raise GraphHTTPError(400, "BadRequest", f"Resource not found for the segment '{rest[0] if rest else ''}'.")
        email = rest[1]
        with self._lock:
            mb = self._mailboxes.get(email.lower())
        if mb is None:
            raise GraphHTTPError(404, "ErrorInvalidUser", f"The requested user '{email}' is invalid.")
        return self._in_mailbox(mb, method, rest[2:], dict(parse_qsl(split.query, keep_blank_values=True)),
                                body, immutable, lower.get("if-match"))

    def _in_mailbox(self, mb: _Mailbox, method: str, rest: list[str], query: dict[str, str],
                    body: bytes | None, immutable: bool, if_match: str | None = None) -> Answer:
        with self._lock:
            mb.in_flight += 1
            mb.peak_in_flight = max(mb.peak_in_flight, mb.in_flight)
            over = self.concurrency_limit is not None and mb.in_flight > self.concurrency_limit
        try:
            if over:
                raise GraphHTTPError(429, "ApplicationThrottled",
                                     "Application is over its MailboxConcurrency limit.", {"Retry-After": "1"})
            if self.latency:
                time.sleep(self.latency)
            return self._route(mb, method, rest, query, body, immutable, if_match)
        finally:
            with self._lock:
                mb.in_flight -= 1

    def _route(self, mb: _Mailbox, method: str, rest: list[str], query: dict[str, str],
               body: bytes | None, immutable: bool, if_match: str | None = None) -> Answer:
        folder: str | None = None
        if rest[:1] == ["mailFolders"] and len(rest) >= 2:
            folder = rest[1].lower()
            if folder not in WELL_KNOWN:
                raise GraphHTTPError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            rest = rest[2:]
            if not rest:
                if method != "GET":
                    raise GraphHTTPError(405, "BadRequest", "Method not allowed.")
                return self._folder(mb, folder)
        if rest[:1] != ["messages"]:
            raise GraphHTTPError(400, "BadRequest", "Resource not found for the segment.")
        if len(rest) == 1:
            if folder is None:
                raise GraphHTTPError(400, "BadRequest", "This test server lists messages of one folder only.")
            if method != "GET":
                raise GraphHTTPError(405, "BadRequest", "Method not allowed.")
            return self._list(mb, folder, query, immutable)
        msg_id = rest[1]
        with self._lock:
            msg = mb.find(msg_id)
            if msg is None or (folder is not None and msg.folder != folder):
                raise GraphHTTPError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            if rest[2:] == ["$value"] and method == "GET":
                return Answer(200, {"Content-Type": "text/plain"}, msg.raw, binary=True)
            if len(rest) != 2:
                raise GraphHTTPError(400, "BadRequest", "Resource not found for the segment.")
            if method == "GET":
                select = _select(query)
                return Answer(200, _json_headers(), self._json(mb, msg, select, immutable))
            if method == "PATCH":
                changes = _json_body(body)
                if not isinstance(changes, dict):
                    raise GraphHTTPError(400, "BadRequest", "Empty Payload, JSON content expected.")
                for k, v in changes.items():
                    if k == "isRead" and not isinstance(v, bool):
                        raise GraphHTTPError(400, "BadRequest",
                                             "Cannot convert the literal to the expected type 'Edm.Boolean'.")
                    if k == "categories" and (not isinstance(v, list) or not all(isinstance(c, str) for c in v)):
                        raise GraphHTTPError(400, "BadRequest", "Invalid value for property 'categories'.")
                    if k not in ("isRead", "categories"):
                        raise GraphHTTPError(400, "BadRequest", f"This test server cannot change '{k}'.")
                match = if_match
                if match is not None and match.strip() != "*" and match.strip() != msg.etag:
                    raise GraphHTTPError(412, "ErrorIrresolvableConflict",
                                         "The change key passed in the request does not match the current "
                                         "change key for the item.")
                changed = False
                if "isRead" in changes and msg.is_read != changes["isRead"]:
                    msg.is_read = changes["isRead"]
                    changed = True
                if "categories" in changes and msg.categories != changes["categories"]:
                    msg.categories = list(changes["categories"])  # PATCH replaces the whole list
                    changed = True
                if changed:
                    msg.change += 1
                return Answer(200, _json_headers(), self._json(mb, msg, _DEFAULT_PROPERTIES, immutable))
            if method == "DELETE":
                if msg.folder == "deleteditems":
                    del mb.messages[msg.immutable_id]
                    mb.by_regular.pop(msg.regular_id, None)
                else:
                    mb.by_regular.pop(msg.regular_id, None)
                    msg.folder = "deleteditems"
                    msg.regular_id = _new_id()
                    mb.by_regular[msg.regular_id] = msg.immutable_id
                    msg.change += 1
                return Answer(204, {}, None)
        raise GraphHTTPError(405, "BadRequest", "Method not allowed.")

    def _folder(self, mb: _Mailbox, folder: str) -> Answer:
        with self._lock:
            msgs = [m for m in mb.messages.values() if m.folder == folder]
            return Answer(200, _json_headers(), {
                "id": f"folder-{folder}", "displayName": {"inbox": "Inbox", "deleteditems": "Deleted Items"}[folder],
                "totalItemCount": len(msgs), "unreadItemCount": sum(not m.is_read for m in msgs),
                "childFolderCount": 0})

    def _json(self, mb: _Mailbox, msg: StoredMessage, select: tuple[str, ...], immutable: bool) -> dict[str, Any]:
        values: dict[str, Any] = {
            "id": msg.immutable_id if immutable else msg.regular_id,
            "internetMessageId": msg.internet_message_id,
            "subject": msg.subject,
            "receivedDateTime": _iso(msg.received),
            "isRead": msg.is_read,
            "from": msg.sender,
            "toRecipients": msg.to,
            "parentFolderId": f"folder-{msg.folder}",
            "categories": list(msg.categories),
            "internetMessageHeaders": msg.headers,
        }
        out: dict[str, Any] = {"@odata.etag": msg.etag, "id": values["id"]}
        for p in select:
            out[p] = values[p]
        return out

    def _list(self, mb: _Mailbox, folder: str, query: dict[str, str], immutable: bool) -> Answer:
        known = {"$filter", "$select", "$top", "$skip", "$orderby", "$skiptoken"}
        for k in query:
            if k.startswith("$") and k not in known:
                raise GraphHTTPError(400, "BadRequest", f"Query option '{k}' is not supported by this test server.")
        select = _select(query)
        preds, filter_props = _filter(query.get("$filter"))
        order = (query.get("$orderby") or "").strip()
        descending = True
        if order:
            m = re.fullmatch(r"receivedDateTime(?:\s+(asc|desc))?", order, re.IGNORECASE)
            if not m:
                raise GraphHTTPError(400, "BadRequest", "This test server orders by receivedDateTime only.")
            descending = (m.group(1) or "asc").lower() == "desc"
            if filter_props and filter_props[0] != "receivedDateTime":
                raise GraphHTTPError(400, "InefficientFilter",
                                     "The restriction or sort order is too complex for this operation.")
        top = _int_option(query, "$top", DEFAULT_TOP, 1, MAX_TOP)
        offset = _int_option(query, "$skip", 0, 0, 10**9)
        if "$skiptoken" in query:
            with self._lock:
                pos = self._cursors.get(query["$skiptoken"])
            if pos is None:
                raise GraphHTTPError(400, "BadRequest", "The skip token is not valid.")
            offset = pos
        with self._lock:
            found = [m for m in mb.messages.values() if m.folder == folder and all(p(m) for p in preds)]
            found.sort(key=lambda m: (m.received, m.immutable_id), reverse=descending)
            page = [self._json(mb, m, select, immutable) for m in found[offset:offset + top]]
            more = offset + top < len(found)
            answer: dict[str, Any] = {
                "@odata.context": f"{self.url}/v1.0/$metadata#users('{quote(mb.email)}')/mailFolders('{folder}')/messages",
                "value": page}
            if more:
                token = secrets.token_urlsafe(18)
                if len(self._cursors) > 10000:
                    self._cursors.pop(next(iter(self._cursors)))
                self._cursors[token] = offset + top
                params = {k: v for k, v in query.items() if k not in ("$skiptoken", "$skip")}
                params["$skiptoken"] = token
                answer["@odata.nextLink"] = (f"{self.url}/v1.0/users/{quote(mb.email, safe='@')}/mailFolders/"
                                             f"{folder}/messages?{urlencode(params, quote_via=quote, safe='$,')}")
        return Answer(200, _json_headers(), answer)

    def _batch(self, body: bytes | None, outer: dict[str, str]) -> Answer:
        doc = _json_body(body)
        reqs = doc.get("requests") if isinstance(doc, dict) else None
        if not isinstance(reqs, list) or not reqs:
            raise GraphHTTPError(400, "BadRequest", "Invalid batch payload format.")
        if len(reqs) > MAX_BATCH:
            raise GraphHTTPError(400, "BadRequest", f"Number of batch requests {len(reqs)} exceeds the limit of {MAX_BATCH}.")
        seen: set[str] = set()
        for r in reqs:
            if (not isinstance(r, dict) or not isinstance(r.get("id"), str) or not r["id"]
                    or not isinstance(r.get("method"), str) or not isinstance(r.get("url"), str)
                    or ("headers" in r and not isinstance(r["headers"], dict))):
                raise GraphHTTPError(400, "BadRequest", "Invalid batch payload format.")
            if r["id"] in seen:
                raise GraphHTTPError(400, "BadRequest", "Batch request ids must be unique.")
            seen.add(r["id"])
        responses = []
        for r in reqs:
            url = r["url"]
            if url.startswith(("http://", "https://")):
                split = urlsplit(url)
                url = split.path + ("?" + split.query if split.query else "")
                url = url.removeprefix("/v1.0")
            target = "/v1.0" + (url if url.startswith("/") else "/" + url)
            method = r["method"].upper()
            with self._lock:
                self.batch_log.append((method, target))
            sub_headers = {str(k): str(v) for k, v in (r.get("headers") or {}).items()}
            sub_body = json.dumps(r["body"]).encode() if "body" in r else None
            ans = self.handle(method, target, sub_headers, sub_body, in_batch=True)
            item: dict[str, Any] = {"id": r["id"], "status": ans.status, "headers": ans.headers}
            if ans.binary:
                item["body"] = base64.b64encode(ans.body).decode("ascii")
            elif ans.body is not None:
                item["body"] = ans.body
            responses.append(item)
        return Answer(200, _json_headers(), {"responses": responses})


def _is_token_path(path: str) -> bool:
    return path.split("?", 1)[0].endswith("/oauth2/v2.0/token")


def _seconds(value: float) -> str:
    # Retry-After is whole seconds on the wire; sub-second values (tests) round up to "0"/"1"
    # would slow tests, so they are written as given when fractional: clients parse floats.
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _json_headers() -> dict[str, str]:
    return {"Content-Type": "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"}


def _error(e: GraphHTTPError) -> Answer:
    headers = {"Content-Type": "application/json; charset=utf-8", **e.headers}
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    rid = str(uuid.uuid4())
    return Answer(e.status, headers, {"error": {"code": e.code, "message": e.message,
                                                "innerError": {"date": now, "request-id": rid,
                                                               "client-request-id": rid}}})


def _json_body(body: bytes | None) -> Any:
    try:
        return json.loads(body or b"")
    except (ValueError, UnicodeDecodeError):
        raise GraphHTTPError(400, "BadRequest", "Unable to read JSON request payload.") from None


def _select(query: dict[str, str]) -> tuple[str, ...]:
    raw = query.get("$select")
    if raw is None:
        return _DEFAULT_PROPERTIES
    out = []
    for name in (p.strip() for p in raw.split(",")):
        match = next((p for p in PROPERTIES if p.lower() == name.lower()), None)
        if match is None:
            raise GraphHTTPError(400, "RequestBroker--ParseUri",
                                 f"Could not find a property named '{name}' on type 'microsoft.graph.message'.")
        out.append(match)
    return tuple(out)


def _int_option(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise GraphHTTPError(400, "BadRequest", f"Invalid value '{raw}' for query option '{name}'.")
    return int(raw)


_CLAUSE = re.compile(r"\s*(?:(isRead)\s+eq\s+(true|false)|(receivedDateTime)\s+(ge|gt|le|lt)\s+(\S+))\s*", re.IGNORECASE)


def _filter(text: str | None) -> tuple[list[Any], list[str]]:
    if text is None:
        return [], []
    preds: list[Any] = []
    props: list[str] = []
    for clause in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        m = _CLAUSE.fullmatch(clause)
        if not m:
            raise GraphHTTPError(400, "BadRequest", f"Invalid filter clause: '{clause[:200]}'.")
        if m.group(1):
            want = m.group(2).lower() == "true"
            preds.append(lambda msg, want=want: msg.is_read == want)
            props.append("isRead")
        else:
            try:
                when = _parse_iso(m.group(5))
            except ValueError:
                raise GraphHTTPError(400, "BadRequest", f"Invalid date in filter: '{m.group(5)[:60]}'.") from None
            op = m.group(4).lower()
            cmp = {"ge": lambda a, b: a >= b, "gt": lambda a, b: a > b,
                   "le": lambda a, b: a <= b, "lt": lambda a, b: a < b}[op]
            preds.append(lambda msg, cmp=cmp, when=when: cmp(msg.received, when))
            props.append("receivedDateTime")
    return preds, props


class _Handler(BaseHTTPRequestHandler):
    graph: GraphServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else each answer waits ~40 ms for a delayed ACK
    server_version = "GraphTestServer/1.0"

    def setup(self) -> None:
        super().setup()
        with self.graph._lock:
            self.graph._connections.add(self.connection)

    def finish(self) -> None:
        with self.graph._lock:
            self.graph._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's signature
        pass  # never on the terminal the TUI draws on

    def _serve(self) -> None:
        length_text = self.headers.get("Content-Length")
        body: bytes | None = None
        try:
            length = int(length_text) if length_text is not None else 0
        except ValueError:
            length = -1
        if length < 0 or length > _MAX_BODY:
            self._send(_error(GraphHTTPError(400, "BadRequest", "Invalid Content-Length.")), close=True)
            return
        if length:
            body = self.rfile.read(length)
        with self.graph._lock:
            self.graph.log.append((self.command, self.path))
        headers = {k: v for k, v in self.headers.items()}
        answer = self.graph.handle(self.command, self.path, headers, body)
        with self.graph._lock:
            drop = self.graph._drop_answers > 0
            if drop:
                self.graph._drop_answers -= 1
        if drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(answer)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

    def _send(self, ans: Answer, *, close: bool = False) -> None:
        if ans.binary:
            payload = ans.body
        elif ans.body is None:
            payload = b""
        else:
            payload = json.dumps(ans.body, ensure_ascii=False).encode("utf-8")
        self.send_response(ans.status)
        for k, v in ans.headers.items():
            self.send_header(k, v)
        self.send_header("request-id", str(uuid.uuid4()))
        self.send_header("Content-Length", str(len(payload)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self._headers_buffer.append(b"\r\n")
        if payload and self.command != "HEAD":
            self._headers_buffer.append(payload)  # one write: head and body in one segment
        self.flush_headers()


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[GraphServer]:
    server = GraphServer(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()


__all__ = ["DEMO_CLIENT_ID", "DEMO_CLIENT_SECRET", "DEMO_MAILBOX", "DEMO_TENANT", "GraphServer",
           "StoredMessage", "running"]
