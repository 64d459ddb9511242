"""From fetched fields to a :class:`Message`: the list path's per-message work.

``build_message`` parses the header block with the light parser, fills the basic fields, then
``annotate`` adds the GitLab key decoding and the verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from triage_tui.domain.headers import Headers, decode_words, first_address, parse_date
from triage_tui.domain.model import Message


@dataclass(frozen=True)
class AnalysisConfig:
    """What classification depends on. Built from settings; pure data."""

    address: str | None = None  # incoming address template, e.g. incoming+%{key}@example.com
    mailbox_kind: str = "incoming"  # or "service_desk": every key goes to the service desk handler
    stale_after: timedelta = timedelta(days=2)
    bot_sender_patterns: tuple[str, ...] = ()  # operator-configured regexes (case-insensitive)
    bot_subject_patterns: tuple[str, ...] = ()
    suspicious_patterns: tuple[str, ...] = ()
    project_names: dict[int, str] = field(default_factory=dict)
    gitlab_host: str | None = None  # GitLab only accepts reply-<key>@<this host> in References


def build_message(
    uid: int,
    uidvalidity: int,
    flags: tuple[str, ...],
    internaldate: datetime | None,
    size: int,
    header: bytes | None,
    config: AnalysisConfig,
    now: datetime | None = None,
) -> Message:
    headers = Headers.parse(header)
    name, addr = first_address(headers.get("from"))
    msg = Message(
        uid=uid,
        uidvalidity=uidvalidity,
        flags=flags,
        internaldate=internaldate,
        size=size,
        from_name=name,
        from_addr=addr,
        to=decode_words(headers.get("to") or ""),
        cc=decode_words(headers.get("cc") or ""),
        subject=decode_words(headers.get("subject") or ""),
        date=parse_date(headers.get("date")),
        message_id=(headers.get("message-id") or "").strip(),
    )
    annotate(msg, headers, config, now or datetime.now(UTC))
    return msg


def annotate(msg: Message, headers: Headers, config: AnalysisConfig, now: datetime) -> None:
    """Key decoding and verdicts. Never raises on hostile input."""
    try:
        from triage_tui.domain import classify  # noqa: PLC0415 - optional until the semantics land
    except ImportError:  # pragma: no cover
        classify = None  # type: ignore[assignment]
    if classify is not None and hasattr(classify, "annotate"):
        classify.annotate(msg, headers, config, now)
        return
    age = msg.age_seconds(now)
    msg.stale = age is not None and age > config.stale_after.total_seconds()
