"""Verdicts on a listed message: GitLab key, stale, bot, no key, suspicious. Each with a reason.

Runs once per message on listings of 100k messages, so everything that can be prepared once per
configuration is (compiled patterns, the template regex), and the per-message path is a single
pass over the header fields plus a few dictionary lookups. It never raises: one hostile message
must not break a listing.

Why these verdicts (see ``shared/docs/gitlab-mail.md`` §4 and seeds 001/002):

- **stale**: the runbook's "a couple of days as an upper limit": old mail surfacing on an issue
  confuses people more than it helps.
- **bot**: ``Auto-Submitted``/``X-Autoreply`` mail is silently dropped by GitLab; delivery status
  notifications are *not*, and answering them can start a reply loop; list and bulk mail is noise.
- **no key**: GitLab rejects the mail and writes back to the (possibly spoofed) sender.
- **suspicious**: sign-up or verification mail sent to a project's new-issue/merge-request or
  Service Desk address is how a third-party account gets registered with GitLab's address
  (seed 001, the "ticket trick"); and one Message-ID under several UIDs gets ingested twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from triage_tui.domain import outcome
from triage_tui.domain.headers import Headers, bounded_memo, impersonated_address
from triage_tui.domain.keys import UNKNOWN, find_key_grouped
from triage_tui.domain.model import Message
from triage_tui.domain.settings import AnalysisConfig

#: Kinds whose address creates something in a project from a stranger's mail.
SIGNUP_TARGET_KINDS = frozenset({"new_issue", "new_merge_request", "service_desk"})
_KIND_LABEL = {
    "new_issue": "new-issue",
    "new_merge_request": "new-merge-request",
    "service_desk": "Service Desk",
}
_MAX_MATCH = 2000  # subjects/senders are cut to this before pattern matching (hostile input)
_MAX_SHOWN = 40  # header values quoted in reasons are cut to this

_NOREPLY_RE = re.compile(
    r"no[-_.]?reply|do[-_.]?not[-_.]?reply|dont[-_.]?reply"
    r"|^(?:bounces?|notifications?|notify|auto[-_.]?reply|automailer|mailer|daemon)(?:[-+._].*)?$",
    re.IGNORECASE,
)
# The runbook's example: "bot responses from 3 weeks ago with a subject of 'Error fetching data
# from FOO'". Alerting and CI systems rarely set Auto-Submitted, so GitLab ingests them.
_AUTOMATION_RE = re.compile(
    r"(?:^|[-_.+])bots?$|^bots?[-_.+]|\[bot\]"
    r"|^(?:alerts?|alertmanager|alerting|monitoring|nagios|icinga|zabbix|prometheus|grafana|pagerduty"
    r"|opsgenie|sentry|jenkins|ci|builds?|cron|root)(?:[-_.+].*)?$",
    re.IGNORECASE,
)
_DSN_LOCALPARTS = frozenset({"mailer-daemon", "postmaster"})
_DSN_NAME_RE = re.compile(r"mail delivery (?:sub)?system", re.IGNORECASE)
_SIGNUP_RE = re.compile(
    r"\b(?:verify|confirm|validate)\s+(?:your\s+|this\s+|the\s+)?(?:e-?mail|account|address|registration|sign[- ]?up|identity)"
    r"|\b(?:e-?mail|account|address)\s+(?:verification|confirmation|validation)"
    r"|\bactivat(?:e|ion)\b.{0,30}\baccount|\baccount\s+activation"
    r"|\b(?:verification|security|confirmation|one[- ]time|login|sign[- ]?in)\s+(?:code|link|pin)"
    r"|\bmagic\s+link|\bOTP\b"
    r"|\bcomplete\s+your\s+(?:registration|sign[- ]?up|account)"
    r"|\bwelcome\s+to\b|\bthanks?\s+(?:you\s+)?for\s+(?:signing\s+up|registering)"
    # "Reset your password" is a service writing to an account holder; "Password reset link
    # expires" is an ordinary issue title: only the former is flagged
    r"|\b(?:reset|change)\s+your\s+password|\byour\s+password\s+reset"
    r"|\binvited\s+you\s+to\s+join|\bjoin\s+\S.{0,40}\bon\s+slack",
    re.IGNORECASE,
)


def _cut(value: str, n: int = _MAX_SHOWN) -> str:
    value = " ".join(value.split())
    return value if len(value) <= n else value[: n - 1] + "…"


def _compile(patterns: tuple[str, ...]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """Operator patterns are regexes, case-insensitive, searched in the sender's address and in
    "Name <address>" (or the subject); one that does not compile is taken as literal text
    (configuration is validated elsewhere; classification must not raise)."""
    out = []
    for p in patterns:
        try:
            out.append((p, re.compile(p, re.IGNORECASE)))
        except (re.error, TypeError, ValueError, OverflowError, RecursionError):
            out.append((p, re.compile(re.escape(str(p)), re.IGNORECASE)))
    return tuple(out)


@dataclass(frozen=True)
class _Rules:
    sender: tuple[tuple[str, re.Pattern[str]], ...]
    subject: tuple[tuple[str, re.Pattern[str]], ...]
    suspicious: tuple[tuple[str, re.Pattern[str]], ...]


@lru_cache(maxsize=16)
def _rules(sender: tuple[str, ...], subject: tuple[str, ...], suspicious: tuple[str, ...]) -> _Rules:
    return _Rules(_compile(sender), _compile(subject), _compile(suspicious))


def _local_part(addr: str) -> str:
    return addr.rpartition("@")[0] if "@" in addr else addr


def _sender_traits(from_addr: str, from_name: str, impersonates: str | None) -> tuple[str | None, str | None]:
    """(the delivery-status part the sender gives, the no-reply/automated reason): the parts of
    :func:`bot_reasons` that depend on the sender only."""
    local = "" if impersonates else _local_part(from_addr).lower()
    dsn_from = None
    if local in _DSN_LOCALPARTS:
        dsn_from = f"from {local.upper() if local == 'mailer-daemon' else local}"
    elif not impersonates and _DSN_NAME_RE.search(from_name[:_MAX_MATCH]):
        dsn_from = "from a mail delivery system"
    reason = None
    if local and local not in _DSN_LOCALPARTS and _NOREPLY_RE.search(local[:_MAX_MATCH]):
        reason = f"no-reply style sender {_cut(from_addr)}"
    elif (local and _AUTOMATION_RE.search(local[:_MAX_MATCH])) or (
            not impersonates and "[bot]" in from_name[:_MAX_MATCH].lower()):
        reason = f"automated sender {_cut(from_addr)} (monitoring, CI or a bot)"
    return dsn_from, reason


_sender_traits_once = bounded_memo(_sender_traits)


def bot_reasons(msg: Message, first: dict[str, str], rules: _Rules | None = None,
                impersonates: str | None = None) -> list[str]:
    """Why a message looks machine-sent, most consequential first. A sender whose display name
    ``impersonates`` another address is never taken for a bot by who it says it is: only the
    headers that make GitLab drop it (Auto-Submitted...) and its real address count."""
    reasons: list[str] = []
    auto = first.get("auto-submitted")
    if auto is not None and auto.strip() != "no":  # GitLab compares exactly, after strip
        reasons.append(f"Auto-Submitted: {_cut(auto.strip()) or '(empty)'}: GitLab will ignore this")
    autoreply = first.get("x-autoreply")
    if autoreply is not None and autoreply.strip() == "yes":
        reasons.append("X-Autoreply: yes: GitLab will ignore this")
    dsn = []
    ctype = first.get("content-type")
    if ctype is not None and ctype[:40].split(";", 1)[0].strip().lower() == "multipart/report":
        dsn.append("multipart/report")
    rpath = first.get("return-path")
    if rpath is not None and rpath.replace(" ", "").replace("\t", "") == "<>":
        dsn.append("Return-Path <>")
    from_addr, from_name = msg.from_addr, msg.from_name
    traits = _sender_traits_once(from_addr, from_name, impersonates)  # senders repeat: each judged once
    dsn_from, sender_reason = traits
    if dsn_from:
        dsn.append(dsn_from)
    if dsn:
        reasons.append(f"delivery status notification ({', '.join(dsn)}): reply-loop risk")
    prec = first.get("precedence")
    if prec is not None and prec.strip().lower() in ("bulk", "junk", "list"):
        reasons.append(f"Precedence: {prec.strip().lower()}")
    if "list-id" in first:
        reasons.append("mailing list (List-Id)")
    elif "list-unsubscribe" in first:
        reasons.append("bulk mail (List-Unsubscribe)")
    if sender_reason:
        reasons.append(sender_reason)
    if rules is not None:
        addr = msg.from_addr[:_MAX_MATCH]
        sender = addr if impersonates else msg.sender[:_MAX_MATCH]
        for text, rx in rules.sender:
            if rx.search(addr) or rx.search(sender):
                reasons.append(f"sender matches configured pattern {_cut(text)!r}")
                break
        subject = msg.subject[:_MAX_MATCH]
        for text, rx in rules.subject:
            if rx.search(subject):
                reasons.append(f"subject matches configured pattern {_cut(text)!r}")
                break
    return reasons


def suspicious_reasons(msg: Message, rules: _Rules | None = None, impersonates: str | None = None) -> list[str]:
    """Signs of an account-hijack attempt through a project address (seed 001), and of phishing:
    a display name showing an address that is not the sender's (``impersonates``)."""
    reasons: list[str] = []
    if impersonates:
        reasons.append(f"display name impersonates {_cut(impersonates)} "
                       f"(the sender is {_cut(msg.from_addr) if msg.from_addr else 'no address at all'})")
    subject = msg.subject[:_MAX_MATCH]
    if msg.kind in SIGNUP_TARGET_KINDS and _SIGNUP_RE.search(subject):
        reasons.append(
            f"sign-up/verification mail to a {_KIND_LABEL[msg.kind]} address: "
            "a third-party account may be registering with the project's address"
        )
    if rules is not None and rules.suspicious:
        addr, sender = msg.from_addr[:_MAX_MATCH], msg.sender[:_MAX_MATCH]
        for text, rx in rules.suspicious:
            if rx.search(subject) or rx.search(addr) or rx.search(sender):
                reasons.append(f"matches configured suspicious pattern {_cut(text)!r}")
                break
    return reasons


_impersonated_once = bounded_memo(lambda name, addr: impersonated_address(name, addr))


def _impersonated(name: str, addr: str) -> str | None:
    """:func:`impersonated_address`, each (display name, address) pair judged once."""
    if not name or (name.isascii() and "@" not in name):
        return None  # what impersonated_address answers at once
    return _impersonated_once(name, addr)


def _group(headers: Headers) -> tuple[dict[str, list[str]], dict[str, str]]:
    """(every value by name, the first value by name): built once per header block and shared."""
    return headers.grouped(), headers.first()


class KeyLookup:
    """A header block's grouped fields and GitLab key (the first step of :func:`annotate`), done
    once: a listing's first pass looks at the key before it builds the rest (see
    :func:`~triage_tui.domain.analysis.build_message`)."""

    __slots__ = ("first", "grouped", "info", "key_error", "problems", "shared")

    def __init__(self, headers: Headers, config: AnalysisConfig) -> None:
        self.problems: list[str] = []
        self.key_error: Exception | None = None
        self.shared: dict[str, list[str]] | None = None  # the grouping, shared with the outcome's prediction
        try:
            self.grouped, self.first = _group(headers)
            self.shared = self.grouped
        except Exception as exc:  # noqa: BLE001 - one hostile message must not break a listing
            self.grouped, self.first = {}, {}
            self.problems.append(f"header fields unreadable ({type(exc).__name__})")
        try:
            # Without the template nothing can be decoded: "unknown", never claimed as keyless.
            self.info = (find_key_grouped(self.grouped, config.address, config.mailbox_kind,
                                          getattr(config, "gitlab_host", None))
                         if config.address else UNKNOWN)
        except Exception as exc:  # noqa: BLE001
            self.info = UNKNOWN
            self.key_error = exc
            self.problems.append(f"GitLab key could not be decoded ({type(exc).__name__}): handler unknown")


def annotate(msg: Message, headers: Headers, config: AnalysisConfig, now: datetime,
             key: KeyLookup | None = None) -> None:
    """Fill the key decoding and the verdicts of ``msg``. Never raises: each verdict is its own
    step, and one that fails keeps its default and adds a reason to ``msg.problems``. ``key``:
    :class:`KeyLookup` of these ``headers`` and ``config``, when already done."""
    if key is None:
        key = KeyLookup(headers, config)
    problems = list(key.problems)
    key_error, shared, first, info = key.key_error, key.shared, key.first, key.info
    msg.kind, msg.key = info.kind, info.key
    msg.project_id, msg.project_slug, msg.project_path = info.project_id, info.project_slug, info.project_path
    msg.issue_iid, msg.reply_key, msg.namespace_id = info.issue_iid, info.reply_key, info.namespace_id
    msg.matched_header = info.matched_header
    msg.no_key = bool(config.address) and info.key is None and not problems

    try:
        age = msg.age_seconds(now)
        msg.stale = age is not None and age > config.stale_after.total_seconds()
    except Exception as exc:  # noqa: BLE001
        msg.stale = False
        problems.append(f"age unknown ({type(exc).__name__})")

    try:
        imp = _impersonated(msg.from_name, msg.from_addr)
    except Exception as exc:  # noqa: BLE001
        imp = None
        problems.append(f"display name not checked ({type(exc).__name__})")
    rules = None
    try:
        if config.bot_sender_patterns or config.bot_subject_patterns or config.suspicious_patterns:
            rules = _rules(tuple(config.bot_sender_patterns), tuple(config.bot_subject_patterns),
                           tuple(config.suspicious_patterns))
    except Exception as exc:  # noqa: BLE001
        problems.append(f"configured patterns not applied ({type(exc).__name__})")
    try:
        bots = bot_reasons(msg, first, rules, imp)
    except Exception as exc:  # noqa: BLE001
        bots = []
        problems.append(f"bot verdict unknown ({type(exc).__name__})")
    msg.bot = bool(bots)
    msg.bot_reason = "; ".join(bots) if bots else None
    try:
        sus = suspicious_reasons(msg, rules, imp)
    except Exception as exc:  # noqa: BLE001
        sus = []
        problems.append(f"suspicious verdict unknown ({type(exc).__name__})")
    # keep a duplicate verdict set earlier by mark_duplicates (re-annotation must not drop it)
    dup = _dup_part(msg.suspicious_reason)
    if dup:
        sus.append(dup)
    msg.suspicious = bool(sus)
    msg.suspicious_reason = "; ".join(sus) if sus else None
    # GitLab's verdict (never raises; ~1-3 us with the key decoded above)
    if key_error is not None:
        msg.outcome = outcome.Outcome(outcome.UNKNOWN, None, f"the key could not be decoded "
                                      f"({type(key_error).__name__}): GitLab's verdict is unknown", False, "error")
    else:
        msg.outcome = outcome.predict(headers, info, msg.size, config, grouped=shared)
    if problems:  # re-annotation must not repeat them
        msg.problems = tuple(dict.fromkeys((*msg.problems, *problems)))


# --- duplicates ------------------------------------------------------------------------------
#
# A message is a duplicate when a copy with the same Message-ID and a LOWER UID is in the same
# listing: the first delivered copy is the original, the later ones are the duplicates (GitLab
# would process each copy). Ignoring the duplicates (``mark-seen --filter suspicious``) leaves
# the original to be processed once; flagging every copy made that filter drop the original too.
# One rule everywhere: streamed listings (``list``, a selection, the TUI) and whole ones (the
# plan) give the same verdicts, whatever order the rows come in (see :class:`Duplicates`).

_DUP_PREFIX = "duplicate: same Message-ID as UID "


def _dup_part(reason: str | None) -> str | None:
    if not reason:
        return None
    for part in reason.split("; "):
        if part.startswith(_DUP_PREFIX):
            return part
    return None


def _without_dup(reason: str | None) -> list[str]:
    if not reason:
        return []
    return [p for p in reason.split("; ") if not p.startswith(_DUP_PREFIX)]


def set_duplicate(m: Message, first: int | None) -> bool:
    """Set ``m``'s duplicate verdict: a later copy of UID ``first`` (None: not a duplicate).
    Other suspicious reasons are kept. Returns whether ``m`` is a duplicate."""
    if first is None and not m.suspicious_reason:
        return False  # the common case: nothing to add, nothing to take away
    rest = _without_dup(m.suspicious_reason)
    if first is not None:
        rest.append(f"{_DUP_PREFIX}{first}, delivered earlier (GitLab would process each copy)")
    m.suspicious = bool(rest)
    m.suspicious_reason = "; ".join(rest) if rest else None
    return first is not None


class Duplicates:
    """The duplicate verdicts of one listing, given as its rows stream out. :meth:`see` every
    row of the listing (in any order, but each before any later copy of it is marked); :meth:`mark`
    the rows as they go out: a row is a duplicate iff a copy with a lower UID was seen. A listing
    sees its rows as it builds them, before it gives any row with a higher UID (also the rows it
    gives last, whose key is in Received): so a verdict never waits for a row that comes later.
    A batch at a time (the listing's rows number 100k: a call per row cost 60 ms)."""

    __slots__ = ("first",)

    def __init__(self) -> None:
        self.first: dict[str, int] = {}  # Message-ID -> the lowest UID seen with it

    def see(self, rows: Iterable[Message]) -> None:
        first = self.first
        keep = first.setdefault
        for m in rows:
            mid = m.message_id.strip()
            if mid:
                u = m.uid
                if keep(mid, u) > u:
                    first[mid] = u

    def mark(self, rows: Iterable[Message]) -> int:
        """Set the verdict of each row; returns how many are duplicates."""
        get = self.first.get
        n = 0
        for m in rows:
            mid = m.message_id.strip()
            f = get(mid) if mid else None
            if f is not None and f < m.uid:
                set_duplicate(m, f)
                n += 1
            elif m.suspicious_reason:
                set_duplicate(m, None)
        return n


def mark_duplicates(messages: Iterable[Message]) -> int:
    """Set the duplicate verdict of every message of a whole listing (see :class:`Duplicates`):
    recomputed from scratch, so it can be called again after each refresh (a copy whose
    original is gone is no longer a duplicate). Returns how many messages are duplicates."""
    msgs = list(messages)
    dups = Duplicates()
    dups.see(msgs)
    return dups.mark(msgs)
