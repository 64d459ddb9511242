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
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TypeVar

from triage_tui.domain.analysis import AnalysisConfig
from triage_tui.domain.model import View
from triage_tui.domain.redact import mask_host
from triage_tui.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    ConnectionLost,
    OperationFailed,
    Refused,
    UidValidityChanged,
)
from triage_tui.services.cache import HeaderCache
from triage_tui.services.execute import Execution
from triage_tui.services.guard import MutationGuard
from triage_tui.services.imap import (
    ConnectionSettings,
    ImapSession,
    Limits,
    MailboxInfo,
    TlsInfo,
)
from triage_tui.services.imapwire import ProtocolError
from triage_tui.services.journal import AuditJournal
from triage_tui.services.listing import FIRST_PASS_ITEMS, LIGHT_ITEMS, LIST_ITEMS, Listing
from triage_tui.services.plan_types import (
    _NEEDS,
    LEFT_ALREADY,
    LEFT_CHANGED,
    LEFT_GONE,
    LEFT_NO_MODSEQ_DELETED,
    LEFT_UNCONFIRMED,
    MAX_MODSEQ,
    MAX_UID,
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
from triage_tui.services.undo import MAX_JOURNAL_UIDS, MAX_UNDO_GROUPS, DamagedRecord, UndoPlanning
from triage_tui.services.undo import _merged as _merged  # re-exported (tests/unit/test_journal.py)

# The service's public names, imported from here by the commands, the TUI, tests and benchmarks
# (the value types live in plan_types, the undo, listing and execution in their own modules).
__all__ = [
    "FIRST_PASS_ITEMS", "LEFT_ALREADY", "LEFT_CHANGED", "LEFT_GONE", "LEFT_NO_MODSEQ_DELETED",
    "LEFT_UNCONFIRMED", "LIGHT_ITEMS", "LIST_ITEMS", "MAX_JOURNAL_UIDS", "MAX_MODSEQ", "MAX_UID",
    "MAX_UNDO_GROUPS", "NO_KEYWORDS_NOTE", "NO_KEYWORDS_SHORT", "PEEK_ITEMS", "REINGEST_WARNING",
    "Counts", "DamagedRecord", "OperationStopped", "OpResult", "Peek", "Plan", "Progress",
    "RetryPolicy", "TriageService", "journal_ignored", "left_alone_json", "left_alone_lines",
    "merge_left_alone", "older_than",
]

PEEK_ITEMS = "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER]"


T = TypeVar("T")


class TriageService(Listing, UndoPlanning, Execution):
    """Connections, counts, searches, peeks, flag and expunge plans, and reconnecting. Mixed in: the
    listing (:mod:`~triage_tui.services.listing`), the undo plan (:mod:`~triage_tui.services.undo`)
    and the only writes (:mod:`~triage_tui.services.execute`)."""

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
                info = session.mailbox
                if self._one_connection and not self.read_only:
                    session.select()
                elif info is None or not info.readonly or info.name != self.settings.mailbox:
                    session.examine()  # (a session opened ahead for a reading command comes examined)
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

    def close(self, *, wait: bool = True) -> None:
        """``wait=False``: see :meth:`ImapSession.close` (a CLI command's exit)."""
        with self._lock:
            if self._reader is not None:
                self._reader.close(wait=wait)
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

    def search(self, view: View | str, narrow: str | None = None, *, warm: bool = False) -> tuple[int, builtins.list[int]]:
        """(UIDVALIDITY, UIDs) of a view, from a fresh EXAMINE. ``narrow`` is an extra SEARCH
        criterion ANDed with the view's (a filter's pushdown: a superset of its matches).
        ``warm``: a listing with headers follows (:meth:`iter_messages`): what its cache asks is
        sent with the SEARCH (see :meth:`_search_warm`)."""
        def run() -> tuple[int, builtins.list[int]]:
            info = None
            if warm:
                v = View(view) if isinstance(view, str) and view in View._value2member_map_ else view
                if isinstance(v, View):
                    got, info = self._search_warm(v, narrow)
                    if got is not None:
                        return got
            return self._search(view, narrow, info)

        return self._retrying("search", run)

    def _search(self, view: View | str, narrow: str | None = None,
                info: MailboxInfo | None = None) -> tuple[int, builtins.list[int]]:
        """``info``: the answer of the EXAMINE just sent on the read connection, if any."""
        self._prefetched = None  # a listing after this SEARCH asks for itself
        self._preload = None  # and loads the cache for itself (a preload still running ends on its own)
        r = self.reader
        if info is None or info is not r.mailbox:
            info = r.examine()
        if isinstance(view, str) and view in View._value2member_map_:
            view = View(view)
        if isinstance(view, View):
            journaled = self._journal_ignored(info.uidvalidity)[0] if view in (View.IGNORED, View.SEEN_STUCK) \
                else set()
            return info.uidvalidity, self._view_uids(r, view, narrow, journaled)
        criteria = f"{view} {narrow}" if narrow else str(view)
        return info.uidvalidity, r.search(criteria)

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
            return self._costed(Plan(action=action, uidvalidity=uidvalidity, uids=requested,
                                     requested=len(requested), limits=self.limits,
                                     searched_in=self._reader.mailbox))
        info = self.reader.examine()
        self._check_uidvalidity(uidvalidity, info.uidvalidity)
        needs = self._narrow(self.reader, requested, _NEEDS[action][0]) if requested else []
        return self._costed(Plan(action=action, uidvalidity=uidvalidity, uids=needs, requested=len(requested),
                                 skipped=len(requested) - len(needs), limits=self.limits))

    def _costed(self, plan: Plan) -> Plan:
        """The plan with what it will spend of a Graph mailbox's request budget (IMAP: as is)."""
        budget = getattr(self._reader, "budget", None)
        if callable(budget):
            plan.budget = budget(plan.count)
        return plan

    def plan_expunge(self, uidvalidity: int, uids: Iterable[int] | None, *, all_deleted: bool = False) -> Plan:
        wanted = None if uids is None else sorted(set(uids))
        return self._retrying("plan", lambda: self._plan_expunge(uidvalidity, wanted, all_deleted))

    def _plan_expunge(self, uidvalidity: int, uids: builtins.list[int] | None, all_deleted: bool) -> Plan:
        refusal = getattr(self.reader, "expunge_refusal", None)  # a Graph mailbox has no EXPUNGE
        if refusal:
            raise Refused(refusal)
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
        if isinstance(e, ProtocolError) and attempt > 1:
            # an answer that does not parse, once more after a reconnect: the server says it
            # again whatever we wait (each try cost a timeout and a backoff: 16-34 s in all)
            raise ConnectionLost(f"{e} (again after a reconnect: the server's answers do not parse)") from e
        delay = self.retry.delay(attempt)
        self._notify(f"{what}: connection lost ({e}); reconnecting in {delay:.1f} s", attempt)
        self._drop_reader()
        time.sleep(delay)
        return attempt
