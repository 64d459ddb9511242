"""The service's value types and the words every front end shares: plans, results, counts, a
peek, the undo's "left alone" reasons, the journal's stand-in for our keyword, and the retry policy.

Re-exported by :mod:`triage_tui.services.triage` (import them from there)."""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from triage_tui.domain import uidset
from triage_tui.domain.model import TRIAGE_KEYWORD, Message
from triage_tui.errors import TriageError
from triage_tui.services.imap import Limits
from triage_tui.services.journal import JournalWriteFailed

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
LEFT_UNPROVEN = ("in the journal's end record but in none of the chunks it confirmed (a damaged record): "
                 "not restored (look at them)")

_UIDSET = re.compile(r"\d{1,10}(?::\d{1,10})?(?:,\d{1,10}(?::\d{1,10})?)*\Z")
MAX_UID = 4_294_967_295
MAX_MODSEQ = 2**63 - 1

# The target state of each flag action: what SEARCH finds the UIDs that still need it.
_NEEDS = {
    "mark-seen": ("UNSEEN", "\\Seen", True),
    "mark-unseen": ("SEEN UNDELETED", "\\Seen", False),
}


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
    #: the open mailbox (its :class:`MailboxInfo`, by identity) whose SELECT the UIDs were just
    #: searched under, in the state the action changes (mark-seen's one connection). When the
    #: write runs on that same SELECT with CONDSTORE, its ``UNCHANGEDSINCE`` (that SELECT's
    #: HIGHESTMODSEQ, older than the SEARCH) already leaves alone whatever changed since, so the
    #: UIDs are not searched a second time. Never serialized.
    searched_in: Any = field(default=None, repr=False, compare=False)
    #: a Graph mailbox: what executing will spend of its request budget (``batches``: $batch
    #: POSTs; ``requests``: what Graph counts, each request inside a batch apart), else None
    budget: dict[str, int] | None = None

    @property
    def cost_text(self) -> str:
        """How many requests executing sends, said for the inbox it goes to."""
        if self.budget is None:
            return f"{self.commands} IMAP command(s)"
        return (f"{self.budget['batches']} Graph $batch request(s), about {self.budget['requests']:,} of the "
                "mailbox's ~10,000 requests per 10 minutes (shared with mail_room)")

    @property
    def budget_short(self) -> str | None:
        """The Graph budget in a few words, for a confirmation that must fit 80x24 (IMAP: None)."""
        if self.budget is None:
            return None
        return (f"Graph: {self.budget['batches']} $batch request(s), ~{self.budget['requests']:,} of "
                "~10,000 per 10 min")

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
        if self.budget is not None:
            return self.budget["batches"]
        if self.all_deleted:
            return 1
        return sum(1 for _ in uidset.split(self.uids, max_bytes=self.limits.max_bytes, max_count=self.limits.max_count))

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "uidvalidity": self.uidvalidity, "count": self.count,
                "requested": self.requested, "skipped": self.skipped, "uids": self.ranges,
                "commands": self.commands, "others_deleted": self.others_deleted,
                "all_deleted": self.all_deleted, "undoes": self.undoes, "warning": self.warning,
                **({"left_alone": left_alone_json(self.left_alone)} if self.undoes else {}),
                **({"notes": list(self.notes)} if self.notes else {}),
                **({"graph_budget": dict(self.budget)} if self.budget is not None else {})}


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


def _cut(uids: Iterable[int], limit: int = 200) -> str:
    text = uidset.compress(uids)
    return text if len(text) <= limit else text[:limit] + "..."


def older_than(messages: Iterable[Message], age: timedelta, now: datetime | None = None) -> list[int]:
    now = now or datetime.now(UTC)
    limit = age.total_seconds()
    return [m.uid for m in messages if (a := m.age_seconds(now)) is not None and a > limit]
