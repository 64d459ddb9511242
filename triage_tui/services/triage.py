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
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from triage_tui.domain import uidset
from triage_tui.domain.analysis import AnalysisConfig, build_message
from triage_tui.domain.classify import mark_duplicates
from triage_tui.domain.model import LIST_HEADER_FIELDS, TRIAGE_KEYWORD, Message, View
from triage_tui.domain.redact import mask_host
from triage_tui.domain.text import inert
from triage_tui.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    ConnectionLost,
    OperationFailed,
    Refused,
    TriageError,
    UidValidityChanged,
)
from triage_tui.services.cache import RECENT, HeaderCache, InOrder, Rebuilder, Token, split_flags
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

LIST_ITEMS = "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (" + " ".join(LIST_HEADER_FIELDS) + ")]"
# Received is the bulkiest field (several long lines per message) and GitLab consults it only when
# To, References, Delivered-To, X-Delivered-To, Envelope-To and X-Envelope-To carry no key: the
# first pass leaves it out and a second pass fetches it for the few messages that need it.
FIRST_PASS_ITEMS = LIST_ITEMS.replace(" RECEIVED", "")
_AFTER_RECEIVED = frozenset({"x-original-to", "x-forwarded-to", "cc"})


def _held_back(matched_header: str | None) -> bool:
    """Whether a cold listing sends this (whole-header) row in its second pass: its key is in
    Received or after it, or nowhere (the first pass, without Received, found none before)."""
    return matched_header is None or matched_header.lower() in _AFTER_RECEIVED or matched_header.lower() == "received"


def _split_held(rows: list[Message]) -> tuple[list[Message], list[Message]]:
    """(first-pass rows, held-back rows), each in the given order."""
    memo: dict[str | None, bool] = {}  # a few distinct header names
    first: list[Message] = []
    late: list[Message] = []
    for m in rows:
        h = m.matched_header
        held = memo.get(h)
        if held is None:
            held = memo[h] = _held_back(h)
        (late if held else first).append(m)
    return first, late
LIGHT_ITEMS = "UID FLAGS INTERNALDATE RFC822.SIZE"
PEEK_ITEMS = "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER]"

Progress = Callable[[int, int], None]  # (done, total)

#: What un-seeing does while mail_room runs: the one wording for the CLI plan, the TUI's
#: mark-unseen and undo dialogs.
REINGEST_WARNING = ("mail_room will ingest them again once their Redis lock is free (up to 10 minutes), "
                    "and GitLab acts on each one again.")

# Why an undo leaves a message alone (the one wording for CLI, JSON, journal and TUI).
LEFT_CHANGED = "changed by another client since our change"
LEFT_GONE = "no longer in the mailbox (expunged)"
LEFT_UNCONFIRMED = ("sent before the journal stopped, never confirmed: maybe changed, not restored "
                    "(look at them)")
LEFT_NO_MODSEQ_DELETED = ("\\Deleted now, and the journal has no MODSEQ for this change to tell whether it "
                          "was before (un-seeing it could make mail_room ingest it twice)")
LEFT_ALREADY = "already restored by an earlier, unfinished undo"

_PAST = {"mark-seen": "marked \\Seen", "mark-unseen": "marked unseen (\\Seen removed)", "expunge": "expunged"}
_FETCH_MODSEQ = re.compile(rb"^\* \d+ FETCH \((.*)\)\s*$", re.IGNORECASE | re.DOTALL)
_UID_ITEM = re.compile(rb"\bUID (\d+)", re.IGNORECASE)
_MODSEQ_ITEM = re.compile(rb"\bMODSEQ \((\d+)\)", re.IGNORECASE)
_UIDSET = re.compile(r"\d{1,10}(?::\d{1,10})?(?:,\d{1,10}(?::\d{1,10})?)*\Z")
_OP_ID = re.compile(r"[0-9a-f]{1,64}\Z")
MAX_UID = 4_294_967_295
MAX_MODSEQ = 2**63 - 1
MAX_UNDO_GROUPS = 256  # SEARCHes an undo plan may send to tell what changed since
MAX_JOURNAL_UIDS = 2_000_000  # an undo of more than this is a damaged record, not an operation


T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Reconnects after a lost connection: ``attempts`` tries, exponential backoff with a cap."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 8.0

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.base * (2 ** (attempt - 1)))


#: Said wherever the ignored view stands on the journal instead of the server's keyword.
NO_KEYWORDS_NOTE = ("this mailbox does not allow keywords (no \\* in PERMANENTFLAGS), so triage-tui could "
                    f"not store {TRIAGE_KEYWORD}: 'ignored' is computed from this machine's journal, other "
                    "machines see those messages as seen-stuck")
NO_KEYWORDS_SHORT = "ignored: from journal (no keywords)"


@dataclass
class Counts:
    unseen: int
    seen_stuck: int  # \\Seen, not \\Deleted, not ignored
    deleted: int
    exists: int
    oldest_unseen: datetime | None
    uidvalidity: int
    ignored: int = 0  # \\Seen by our decision, not \\Deleted
    #: set when the journal says this mailbox refused our keyword (see NO_KEYWORDS_NOTE)
    keyword_note: str | None = None


def journal_ignored(records: Iterable[dict[str, Any]], server: str, user: str, mailbox: str,
                    uidvalidity: int) -> tuple[set[int], bool]:
    """The journal's stand-in for our keyword where the mailbox refused it: the UIDs (under this
    UIDVALIDITY) that a mark-seen which could not store the keyword changed, and no later
    mark-unseen or undo gave back; and whether any operation on this mailbox found keywords
    refused. Replayed in journal order from the confirmed chunks (``progress`` records)."""
    ignored: set[int] = set()
    refused = False
    ops: dict[str, dict[str, Any]] = {}  # op -> its begin record
    given_back: dict[str, set[int]] = {}  # mark-unseen op -> journal-ignored UIDs it un-saw
    for rec in records:
        if rec.get("server") != server or rec.get("user") != user or rec.get("mailbox") != mailbox:
            continue
        op, phase = rec.get("op"), rec.get("phase")
        if not isinstance(op, str):
            continue
        if phase == "begin":
            ops[op] = rec
            if rec.get("keyword_refused"):
                refused = True
            continue
        begin = ops.get(op)
        if begin is None or begin.get("uidvalidity") != uidvalidity or phase != "progress":
            continue
        done = rec.get("done") if isinstance(rec.get("done"), str) else rec.get("in_flight")
        if not isinstance(done, str) or not _UIDSET.match(done):
            continue
        try:
            uids = set(uidset.parse(done))
        except TriageError:  # a damaged record: it names nothing
            continue
        action = begin.get("action")
        if action == "undo":
            action = begin.get("reverse")
            if action == "mark-seen":  # undoing a mark-unseen: what it took from the journal comes back
                target = begin.get("undoes")
                ignored |= uids & given_back.get(target if isinstance(target, str) else "", set())
            elif action == "mark-unseen":
                ignored -= uids
        elif action == "mark-seen":
            if begin.get("keyword_refused"):
                ignored |= uids
            else:
                ignored -= uids  # the server's keyword says it now
        elif action == "mark-unseen":
            given_back.setdefault(op, set()).update(uids & ignored)
            ignored -= uids
    return ignored, refused


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
    #: undo: ``(uids, modseq)`` restored ``UNCHANGEDSINCE modseq`` (the plan's HIGHESTMODSEQ;
    #: None: the journal has no MODSEQ for them, so the old rule applies)
    groups: list[tuple[list[int], int | None]] = field(default_factory=list)
    #: undo: ``(reason, uids)`` the undo leaves alone
    left_alone: list[tuple[str, list[int]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: undo of a mark-unseen: the UIDs that had our keyword before it (they get it back)
    restore_keyword: list[int] = field(default_factory=list)

    @property
    def warning(self) -> str | None:
        """What the operator must know before confirming (un-seeing re-ingests)."""
        return REINGEST_WARNING if self.action == "mark-unseen" else None

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
                "all_deleted": self.all_deleted, "undoes": self.undoes, "warning": self.warning,
                **({"left_alone": left_alone_json(self.left_alone)} if self.undoes else {}),
                **({"notes": list(self.notes)} if self.notes else {})}


def left_alone_json(left: Iterable[tuple[str, builtins.list[int]]]) -> builtins.list[dict[str, Any]]:
    return [{"reason": r, "count": len(u), "uids": uidset.compress(u)} for r, u in left if u]


def left_alone_lines(left: Iterable[tuple[str, builtins.list[int]]] | None, future: bool = False,
                     limit: int = 200) -> builtins.list[str]:
    """``left 3 alone: <why> (UIDs 40:42)``, one line per reason: the undo's account of every
    message it does not restore, for the CLI and the TUI alike."""
    verb = "will leave" if future else "left"
    out = []
    for reason, uids in left or []:
        if uids:
            ranges = uidset.compress(uids)
            ranges = ranges if len(ranges) <= limit else ranges[:limit] + "..."
            out.append(f"{verb} {len(uids):,} alone: {reason} (UIDs {ranges})")
    return out


def merge_left_alone(*parts: Iterable[tuple[str, builtins.list[int]]]) -> builtins.list[tuple[str, builtins.list[int]]]:
    """One entry per reason (first-seen order), UIDs sorted and unique."""
    out: dict[str, set[int]] = {}
    for part in parts:
        for reason, uids in part:
            if uids:
                out.setdefault(reason, set()).update(uids)
    return [(r, sorted(u)) for r, u in out.items()]


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
    #: undo: ``(reason, uids)`` left alone, from the plan and from the server's answers
    left_alone: list[tuple[str, list[int]]] = field(default_factory=list)
    requested: int = 0  # undo: how many messages the undone change had changed

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "op": self.op_id, "uidvalidity": self.uidvalidity,
                "changed": len(self.changed), "changed_uids": uidset.compress(self.changed),
                "skipped_concurrent": uidset.compress(self.skipped_concurrent),
                "vanished_or_done": self.vanished_or_done, "in_flight": uidset.compress(self.in_flight),
                "failed": [{"uids": uidset.compress(u), "error": e} for u, e in self.failed],
                "commands": self.commands, "interrupted": uidset.compress(self.interrupted), "ok": self.ok,
                **({"requested": self.requested, "left_alone": left_alone_json(self.left_alone)}
                   if self.action == "undo" else {})}


class OperationStopped(JournalWriteFailed):
    """The journal failed mid-operation: nothing more was sent. ``str()`` says exactly what
    changed; ``result`` holds it."""

    def __init__(self, reason: str, text: str, result: OpResult | None) -> None:
        super().__init__(reason)
        self.args = (text,)
        self.result = result

    def __str__(self) -> str:
        return str(self.args[0])


def _lit(value: Any, limit: int = 60) -> str:
    """A journal value as it may be shown in a one-line reason: quoted, made inert, cut short."""
    if isinstance(value, str):  # the one way out: the same escapes as everywhere else
        text = '"' + inert(value, limit=limit + 1) + '"'
    else:
        text = inert(json.dumps(value, ensure_ascii=False, default=str), limit=limit + 1)
    return text if len(text) <= limit else text[:limit] + "..."


def _plain(value: Any, limit: int = 80) -> str:
    """A journal string shown as is when it is short printable ASCII, else as an escaped literal."""
    if isinstance(value, str) and len(value) <= limit and all(" " <= c <= "~" for c in value):
        return value
    return _lit(value)


def _merged(chunks: builtins.list[tuple[builtins.list[int], int | None]],
            limit: int) -> builtins.list[tuple[builtins.list[int], int | None]]:
    """At most ``limit`` groups of consecutive chunks (one SEARCH and one segment of STOREs each):
    a group is restored UNCHANGEDSINCE its newest MODSEQ (None if any chunk has none). Only an
    operation of very many small chunks is merged, and then only a change another client made
    *during* it can go unnoticed."""
    if len(chunks) <= limit:
        return chunks
    size = -(-len(chunks) // limit)
    out: builtins.list[tuple[builtins.list[int], int | None]] = []
    for i in range(0, len(chunks), size):
        part = chunks[i:i + size]
        seqs = [m for _, m in part]
        modseq = None if any(m is None for m in seqs) else max(m for m in seqs if m is not None)
        out.append(([u for g, _ in part for u in g], modseq))
    return out


class DamagedRecord(Refused):
    """A journal record undo can not trust: wrong types, impossible values."""


@dataclass
class _UndoRecord:
    op: str
    action: str
    time: str
    uidvalidity: int
    changed: list[int]
    chunks: list[tuple[list[int], int | None]]
    unconfirmed: list[int]
    undone: list[int]
    ended: bool
    raw: dict[str, Any]
    had_keyword: list[int] = field(default_factory=list)

    @classmethod
    def check(cls, rec: dict[str, Any]) -> _UndoRecord:
        op = rec.get("op")
        who = f"op {op}" if isinstance(op, str) and _OP_ID.match(op) else f"the record {_lit(op, 30)}"

        def bad(why: str) -> DamagedRecord:
            return DamagedRecord(f"cannot undo {who}: its journal record is damaged ({why}); nothing was changed")

        if not (isinstance(op, str) and _OP_ID.match(op)):
            raise bad(f"op is not an operation id: {_lit(op)}")
        action = rec.get("action")
        if action not in ("mark-seen", "mark-unseen"):
            raise bad(f"action is not mark-seen or mark-unseen: {_lit(action)}")
        uv = rec.get("uidvalidity")
        if not isinstance(uv, int) or isinstance(uv, bool) or not 1 <= uv <= MAX_UID:
            raise bad(f"uidvalidity is not a number from 1 to {MAX_UID}: {_lit(uv)}")
        total = [0]

        def uids(name: str, value: Any) -> list[int]:
            if value is None or value == "":
                return []
            if not isinstance(value, str) or not _UIDSET.match(value):
                raise bad(f"{name} is not a UID set like 1:500,502: {_lit(value)}")
            out: list[int] = []
            for part in value.split(","):
                a, _, b = part.partition(":")
                lo, hi = int(a), int(b or a)
                if lo > hi:
                    lo, hi = hi, lo
                if lo < 1 or hi > MAX_UID:
                    raise bad(f"{name} has a UID outside 1..{MAX_UID}: {_lit(part)}")
                total[0] += hi - lo + 1
                if total[0] > MAX_JOURNAL_UIDS:
                    raise bad(f"{name} names more than {MAX_JOURNAL_UIDS:,} UIDs")
                out.extend(range(lo, hi + 1))
            return sorted(set(out))

        if rec.get("changed") is None:
            raise bad("changed is missing")
        changed = uids("changed", rec.get("changed"))
        chunks_raw = rec.get("chunks", [])
        if not isinstance(chunks_raw, list):
            raise bad(f"chunks is not a list: {_lit(chunks_raw)}")
        chunks: list[tuple[list[int], int | None]] = []
        for item in chunks_raw:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise bad(f"a chunk is not (UIDs, MODSEQ): {_lit(item)}")
            modseq = item[1]
            if modseq is not None and (not isinstance(modseq, int) or isinstance(modseq, bool)
                                       or not 1 <= modseq <= MAX_MODSEQ):
                raise bad(f"a chunk's modseq is not a positive number: {_lit(modseq)}")
            chunks.append((uids("a chunk", item[0]), modseq))
        if not changed:
            raise bad("changed names no UID")
        t = rec.get("time")
        return cls(op=op, action=action, time=_plain(t) if t is not None else "?", uidvalidity=uv,
                   changed=changed, chunks=chunks, unconfirmed=uids("unconfirmed", rec.get("unconfirmed")),
                   undone=uids("undone", rec.get("undone")), ended=bool(rec.get("ended", True)), raw=rec,
                   had_keyword=uids("had_keyword", rec.get("had_keyword")))

    def shown(self) -> dict[str, Any]:
        """The record's fields for display: validated, or escaped when they are not plain."""
        r = self.raw
        return {"op": self.op, "action": self.action, "time": self.time, "uidvalidity": self.uidvalidity,
                "changed_count": len(self.changed), "os_user": _plain(r.get("os_user", "?")),
                "host": _plain(r.get("host", "?")), "ended": self.ended}


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
        two_pass = headers and bool(cfg.address)
        step = max(1, self.limits.max_count)
        early = late = None  # cached rows, given out where a cold listing gives them
        late_rows: list[Message] = []
        if cache is not None:
            uids, warm, modseq, token = self._warm(cache, uidvalidity, uids, now)
            if two_pass:  # the rows a cold listing holds back for its second pass come last
                warm, late_rows = _split_held(warm)
            early = InOrder(warm, uids)
            part = early.before_fetch()
            for i in range(0, len(part), step):
                yield part[i:i + step]
            if token is None or not cache.usable:
                cache = None
        pending: list[tuple[int, str, tuple[Any, ...]]] = []  # new rows for the cache
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
                if messages and cache is not None:  # encoded now: the caller may change them afterwards
                    pending.extend(cache.rows_of(messages, uidvalidity))
                if early is not None and records:
                    messages = early.with_batch(max(r.uid or 0 for r in records), messages)
                if messages:
                    yield messages
            if early is not None:  # the first pass is done: then what a cold second pass lists
                late = InOrder(late_rows, held)
                part = early.rest() + late.before_fetch()
                for i in range(0, len(part), step):
                    yield part[i:i + step]
            if held:
                for records in self._resumable_fetch(uidvalidity, held, LIST_ITEMS):
                    messages = self._build(records, uidvalidity, cfg, now)
                    if cache is not None:
                        pending.extend(cache.rows_of(messages, uidvalidity))
                    if late is not None and records:
                        messages = late.with_batch(max(r.uid or 0 for r in records), messages)
                    yield messages
            if late is not None and (part := late.rest()):
                for i in range(0, len(part), step):
                    yield part[i:i + step]
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
        loaded = cache.load(uidvalidity, h0, uids, uidnext=info.uidnext)
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

    def plan_undo(self) -> tuple[Plan, dict[str, Any]]:
        """The undo of the newest flag change on this mailbox not undone yet, and its journal
        record (validated: a damaged or wrongly typed record is refused with the reason).

        Undo restores exactly what is unchanged since our change, using the MODSEQ the server
        gave each chunk of it: what another client changed since (mail_room fetching or deleting
        it, a person flagging it) is found by ``SEARCH MODSEQ <ours + 1>`` and left alone, and
        named; what changes after this plan the server itself leaves alone (``UNCHANGEDSINCE``
        the plan's HIGHESTMODSEQ). A message that was \\Deleted before our change is restored
        like any other."""
        return self._retrying("plan", self._plan_undo)

    def _plan_undo(self) -> tuple[Plan, dict[str, Any]]:
        s = self.settings
        server = self.guard.context.get("server", s.server)
        try:
            rec = self.journal.last_undoable(server, s.user, s.mailbox)
        except OSError as e:
            raise OperationFailed(f"cannot undo: the audit journal ({self.journal.path}) can not be read "
                                  f"({e.strerror or type(e).__name__}); nothing was changed") from None
        damaged = self.journal.skipped_lines
        if rec is None:
            raise Refused(f"nothing to undo: the journal ({self.journal.path}) has no flag change on "
                          f"{s.mailbox} at {server} that is not undone yet")
        v = _UndoRecord.check(rec)
        info = self.reader.examine()
        if v.uidvalidity != info.uidvalidity:
            raise UidValidityChanged(
                f"cannot undo {v.action} of {v.time} (op {v.op}): UIDVALIDITY changed from "
                f"{v.uidvalidity} to {info.uidvalidity}, so its UIDs now name other messages")
        reverse = "mark-unseen" if v.action == "mark-seen" else "mark-seen"
        state = "SEEN" if reverse == "mark-unseen" else "UNSEEN"  # as our change left them
        r = self.reader
        already = set(v.undone)
        unconfirmed = [u for u in v.unconfirmed if u not in set(v.changed)]
        remaining = [u for u in v.changed if u not in already]
        present = set(self._narrow(r, remaining, "ALL")) if remaining else set()
        gone = [u for u in remaining if u not in present]
        still = set(self._narrow(r, sorted(present), state)) if present else set()
        moved = [u for u in remaining if u in present and u not in still]
        condstore = "CONDSTORE" in r.capabilities
        groups: list[tuple[list[int], int | None]] = []
        since: list[int] = []
        deleted_unknown: list[int] = []
        covered: set[int] = set()
        for uids, modseq in _merged(v.chunks, MAX_UNDO_GROUPS):
            mine = [u for u in uids if u in still and u not in covered]
            covered.update(mine)
            if not mine:
                continue
            if modseq is not None and condstore:
                changed_since = set(self._narrow(r, mine, f"MODSEQ {modseq + 1}"))
                since.extend(u for u in mine if u in changed_since)
                mine = [u for u in mine if u not in changed_since]
                if mine:
                    groups.append((mine, modseq))
            else:
                groups.append((mine, None))
        rest = sorted(still - covered)
        if rest:
            groups.append((rest, None))
        if reverse == "mark-unseen":
            # without the MODSEQ of our change, a \\Deleted message cannot be told apart from one
            # mail_room took since: leave those alone (un-seeing it could ingest it twice)
            for i, (uids, modseq) in enumerate(groups):
                if modseq is None:
                    dele = set(self._narrow(r, uids, "DELETED"))
                    if dele:
                        deleted_unknown.extend(u for u in uids if u in dele)
                        groups[i] = ([u for u in uids if u not in dele], None)
            groups = [(u, m) for u, m in groups if u]
        # What changed between our change and now was found above (SEARCH MODSEQ <ours + 1>); what
        # changes from now on the server refuses: one STORE UNCHANGEDSINCE this plan's
        # HIGHESTMODSEQ (read before those SEARCHes) covers every chunk at once, pipelined.
        known = sorted(u for g, m in groups if m is not None for u in g)
        unknown = sorted(u for g, m in groups if m is None for u in g)
        groups = ([(known, info.highestmodseq)] if known and info.highestmodseq is not None else []) + \
                 ([(unknown, None)] if unknown else [])
        if known and info.highestmodseq is None:
            groups.insert(0, (known, None))
        uids = sorted(u for g, _ in groups for u in g)
        left = merge_left_alone([(LEFT_CHANGED, sorted(since + moved)), (LEFT_GONE, gone),
                                 (LEFT_NO_MODSEQ_DELETED, deleted_unknown), (LEFT_UNCONFIRMED, unconfirmed),
                                 (LEFT_ALREADY, sorted(already & set(v.changed)))])
        notes = []
        if damaged:
            notes.append(f"the journal has {damaged} damaged line(s) (torn writes), skipped")
        if not v.ended:
            notes.append(f"op {v.op} has no end record (it was stopped): undoing the chunks its journal "
                         "confirms")
        plan = Plan(action=reverse, uidvalidity=info.uidvalidity, uids=uids, requested=len(v.changed),
                    skipped=len(v.changed) - len(uids), undoes=v.op, limits=self.limits, groups=groups,
                    left_alone=left, notes=notes,
                    restore_keyword=v.had_keyword if reverse == "mark-seen" else [])
        return plan, v.shown()

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


def _cut(uids: Iterable[int], limit: int = 200) -> str:
    text = uidset.compress(uids)
    return text if len(text) <= limit else text[:limit] + "..."


def older_than(messages: Iterable[Message], age: timedelta, now: datetime | None = None) -> list[int]:
    now = now or datetime.now(UTC)
    limit = age.total_seconds()
    return [m.uid for m in messages if (a := m.age_seconds(now)) is not None and a > limit]
