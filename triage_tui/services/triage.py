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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from triage_tui.domain import uidset
from triage_tui.domain.analysis import AnalysisConfig, build_message
from triage_tui.domain.classify import mark_duplicates
from triage_tui.domain.model import LIST_HEADER_FIELDS, Message, View
from triage_tui.domain.redact import mask_host
from triage_tui.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    ConnectionLost,
    OperationFailed,
    Refused,
    UidValidityChanged,
)
from triage_tui.services.guard import MutationGuard
from triage_tui.services.imap import (
    ConnectionSettings,
    ImapSession,
    Limits,
    MailboxInfo,
    StoreResult,
    TlsInfo,
)
from triage_tui.services.imapwire import FetchRecord
from triage_tui.services.journal import AuditJournal

LIST_ITEMS = "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (" + " ".join(LIST_HEADER_FIELDS) + ")]"
# Received is the bulkiest field (several long lines per message) and GitLab consults it only when
# To, References, Delivered-To, X-Delivered-To, Envelope-To and X-Envelope-To carry no key: the
# first pass leaves it out and a second pass fetches it for the few messages that need it.
FIRST_PASS_ITEMS = LIST_ITEMS.replace(" RECEIVED", "")
_AFTER_RECEIVED = frozenset({"x-original-to", "x-forwarded-to", "cc"})
LIGHT_ITEMS = "UID FLAGS INTERNALDATE RFC822.SIZE"
PEEK_ITEMS = "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER]"

Progress = Callable[[int, int], None]  # (done, total)


T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Reconnects after a lost connection: ``attempts`` tries, exponential backoff with a cap."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 8.0

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.base * (2 ** (attempt - 1)))


@dataclass
class Counts:
    unseen: int
    seen_stuck: int
    deleted: int
    exists: int
    oldest_unseen: datetime | None
    uidvalidity: int


@dataclass
class Peek:
    uid: int
    uidvalidity: int
    flags: tuple[str, ...]
    internaldate: datetime | None
    size: int
    header: bytes


@dataclass
class Plan:
    """What a mutation will do, computed on a read connection; executing re-checks everything."""

    action: str
    uidvalidity: int
    uids: list[int]
    requested: int
    skipped: int = 0  # requested but already in the target state, or vanished
    others_deleted: int = 0  # expunge --all-deleted: \\Deleted messages outside the selection
    all_deleted: bool = False
    undoes: str | None = None
    limits: Limits = field(default_factory=Limits)

    @property
    def count(self) -> int:
        return len(self.uids)

    @property
    def ranges(self) -> str:
        return uidset.compress(self.uids)

    @property
    def commands(self) -> int:
        if self.all_deleted:
            return 1
        return sum(1 for _ in uidset.split(self.uids, max_bytes=self.limits.max_bytes, max_count=self.limits.max_count))

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "uidvalidity": self.uidvalidity, "count": self.count,
                "requested": self.requested, "skipped": self.skipped, "uids": self.ranges,
                "commands": self.commands, "others_deleted": self.others_deleted,
                "all_deleted": self.all_deleted, "undoes": self.undoes}


@dataclass
class OpResult:
    action: str
    op_id: str
    uidvalidity: int
    changed: list[int] = field(default_factory=list)
    skipped_concurrent: list[int] = field(default_factory=list)  # CONDSTORE MODIFIED
    in_flight: list[int] = field(default_factory=list)  # done by a command whose answer a lost connection ate
    vanished_or_done: int = 0  # planned but no longer needing the change at execution time
    failed: list[tuple[list[int], str]] = field(default_factory=list)
    commands: int = 0
    interrupted: list[int] = field(default_factory=list)  # never sent: the operation was cancelled

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "op": self.op_id, "uidvalidity": self.uidvalidity,
                "changed": len(self.changed), "changed_uids": uidset.compress(self.changed),
                "skipped_concurrent": uidset.compress(self.skipped_concurrent),
                "vanished_or_done": self.vanished_or_done, "in_flight": uidset.compress(self.in_flight),
                "failed": [{"uids": uidset.compress(u), "error": e} for u, e in self.failed],
                "commands": self.commands, "interrupted": uidset.compress(self.interrupted), "ok": self.ok}


# The target state of each flag action: what SEARCH finds the UIDs that still need it.
_NEEDS = {
    "mark-seen": ("UNSEEN", "\\Seen", True),
    "mark-unseen": ("SEEN UNDELETED", "\\Seen", False),
}


class TriageService:
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
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._cancel = threading.Event()
        self.on_reconnect = on_reconnect
        self.settings = settings
        self.read_only = read_only
        self.journal = journal or AuditJournal()
        self.limits = limits or Limits()
        self.analysis = analysis or AnalysisConfig()
        self._factory = session_factory
        self._reader: ImapSession | None = None
        self._lock = threading.RLock()
        self.guard = MutationGuard(read_only=read_only, journal=self.journal, context={
            "server": mask_host(settings.server), "user": settings.user, "mailbox": settings.mailbox})

    # -- connection -----------------------------------------------------------------------------

    @property
    def reader(self) -> ImapSession:
        with self._lock:
            if self._reader is None or self._reader.client is None:
                session = self._factory(self.settings, self.limits)
                session.examine()
                self._reader = session
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
        return Counts(unseen=len(unseen), seen_stuck=r.count("SEEN UNDELETED"), deleted=r.count("DELETED"),
                      exists=info.exists, oldest_unseen=oldest, uidvalidity=info.uidvalidity)

    def search(self, view: View | str, narrow: str | None = None) -> tuple[int, builtins.list[int]]:
        """(UIDVALIDITY, UIDs) of a view, from a fresh EXAMINE. ``narrow`` is an extra SEARCH
        criterion ANDed with the view's (a filter's pushdown: a superset of its matches)."""
        return self._retrying("search", lambda: self._search(view, narrow))

    def _search(self, view: View | str, narrow: str | None = None) -> tuple[int, builtins.list[int]]:
        r = self.reader
        info = r.examine()
        criteria = View(view).search if isinstance(view, str) and view in View._value2member_map_ else (
            view.search if isinstance(view, View) else str(view))
        if narrow:
            criteria = f"{criteria} {narrow}"
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
        two_pass = headers and bool(cfg.address)
        items = (FIRST_PASS_ITEMS if two_pass else LIST_ITEMS) if headers else LIGHT_ITEMS
        held: list[int] = []
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
                yield messages
        if held:
            for records in self._resumable_fetch(uidvalidity, held, LIST_ITEMS):
                yield self._build(records, uidvalidity, cfg, now)

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

    def plan_flags(self, action: str, uidvalidity: int, uids: Iterable[int]) -> Plan:
        requested = sorted(set(uids))
        return self._retrying("plan", lambda: self._plan_flags(action, uidvalidity, requested))

    def _plan_flags(self, action: str, uidvalidity: int, requested: builtins.list[int]) -> Plan:
        if action not in _NEEDS:
            raise ValueError(action)
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

    def plan_undo(self) -> tuple[Plan, dict[str, Any]]:
        return self._retrying("plan", self._plan_undo)

    def _plan_undo(self) -> tuple[Plan, dict[str, Any]]:
        s = self.settings
        rec = self.journal.last_undoable(s.server, s.user, s.mailbox)
        if rec is None:
            raise Refused(f"nothing to undo: the journal ({self.journal.path}) has no flag change on "
                          f"{s.mailbox} at {s.server} that is not undone yet")
        info = self.reader.examine()
        if int(rec.get("uidvalidity", -1)) != info.uidvalidity:
            raise UidValidityChanged(
                f"cannot undo {rec.get('action')} of {rec.get('time')}: UIDVALIDITY changed from "
                f"{rec.get('uidvalidity')} to {info.uidvalidity}, so its UIDs now name other messages")
        changed = uidset.parse(rec.get("changed", ""))
        reverse = "mark-unseen" if rec["action"] == "mark-seen" else "mark-seen"
        # Undo reverts exactly what we changed, minus what moved on since (a message mail_room
        # took meanwhile is \\Deleted and stays alone: un-seeing it would ingest it twice).
        criteria = "SEEN UNDELETED" if reverse == "mark-unseen" else "UNSEEN"
        needs = self._narrow(self.reader, changed, criteria)
        plan = Plan(action=reverse, uidvalidity=info.uidvalidity, uids=needs, requested=len(changed),
                    skipped=len(changed) - len(needs), undoes=rec.get("op"), limits=self.limits)
        return plan, rec

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

    def execute(self, plan: Plan, progress: Progress | None = None) -> OpResult:
        """Carry out a plan. Read-only mode refuses before anything is opened for writing."""
        action = "undo" if plan.undoes else plan.action
        self.guard.refuse_if_read_only(action)
        if self._cancel.is_set():
            raise Refused(f"{action} not started: the session is shutting down")
        w = self._open_writer(plan.uidvalidity)
        try:
            if plan.action == "expunge" and plan.all_deleted:
                return self._execute_expunge_all(w, plan, progress)
            return self._execute_resumable(w, plan, progress)
        finally:
            self._close_quietly(w)

    @staticmethod
    def _close_quietly(w: ImapSession) -> None:
        try:
            w.close()
        except Exception:  # noqa: BLE001 - logging out of a broken connection
            w._drop()

    def _execute_resumable(self, w: ImapSession, plan: Plan, progress: Progress | None) -> OpResult:
        """STORE or UID EXPUNGE in chunks; a lost connection is re-opened and the rest resumed.

        What has been done is known per chunk (journal ``progress`` records). After a reconnect the
        remaining UIDs are narrowed again on the server: those a lost in-flight command already
        changed no longer need it (they are reported as ``in_flight``), so nothing is done twice
        and nothing is missed.
        """
        if plan.action == "expunge":
            criteria, flag, add = "DELETED", "", True
        else:
            criteria, flag, add = _NEEDS[plan.action]
        action = "undo" if plan.undoes else plan.action
        extra: dict[str, Any] = {"undoes": plan.undoes, "reverse": plan.action} if plan.undoes else {}
        assert w.mailbox is not None
        targets = self._narrow(w, plan.uids, criteria) if plan.uids else []
        condstore = plan.action != "expunge" and "CONDSTORE" in w.capabilities
        modseq = w.mailbox.highestmodseq if condstore else None
        with self.guard.operation(action, uidvalidity=w.mailbox.uidvalidity, planned=len(plan.uids),
                                  targets=uidset.compress(targets), count=len(targets),
                                  unchangedsince=modseq, **extra) as op:
            result = OpResult(action=action, op_id=op.id, uidvalidity=w.mailbox.uidvalidity,
                              vanished_or_done=len(plan.uids) - len(targets))
            done: set[int] = set()

            def chunk_done(uids: list[int]) -> None:
                done.update(uids)
                self.guard.progress(op, done=uidset.compress(uids), count=len(uids))
                if progress:
                    progress(len(done), len(targets))

            pending = targets
            attempt = 0
            while pending:
                try:
                    if plan.action == "expunge":
                        r = w._uid_expunge(pending, progress=chunk_done, stop=self._cancel)
                    else:
                        r = w._store(pending, flag, add, unchangedsince=modseq, progress=chunk_done,
                                     stop=self._cancel)
                    result.interrupted.extend(r.unsent)
                    result.skipped_concurrent.extend(r.modified)
                    result.failed.extend(r.failed)
                    result.commands += r.commands
                    pending = []
                except ConnectionLost as e:
                    if self._cancel.is_set():
                        raise  # shutting down: no reconnect; the journal ends this op as an error
                    partial = e.partial if isinstance(e.partial, StoreResult) else None
                    if partial is not None:
                        # answered before the loss: a UID another client changed (CONDSTORE
                        # MODIFIED) is theirs, and must not come back below as our "in flight"
                        result.skipped_concurrent.extend(partial.modified)
                        result.failed.extend(partial.failed)
                        result.commands += partial.commands
                    attempt += 1
                    if attempt > self.retry.attempts:
                        raise
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
                            # lost again while finding out where we are (a flapping link): nothing
                            # was sent on this connection, so reconnect and ask again
                            attempt += 1
                            if attempt > self.retry.attempts:
                                raise
                            delay = self.retry.delay(attempt)
                            self.guard.progress(op, event="reconnect", attempt=attempt, error=str(again),
                                                done_so_far=len(done))
                            self._notify(f"{action}: connection lost again ({again}); reconnecting in {delay:.1f} s",
                                         attempt)
                    stillset: set[int] = set(still)
                    in_flight = [u for u in rest if u not in stillset]
                    theirs: list[int] = []
                    if partial is not None:
                        # only a command that went out unanswered can have changed a UID for us;
                        # the others were changed by someone else (mail_room) while we reconnected
                        sent = set(partial.unanswered)
                        theirs = [u for u in in_flight if u not in sent]
                        in_flight = [u for u in in_flight if u in sent]
                        result.vanished_or_done += len(theirs)
                    if in_flight or theirs:
                        result.in_flight.extend(in_flight)
                        self.guard.progress(op, event="resumed", in_flight=uidset.compress(in_flight),
                                            done_by_others=uidset.compress(theirs), remaining=len(still))
                    pending = still
                    if condstore and w.mailbox is not None:
                        modseq = w.mailbox.highestmodseq
            result.changed = sorted(done | set(result.in_flight))
            result.skipped_concurrent.sort()
            op.outcome = {"changed": uidset.compress(result.changed), "changed_count": len(result.changed),
                          "skipped_concurrent": uidset.compress(result.skipped_concurrent),
                          "in_flight": uidset.compress(result.in_flight), "reconnects": attempt,
                          "failed": uidset.compress(u for us, _ in result.failed for u in us),
                          "commands": result.commands, "interrupted": uidset.compress(result.interrupted)}
            if result.interrupted:
                op.result = "interrupted"
            else:
                op.result = "ok" if not result.failed else ("partial" if result.changed else "failed")
        return result

    def _execute_expunge_all(self, w: ImapSession, plan: Plan, progress: Progress | None) -> OpResult:
        assert w.mailbox is not None
        deleted_now = w.search("DELETED")
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


def older_than(messages: Iterable[Message], age: timedelta, now: datetime | None = None) -> list[int]:
    now = now or datetime.now(UTC)
    limit = age.total_seconds()
    return [m.uid for m in messages if (a := m.age_seconds(now)) is not None and a > limit]
