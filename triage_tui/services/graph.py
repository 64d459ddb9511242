"""A small Microsoft Graph mail client: the token, paging, ``$batch`` and Graph's back-off rules.

What it does, and why so:

- **Token**: OAuth2 client credentials against ``<azure_ad_endpoint>/<tenant>/oauth2/v2.0/token``
  with scope ``<graph_endpoint>/.default`` (mail_room's flow). Kept until shortly before
  ``expires_in`` runs out; renewed when Graph answers 401 mid-operation (once per request: a
  second 401 with a fresh token is an authentication failure). The token and the client secret
  are :class:`~triage_tui.services.imap.Secret` values: never in a repr, an exception or a log.
- **Transport**: ``http.client`` with a small keep-alive pool (one connection per concurrent
  request), not ``urllib.request``, which opens a new TCP (and TLS) connection for every request:
  against Graph that is one to two extra round trips per request. Measured on loopback with the
  test server, no TLS, so the gap is the smallest it can be (``bench/bench_graph.py``, 500
  sequential GETs, 2 shared cores, noisy): urllib.request 0.76-1.85 ms a request, keep-alive
  0.39 ms. A connection that the server closed while idle is reopened and
  the request sent again only when sending it twice is harmless (GET, PATCH, a ``$batch`` of
  those, the token POST); a DELETE whose answer was lost raises :class:`ConnectionLost`.
- **Throttling**: 429, 503 and 504 (and 509, which mail_room also backs off on) are retried
  after ``Retry-After`` (seconds; exponential back-off when absent), at most ``max_retries``
  times, never waiting longer than ``max_retry_after`` (mail_room backs off up to 10 minutes):
  beyond that the operation fails with a one-line :class:`GraphThrottled`.
- **Paging**: ``@odata.nextLink`` is followed only while it stays on the configured Graph
  endpoint (the bearer token must never be sent to another host) and never loops.
- **Batches**: :meth:`GraphClient.batch` sends ``$batch`` requests of at most 20, at most
  ``max_in_flight`` (4, Exchange's concurrency limit per app and mailbox) HTTP requests at a time
  for the whole client, and retries the throttled requests inside a batch after their own
  ``Retry-After``.
- **Budget**: :attr:`GraphClient.stats` counts every request sent (by method, the requests
  inside batches apart, the token requests apart). Graph counts each request inside a ``$batch``
  against the ~10,000 requests per 10 minutes per app and mailbox: :attr:`RequestStats.budget`.

Nothing here decides what to change: the triage service (read-only guard, journal) does.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import math
import random
import select
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from triage_tui.domain.redact import mask_url, scrub
from triage_tui.domain.text import inert
from triage_tui.errors import (
    AuthenticationFailed,
    ConfigError,
    ConnectionFailed,
    ConnectionLost,
    MailboxMissing,
    OperationFailed,
    TriageError,
)
from triage_tui.services.imap import Secret, is_loopback

log = logging.getLogger("triage_tui.graph")

GRAPH_ENDPOINT = "https://graph.microsoft.com"
AZURE_AD_ENDPOINT = "https://login.microsoftonline.com"
MAX_BATCH = 20
#: Graph's largest page of messages: one request per 1,000 messages listed.
PAGE_SIZE = 1000
_RETRY_STATUS = frozenset({429, 503, 504, 509})
_IDEMPOTENT = frozenset({"GET", "HEAD", "PATCH", "PUT", "OPTIONS"})
_POOL_IDLE = 30.0  # seconds a kept-alive connection is trusted; older ones are closed, not reused


class GraphError(OperationFailed):
    """Graph answered an error (``status`` and Graph's ``code`` kept for callers)."""

    def __init__(self, message: str, *, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class GraphThrottled(GraphError):
    """Still throttled after the allowed retries, or asked to wait longer than allowed."""


@dataclass
class GraphSettings:
    tenant_id: str
    client_id: str
    client_secret: Secret | None
    mailbox: str
    folder: str = "inbox"
    graph_endpoint: str = GRAPH_ENDPOINT
    azure_ad_endpoint: str = AZURE_AD_ENDPOINT
    timeout: float = 30.0
    max_in_flight: int = 4
    max_retries: int = 6
    max_retry_after: float = 600.0
    immutable_ids: bool = False
    allow_plaintext: bool = False  # http:// to a host that is not loopback
    ca_file: str | None = None


@dataclass
class RequestStats:
    http: Counter[str] = field(default_factory=Counter)         # Graph HTTP requests by method
    subrequests: Counter[str] = field(default_factory=Counter)  # requests inside $batch by method
    batches: int = 0                                            # $batch POSTs (in ``http["POST"]``)
    token: int = 0                                              # token requests (to Azure AD)
    retries: int = 0
    waited: float = 0.0

    @property
    def budget(self) -> int:
        """Requests Graph counts against the mailbox's limit: a ``$batch`` counts by its requests."""
        return sum(self.http.values()) - self.batches + sum(self.subrequests.values())

    def as_dict(self) -> dict[str, Any]:
        return {"http": dict(self.http), "subrequests": dict(self.subrequests), "batches": self.batches,
                "token": self.token, "retries": self.retries, "waited": round(self.waited, 3),
                "budget": self.budget}


@dataclass
class GraphResponse:
    status: int
    headers: dict[str, str]  # names lowered
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise GraphError(f"Graph answered {self.status} with a body that is not JSON",
                             status=self.status) from None
        except RecursionError:  # [[[[... thousands deep: an internal error before
            raise GraphError(f"Graph answered {self.status} with JSON nested too deep to read",
                             status=self.status) from None


@dataclass(frozen=True)
class BatchRequest:
    method: str
    url: str  # relative to /v1.0, e.g. /users/x@y/messages/<id>
    body: Any = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class BatchResult:
    request: BatchRequest
    status: int  # 0: no answer (see ``error``)
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def _origin(url: str) -> tuple[str, str, int]:
    s = urlsplit(url)
    scheme = s.scheme.lower()
    try:
        port = s.port
    except ValueError:
        raise ConfigError(f"endpoint {mask_url(url)} has an invalid port") from None
    if scheme not in ("http", "https") or not s.hostname:
        raise ConfigError(f"endpoint {mask_url(url)} is not an http(s) URL")
    return scheme, s.hostname, port or (443 if scheme == "https" else 80)


class _Pool:
    """Kept-alive connections per origin; one is used by one request at a time."""

    def __init__(self, timeout: float, context: ssl.SSLContext) -> None:
        self._timeout = timeout
        self._context = context
        self._idle: dict[tuple[str, str, int], list[tuple[http.client.HTTPConnection, float]]] = {}
        self._lock = threading.Lock()

    def get(self, origin: tuple[str, str, int]) -> tuple[http.client.HTTPConnection, bool]:
        now = time.monotonic()
        with self._lock:
            idle = self._idle.get(origin, [])
            while idle:
                conn, since = idle.pop()
                if now - since < _POOL_IDLE and not _dropped(conn):
                    return conn, True
                conn.close()
        scheme, host, port = origin
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=self._timeout, context=self._context), False
        return http.client.HTTPConnection(host, port, timeout=self._timeout), False

    def put(self, origin: tuple[str, str, int], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.setdefault(origin, []).append((conn, time.monotonic()))

    def close(self) -> None:
        with self._lock:
            for conns in self._idle.values():
                for conn, _ in conns:
                    conn.close()
            self._idle.clear()


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle kept-alive connection the server has closed (readable at EOF) or that has no socket:
    checked before reuse, so a DELETE is not sent on a connection known to be dead."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class GraphClient:
    """One mailbox through Graph. Thread-safe; :meth:`close` (or ``with``) frees its connections."""

    def __init__(self, settings: GraphSettings, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._sleep = sleep
        self._clock = clock
        self._graph = settings.graph_endpoint.rstrip("/")
        self._aad = settings.azure_ad_endpoint.rstrip("/")
        for url in (self._graph, self._aad):
            scheme, host, _ = _origin(url)
            if scheme == "http" and not settings.allow_plaintext and not is_loopback(host):
                raise ConfigError(f"refusing plaintext http to {mask_url(url)} (not loopback): "
                                  "the client secret and the token would cross the network in clear")
        if not settings.client_secret:
            raise ConfigError("the Graph client secret is empty: set it as for the IMAP password "
                              "(environment, file or command)")
        context = ssl.create_default_context(cafile=settings.ca_file)
        self._pool = _Pool(settings.timeout, context)
        self._slots = threading.BoundedSemaphore(max(1, settings.max_in_flight))
        self._token_lock = threading.Lock()
        self._token: Secret | None = None
        self._token_expiry = 0.0
        self._stats_lock = threading.Lock()
        self.stats = RequestStats()

    def __repr__(self) -> str:
        return f"GraphClient({self.settings.mailbox!r} at {mask_url(self._graph)})"

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.close()

    shutdown = close  # the triage service's abort() calls ``reader.client.shutdown()``

    # --- text that reaches a person ----------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        s = self.settings
        hidden = [x.reveal() for x in (s.client_secret, self._token) if x]
        return inert(scrub(text, hidden), limit=300)

    @property
    def where(self) -> str:
        return f"Graph mailbox {inert(self.settings.mailbox, limit=200)}"

    # --- the wire ----------------------------------------------------------------------------------

    def _exchange(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
                  *, resend_safe: bool) -> GraphResponse:
        origin = _origin(url)
        split = urlsplit(url)
        target = (split.path or "/") + ("?" + split.query if split.query else "")
        host = origin[1]
        deadline = 4 * self.settings.timeout  # for the whole exchange; the timeout bounds each read
        for attempt in (1, 2):
            conn, _reused = self._pool.get(origin)
            # the socket's timeout bounds each read, not the whole answer: a server sending a
            # byte every few seconds held a listing without end (found by an adversary); a
            # watchdog cuts the connection at the deadline, and the read fails at once
            expired = threading.Event()
            watchdog = threading.Timer(deadline, _cut, (conn, expired))
            watchdog.daemon = True
            watchdog.start()
            late = f"{host} did not finish its answer within {deadline:g} s"
            try:
                try:
                    conn.request(method, target, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read(MAX_BODY + 1)  # not all of a body that never ends (3 GB seen)
                except (OSError, http.client.HTTPException):
                    if expired.is_set():  # the watchdog cut it: whatever the read raised says less
                        conn.close()
                        raise ConnectionFailed(late) from None
                    raise
                finally:
                    watchdog.cancel()
                if expired.is_set():
                    conn.close()
                    raise ConnectionFailed(late)
                if len(data) > MAX_BODY:
                    conn.close()
                    raise ConnectionFailed(f"{host} answered {method} with more than {MAX_BODY // 2**20} MiB; "
                                           "refusing it")
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    ConnectionAbortedError) as e:
                conn.close()
                if resend_safe and attempt == 1:
                    continue  # closed while idle, or the answer was lost: sending it again is harmless
                if resend_safe:
                    raise ConnectionLost(f"connection to {host} lost twice ({type(e).__name__})") from None
                raise ConnectionLost(f"connection to {host} lost before the answer to {method}: whether Graph "
                                     "applied it is unknown; list again to see") from None
            except TimeoutError:
                conn.close()
                raise ConnectionFailed(f"{host} did not answer within {self.settings.timeout:g} s") from None
            except ssl.SSLError as e:
                conn.close()
                raise ConnectionFailed(f"TLS with {host} failed: {self._scrub(e.reason or str(e))}") from None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
                raise ConnectionFailed(f"cannot reach {host}: {self._scrub(str(reason))}") from None
            if resp.will_close:
                conn.close()
            else:
                self._pool.put(origin, conn)
            return GraphResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        raise AssertionError("unreachable")

    def _retry_wait(self, resp: GraphResponse, attempt: int, what: str, waited: float = 0.0) -> float:
        """Seconds to wait before trying again, or raise when the wait or the attempts run out.
        ``waited``: what this request waited already; all its waits together stay within
        ``max_retry_after`` (each alone did: six waits of 600 s kept a listing silent an hour)."""
        wait = _retry_after(resp.headers.get("retry-after"))
        if wait is None:
            wait = min(60.0, 2.0 ** attempt) * (0.5 + random.random() / 2)
        limit = self.settings.max_retry_after
        if waited and waited + wait > limit:
            raise GraphThrottled(f"{self.where}: Graph answered {resp.status} to {what} again after {_secs(waited)} "
                                 f"of waiting, and asks for {_secs(wait)} more; the {_secs(limit)} allowed are "
                                 "spent, try again later (the mailbox's request budget is shared with mail_room)",
                                 status=resp.status, code=_code(resp))
        if wait > limit:
            raise GraphThrottled(f"{self.where}: Graph answered {resp.status} to {what} and asks to wait "
                                 f"{_secs(wait)}, more than the {_secs(limit)} allowed; try again later "
                                 "(the mailbox's request budget is shared with mail_room)",
                                 status=resp.status, code=_code(resp))
        if attempt > self.settings.max_retries:
            raise GraphThrottled(f"{self.where}: Graph still answered {resp.status} to {what} after "
                                 f"{attempt - 1} retries; try again later", status=resp.status, code=_code(resp))
        return wait

    def _wait(self, seconds: float) -> None:
        with self._stats_lock:
            self.stats.retries += 1
            self.stats.waited += seconds
        if seconds > 0:
            self._sleep(seconds)

    # --- the token ---------------------------------------------------------------------------------

    def token(self, *, stale: Secret | None = None) -> Secret:
        """A valid access token; a new one when there is none, it is about to expire, or Graph
        refused ``stale`` (unless another thread has already replaced it)."""
        with self._token_lock:
            if self._token is not None and self._token is not stale and self._clock() < self._token_expiry:
                return self._token
            self._token = self._fetch_token()
            return self._token

    def _fetch_token(self) -> Secret:
        s = self.settings
        url = f"{self._aad}/{quote(s.tenant_id, safe='')}/oauth2/v2.0/token"
        assert s.client_secret is not None
        form = urlencode({"grant_type": "client_credentials", "client_id": s.client_id,
                          "client_secret": s.client_secret.reveal(), "scope": f"{self._graph}/.default"})
        body = form.encode("utf-8")
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        attempt = 0
        while True:
            with self._stats_lock:
                self.stats.token += 1
            resp = self._exchange("POST", url, headers, body, resend_safe=True)
            if resp.status in _RETRY_STATUS or resp.status >= 500:
                attempt += 1
                self._wait(self._retry_wait(resp, attempt, "the token request"))
                continue
            break
        try:
            doc = json.loads(resp.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            doc = None
        if resp.status != 200 or not isinstance(doc, dict):
            error = description = ""
            if isinstance(doc, dict):
                error = str(doc.get("error") or "")
                description = str(doc.get("error_description") or "").split("\r\n")[0].split("\n")[0]
            detail = self._scrub(f"{error}: {description}" if description else error or f"HTTP {resp.status}")
            raise AuthenticationFailed(f"the token endpoint {mask_url(self._aad)} refused client "
                                       f"{inert(s.client_id, limit=80)} of tenant {inert(s.tenant_id, limit=80)}: "
                                       f"{detail}")
        token = doc.get("access_token")
        if not isinstance(token, str) or not token or not token.isascii() or any(c in token for c in "\r\n "):
            raise AuthenticationFailed(f"the token endpoint {mask_url(self._aad)} answered without a usable access token")
        secret = Secret(token)
        lifetime = _number(doc.get("expires_in"), default=300.0)
        lifetime = min(max(lifetime, 0.0), 86400.0)
        # renew a little before the end (a tenth of the lifetime, at most a minute)
        self._token_expiry = self._clock() + lifetime - min(60.0, lifetime / 10)
        return secret

    # --- requests ------------------------------------------------------------------------------------

    def url(self, path_or_url: str, params: dict[str, Any] | None = None) -> str:
        """An absolute Graph URL: a path is taken relative to ``/v1.0``; an absolute URL (a
        ``nextLink``) must be on the Graph endpoint, so the token never goes anywhere else."""
        if "://" in path_or_url:
            want = _origin(self._graph)
            if _origin(path_or_url) != want or not urlsplit(path_or_url).path.startswith(
                    urlsplit(self._graph).path.rstrip("/") + "/v1.0/"):
                raise GraphError(f"{self.where}: Graph sent a link to {mask_url(path_or_url)}, "
                                 f"outside {mask_url(self._graph)}; not following it")
            url = path_or_url
        else:
            url = f"{self._graph}/v1.0{path_or_url if path_or_url.startswith('/') else '/' + path_or_url}"
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params, quote_via=quote, safe="$,")
        return url

    def request(self, method: str, path_or_url: str, *, params: dict[str, Any] | None = None,
                json_body: Any = None, headers: dict[str, str] | None = None,
                resend_safe: bool | None = None, what: str | None = None) -> GraphResponse:
        """One Graph request with the token, renewal on 401 and the retries; any status back."""
        url = self.url(path_or_url, params)
        method = method.upper()
        what = what or f"{method} {urlsplit(url).path.rsplit('/', 1)[-1][:40]}"
        body = None if json_body is None else json.dumps(json_body).encode("utf-8")
        base = {"Accept": "application/json", **(headers or {})}
        if body is not None:
            base["Content-Type"] = "application/json"
        if self.settings.immutable_ids:
            base["Prefer"] = 'IdType="ImmutableId"'
        safe = method in _IDEMPOTENT if resend_safe is None else resend_safe
        renewed = False
        attempt = 0
        waited = 0.0
        stale: Secret | None = None
        while True:
            token = self.token(stale=stale)
            sent = {**base, "Authorization": f"Bearer {token.reveal()}"}
            with self._slots:
                with self._stats_lock:
                    self.stats.http[method] += 1
                resp = self._exchange(method, url, sent, body, resend_safe=safe)
            if resp.status == 401 and not renewed:
                renewed = True
                stale = token  # expired or revoked mid-operation: a new token, once
                continue
            if resp.status == 401:
                raise AuthenticationFailed(f"{self.where}: Graph refused a fresh token "
                                           f"({self._scrub(_message(resp))})")
            if resp.status in _RETRY_STATUS:
                attempt += 1
                wait = self._retry_wait(resp, attempt, what, waited)
                waited += wait
                self._wait(wait)
                continue
            return resp

    def _checked(self, resp: GraphResponse, what: str) -> GraphResponse:
        if 200 <= resp.status < 300:
            return resp
        code, text = _code(resp), self._scrub(_message(resp))
        line = f"{self.where}: {what} failed: {resp.status} {code}: {text}".rstrip(": ")
        if resp.status == 403:
            raise AuthenticationFailed(f"{line} (does the app have the Mail.ReadWrite application permission?)")
        if resp.status == 404 and code in ("ErrorInvalidUser", "MailboxNotEnabledForRESTAPI", "ResourceNotFound"):
            raise MailboxMissing(line)
        raise GraphError(line, status=resp.status, code=code)

    def get_json(self, path_or_url: str, *, params: dict[str, Any] | None = None, what: str) -> Any:
        doc = self._checked(self.request("GET", path_or_url, params=params, what=what), what).json()
        if not isinstance(doc, dict):
            raise GraphError(f"{self.where}: {what}: Graph answered JSON that is not an object")
        return doc

    # --- mail ----------------------------------------------------------------------------------------

    def _user(self) -> str:
        return f"/users/{quote(self.settings.mailbox, safe='@')}"

    def message_path(self, message_id: str) -> str:
        return f"{self._user()}/messages/{quote(message_id, safe='')}"

    def folder_info(self, folder: str | None = None) -> dict[str, Any]:
        folder = folder or self.settings.folder
        doc: dict[str, Any] = self.get_json(f"{self._user()}/mailFolders/{quote(folder, safe='')}",
                                            what=f"reading folder {inert(folder, limit=80)}")
        return doc

    def list_messages(self, folder: str | None = None, *, filter: str | None = None,  # noqa: A002
                      select: Sequence[str] | None = None, top: int = PAGE_SIZE,
                      orderby: str | None = None) -> Iterator[dict[str, Any]]:
        """Every message of ``folder`` matching ``filter``, page after page (``nextLink``)."""
        folder = folder or self.settings.folder
        params: dict[str, Any] = {"$top": max(1, min(int(top), PAGE_SIZE))}
        if filter:
            params["$filter"] = filter
        if select:
            params["$select"] = ",".join(select)
        if orderby:
            params["$orderby"] = orderby
        what = f"listing {inert(folder, limit=80)}"
        link: str | None = self.url(f"{self._user()}/mailFolders/{quote(folder, safe='')}/messages", params)
        seen: set[str] = set()
        while link:
            if link in seen:
                raise GraphError(f"{self.where}: {what}: Graph sent the same page link twice; stopping")
            seen.add(link)
            doc = self.get_json(link, what=what)
            value = doc.get("value")
            if not isinstance(value, list):
                raise GraphError(f"{self.where}: {what}: Graph's page has no list of messages")
            for item in value:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    yield item
            nxt = doc.get("@odata.nextLink")
            link = nxt if isinstance(nxt, str) and nxt else None

    def get_message(self, message_id: str, select: Sequence[str] | None = None) -> dict[str, Any]:
        params = {"$select": ",".join(select)} if select else None
        doc: dict[str, Any] = self.get_json(self.message_path(message_id), params=params, what="reading a message")
        return doc

    def get_mime(self, message_id: str) -> bytes:
        """The raw RFC 5322 message (``$value``); reading it does not mark it read."""
        what = "downloading a message"
        return self._checked(self.request("GET", self.message_path(message_id) + "/$value", what=what), what).body

    def set_read(self, message_ids: Sequence[str], read: bool) -> list[BatchResult]:
        return self.batch([BatchRequest("PATCH", self.message_path(i), {"isRead": bool(read)},
                                        (("Content-Type", "application/json"),)) for i in message_ids])

    def delete(self, message_ids: Sequence[str]) -> list[BatchResult]:
        """Soft delete: Graph moves each message to Deleted Items (its regular id changes)."""
        return self.batch([BatchRequest("DELETE", self.message_path(i)) for i in message_ids])

    # --- $batch ----------------------------------------------------------------------------------------

    def batch(self, requests: Sequence[BatchRequest], *, resend_safe: bool | None = None) -> list[BatchResult]:
        """Every request through ``$batch`` (20 a batch, ``max_in_flight`` batches at a time),
        the throttled ones retried; one result per request, in order. A connection or
        authentication failure is raised after the other batches finished, with what is known in
        ``err.partial`` (a list with ``None`` for requests whose outcome is unknown).
        ``resend_safe=False``: a batch whose answer was lost is not sent again even if its requests
        are idempotent (an ``If-Match`` PATCH sent twice fails the second time on its own change:
        the caller finds out what happened instead)."""
        results: list[BatchResult | None] = [None] * len(requests)
        chunks = [list(range(i, min(i + MAX_BATCH, len(requests)))) for i in range(0, len(requests), MAX_BATCH)]
        if not chunks:
            return []
        errors: list[TriageError] = []
        workers = max(1, min(self.settings.max_in_flight, len(chunks)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="graph-batch") as pool:
            futures = [pool.submit(self._run_chunk, requests, chunk, results, resend_safe) for chunk in chunks]
            for f in futures:
                try:
                    f.result()
                except TriageError as e:
                    errors.append(e)
        if errors:
            err = errors[0]
            err.partial = list(results)  # type: ignore[attr-defined]
            raise err
        return [r for r in results if r is not None]

    def _run_chunk(self, requests: Sequence[BatchRequest], chunk: list[int],
                   results: list[BatchResult | None], resend_safe: bool | None = None) -> None:
        todo = chunk
        attempt = 0
        while todo:
            payload = {"requests": [_batch_item(str(i), requests[i]) for i in todo]}
            safe = all(requests[i].method.upper() in _IDEMPOTENT for i in todo) if resend_safe is None \
                else resend_safe
            with self._stats_lock:
                self.stats.batches += 1
                for i in todo:
                    self.stats.subrequests[requests[i].method.upper()] += 1
            what = f"a batch of {len(todo)}"
            resp = self._checked(self.request("POST", "/$batch", json_body=payload, resend_safe=safe,
                                              what=what), what)
            answers = _batch_answers(resp.json())
            retry: list[int] = []
            wait: float | None = None
            status_seen = 0
            for i in todo:
                a = answers.get(str(i))
                if a is None:
                    results[i] = BatchResult(requests[i], 0, error="Graph gave no answer to this request")
                    continue
                status, headers, body = a
                error = "" if 200 <= status < 300 else self._scrub(f"{_body_code(body)}: {_body_message(body)}")
                results[i] = BatchResult(requests[i], status, headers, body, error=error)
                if status in _RETRY_STATUS:
                    retry.append(i)
                    status_seen = status
                    w = _retry_after(headers.get("retry-after"))
                    if w is not None:
                        wait = w if wait is None else max(wait, w)
            if not retry:
                return
            attempt += 1
            hint = {} if wait is None else {"retry-after": repr(wait)}
            self._wait(self._retry_wait(GraphResponse(status_seen, hint, b""), attempt, what))
            todo = retry


def _batch_item(rid: str, r: BatchRequest) -> dict[str, Any]:
    item: dict[str, Any] = {"id": rid, "method": r.method.upper(), "url": r.url}
    headers = dict(r.headers)
    if r.body is not None:
        item["body"] = r.body
        headers.setdefault("Content-Type", "application/json")
    if headers:
        item["headers"] = headers
    return item


def _batch_answers(doc: Any) -> dict[str, tuple[int, dict[str, str], Any]]:
    out: dict[str, tuple[int, dict[str, str], Any]] = {}
    responses = doc.get("responses") if isinstance(doc, dict) else None
    if not isinstance(responses, list):
        raise GraphError("Graph's $batch answer has no list of responses")
    for r in responses:
        if not isinstance(r, dict) or not isinstance(r.get("id"), str):
            continue
        status = r.get("status")
        if not isinstance(status, int) or isinstance(status, bool):
            continue
        raw_headers = r.get("headers")
        headers = {str(k).lower(): str(v) for k, v in raw_headers.items()} if isinstance(raw_headers, dict) else {}
        out.setdefault(r["id"], (status, headers, r.get("body")))
    return out


#: the largest answer read from Graph (a page of 1,000 messages' headers is a few MiB)
MAX_BODY = 256 * 2**20


def _cut(conn: http.client.HTTPConnection, expired: threading.Event) -> None:
    """The watchdog of one exchange: mark it expired and cut its socket (the blocked read ends)."""
    expired.set()
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date); ``None`` when absent or absurd."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds) if seconds != math.inf else 1e12


def _number(value: Any, *, default: float) -> float:
    try:
        n = float(value)
    except (TypeError, ValueError):
        return default
    return n if math.isfinite(n) else default


def _secs(n: float) -> str:
    return f"{n:.0f} s" if n < 1e9 else "forever"


def _error_doc(resp_body: Any) -> dict[str, Any]:
    if isinstance(resp_body, dict) and isinstance(resp_body.get("error"), dict):
        return resp_body["error"]
    return {}


def _body_code(body: Any) -> str:
    return str(_error_doc(body).get("code") or "")[:100]


def _body_message(body: Any) -> str:
    return str(_error_doc(body).get("message") or "")[:300]


def _parsed(resp: GraphResponse) -> Any:
    try:
        return json.loads(resp.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _code(resp: GraphResponse) -> str:
    return _body_code(_parsed(resp))


def _message(resp: GraphResponse) -> str:
    return _body_message(_parsed(resp)) or f"HTTP {resp.status}"


def decode_batch_binary(result: BatchResult) -> bytes:
    """A binary body from inside a ``$batch`` (``$value``): Graph sends it base64-encoded."""
    if isinstance(result.body, str):
        with contextlib.suppress(ValueError):
            return base64.b64decode(result.body, validate=True)
    raise GraphError("Graph's batch answer has no binary body")


__all__ = ["AZURE_AD_ENDPOINT", "GRAPH_ENDPOINT", "MAX_BATCH", "PAGE_SIZE", "BatchRequest", "BatchResult",
           "GraphClient", "GraphError", "GraphResponse", "GraphSettings", "GraphThrottled", "RequestStats",
           "decode_batch_binary"]
