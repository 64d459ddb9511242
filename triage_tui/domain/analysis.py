"""From fetched fields to a :class:`Message`: the list path's per-message work.

``build_message`` parses the header block with the light parser, fills the basic fields, then
``annotate`` adds the GitLab key decoding and the verdicts.

One bad message never costs more than its own row: every field is computed in its own guarded
step, and a field that cannot be read is degraded (left empty, or kept raw) with a short reason
in :attr:`Message.problems`; a last-resort guard around the whole build returns a minimal row
(UID, flags, size, INTERNALDATE) with a note. A ``try`` that does not raise costs nothing on
Python 3.11, so the guards stay off the list path's profile.

Dates: age, ``stale``, ``age>`` and the age sort and groups always count from INTERNALDATE (what
the server recorded on delivery). The ``Date`` header is the sender's claim: kept as sent when it
parses, noted as a problem when it does not (``+2400``, year 0) or when it is implausible (before
1980, or more than a day after delivery): it is only shown, and used for the transit time in
``peek``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from triage_tui.domain import classify
from triage_tui.domain.headers import (
    Headers,
    bounded_memo,
    clear_memos,
    decode_words,
    first_address,
    parse_date,
)
from triage_tui.domain.model import Message
from triage_tui.domain.outcome import UNKNOWN, Outcome
from triage_tui.domain.settings import AnalysisConfig

#: A Date before this is a broken clock or a forgery, not a send time.
PLAUSIBLE_DATE_FROM = datetime(1980, 1, 1, tzinfo=UTC)
#: A Date this far after delivery (INTERNALDATE, else now) is a clock running ahead.
FUTURE_DATE_SLACK = timedelta(days=1)
#: GitLab's verdict on a message whose header could not be analysed at all.
UNREAD_OUTCOME = Outcome(UNKNOWN, None, "the header could not be analysed: GitLab's verdict is unknown", False, "error")
_SHOWN = 60  # characters of a header value quoted in a problem
# Senders, recipients and subjects repeat across a mailbox: each distinct value is parsed once
# (bounded caches: values over 256 characters are never kept, see bounded_memo).
# (each looks its function up when it runs, so a patched decode_words is what a miss calls)
_first_address = bounded_memo(lambda value: first_address(value))
_decode_words = bounded_memo(lambda value: decode_words(value))


def clear_value_caches() -> None:
    """Empty every per-value cache of the list path (tests and benchmarks: a cold start)."""
    clear_memos()


def shown(value: str | None, n: int = _SHOWN) -> str:
    """A header value as quoted in a problem: whitespace collapsed, cut to ``n`` characters
    (not yet inert: every output path makes it so)."""
    if not value:
        return "(empty)"
    value = " ".join(value[: n * 4].split())
    return value if len(value) <= n else value[: n - 1] + "…"


def problem(what: str, value: str | None, exc: BaseException) -> str:
    return f"unreadable {what} ({type(exc).__name__}): {shown(value)}"


#: Where a listing's first pass (which leaves out Received) found a key GitLab looks for only
#: after Received: such a message, like one with no key found, waits for the second pass.
AFTER_RECEIVED = frozenset({"x-original-to", "x-forwarded-to", "cc"})


def held_back(matched_header: str | None) -> bool:
    """Whether a listing's second pass, with Received, brings this row (its key is in Received
    or after it, or nowhere before it)."""
    if matched_header is None:
        return True
    low = matched_header.lower()
    return low in AFTER_RECEIVED or low == "received"


def build_message(
    uid: int,
    uidvalidity: int,
    flags: tuple[str, ...],
    internaldate: datetime | None,
    size: int,
    header: bytes | None,
    config: AnalysisConfig,
    now: datetime | None = None,
    *,
    first_pass: bool = False,
) -> Message:
    """One row from one header block. Never raises (see the module docstring).

    ``first_pass``: the block leaves out Received (a listing's first pass). A message whose
    key is not found before Received (:func:`held_back`) is built by the second pass, from its
    whole header: here it gets only what the first pass needs of it (UID, flags, Message-ID
    and where its key was found), not the decoding and the verdicts it would throw away."""
    try:
        return _build(uid, uidvalidity, flags, internaldate, size, header, config, now or datetime.now(UTC),
                      first_pass)
    except Exception as exc:  # noqa: BLE001 - the last resort: a row with what the server said
        return minimal_message(uid, uidvalidity, flags, internaldate, size, config, now, exc)


def minimal_message(
    uid: int,
    uidvalidity: int,
    flags: tuple[str, ...],
    internaldate: datetime | None,
    size: int,
    config: AnalysisConfig,
    now: datetime | None,
    exc: BaseException,
) -> Message:
    """The row of a message whose header could not be analysed at all: what the server said
    (UID, flags, size, INTERNALDATE, and so age and ``stale``) and why the rest is missing."""
    if not (isinstance(internaldate, datetime) and internaldate.utcoffset() is not None):
        internaldate = None
    msg = Message(
        uid=uid if isinstance(uid, int) else 0,
        uidvalidity=uidvalidity if isinstance(uidvalidity, int) else 0,
        flags=tuple(f for f in flags or () if isinstance(f, str)),
        internaldate=internaldate,
        size=size if isinstance(size, int) else 0,
        problems=(f"header not analysed ({type(exc).__name__}): only UID, flags, size and delivery time "
                  "are shown",),
    )
    msg.outcome = UNREAD_OUTCOME
    try:
        age = msg.age_seconds(now or datetime.now(UTC))
        msg.stale = age is not None and age > config.stale_after.total_seconds()
    except Exception:  # noqa: BLE001, S110 - stale stays False
        pass
    return msg


def _build(
    uid: int,
    uidvalidity: int,
    flags: tuple[str, ...],
    internaldate: datetime | None,
    size: int,
    header: bytes | None,
    config: AnalysisConfig,
    now: datetime,
    first_pass: bool = False,
) -> Message:
    problems: list[str] = []
    if internaldate is not None and internaldate.tzinfo is None:
        internaldate = internaldate.replace(tzinfo=UTC)  # a naive time would break every age
    try:
        headers = Headers.parse(header)
    except Exception as exc:  # noqa: BLE001
        headers = Headers([])
        problems.append(f"unreadable header block ({type(exc).__name__})")
    key = None
    if first_pass:
        key = classify.KeyLookup(headers, config)
        if held_back(key.info.matched_header):
            return Message(uid=uid, uidvalidity=uidvalidity, flags=flags, internaldate=internaldate, size=size,
                           message_id=(key.first.get("message-id") or "").strip(),
                           matched_header=key.info.matched_header)
    get = headers.first().get  # lower-case names: Headers.get without its lower()
    value = get("from")
    try:
        name, addr = _first_address(value) if value else ("", "")
    except Exception as exc:  # noqa: BLE001
        name, addr = value or "", ""  # shown raw
        problems.append(problem("From", value, exc))
    to, cc, subject = get("to"), get("cc"), get("subject")
    try:
        to = (_decode_words(to) if "=?" in to else to) if to else ""
    except Exception as exc:  # noqa: BLE001 - shown raw
        problems.append(problem("To", to, exc))
    try:
        cc = (_decode_words(cc) if "=?" in cc else cc) if cc else ""
    except Exception as exc:  # noqa: BLE001
        problems.append(problem("Cc", cc, exc))
    try:
        subject = (_decode_words(subject) if "=?" in subject else subject) if subject else ""
    except Exception as exc:  # noqa: BLE001
        problems.append(problem("Subject", subject, exc))
    value = get("date")
    date = None
    if value:
        try:
            date = parse_date(value)
            if date is None:
                problems.append(f"unparseable Date: {shown(value)}")
            elif date < PLAUSIBLE_DATE_FROM or date - (internaldate or now) > FUTURE_DATE_SLACK:
                problems.append(f"implausible Date: {shown(value)} (age counts from delivery)")
        except Exception as exc:  # noqa: BLE001
            date = None
            problems.append(problem("Date", value, exc))
    msg = Message(
        uid=uid,
        uidvalidity=uidvalidity,
        flags=flags,
        internaldate=internaldate,
        size=size,
        from_name=name,
        from_addr=addr,
        to=to or "",
        cc=cc or "",
        subject=subject or "",
        date=date,
        message_id=(get("message-id") or "").strip(),
    )
    if problems:
        msg.problems = tuple(problems)
    classify.annotate(msg, headers, config, now, key)
    return msg


def annotate(msg: Message, headers: Headers, config: AnalysisConfig, now: datetime) -> None:
    """Key decoding and verdicts. Never raises on hostile input."""
    classify.annotate(msg, headers, config, now)
