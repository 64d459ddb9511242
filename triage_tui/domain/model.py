"""The message model shared by the engine, the CLI and the TUI."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

#: Header fields fetched for the list (BODY.PEEK[HEADER.FIELDS (...)]): everything GitLab uses to
#: find the key, plus what classification needs. Never the body.
LIST_HEADER_FIELDS: tuple[str, ...] = (
    "FROM", "TO", "CC", "DELIVERED-TO", "X-DELIVERED-TO", "ENVELOPE-TO", "X-ENVELOPE-TO",
    "X-ORIGINAL-TO", "X-FORWARDED-TO", "RECEIVED", "SUBJECT", "DATE", "MESSAGE-ID", "REFERENCES",
    "IN-REPLY-TO", "AUTO-SUBMITTED", "X-AUTOREPLY", "X-AUTORESPONSE-SUPPRESS", "PRECEDENCE",
    "RETURN-PATH", "LIST-ID", "LIST-UNSUBSCRIBE", "CONTENT-TYPE", "SENDER", "REPLY-TO",
)


#: The keyword triage-tui stores next to \\Seen when the operator decides against a message
#: (mark-seen), in the same STORE, where the mailbox allows keywords (``\\*`` in the SELECT's
#: PERMANENTFLAGS: Dovecot, Gmail). It is what tells "ignored" (a decision, visible to every
#: operator and machine) from "seen-stuck" (\\Seen by someone else: a crashed mail_room's
#: leftovers, the old runbook's marks). mark-unseen and undo remove it. Where keywords are not
#: allowed (Exchange), the journal of the machine that made the decision stands in for it.
TRIAGE_KEYWORD = "$TriageIgnored"


class View(StrEnum):
    """What a listing shows."""

    UNSEEN = "unseen"  # what mail_room still has to ingest
    IGNORED = "ignored"  # \\Seen by our decision (TRIAGE_KEYWORD), not \\Deleted
    SEEN_STUCK = "seen-stuck"  # \\Seen without our keyword, not \\Deleted: a crashed mail_room's leftovers
    DELETED = "deleted"  # \\Deleted, awaiting expunge
    SEEN = "seen"  # ignored + seen-stuck: what mark-unseen may give back to mail_room
    ALL = "all"

    @property
    def search(self) -> str:
        return {
            View.UNSEEN: "UNSEEN",
            View.IGNORED: f"SEEN UNDELETED KEYWORD {TRIAGE_KEYWORD}",
            View.SEEN_STUCK: f"SEEN UNDELETED UNKEYWORD {TRIAGE_KEYWORD}",
            View.DELETED: "DELETED",
            View.SEEN: "SEEN UNDELETED",
            View.ALL: "ALL",
        }[self]


@dataclass(slots=True)
class Message:
    """One message as listed. Text fields are decoded but not sanitized: render with
    :func:`triage_tui.domain.text.inert` (terminal) or as non-markup text (TUI)."""

    uid: int
    uidvalidity: int
    flags: tuple[str, ...] = ()
    internaldate: datetime | None = None
    size: int = 0
    from_name: str = ""
    from_addr: str = ""
    to: str = ""
    cc: str = ""
    subject: str = ""
    date: datetime | None = None  # what the sender claims; age uses internaldate
    message_id: str = ""
    # GitLab key decoding (filled by domain.analysis)
    kind: str = "unknown"
    key: str | None = None
    project_id: int | None = None
    project_slug: str | None = None
    project_path: str | None = None
    issue_iid: int | None = None
    reply_key: str | None = None
    namespace_id: int | None = None
    matched_header: str | None = None
    # verdicts (filled by domain.analysis)
    stale: bool = False
    bot: bool = False
    bot_reason: str | None = None
    suspicious: bool = False
    suspicious_reason: str | None = None
    no_key: bool = False
    #: GitLab's verdict if (re-)ingested: a :class:`triage_tui.domain.outcome.Outcome` (verdict,
    #: handler, reason, needs_db, rule), filled by domain.classify; None before annotation.
    #: In JSON: gitlab_outcome, gitlab_handler, gitlab_outcome_reason, gitlab_needs_db.
    outcome: Any = None
    #: fields that could not be read and were degraded, each with a short reason ("unparseable
    #: Date: …"); the row is still listed, filtered and acted on by what could be read
    problems: tuple[str, ...] = ()
    # mail_room arbitration lock (filled by the lock service when Redis is configured)
    lock: str | None = None
    lock_ttl: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seen(self) -> bool:
        return "\\Seen" in self.flags

    @property
    def deleted(self) -> bool:
        return "\\Deleted" in self.flags

    @property
    def ignored(self) -> bool:
        """Marked \\Seen by triage-tui's decision (our keyword; IMAP keywords are case-insensitive)."""
        k = TRIAGE_KEYWORD.casefold()
        return any(f.casefold() == k for f in self.flags)

    @property
    def sender(self) -> str:
        if self.from_name and self.from_addr:
            return f"{self.from_name} <{self.from_addr}>"
        return self.from_addr or self.from_name

    def age_seconds(self, now: datetime | None = None) -> float | None:
        if self.internaldate is None:
            return None
        now = now or datetime.now(UTC)
        return (now - self.internaldate).total_seconds()

    def to_json(self, now: datetime | None = None) -> dict[str, Any]:
        d = {name: getattr(self, name) for name in _JSON_FIELDS}
        d["from"] = self.sender
        d["internaldate"] = self.internaldate.isoformat() if self.internaldate else None
        d["date"] = self.date.isoformat() if self.date else None
        age = self.age_seconds(now)
        d["age_seconds"] = round(age, 3) if age is not None else None
        d["flags"] = list(self.flags)
        o = self.outcome
        d["gitlab_outcome"] = o.verdict if o is not None else "unknown"
        d["gitlab_handler"] = o.handler if o is not None else None
        d["gitlab_outcome_reason"] = o.reason if o is not None else "not predicted"
        d["gitlab_needs_db"] = o.needs_db if o is not None else None
        d.update(self.extra)
        return d


_JSON_FIELDS = tuple(f.name for f in fields(Message) if f.name not in ("extra", "outcome"))
