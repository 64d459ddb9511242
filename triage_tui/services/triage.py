"""The triage service: the only way the code base reads a listing or changes the mailbox.

Reads use one long-lived EXAMINE connection. Every write:

1. is refused in read-only mode (Dovecot answers OK to a STORE under EXAMINE and does nothing,
   so the guard must be ours, and it is checked before any connection is opened for writing);
2. opens its own SELECT connection and refuses if UIDVALIDITY differs from the one the UIDs
   were listed under;
3. narrows the requested UIDs to those the server says still need the change (so the journal
   records exactly what changed, and undo reverts exactly that);
4. sends compressed, split, pipelined commands (CONDSTORE ``UNCHANGEDSINCE`` when offered, so a
   concurrent mail_room's change is not overwritten);
5. writes the audit journal before, during and after.
"""

from __future__ import annotations

import builtins
import gc
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from triage_tui.domain import uidset
from triage_tui.domain.analysis import AnalysisConfig, build_message
from triage_tui.domain.classify import mark_duplicates
from triage_tui.domain.model import LIST_HEADER_FIELDS, TRIAGE_KEYWORD, Message, View
from triage_tui.domain.redact import mask_host
from triage_tui.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    ConnectionLost,
    OperationFailed,
    Refused,
    UidValidityChanged,
)
from triage_tui.services.cache import RECENT, HeaderCache, Rebuilder, Token, split_flags
from triage_tui.services.guard import MutationGuard
from triage_tui.services.imap import (
    ConnectionSettings,
    ImapSession,
    Limits,
    MailboxInfo,
    StoreResult,
    TlsInfo,
)
from triage_tui.services.imapwire import FetchRecord, Response, parse_fetch
from triage_tui.services.journal import AuditJournal, JournalWriteFailed
from triage_tui.services.plan_types import (
    _NEEDS,
    LEFT_ALREADY,
    LEFT_CHANGED,
    LEFT_GONE,
    LEFT_NO_MODSEQ_DELETED,
    LEFT_UNCONFIRMED,
    MAX_MODSEQ,
    NO_KEYWORDS_NOTE,
    NO_KEYWORDS_SHORT,
    REINGEST_WARNING,
    Counts,
    OperationStopped,
    OpResult,
    Peek,
    Plan,
    Progress,
    RetryPolicy,
    _cut,
    journal_ignored,
    left_alone_json,
    left_alone_lines,
    merge_left_alone,
    older_than,
)
from triage_tui.services.undo import MAX_UNDO_GROUPS, DamagedRecord, UndoPlanning
from triage_tui.services.undo import _merged as _merged  # re-exported (tests/unit/test_journal.py)

# The service's public names, imported from here by the commands, the TUI, tests and benchmarks
# (the value types live in plan_types, the undo, listing and execution in their own modules).
__all__ = [
    "FIRST_PASS_ITEMS", "LEFT_ALREADY", "LEFT_CHANGED", "LEFT_GONE", "LEFT_NO_MODSEQ_DELETED", "LEFT_UNCONFIRMED",
    "LIGHT_ITEMS", "LIST_ITEMS", "NO_KEYWORDS_NOTE", "NO_KEYWORDS_SHORT", "PEEK_ITEMS", "REINGEST_WARNING",
    "MAX_UNDO_GROUPS", "Counts", "DamagedRecord", "OperationStopped", "OpResult", "Peek", "Plan", "Progress",
    "RetryPolicy", "TriageService",
    "journal_ignored", "left_alone_json", "left_alone_lines", "merge_left_alone", "older_than",
]

LIST_ITEMS = "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (" + " ".join(LIST_HEADER_FIELDS) + ")]"
# Received is the bulkiest field (several long lines per message) and GitLab consults it only when
# To, References, Delivered-To, X-Delivered-To, Envelope-To and X-Envelope-To carry no key: the
# first pass leaves it out and a second pass fetches it for the few messages that need it.
FIRST_PASS_ITEMS = LIST_ITEMS.replace(" RECEIVED", "")
_AFTER_RECEIVED = frozenset({"x-original-to", "x-forwarded-to", "cc"})
LIGHT_ITEMS = "UID FLAGS INTERNALDATE RFC822.SIZE"
PEEK_ITEMS = "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER]"

_PAST = {"mark-seen": "marked \\Seen", "mark-unseen": "marked unseen (\\Seen removed)", "expunge": "expunged"}
_FETCH_MODSEQ = re.compile(rb"^\* \d+ FETCH \((.*)\)\s*$", re.IGNORECASE | re.DOTALL)
_UID_ITEM = re.compile(rb"\bUID (\d+)", re.IGNORECASE)
_MODSEQ_ITEM = re.compile(rb"\bMODSEQ \((\d+)\)", re.IGNORECASE)


T = TypeVar("T")






class TriageService(UndoPlanning):
    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        read_only: bool,
        journal: AuditJournal | None = None,
        limits: Limits | None = None,
        analysis: AnalysisConfig | None = None,
        session_factory: Callable[[ConnectionSettings, Limits], ImapSession] = ImapSession.open,
        retry: RetryPolicy | None = None,
        on_reconnect: Callable[[str, int], None] | None = None,
        cache: HeaderCache | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        #: the persistent header cache of the listing path (None: every listing fetches headers)
        self.cache = cache
        self._cancel = threading.Event()
        self._stops: set[threading.Event] = set()  # one per running execution: cancel() sets them
        self.on_reconnect = on_reconnect
        self.settings = settings
        self.read_only = read_only
        self.journal = journal or AuditJournal()
        self.limits = limits or Limits()
        self.analysis = analysis or AnalysisConfig()
        self._factory = session_factory
        self._reader: ImapSession | None = None
        #: one connection for a one-shot change (the CLI's mark-seen): the mailbox is SELECTed
        #: once, read, planned and written on that connection (see :meth:`use_one_connection`)
        self._one_connection = False
        self._just_opened = False  # the reader's mailbox was opened and nothing read since
        self._lock = threading.RLock()
        self.guard = MutationGuard(read_only=read_only, journal=self.journal, context={
            "server": mask_host(settings.server), "user": settings.user, "mailbox": settings.mailbox})

    # -- connection -----------------------------------------------------------------------------

    @property
    def reader(self) -> ImapSession:
        with self._lock:
            if self._reader is None or self._reader.client is None:
                session = self._factory(self.settings, self.limits)
                if self._one_connection and not self.read_only:
                    session.select()
                else:
                    session.examine()
                self._reader = session
                self._just_opened = True
            return self._reader

    def connect(self) -> MailboxInfo:
        info = self.reader.mailbox
        assert info is not None
        return info

    def reconnect(self) -> MailboxInfo:
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        return self.connect()

    def refresh_mailbox(self) -> MailboxInfo:
        """Re-EXAMINE: picks up new UIDVALIDITY/EXISTS/HIGHESTMODSEQ."""
        return self.reader.examine()

    @property
    def tls(self) -> TlsInfo:
        return self.reader.tls

    @property
    def capabilities(self) -> frozenset[str]:
        return self.reader.capabilities

    def close(self) -> None:
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        if self.cache is not None:
            self.cache.close()  # reopened by the next listing, if any

    def abort(self) -> None:
        """Shut the read connection's socket now, from any thread, without waiting for the session
        lock (a listing in another thread then ends with ConnectionLost). For exits, after a
        polite ``close()`` did not finish in time."""
        reader = self._reader
        if reader is not None and reader.client is not None:
            try:
                reader.client.shutdown()
            except Exception:  # noqa: BLE001 - already broken is fine
                pass

    # -- reading ------------------------------------------------------------------------------

    def counts(self) -> Counts:
        return self._retrying("count", self._counts)

    def _counts(self) -> Counts:
        r = self.reader
        info = r.examine()
        unseen = r.search("UNSEEN")
        oldest = None
        if unseen:
            rec = next(iter(r.fetch_stream([unseen[0]], "UID INTERNALDATE")), [])
            oldest = rec[0].internaldate if rec else None
        journaled, refused = self._journal_ignored(info.uidvalidity)
        if journaled:
            ignored = len(self._view_uids(r, View.IGNORED, None, journaled))
            seen_stuck = len(self._view_uids(r, View.SEEN_STUCK, None, journaled))
        else:
            ignored, seen_stuck = r.count(View.IGNORED.search), r.count(View.SEEN_STUCK.search)
        return Counts(unseen=len(unseen), seen_stuck=seen_stuck, deleted=r.count("DELETED"),
                      exists=info.exists, oldest_unseen=oldest, uidvalidity=info.uidvalidity, ignored=ignored,
                      keyword_note=NO_KEYWORDS_NOTE if refused else None)

    def _journal_ignored(self, uidvalidity: int) -> tuple[set[int], bool]:
        """:func:`journal_ignored` for this mailbox (an unreadable journal counts as empty)."""
        s = self.settings
        server = self.guard.context.get("server", s.server)
        try:
            return journal_ignored(self.journal.records(), server, s.user, s.mailbox, uidvalidity)
        except OSError:
            return set(), False

    def keyword_note(self) -> str | None:
        """NO_KEYWORDS_NOTE when the journal says this mailbox refused our keyword, else None."""
        info = self.reader.mailbox
        if info is None or not self._journal_ignored(info.uidvalidity)[1]:
            return None
        return NO_KEYWORDS_NOTE

    @staticmethod
    def _view_uids(r: ImapSession, view: View, narrow: str | None, journaled: set[int]) -> builtins.list[int]:
        """A view's UIDs; ignored and seen-stuck also count the journal's stand-in for our keyword."""
        criteria = f"{view.search} {narrow}" if narrow else view.search
        found = r.search(criteria)
        if not journaled or view not in (View.IGNORED, View.SEEN_STUCK):
            return found
        if view == View.SEEN_STUCK:
            return [u for u in found if u not in journaled]
        seen = r.search(f"SEEN UNDELETED {narrow}" if narrow else "SEEN UNDELETED")
        return sorted(set(found) | {u for u in seen if u in journaled})

    def search(self, view: View | str, narrow: str | None = None) -> tuple[int, builtins.list[int]]:
        """(UIDVALIDITY, UIDs) of a view, from a fresh EXAMINE. ``narrow`` is an extra SEARCH
        criterion ANDed with the view's (a filter's pushdown: a superset of its matches)."""
        return self._retrying("search", lambda: self._search(view, narrow))

    def _search(self, view: View | str, narrow: str | None = None) -> tuple[int, builtins.list[int]]:
        r = self.reader
        info = r.examine()
        if isinstance(view, str) and view in View._value2member_map_:
            view = View(view)
        if isinstance(view, View):
            journaled = self._journal_ignored(info.uidvalidity)[0] if view in (View.IGNORED, View.SEEN_STUCK) \
                else set()
            return info.uidvalidity, self._view_uids(r, view, narrow, journaled)
        criteria = f"{view} {narrow}" if narrow else str(view)
        return info.uidvalidity, r.search(criteria)

    def iter_list(self, view: View = View.UNSEEN, *, headers: bool = True, uids: list[int] | None = None,
                  now: datetime | None = None, narrow: str | None = None) -> Iterator[list[Message]]:
        """Stream the view as batches of :class:`Message` while chunks arrive. ``narrow``: see
        :meth:`search`; callers still apply their filter to what comes back."""
        uidvalidity, found = self.search(view, narrow)
        if uids is not None:
            wanted = set(uids)
            found = [u for u in found if u in wanted]
        yield from self.iter_messages(uidvalidity, found, headers=headers, now=now)

    def iter_messages(self, uidvalidity: int, uids: list[int], *, headers: bool = True,
                      now: datetime | None = None) -> Iterator[list[Message]]:
        """Fetch and build messages chunk by chunk.

        With an address template, the first pass leaves out Received (the bulkiest field); the
        few messages whose key GitLab could find in Received are held back and fetched again with
        it once the first pass is done (one connection carries one pipeline at a time), so they
        arrive in a last batch."""
        now = now or datetime.now(UTC)
        cfg = self.analysis
        cache = self.cache if headers and self.cache is not None and self.cache.usable else None
        modseq: int | None = None
        token = None
        if cache is not None:
            uids, warm, modseq, token = self._warm(cache, uidvalidity, uids, now)
            step = max(1, self.limits.max_count)
            for i in range(0, len(warm), step):
                yield warm[i:i + step]
            if token is None or not cache.usable:
                cache = None
        pending: list[tuple[int, str, tuple[Any, ...]]] = []  # new rows for the cache
        two_pass = headers and bool(cfg.address)
        items = (FIRST_PASS_ITEMS if two_pass else LIST_ITEMS) if headers else LIGHT_ITEMS
        held: list[int] = []
        try:
            for records in self._resumable_fetch(uidvalidity, uids, items):
                messages = self._build(records, uidvalidity, cfg, now)
                if two_pass:
                    ready = []
                    for m in messages:
                        if m.matched_header is None or m.matched_header.lower() in _AFTER_RECEIVED:
                            held.append(m.uid)
                        else:
                            ready.append(m)
                    messages = ready
                if messages:
                    if cache is not None:  # encoded now: the caller may change them afterwards
                        pending.extend(cache.rows_of(messages, uidvalidity))
                    yield messages
            if held:
                for records in self._resumable_fetch(uidvalidity, held, LIST_ITEMS):
                    messages = self._build(records, uidvalidity, cfg, now)
                    if cache is not None:
                        pending.extend(cache.rows_of(messages, uidvalidity))
                    yield messages
        finally:
            if cache is not None and token is not None:  # what arrived, also when the listing stops early
                cache.commit(token, rows=pending, modseq=modseq)

    def _warm(self, cache: HeaderCache, uidvalidity: int, uids: list[int],
              now: datetime) -> tuple[list[int], list[Message], int | None, Token | None]:
        """The cached part of a listing: ``(UIDs still to fetch, rows from the cache, the
        HIGHESTMODSEQ their flags are known at)``. Flags come from the server: with CONDSTORE,
        what changed since the stored HIGHESTMODSEQ; else a FLAGS fetch of every cached UID
        (which also finds the expunged ones)."""
        info = self.reader.mailbox  # as the SEARCH that found ``uids`` saw it
        if info is None or info.uidvalidity != uidvalidity:
            return uids, [], None, None
        h0 = info.highestmodseq if "CONDSTORE" in self.capabilities else None
        if h0 is not None and not 0 < h0 <= MAX_MODSEQ:
            h0 = None  # an absurd HIGHESTMODSEQ: refresh every cached UID's flags instead
        loaded = cache.load(uidvalidity, h0, uids)
        if loaded is None:
            return uids, [], None, None
        rows, since = loaded.rows, loaded.since
        if not rows:  # nothing cached: the rows this listing adds are known at h0
            return uids, [], h0, loaded.token
        if not loaded.values:  # none of these is cached (new mail only): leave the rest as it is
            kept = loaded.token.modseq
            return uids, [], kept if isinstance(kept, int) else None, loaded.token
        wanted = set(uids)
        try:
            if since is not None:
                changed = self._retrying("listing", lambda: self._changed_since(uidvalidity, since))
                extra = [u for u in rows if u not in wanted]
                alive = set(self._retrying("listing", lambda: self._alive(uidvalidity, extra))) if extra else set()
                gone = [u for u in extra if u not in alive]
            else:
                changed, gone = self._retrying("listing", lambda: self._flags_of(uidvalidity, sorted(rows)))
        except OperationFailed as e:  # a server refusing CHANGEDSINCE: list without the cache
            cache._give_up(e)
            return uids, [], None, None
        recent = set(self._retrying("listing", lambda: self.reader.search("RECENT")))
        gone_set = set(gone)
        stored = loaded.values
        rebuild = Rebuilder(uidvalidity, self.analysis.stale_after, now)
        today = int(time.time() // 86_400)
        out: list[Message] = []
        misses: list[int] = []
        used: list[int] = []
        split: dict[str, tuple[str, ...]] = {}  # flags text -> tuple: a few distinct sets
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for u in uids:
                v = stored.get(u)
                if v is None:
                    misses.append(u)
                    continue
                if u in gone_set:
                    continue  # expunged since the SEARCH: a cold listing would not show it either
                row = rows[u]
                fresh = changed.get(u)
                if fresh is not None:
                    flags = tuple(f for f in fresh if f != RECENT)
                else:
                    flags = split.get(row[0])  # type: ignore[assignment]
                    if flags is None:
                        flags = split[row[0]] = split_flags(row[0])
                if recent and u in recent:
                    flags += (RECENT,)  # where the server puts it: last
                try:
                    m = rebuild(u, flags, v)
                except Exception:  # noqa: BLE001 - a damaged row: fetched again
                    misses.append(u)
                    continue
                out.append(m)
                if row[1] != today:
                    used.append(u)
        finally:
            if gc_was_enabled:
                gc.enable()
        token = cache.commit(loaded.token, flags={u: f for u, f in changed.items() if u in rows}, used=used,
                             gone=gone, modseq=h0)
        if token is None:  # the refresh could not be written: list without the cache
            return uids, [], None, None
        return misses, out, h0, token

    def _changed_since(self, uidvalidity: int, since: int) -> dict[int, tuple[str, ...]]:
        """``UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE since)``: the flags of every message changed
        since (RFC 7162), in one round trip."""
        r = self.reader
        assert r.mailbox is not None
        self._check_uidvalidity(uidvalidity, r.mailbox.uidvalidity)
        with r.lock:
            if r.wire is None:
                raise ConnectionLost("not connected")
            untagged, done = r.wire.command(f"UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE {int(since)})".encode("ascii"))
        if not done.ok:
            raise OperationFailed(f"FETCH CHANGEDSINCE failed: {done}")
        out: dict[int, tuple[str, ...]] = {}
        for resp in untagged:
            rec = parse_fetch(resp)
            if rec is not None and rec.uid is not None and rec.flags is not None:
                out[rec.uid] = rec.flags
        return out

    def _flags_of(self, uidvalidity: int, uids: list[int]) -> tuple[dict[int, tuple[str, ...]], list[int]]:
        """The flags of ``uids`` (chunked, pipelined) and those no longer in the mailbox."""
        r = self.reader
        assert r.mailbox is not None
        self._check_uidvalidity(uidvalidity, r.mailbox.uidvalidity)
        out: dict[int, tuple[str, ...]] = {}
        for batch in r.fetch_stream(uids, "UID FLAGS"):
            for rec in batch:
                if rec.uid is not None and rec.flags is not None:
                    out[rec.uid] = rec.flags
        return out, [u for u in uids if u not in out]

    def _alive(self, uidvalidity: int, uids: list[int]) -> list[int]:
        r = self.reader
        assert r.mailbox is not None
        self._check_uidvalidity(uidvalidity, r.mailbox.uidvalidity)
        return r.search_within(uids, "ALL")

    def _resumable_fetch(self, uidvalidity: int, uids: list[int], items: str) -> Iterator[list[FetchRecord]]:
        """``fetch_stream`` that survives a lost connection: reconnect (backoff), check
        UIDVALIDITY, and go on with the UIDs not received yet."""
        remaining = uids
        received: set[int] = set()
        attempt = 0
        while True:
            try:
                for batch in self.reader.fetch_stream(remaining, items):
                    received.update(rec.uid for rec in batch if rec.uid is not None)
                    yield batch
                return
            except ConnectionFailed as e:
                attempt = self._backoff(e, attempt, "listing")
                try:
                    info = self.reader.mailbox
                except ConnectionFailed:
                    continue  # the next round counts another attempt
                assert info is not None
                self._check_uidvalidity(uidvalidity, info.uidvalidity)
                remaining = [u for u in remaining if u not in received]

    def _build(self, batch: list[FetchRecord], uidvalidity: int, cfg: AnalysisConfig, now: datetime) -> list[Message]:
        # a batch allocates ~50 small objects per message, none cyclic: collecting the young
        # generation over and over costs a third of the parse time for nothing
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return [self._to_message(rec, uidvalidity, cfg, now) for rec in batch]
        finally:
            if gc_was_enabled:
                gc.enable()

    @staticmethod
    def _to_message(rec: FetchRecord, uidvalidity: int, cfg: AnalysisConfig, now: datetime) -> Message:
        assert rec.uid is not None
        return build_message(rec.uid, uidvalidity, rec.flags or (), rec.internaldate, rec.size or 0,
                             rec.body, cfg, now)

    def list(self, view: View = View.UNSEEN, **kw: Any) -> list[Message]:
        """The whole view, with cross-message verdicts (duplicate Message-IDs) applied."""
        out: list[Message] = []
        for batch in self.iter_list(view, **kw):
            out.extend(batch)
        mark_duplicates(out)
        return out

    def peek(self, uid: int) -> Peek:
        return self._retrying("peek", lambda: self._peek(uid))

    def _peek(self, uid: int) -> Peek:
        r = self.reader
        info = r.examine()
        rec = r.fetch_header(uid)
        if rec is None:
            raise OperationFailed(f"UID {uid} is not in {self.settings.mailbox} (UIDVALIDITY {info.uidvalidity})")
        return Peek(uid=uid, uidvalidity=info.uidvalidity, flags=rec.flags or (), internaldate=rec.internaldate,
                    size=rec.size or 0, header=rec.body or b"")

    # -- planning (read connection; allowed in read-only mode) --------------------------------

    def _narrow(self, session: ImapSession, uids: Iterable[int], criteria: str) -> builtins.list[int]:
        """Which of ``uids`` match ``criteria`` now (one SEARCH per 8 KB piece of the set)."""
        return session.search_within(uids, criteria)

    def use_one_connection(self) -> None:
        """For a one-shot change (call before anything is read): the first connection SELECTs
        the mailbox, the selection and plan are read on it, and :meth:`execute` writes on it
        (the mailbox is opened once, not three times: each open of a large maildir costs a
        directory scan). Reads never change state (FETCH is BODY.PEEK or flags/dates only);
        the write is still refused in read-only mode (which keeps EXAMINE), journaled and
        guarded with ``UNCHANGEDSINCE`` the HIGHESTMODSEQ of that one SELECT, which predates
        the selection, so anything another client changed since is left alone."""
        with self._lock:
            self._one_connection = True
            r = self._reader
            if r is not None and r.client is not None and r.mailbox is not None and r.mailbox.readonly \
                    and not self.read_only:
                r.select()  # opened read-only already: once more, for writing
                self._just_opened = True

    def select_view(self, criteria: str) -> tuple[int, builtins.list[int]]:
        """(UIDVALIDITY, UIDs matching ``criteria``) on a current view of the mailbox: a
        connection opened for this call is not opened again, an older one is re-opened."""
        def run() -> tuple[int, builtins.list[int]]:
            with self._lock:
                r = self.reader
                fresh, self._just_opened = self._just_opened, False
                info = r.mailbox if fresh and r.mailbox is not None else r._open(
                    self.settings.mailbox, readonly=r.mailbox is None or r.mailbox.readonly)
                return info.uidvalidity, r.search(criteria)

        return self._retrying("search", run)

    def search_uids(self, uidvalidity: int, criteria: str, *,
                    within: Iterable[int] | None = None) -> builtins.list[int]:
        """UIDs matching ``criteria`` now, on the read connection as it is (no other EXAMINE);
        ``within``: only among these. Refused if UIDVALIDITY is not ``uidvalidity``."""
        pool = None if within is None else builtins.list(within)

        def run() -> builtins.list[int]:
            r = self.reader
            assert r.mailbox is not None
            self._check_uidvalidity(uidvalidity, r.mailbox.uidvalidity)
            if pool is None:
                return r.search(criteria)
            return self._narrow(r, pool, criteria) if pool else []

        return self._retrying("search", run)

    def internaldates(self, uidvalidity: int,
                      uids: builtins.list[int]) -> Iterator[builtins.list[tuple[int, datetime | None]]]:
        """``(uid, INTERNALDATE)`` of each of ``uids`` in batches: a ``UID INTERNALDATE`` FETCH
        only (age selection where the server can not search by age)."""
        for records in self._resumable_fetch(uidvalidity, uids, "UID INTERNALDATE"):
            yield [(rec.uid, rec.internaldate) for rec in records if rec.uid is not None]

    def plan_flags(self, action: str, uidvalidity: int, uids: Iterable[int], *, current: bool = False) -> Plan:
        """``current``: the UIDs were just found in the state the action changes (``UNSEEN``
        for mark-seen) on the open connection, so they are not searched again here (the write
        narrows them once more on its connection right before it stores)."""
        requested = sorted(set(uids))
        return self._retrying("plan", lambda: self._plan_flags(action, uidvalidity, requested, current))

    def _plan_flags(self, action: str, uidvalidity: int, requested: builtins.list[int],
                    current: bool = False) -> Plan:
        if action not in _NEEDS:
            raise ValueError(action)
        if current and self._reader is not None and self._reader.mailbox is not None:
            self._check_uidvalidity(uidvalidity, self._reader.mailbox.uidvalidity)
            return Plan(action=action, uidvalidity=uidvalidity, uids=requested, requested=len(requested),
                        limits=self.limits)
        info = self.reader.examine()
        self._check_uidvalidity(uidvalidity, info.uidvalidity)
        needs = self._narrow(self.reader, requested, _NEEDS[action][0]) if requested else []
        return Plan(action=action, uidvalidity=uidvalidity, uids=needs, requested=len(requested),
                    skipped=len(requested) - len(needs), limits=self.limits)

    def plan_expunge(self, uidvalidity: int, uids: Iterable[int] | None, *, all_deleted: bool = False) -> Plan:
        wanted = None if uids is None else sorted(set(uids))
        return self._retrying("plan", lambda: self._plan_expunge(uidvalidity, wanted, all_deleted))

    def _plan_expunge(self, uidvalidity: int, uids: builtins.list[int] | None, all_deleted: bool) -> Plan:
        info = self.reader.examine()
        self._check_uidvalidity(uidvalidity, info.uidvalidity)
        deleted = self.reader.search("DELETED")
        requested = deleted if uids is None else sorted(set(uids))
        ds = set(deleted)
        targets = [u for u in requested if u in ds]
        plan = Plan(action="expunge", uidvalidity=uidvalidity, uids=deleted if all_deleted else targets,
                    requested=len(requested), skipped=len(requested) - len(targets), all_deleted=all_deleted,
                    limits=self.limits)
        if all_deleted:
            plan.others_deleted = len(ds - set(targets))
        return plan

    @staticmethod
    def _check_uidvalidity(expected: int, actual: int) -> None:
        if expected != actual:
            raise UidValidityChanged(
                f"UIDVALIDITY changed from {expected} to {actual}: the mailbox was recreated or reset, "
                "so the listed UIDs name other messages now; list again before acting")

    # -- executing (the only writers) ---------------------------------------------------------

    def _open_writer(self, uidvalidity: int, reconnecting: bool = False) -> ImapSession:
        """A fresh SELECT connection, refused if UIDVALIDITY moved. Retries connection losses."""
        def attempt() -> ImapSession:
            w = self._factory(self.settings, self.limits)
            try:
                info = w.select()
                self._check_uidvalidity(uidvalidity, info.uidvalidity)
            except BaseException:
                w.close()
                raise
            return w

        return self._retrying("open a write connection", attempt, reconnecting=reconnecting)

    def cancel(self) -> None:
        """Interrupt a running bulk change from any thread (SIGTERM, SIGHUP, the UI quitting):
        nothing more is sent, what is in flight completes, the journal records the operation as
        ``interrupted`` with exactly what changed and what was never sent."""
        self._cancel.set()
        for stop in list(self._stops):
            stop.set()

    def execute(self, plan: Plan, progress: Progress | None = None) -> OpResult:
        """Carry out a plan. Read-only mode refuses before anything is opened for writing."""
        action = "undo" if plan.undoes else plan.action
        self.guard.refuse_if_read_only(action)
        if self._cancel.is_set():
            raise Refused(f"{action} not started: the session is shutting down")
        w = self._take_selected_reader(plan.uidvalidity) or self._open_writer(plan.uidvalidity)
        try:
            if plan.action == "expunge" and plan.all_deleted:
                return self._execute_expunge_all(w, plan, progress)
            return self._execute_resumable(w, plan, progress)
        finally:
            self._close_quietly(w)

    def _take_selected_reader(self, uidvalidity: int) -> ImapSession | None:
        """With :meth:`use_one_connection`: the open SELECT connection, handed over to the write
        (it is closed after it, and the next read opens a new one), refused if UIDVALIDITY moved.
        Else None (the write opens its own connection)."""
        with self._lock:
            r = self._reader
            if (not self._one_connection or self.read_only or r is None or r.client is None
                    or r.mailbox is None or r.mailbox.readonly):
                return None
            self._reader = None
            self._one_connection = False
        try:
            self._check_uidvalidity(uidvalidity, r.mailbox.uidvalidity)
        except BaseException:
            self._close_quietly(r)
            raise
        return r

    @staticmethod
    def _close_quietly(w: ImapSession) -> None:
        try:
            w.close()
        except Exception:  # noqa: BLE001 - logging out of a broken connection
            w._drop()

    @staticmethod
    def _next_batch(w: ImapSession, pending: builtins.list[int]) -> tuple[builtins.list[int], builtins.list[int]]:
        """The UIDs of the next ``window`` commands (one pipeline's worth), and the rest."""
        window = max(1, w.limits.window)
        k = window * max(1, w.max_count)  # no piece holds more: the rest is not looked at
        head = pending[:k]
        batch: list[int] = []
        for i, (_, members) in enumerate(uidset.split(head, max_bytes=w.max_bytes, max_count=w.max_count)):
            if i >= window:
                break
            batch.extend(members)
        taken = set(batch)
        return batch, [u for u in head if u not in taken] + pending[k:]

    def _execute_resumable(self, w: ImapSession, plan: Plan, progress: Progress | None) -> OpResult:
        """STORE or UID EXPUNGE in chunks, journaled ahead; a lost connection is re-opened and
        the rest resumed.

        Write-ahead: before each batch of commands (one pipeline window) an ``intent`` record
        names its UIDs; each answered command gets a ``progress`` record (``done``, and the MODSEQ
        the server gave the change, which undo uses). If the journal can not be written, nothing
        more is sent: what is in flight completes, and :class:`OperationStopped` says exactly what
        changed. After a reconnect the remaining UIDs are narrowed again on the server: those a
        lost in-flight command already changed no longer need it (reported as ``in_flight``), so
        nothing is done twice and nothing is missed.
        """
        undo = bool(plan.undoes)
        if plan.action == "expunge":
            criteria, flag, add = "DELETED", "", True
        else:
            criteria, flag, add = _NEEDS[plan.action]
        # undo restores what is still as our change left it (a \\Deleted message too); the
        # server's UNCHANGEDSINCE then leaves alone what another client changed since
        state = ("SEEN" if plan.action == "mark-unseen" else "UNSEEN") if undo else criteria
        action = "undo" if undo else plan.action
        extra: dict[str, Any] = {"undoes": plan.undoes, "reverse": plan.action} if undo else {}
        assert w.mailbox is not None
        w0 = w
        condstore = plan.action != "expunge" and "CONDSTORE" in w.capabilities
        # Our keyword goes with \\Seen, in the same STORE, where the mailbox allows keywords
        # (PERMANENTFLAGS of this SELECT); mark-unseen and undo take it off with \\Seen.
        keyword = plan.action != "expunge" and bool(w.mailbox.keywords_allowed)
        both = f"{flag} {TRIAGE_KEYWORD}" if keyword else flag
        if plan.action != "expunge":
            extra["keyword"] = TRIAGE_KEYWORD if keyword else None
            if not keyword:
                extra["keyword_refused"] = "PERMANENTFLAGS has no \\*"
        # (uids, criteria, modseq, flags): a given modseq is our change's (undo); None means the
        # mailbox's HIGHESTMODSEQ at the start, renewed after a reconnect
        segments: list[tuple[list[int], str, int | None, str]] = []
        if undo and plan.groups:
            regain = set(plan.restore_keyword) if keyword and plan.action == "mark-seen" else set()
            for g, m in plan.groups:
                crit = state if m is not None else criteria
                found = self._narrow(w, g, crit)
                if plan.action == "mark-seen":
                    # undoing a mark-unseen: the keyword comes back only where it was before
                    with_kw = [u for u in found if u in regain]
                    without = [u for u in found if u not in regain]
                    segments += [(part, crit, m if condstore else None, f)
                                 for part, f in ((with_kw, both), (without, flag)) if part]
                else:
                    segments.append((found, crit, m if condstore else None, both))
        else:
            segments.append((self._narrow(w, plan.uids, criteria) if plan.uids else [], criteria, None, both))
        targets = [u for seg, _, _, _ in segments for u in seg]
        if plan.action == "mark-unseen" and not undo and keyword and targets:
            # which of them were ignored by decision: an undo gives the keyword back to exactly these
            extra["had_keyword"] = uidset.compress(self._narrow(w, targets, f"KEYWORD {TRIAGE_KEYWORD}"))
        planned_set = set(plan.uids)
        modseqs: dict[int, int] = {}
        stop = threading.Event()
        if self._cancel.is_set():
            stop.set()
        journal_error: list[JournalWriteFailed] = []
        result = OpResult(action=action, op_id="", uidvalidity=w.mailbox.uidvalidity,
                          vanished_or_done=len(plan.uids) - len(targets), requested=plan.requested)
        done: set[int] = set()
        gone_at_start = sorted(planned_set - set(targets))
        writer = [w]  # the current write connection (a reconnect replaces it)
        self._stops.add(stop)
        try:
            with self.guard.operation(action, uidvalidity=w.mailbox.uidvalidity, planned=len(plan.uids),
                                      targets=uidset.compress(targets), count=len(targets),
                                      unchangedsince=w.mailbox.highestmodseq if condstore else None,
                                      **extra) as op:
                result.op_id = op.id

                def on_untagged(resp: Response) -> None:
                    m = _FETCH_MODSEQ.match(resp.first)
                    if m:
                        u, ms = _UID_ITEM.search(m.group(1)), _MODSEQ_ITEM.search(m.group(1))
                        if u and ms:
                            modseqs[int(u.group(1))] = int(ms.group(1))

                def chunk_done(uids: list[int]) -> None:
                    done.update(uids)
                    if not journal_error:
                        seqs = [modseqs.pop(u) for u in uids if u in modseqs]
                        try:
                            self.guard.progress(op, done=uidset.compress(uids), count=len(uids),
                                                **({"modseq": max(seqs)} if seqs else {}))
                        except JournalWriteFailed as e:
                            journal_error.append(e)
                            stop.set()  # nothing more goes out; what is in flight completes
                    if progress:
                        progress(len(done), len(targets))

                attempt = 0
                for index, (seg, seg_criteria, fixed_modseq, seg_flags) in enumerate(segments):
                    w = writer[0]
                    modseq = fixed_modseq if fixed_modseq is not None else (
                        w.mailbox.highestmodseq if condstore and w.mailbox is not None else None)
                    pending = seg
                    while pending:
                        try:
                            while pending:
                                if stop.is_set():
                                    result.interrupted.extend(pending)
                                    pending = []
                                    break
                                batch, after = self._next_batch(w, pending)
                                try:
                                    self.guard.journal.append({"phase": "intent", "op": op.id, "action": action,
                                                               **self.guard.context, "uids": uidset.compress(batch),
                                                               "count": len(batch)})
                                except JournalWriteFailed as e:
                                    journal_error.append(e)
                                    stop.set()
                                    result.interrupted.extend(pending)
                                    pending = []
                                    break
                                if plan.action == "expunge":
                                    r = w._uid_expunge(batch, progress=chunk_done, stop=stop)
                                else:
                                    r = w._store(batch, seg_flags, add, unchangedsince=modseq, progress=chunk_done,
                                                 stop=stop, on_untagged=on_untagged if condstore else None)
                                result.interrupted.extend(r.unsent)
                                result.skipped_concurrent.extend(r.modified)
                                result.failed.extend(r.failed)
                                result.commands += r.commands
                                pending = after
                        except ConnectionLost as e:
                            if self._cancel.is_set() or journal_error:
                                # shutting down, or the journal failed: no reconnect (the guard ends
                                # this op as an error; a journal failure says what changed below)
                                if journal_error:
                                    partial = e.partial if isinstance(e.partial, StoreResult) else None
                                    unanswered = set(partial.unanswered) if partial else set()
                                    result.in_flight.extend(u for u in pending if u in unanswered)
                                    result.interrupted.extend(u for u in pending if u not in unanswered
                                                              and u not in done)
                                    pending = []
                                    break
                                raise
                            w, pending, attempt, renewed = self._resume(
                                w, plan, op, action, e, pending, done, result, attempt, seg_criteria, condstore)
                            writer[0] = w
                            if fixed_modseq is None:
                                modseq = renewed
                    if journal_error or stop.is_set():
                        result.interrupted.extend(u for g, _, _, _ in segments[index + 1:] for u in g)
                        break
                result.changed = sorted(done | set(result.in_flight))
                result.skipped_concurrent.sort()
                result.interrupted = sorted(set(result.interrupted))
                if undo:
                    result.left_alone = merge_left_alone(
                        plan.left_alone, [(LEFT_CHANGED, result.skipped_concurrent),
                                          (LEFT_CHANGED + " (or expunged)", gone_at_start)])
                op.outcome = {"changed": uidset.compress(result.changed), "changed_count": len(result.changed),
                              "skipped_concurrent": uidset.compress(result.skipped_concurrent),
                              "in_flight": uidset.compress(result.in_flight), "reconnects": attempt,
                              "failed": uidset.compress(u for us, _ in result.failed for u in us),
                              "commands": result.commands, "interrupted": uidset.compress(result.interrupted)}
                if undo:
                    op.outcome["left_alone"] = left_alone_json(result.left_alone)
                if journal_error:
                    op.outcome["journal_error"] = journal_error[0].reason
                    op.result = "stopped"
                    raise self._stopped(journal_error[0], plan, action, result, targets)
                if result.interrupted:
                    op.result = "interrupted"
                else:
                    op.result = "ok" if not result.failed else ("partial" if result.changed else "failed")
        except JournalWriteFailed as e:
            if isinstance(e, OperationStopped):
                raise
            # the begin or the end record could not be written
            result.changed = sorted(done | set(result.in_flight))
            raise self._stopped(e, plan, action, result, targets, at_end=bool(result.op_id and done)) from e
        finally:
            self._stops.discard(stop)
            if writer[0] is not w0:
                self._close_quietly(writer[0])  # execute() closes the first one
        return result

    def _stopped(self, e: JournalWriteFailed, plan: Plan, action: str, result: OpResult,
                 targets: builtins.list[int], at_end: bool = False) -> OperationStopped:
        """The one line after a journal failure: exactly what changed, and that nothing more was sent."""
        verb = _PAST[plan.action] + (" again (undo)" if plan.undoes else "")
        n, total = len(result.changed), len(targets)
        head = f"stopped: the audit journal could not be written ({e.reason})"
        if at_end and n == total and not result.interrupted:
            text = (f"{head} after the change: all {n:,} message(s) were {verb} (UIDs {_cut(result.changed)}); "
                    "the journal lacks the end record (undo still works from its chunk records)")
        elif n == 0 and not result.in_flight:
            text = f"{head}; nothing was sent, no message was changed"
        else:
            text = f"{head}; {n:,} of {total:,} message(s) were {verb} (UIDs {_cut(result.changed)})"
            if result.in_flight:
                text += f", {len(result.in_flight):,} of them by commands whose answer was lost"
            text += ", nothing else was sent"
        return OperationStopped(e.reason, text, result)

    def _resume(self, w: ImapSession, plan: Plan, op: Any, action: str, e: ConnectionLost,
                pending: builtins.list[int], done: set[int], result: OpResult, attempt: int, criteria: str,
                condstore: bool) -> tuple[ImapSession, builtins.list[int], int, int | None]:
        """After a lost connection: reconnect (backoff), find out on the server which of
        ``pending`` still need the change, and journal what a lost in-flight command did (with
        the MODSEQ at the reconnect, an upper bound of that change's). Returns the new write
        connection, the UIDs still to do, the attempt count and the renewed HIGHESTMODSEQ."""
        partial = e.partial if isinstance(e.partial, StoreResult) else None
        if partial is not None:
            # answered before the loss: a UID another client changed (CONDSTORE MODIFIED) is
            # theirs, and must not come back below as our "in flight"
            result.skipped_concurrent.extend(partial.modified)
            result.failed.extend(partial.failed)
            result.commands += partial.commands
        attempt += 1
        if attempt > self.retry.attempts:
            raise e
        delay = self.retry.delay(attempt)
        self.guard.progress(op, event="reconnect", attempt=attempt, error=str(e), done_so_far=len(done),
                            skipped_concurrent=uidset.compress(partial.modified if partial else []))
        self._notify(f"{action}: connection lost ({e}); reconnecting in {delay:.1f} s", attempt)
        settled = done | set(result.skipped_concurrent) | {u for us, _ in result.failed for u in us}
        rest = [u for u in pending if u not in settled]
        while True:
            w._drop()
            time.sleep(delay)
            w = self._open_writer(plan.uidvalidity, reconnecting=True)  # refuses if UIDVALIDITY moved
            try:
                still = self._narrow(w, rest, criteria)
                break
            except ConnectionLost as again:
                # lost again while finding out where we are (a flapping link): nothing was sent
                # on this connection, so reconnect and ask again
                attempt += 1
                if attempt > self.retry.attempts:
                    raise
                delay = self.retry.delay(attempt)
                self.guard.progress(op, event="reconnect", attempt=attempt, error=str(again),
                                    done_so_far=len(done))
                self._notify(f"{action}: connection lost again ({again}); reconnecting in {delay:.1f} s", attempt)
        stillset: set[int] = set(still)
        in_flight = [u for u in rest if u not in stillset]
        theirs: list[int] = []
        if partial is not None:
            # only a command that went out unanswered can have changed a UID for us; the others
            # were changed by someone else (mail_room) while we reconnected
            sent = set(partial.unanswered)
            theirs = [u for u in in_flight if u not in sent]
            in_flight = [u for u in in_flight if u in sent]
            result.vanished_or_done += len(theirs)
        new_modseq = w.mailbox.highestmodseq if condstore and w.mailbox is not None else None
        if in_flight or theirs:
            result.in_flight.extend(in_flight)
            self.guard.progress(op, event="resumed", in_flight=uidset.compress(in_flight),
                                done_by_others=uidset.compress(theirs), remaining=len(still),
                                **({"modseq": new_modseq} if new_modseq is not None and in_flight else {}))
        return w, still, attempt, new_modseq

    def _execute_expunge_all(self, w: ImapSession, plan: Plan, progress: Progress | None) -> OpResult:
        """Plain EXPUNGE, re-planned right before it goes: if more messages are \\Deleted now
        than the plan (and the count the operator typed) said, refuse, nothing expunged."""
        assert w.mailbox is not None
        deleted_now = w.search("DELETED")
        grew = sorted(set(deleted_now) - set(plan.uids))
        if grew:
            raise Refused(f"refused: {len(grew):,} more message(s) were flagged \\Deleted since the plan "
                          f"(UIDs {_cut(grew)}), so a plain EXPUNGE would remove {len(deleted_now):,}, not the "
                          f"{plan.count:,} you confirmed; nothing was expunged (run expunge again to see the new plan)")
        with self.guard.operation("expunge-all-deleted", uidvalidity=w.mailbox.uidvalidity,
                                  targets=uidset.compress(deleted_now), count=len(deleted_now),
                                  planned=len(plan.uids)) as op:
            removed = w._expunge_all()
            result = OpResult(action="expunge", op_id=op.id, uidvalidity=w.mailbox.uidvalidity,
                              changed=deleted_now, commands=1)
            op.outcome = {"removed_count": removed}
            if progress:
                progress(len(deleted_now), len(deleted_now))
        return result

    # -- connection losses ------------------------------------------------------------------------

    def _notify(self, message: str, attempt: int) -> None:
        if self.on_reconnect is not None:
            try:
                self.on_reconnect(message, attempt)
            except Exception:  # noqa: BLE001 - a UI callback must not break the operation
                pass

    def _drop_reader(self) -> None:
        with self._lock:
            if self._reader is not None:
                self._reader._drop()
                self._reader = None

    def _retrying(self, what: str, fn: Callable[[], T], *, reconnecting: bool = False) -> T:
        """Run an idempotent step, reconnecting with backoff when the connection is lost.

        A refused or timed-out connection is retried only once we are reconnecting after a loss
        (a first connection that fails is a clear error at once); authentication never is."""
        attempt = 0
        while True:
            try:
                return fn()
            except ConnectionFailed as e:
                attempt = self._backoff(e, attempt, what, reconnecting)

    def _backoff(self, e: ConnectionFailed, attempt: int, what: str, reconnecting: bool = False) -> int:
        """After a failed step: re-raise what is not worth retrying (authentication; a first
        connection that fails outright; too many attempts), else say so, drop the reader and
        wait. Returns the attempt number."""
        if isinstance(e, AuthenticationFailed) or not (isinstance(e, ConnectionLost) or reconnecting or attempt > 0):
            raise e
        attempt += 1
        if attempt > self.retry.attempts:
            raise ConnectionLost(f"{e} (gave up after {self.retry.attempts} reconnects)") from e
        delay = self.retry.delay(attempt)
        self._notify(f"{what}: connection lost ({e}); reconnecting in {delay:.1f} s", attempt)
        self._drop_reader()
        time.sleep(delay)
        return attempt
