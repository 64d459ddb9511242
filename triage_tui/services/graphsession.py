"""A Graph mailbox behind the triage service: the part of :class:`ImapSession` the services use.

The triage service (read-only guard, UIDVALIDITY check, journal, undo: :mod:`triage_tui.services.
triage` and its mixins) stays the one owner of every change; this session only answers its calls
with IMAP's meaning, mapped onto Graph:

- **Identity**: Graph regular ids (what mail_room keys its Redis locks by) get stable integer UIDs
  from a persistent :class:`~triage_tui.services.graphidmap.IdMap`; UIDVALIDITY is the map's.
  A message moved to another folder gets a new regular id, so a new UID: the old UID is gone, as
  an expunged one is.
- **Flags**: ``\\Seen`` is ``isRead``; our keyword (:data:`TRIAGE_KEYWORD`) is the category
  ``TriageIgnored``; ``\\Deleted`` is "in Deleted Items" (mail_room soft-deletes there), so the
  ``DELETED`` criterion lists that folder. There is no EXPUNGE: refused with one line.
- **Search**: :mod:`~triage_tui.services.graphcriteria` (``$filter`` where Graph can, every
  criterion re-checked on each message; text criteria give a superset, unknown ones fail).
- **Fetch**: pages of ``$select=internetMessageHeaders,receivedDateTime,isRead,categories``
  become the :class:`FetchRecord` the IMAP path gives (the header block rebuilt as RFC 5322
  bytes; INTERNALDATE = receivedDateTime; RFC822.SIZE = 0, Graph does not offer a size). Reads
  are GETs only (no ``$batch``, which is a POST): a read-only session sends no POST but the token.
- **Store**: ``$batch`` PATCHes (isRead; categories read-modify-write, a PATCH replaces the whole
  list) with ``If-Match: <@odata.etag>`` of the message as the last search saw it, the analogue of
  CONDSTORE's UNCHANGEDSINCE: a message changed since (412) or gone (404) is reported ``modified``
  and left alone. A read-only (EXAMINE) session refuses to store at all.
- No CONDSTORE, QRESYNC, ESEARCH, WITHIN, UIDPLUS or IDLE in :attr:`capabilities`: the header
  cache is off for Graph (the context builds none), age selection fetches receivedDateTime.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from triage_tui.domain.model import TRIAGE_KEYWORD
from triage_tui.errors import ConnectionLost, OperationFailed, Refused, TriageError, UsageError
from triage_tui.services.graph import (
    MAX_BATCH,
    PAGE_SIZE,
    BatchRequest,
    BatchResult,
    GraphClient,
    GraphSettings,
)
from triage_tui.services.graphcriteria import TRIAGE_CATEGORY, Row, parse, received_range
from triage_tui.services.graphidmap import IdMap, map_path
from triage_tui.services.imap import ConnectionSettings, Limits, MailboxInfo, StoreResult, TlsInfo
from triage_tui.services.imapwire import FetchRecord, Response

log = logging.getLogger("triage_tui.graphsession")

DELETED_FOLDER = "deleteditems"
NO_EXPUNGE = ("expunge does not apply to a Graph mailbox: mail_room's deletes already moved those messages to "
              "Deleted Items (Exchange empties it by its retention policy); nothing was changed")
#: fetched for every search: what the criteria and a later store need
_SEARCH_SELECT = ("id", "receivedDateTime", "isRead", "categories")
#: at most this many messages are read one GET each; more are read by listing their time range
_SMALL_FETCH = 8
_EPOCH = "1900-01-01T00:00:00Z"
_ISO_SECOND = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
#: a page-full of messages received within one second is followed by nextLink for at most this
#: many pages (of PAGE_SIZE messages), each of which must bring messages not listed yet
SAME_SECOND_PAGES = 50


@dataclass
class GraphConnectionSettings(ConnectionSettings):
    """:class:`ConnectionSettings` for a Graph mailbox: ``user`` is the mailbox's address and
    ``mailbox`` the folder (what the journal and the guard name), ``graph`` how to reach it."""

    graph: GraphSettings | None = None
    state_dir: Path | None = None

    @property
    def server(self) -> str:
        g = self.graph
        if g is None:
            return "graph"
        s = urlsplit(g.graph_endpoint)
        return f"{s.hostname or 'graph'}:{s.port or (443 if s.scheme == 'https' else 80)}"


@dataclass
class _State:
    gid: str
    is_read: bool
    categories: tuple[str, ...]
    etag: str | None
    folder: str


@dataclass
class GraphSession:
    """One Graph mailbox folder, shaped like an :class:`ImapSession` for the triage service."""

    settings: GraphConnectionSettings
    limits: Limits = field(default_factory=Limits)
    client: GraphClient | None = None
    idmap: IdMap | None = None
    mailbox: MailboxInfo | None = None
    capabilities: frozenset[str] = frozenset()
    #: what the triage service says when asked to plan an expunge
    expunge_refusal: str = NO_EXPUNGE

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        # the executor's batches: one intent record per four $batch requests in flight
        self.max_count = MAX_BATCH * 4
        self.max_bytes = max(64, self.limits.max_bytes)
        self.limits = Limits(max_bytes=self.max_bytes, max_count=self.max_count, window=1,
                             workers=self.limits.workers)
        self._state: dict[int, _State] = {}
        g = self.settings.graph
        https = g is not None and g.graph_endpoint.lower().startswith("https:")
        self.tls = TlsInfo("HTTPS", None, True) if https else TlsInfo(None, None, False)
        self.wire = None  # no IMAP wire: code that needs one (CHANGEDSINCE) is not reached for Graph

    # -- connection ------------------------------------------------------------------------------

    @classmethod
    def open(cls, settings: ConnectionSettings, limits: Limits | None = None) -> GraphSession:
        if not isinstance(settings, GraphConnectionSettings) or settings.graph is None:
            raise TypeError("GraphSession needs GraphConnectionSettings with graph settings")
        session = cls(settings, limits or Limits())
        session.connect()
        return session

    @property
    def graph(self) -> GraphSettings:
        assert self.settings.graph is not None
        return self.settings.graph

    def connect(self) -> None:
        g = self.graph
        if g.folder.strip().lower() == DELETED_FOLDER:
            raise UsageError("the Graph folder cannot be Deleted Items: it is where mail_room's deletes go (the "
                             "deleted view lists it); give the folder mail_room reads (--graph-folder)")
        client = GraphClient(g)
        try:
            client.token()  # authenticate now: a wrong secret is one clear line before anything else
            if self.idmap is None:
                from triage_tui.services.journal import default_path  # noqa: PLC0415

                state = self.settings.state_dir or default_path().parent
                self.idmap = IdMap(map_path(state, g.graph_endpoint, g.tenant_id, g.mailbox, g.folder))
        except BaseException:
            client.close()
            raise
        self.client = client

    def _require(self) -> GraphClient:
        if self.client is None:
            raise ConnectionLost("not connected")
        return self.client

    def _drop(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()

    def close(self, *, wait: bool = True) -> None:  # noqa: ARG002 - HTTP: nothing to wait for
        self._drop()

    def __enter__(self) -> GraphSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- mailbox -----------------------------------------------------------------------------------

    def _open(self, name: str, readonly: bool) -> MailboxInfo:
        client = self._require()
        assert self.idmap is not None
        folder = name or self.graph.folder
        doc = client.folder_info(folder)
        total = doc.get("totalItemCount")
        self.mailbox = MailboxInfo(
            name=folder, uidvalidity=self.idmap.uidvalidity,
            exists=total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else 0,
            uidnext=self.idmap.uidnext, highestmodseq=None, readonly=readonly,
            # our keyword is storable (as a category); no other keyword is
            permanentflags=() if readonly else ("\\Seen", "\\*"))
        return self.mailbox

    def examine(self, mailbox: str | None = None) -> MailboxInfo:
        return self._open(mailbox or self.graph.folder, readonly=True)

    def select(self, mailbox: str | None = None) -> MailboxInfo:
        return self._open(mailbox or self.graph.folder, readonly=False)

    def status(self, mailbox: str | None = None) -> dict[str, int]:
        client = self._require()
        assert self.idmap is not None
        doc = client.folder_info(mailbox or self.graph.folder)

        def num(k: str) -> int:
            v = doc.get(k)
            return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0

        return {"messages": num("totalItemCount"), "unseen": num("unreadItemCount"),
                "uidnext": self.idmap.uidnext, "uidvalidity": self.idmap.uidvalidity}

    def poll_status(self) -> tuple[int, ...]:
        """What the watcher compares between polls: the folder's and Deleted Items' counts."""
        main, deleted = self.status(), self.status(DELETED_FOLDER)
        return main["messages"], main["unseen"], deleted["messages"], main["uidvalidity"]

    def _folder_name(self, which: str) -> str:
        return DELETED_FOLDER if which == "deleted" else self.graph.folder

    # -- reading -----------------------------------------------------------------------------------

    def _rows(self, folders: Iterable[str], clauses: list[str], select: tuple[str, ...] = _SEARCH_SELECT,
              keep: Callable[[Row, dict[str, Any]], None] | None = None) -> list[Row]:
        """Every message of these folders matching the ``$filter`` clauses, with UIDs assigned."""
        client = self._require()
        assert self.idmap is not None
        rows: list[Row] = []
        for which in folders:
            name = self._folder_name(which)
            items = self._scan(client, name, clauses, select)
            seen = [(str(m["id"]), _text(m.get("receivedDateTime")), name) for m in items]
            uids = self.idmap.assign(seen)
            for m in items:
                gid = str(m["id"])
                row = Row(uid=uids[gid], gid=gid, is_read=m.get("isRead") is True,
                          categories=_categories(m.get("categories")), received=_when(m.get("receivedDateTime")),
                          deleted=which == "deleted", etag=_text(m.get("@odata.etag")) or None)
                self._state[row.uid] = _State(gid, row.is_read, row.categories, row.etag, name)
                rows.append(row)
                if keep is not None:
                    keep(row, m)
        return rows

    @staticmethod
    def _scan(client: GraphClient, folder: str, clauses: list[str], select: tuple[str, ...]) -> list[dict[str, Any]]:
        """Every message of ``folder`` matching ``clauses``, oldest first, by keyset paging: each
        request asks for the next page *received at or after the last one seen* rather than
        following ``nextLink``. Graph's message paging is by offset (``$skip``), so while mail_room
        moves messages out of the folder (it deletes what it delivered, every poll) an offset page
        would skip as many messages as left before it: a search would silently miss some. Only
        when a whole page shares one second (or has no usable date) is ``nextLink`` followed."""
        ordered = sorted(clauses, key=lambda c: not c.startswith("receivedDateTime"))  # Graph wants it first
        since = _EPOCH
        seen: set[str] = set()
        out: list[dict[str, Any]] = []

        def take(item: dict[str, Any]) -> bool:
            gid = str(item["id"])
            if gid in seen:
                return False
            seen.add(gid)
            out.append(item)
            return True

        while True:
            flt = " and ".join([f"receivedDateTime ge {since}", *ordered])
            count, last, new = 0, None, 0
            pages = client.list_messages(folder, filter=flt, select=select, top=PAGE_SIZE,
                                         orderby="receivedDateTime asc")
            for item in pages:
                new += take(item)
                count += 1
                r = item.get("receivedDateTime")
                if isinstance(r, str) and _ISO_SECOND.fullmatch(r):
                    last = r
                if count >= PAGE_SIZE:
                    break
            if count < PAGE_SIZE:
                return out
            if last is None or last <= since:
                # a page-full within one second: the rest by nextLink, while its pages bring new
                # messages, and for at most SAME_SECOND_PAGES pages (a server that sent the same
                # page under a new link each time, or one new id per page, was followed forever,
                # spending the request budget mail_room shares: found by an adversary)
                fresh = 0
                for followed, item in enumerate(pages, 1):
                    fresh += take(item)
                    if followed % PAGE_SIZE == 0:
                        if not fresh or followed >= SAME_SECOND_PAGES * PAGE_SIZE:
                            raise OperationFailed(
                                f"{client.where}: listing {folder!r}: Graph kept sending pages of "
                                + ("messages already listed" if not fresh else
                                   f"messages received within one second ({followed:,} so far)")
                                + "; stopping rather than looping")
                        fresh = 0
                return out
            if not new:  # a full page of messages already seen, yet later ones: not Graph's order
                raise OperationFailed(f"{client.where}: listing {folder!r} by receivedDateTime gave the same "
                                      "messages again; stopping rather than looping")
            since = last

    def search(self, criteria: str) -> list[int]:
        """UIDs matching ``criteria`` now (see :mod:`~triage_tui.services.graphcriteria`)."""
        crit = parse(criteria)
        now = datetime.now(UTC)
        with self.lock:
            rows = self._rows(sorted(crit.folders, reverse=True), crit.server)
        return sorted({r.uid for r in rows if crit.pred(r, now) is not False})

    def search_within(self, uids: Iterable[int], criteria: str) -> list[int]:
        wanted = sorted(set(uids))
        if not wanted:
            return []
        assert self.idmap is not None
        known = [e for e in (self.idmap.entry(u) for u in wanted) if e is not None]
        if not known:
            return []  # never seen: no such message
        crit = parse(criteria)
        folders = {("deleted" if e[2] == DELETED_FOLDER else "main") for e in known} & set(crit.folders)
        days = [d for d in (_when(e[1]) for e in known) if d is not None]
        clauses = list(crit.server)
        rng = received_range(days) if len(days) == len(known) else None
        if rng:
            clauses.append(rng)
        now = datetime.now(UTC)
        want = set(wanted)
        with self.lock:
            rows = self._rows(sorted(folders, reverse=True), clauses)
        return sorted({r.uid for r in rows if r.uid in want and crit.pred(r, now) is not False})

    def count(self, criteria: str) -> int:
        if criteria.strip().upper() in ("DELETED", "ALL"):  # one request, not a listing
            name = DELETED_FOLDER if criteria.strip().upper() == "DELETED" else self.graph.folder
            return self.status(name)["messages"]
        return len(self.search(criteria))

    def fetch_stream(self, uids: Iterable[int], items: str, *,
                     on_untagged: Callable[[Response], None] | None = None) -> Iterator[list[FetchRecord]]:
        """The records IMAP's ``UID FETCH`` would give for ``uids`` (those still in the mailbox),
        in batches, in UID order throughout (as :meth:`ImapSession.fetch_stream` gives them: a
        listing's order, and its duplicate verdicts, rely on it), also when the UIDs lie in both
        folders (criteria with DELETED in an OR): the folders' records are merged."""
        if "BODY[" in items.replace("BODY.PEEK[", "") or ("RFC822" in items.replace("RFC822.SIZE", "")
                                                            .replace("RFC822.HEADER", "")):
            raise ValueError("refusing a FETCH that could set \\Seen: use BODY.PEEK")
        fields = _header_fields(items)
        headers = "HEADER" in items.upper()
        assert self.idmap is not None
        groups: dict[str, list[int]] = {}
        for u in sorted(set(uids)):
            e = self.idmap.entry(u)
            if e is not None:
                groups.setdefault(e[2], []).append(u)
        select = _SEARCH_SELECT + (("internetMessageHeaders",) if headers else ())
        step = max(1, self.limits.max_count * 12)  # 960: about one Graph page

        def folder(name: str, members: list[int]) -> Iterator[list[FetchRecord]]:
            which = "deleted" if name == DELETED_FOLDER else "main"
            for i in range(0, len(members), step):
                part = members[i:i + step]
                with self.lock:
                    got = self._fetch(which, part, select)
                batch = [self._record(row, m, headers, fields) for row, m in sorted(got, key=lambda x: x[0].uid)]
                if batch:
                    yield batch

        streams = [folder(name, members) for name, members in groups.items()]
        if len(streams) == 1:
            yield from streams[0]
            return
        # a message moved to Deleted Items gets a new UID, and mail keeps arriving: the folders'
        # UIDs interleave (each folder is still fetched as before, a page at a time)
        batch: list[FetchRecord] = []
        for rec in heapq.merge(*(itertools.chain.from_iterable(s) for s in streams), key=_uid_of):
            batch.append(rec)
            if len(batch) >= step:
                yield batch
                batch = []
        if batch:
            yield batch

    def _fetch(self, which: str, uids: list[int], select: tuple[str, ...]) -> list[tuple[Row, dict[str, Any]]]:
        assert self.idmap is not None
        want = set(uids)
        got: list[tuple[Row, dict[str, Any]]] = []
        if len(uids) <= _SMALL_FETCH:
            client = self._require()
            for u in uids:
                gid = self.idmap.gid(u)
                if gid is None:
                    continue
                try:
                    m = client.get_message(gid, select)
                except OperationFailed as e:
                    if getattr(e, "status", 0) == 404:
                        continue  # moved or deleted since: gone, as an expunged UID
                    raise
                if m.get("id") != gid:
                    continue
                name = self._folder_name(which)
                row = Row(uid=u, gid=gid, is_read=m.get("isRead") is True, categories=_categories(m.get("categories")),
                          received=_when(m.get("receivedDateTime")), deleted=which == "deleted",
                          etag=_text(m.get("@odata.etag")) or None)
                self._state[u] = _State(gid, row.is_read, row.categories, row.etag, name)
                got.append((row, m))
            return got
        days = [d for d in (_when(e[1]) for e in (self.idmap.entry(u) for u in uids) if e) if d is not None]
        rng = received_range(days) if len(days) == len(uids) else None
        self._rows([which], [rng] if rng else [], select,
                   keep=lambda row, m: got.append((row, m)) if row.uid in want else None)
        return got

    @staticmethod
    def _record(row: Row, m: dict[str, Any], headers: bool, fields: frozenset[str] | None) -> FetchRecord:
        flags = (("\\Seen",) if row.is_read else ()) + ((TRIAGE_KEYWORD,) if row.ignored else ()) + \
            (("\\Deleted",) if row.deleted else ())
        body = _header_block(m.get("internetMessageHeaders"), fields) if headers else None
        return FetchRecord(seq=0, uid=row.uid, flags=flags, internaldate=row.received, size=0, body=body)

    def fetch_header(self, uid: int) -> FetchRecord | None:
        for batch in self.fetch_stream([uid], "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER]"):
            for rec in batch:
                if rec.uid == uid:
                    return rec
        return None

    def fetch_raw(self, uid: int) -> bytes | None:
        """The whole message (``$value``: reading it does not mark it read), or None if gone."""
        assert self.idmap is not None
        gid = self.idmap.gid(uid)
        if gid is None:
            return None
        try:
            return self._require().get_mime(gid)
        except OperationFailed as e:
            if getattr(e, "status", 0) == 404:
                return None
            raise

    def budget(self, count: int) -> dict[str, int]:
        """What changing ``count`` messages spends, at most: a PATCH each (inside ``$batch`` POSTs
        of 20, which Graph counts by their requests), the folder opened for writing, and the
        search that narrows them right before (a page per 1,000). Messages already as wanted by
        then cost nothing."""
        batches = -(-count // MAX_BATCH)
        return {"batches": batches, "requests": count + 1 + (-(-count // PAGE_SIZE) if count else 0),
                "patches": count}

    def graph_ids(self, uids: Iterable[int]) -> dict[int, str]:
        """The Graph (regular) id of each of ``uids`` known to the map."""
        assert self.idmap is not None
        out = {}
        for u in uids:
            g = self.idmap.gid(u)
            if g is not None:
                out[u] = g
        return out

    def journal_fields(self, uids: Iterable[int]) -> dict[str, Any]:
        """What an intent record adds for a Graph mailbox: the ids the UIDs stand for."""
        return {"graph_ids": {str(u): g for u, g in sorted(self.graph_ids(uids).items())}}

    # -- writing (for services.execute only) -----------------------------------------------------------

    def _store(self, uids: list[int], flag: str, add: bool, unchangedsince: int | None = None,
               progress: Callable[[list[int]], None] | None = None,
               stop: threading.Event | None = None,
               on_untagged: Callable[[Response], None] | None = None,
               announce: Callable[[list[Any]], bool] | None = None,
               skim: Any = None) -> StoreResult:
        """``+FLAGS``/``-FLAGS`` as ``$batch`` PATCHes guarded by the etag (see the module), a
        group of ``max_count`` (four batches in flight) at a time; ``announce`` (the journal's
        write-ahead intent) names each group before it goes, and nothing more goes if it fails."""
        if self.mailbox is None or self.mailbox.readonly:
            raise Refused("refused: this Graph session was opened read-only; nothing was changed")
        client = self._require()
        words = flag.split()
        seen = any(w.lower() == "\\seen" for w in words)
        keyword = any(w.casefold() == TRIAGE_KEYWORD.casefold() for w in words)
        other = [w for w in words if w.lower() != "\\seen" and w.casefold() != TRIAGE_KEYWORD.casefold()]
        result = StoreResult()
        if other:
            result.failed.append((list(uids), f"a Graph mailbox cannot store {other[0][:40]!r}"))
            return result
        missing = [u for u in uids if u not in self._state]
        if missing:
            with self.lock:
                self._fetch("main", missing, _SEARCH_SELECT)
        requests: list[tuple[int, BatchRequest]] = []
        for u in uids:
            st = self._state.get(u)
            if st is None:
                result.modified.append(u)  # gone since it was planned
                continue
            body: dict[str, Any] = {}
            if seen and st.is_read != add:
                body["isRead"] = add
            if keyword:
                has = any(c.casefold() == TRIAGE_CATEGORY.casefold() for c in st.categories)
                if add and not has:
                    body["categories"] = [*st.categories, TRIAGE_CATEGORY]
                elif not add and has:
                    body["categories"] = [c for c in st.categories if c.casefold() != TRIAGE_CATEGORY.casefold()]
            if not body:
                result.done.append(u)  # already so: nothing to send (IMAP's STORE would be a no-op too)
                continue
            hdrs = (("Content-Type", "application/json"),) + ((("If-Match", st.etag),) if st.etag else ())
            requests.append((u, BatchRequest("PATCH", client.message_path(st.gid), body, hdrs)))
        if result.done and progress:
            progress(list(result.done))
        group = self.max_count
        for start in range(0, len(requests), group):
            part = requests[start:start + group]
            if (stop is not None and stop.is_set()) or (announce is not None and not announce([[u for u, _ in part]])):
                result.unsent.extend(u for u, _ in requests[start:])
                break
            result.commands += -(-len(part) // MAX_BATCH)
            try:
                answers: list[BatchResult | None] = list(client.batch([r for _, r in part], resend_safe=False))
                error: TriageError | None = None
            except TriageError as e:
                partial = getattr(e, "partial", None)
                answers = list(partial) if isinstance(partial, list) else [None] * len(part)
                error = e
            ok: list[int] = []
            unknown: list[int] = []
            for (u, req), a in zip(part, answers, strict=False):
                if a is None or a.status == 0:
                    unknown.append(u)
                elif a.ok and (why := _not_applied(req.body, a.body)) is not None:
                    result.failed.append(([u], f"{a.status}, but {why}"))  # never journaled as changed
                elif a.ok:
                    ok.append(u)
                    self._after_patch(u, req, a)
                elif a.status in (404, 409, 412):
                    result.modified.append(u)  # changed (or moved) by someone else since we looked
                    self._state.pop(u, None)
                else:
                    result.failed.append(([u], f"{a.status} {a.error}".strip()))
            result.done.extend(ok)
            if ok and progress:
                progress(ok)
            if error is not None:
                if isinstance(error, ConnectionLost):
                    result.unanswered = unknown
                    error.partial = result
                    raise error
                result.failed.append((unknown + [u for u, _ in requests[start + group:]], str(error)))
                if not isinstance(error, OperationFailed):
                    raise error  # authentication: the executor ends the operation with it
                break
        return result

    def _after_patch(self, uid: int, req: BatchRequest, answer: BatchResult) -> None:
        st = self._state.get(uid)
        if st is None:
            return
        body = req.body if isinstance(req.body, dict) else {}
        if "isRead" in body:
            st.is_read = bool(body["isRead"])
        if "categories" in body:
            st.categories = tuple(body["categories"])
        doc = answer.body if isinstance(answer.body, dict) else {}
        etag = doc.get("@odata.etag")
        st.etag = etag if isinstance(etag, str) else None  # unknown: the next PATCH goes unguarded

    def _uid_expunge(self, uids: list[int], progress: Callable[[list[int]], None] | None = None,
                     stop: threading.Event | None = None, announce: Any = None) -> StoreResult:
        raise Refused(NO_EXPUNGE)

    def _expunge_all(self) -> int:
        raise Refused(NO_EXPUNGE)


def _not_applied(asked: Any, doc: Any) -> str | None:
    """What a PATCH's 200 answer (the message as it is now) shows was not done, or None. A
    server answered 200 with the message unchanged, and the journal said it was changed (found
    by an adversary). An answer without those fields is trusted, as before."""
    if not isinstance(asked, dict) or not isinstance(doc, dict):
        return None
    if "isRead" in asked and isinstance(doc.get("isRead"), bool) and doc["isRead"] != asked["isRead"]:
        return f"the message is still {'read' if doc['isRead'] else 'unread'}"
    if "categories" in asked and isinstance(doc.get("categories"), list):
        def has(cats: list[Any]) -> bool:
            return any(isinstance(c, str) and c.casefold() == TRIAGE_CATEGORY.casefold() for c in cats)
        if has(asked["categories"]) != has(doc["categories"]):
            return f"the category {TRIAGE_CATEGORY!r} is still {'there' if has(doc['categories']) else 'missing'}"
    return None


def _text(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _when(v: Any) -> datetime | None:
    if not isinstance(v, str) or not v:
        return None
    try:
        d = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    return d if d.tzinfo is not None else d.replace(tzinfo=UTC)


def _categories(v: Any) -> tuple[str, ...]:
    return tuple(c for c in v if isinstance(c, str)) if isinstance(v, list) else ()


def _header_fields(items: str) -> frozenset[str] | None:
    """The field names of ``BODY.PEEK[HEADER.FIELDS (...)]``, lower-cased; None for the whole header."""
    up = items.upper()
    at = up.find("HEADER.FIELDS (")
    if at < 0:
        return None
    end = up.find(")", at)
    return frozenset(n.lower() for n in up[at + len("HEADER.FIELDS ("):end].split())


def _header_block(headers: Any, fields: frozenset[str] | None) -> bytes:
    """``internetMessageHeaders`` as the RFC 5322 header block IMAP would send (CRLF lines, a
    blank line at the end). A name that is not a field name is dropped; a CR or LF inside a value
    (which Graph should never give) becomes a space, so no value can forge another field."""
    out: list[bytes] = []
    if isinstance(headers, list):
        for h in headers:
            if not isinstance(h, dict):
                continue
            name, value = h.get("name"), h.get("value")
            if not isinstance(name, str) or not isinstance(value, str) or not name:
                continue
            if any(c <= " " or c == ":" or c > "~" for c in name):
                continue
            if fields is not None and name.lower() not in fields:
                continue
            value = value.replace("\r", " ").replace("\n", " ").replace("\0", " ")
            out.append(f"{name}: {value}\r\n".encode("utf-8", "replace"))
    out.append(b"\r\n")
    return b"".join(out)


def _uid_of(rec: FetchRecord) -> int:
    return rec.uid or 0


__all__ = ["DELETED_FOLDER", "NO_EXPUNGE", "GraphConnectionSettings", "GraphSession"]
