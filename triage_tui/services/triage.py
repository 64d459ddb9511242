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
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from triage_tui.domain.analysis import AnalysisConfig, build_message
from triage_tui.domain.classify import mark_duplicates
from triage_tui.domain.model import LIST_HEADER_FIELDS, Message, View
from triage_tui.domain.redact import mask_host
from triage_tui.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    ConnectionLost,
    OperationFailed,
    UidValidityChanged,
)
from triage_tui.services.cache import RECENT, HeaderCache, Rebuilder, Token, split_flags
from triage_tui.services.execute import Execution
from triage_tui.services.guard import MutationGuard
from triage_tui.services.imap import (
    ConnectionSettings,
    ImapSession,
    Limits,
    MailboxInfo,
    TlsInfo,
)
from triage_tui.services.imapwire import FetchRecord, parse_fetch
from triage_tui.services.journal import AuditJournal
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


T = TypeVar("T")


class TriageService(UndoPlanning, Execution):
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
