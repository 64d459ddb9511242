"""Header analysis for ``peek``: where a message spent its time, how it travelled, what GitLab
will make of it. Offline: no DNS, no network.

- Received hops oldest first (the header lists them newest first), each with from/by/with/id/for
  and its timestamp, the delay since the previous point (the Date header for the first hop) and
  that delay's share of the total; TLS per hop from ``ESMTPS``/``ESMTPSA`` and ``version=TLS...``
  or ``using TLSv1.x`` comments, plaintext SMTP hops flagged, negative delays flagged as clock skew.
- ``Authentication-Results`` (spf, dkim, dmarc, arc) with the authserv-id that wrote them.
- Transit (Date → last hop → INTERNALDATE) versus waiting in the mailbox (INTERNALDATE → now):
  the first is the mail system's delay, the second is mail_room's backlog.

Inputs can be huge (a 10 MB header): every value is cut to a bounded length before parsing, hop
and result counts are capped, and no pattern can backtrack more than linearly.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from triage_tui.domain.analysis import AnalysisConfig, build_message, shown
from triage_tui.domain.headers import Headers, parse_date
from triage_tui.domain.keys import UNKNOWN, KeyInfo, find_key
from triage_tui.domain.outcome import glyph_for

MAX_HOPS = 100
MAX_VALUE = 8192  # characters of one Received / Authentication-Results value that are parsed
MAX_AUTH = 20

_CLAUSES = ("from", "by", "via", "with", "id", "for")
_TLS_PROTOCOLS = frozenset({"esmtps", "esmtpsa", "lmtps", "lmtpsa", "utf8smtps", "utf8smtpsa"})
_PLAIN_PROTOCOLS = frozenset({"smtp", "esmtp", "esmtpa", "utf8smtp", "utf8smtpa"})
_TLS_DETAIL_RE = re.compile(
    r"version=(TLS[A-Za-z0-9_.]{0,12})|using (TLSv?[0-9.]{1,6}|SSLv[0-9])|\((TLS ?v?1[._][0-3])\)"
    r"|\b(TLS1[._][0-3])\b",
)
_IP_RE = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]{2,45})\]|\(([0-9]{1,3}(?:\.[0-9]{1,3}){3})\)")
_DATE_TAIL_RE = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),?\s{1,5})?[0-9]{1,2}\s{1,5}[A-Za-z]{3}\s{1,5}[0-9]{2,4}"
    r"\s{1,5}[0-9]{1,2}:[0-9]{2}(?::[0-9]{2})?(?:\.[0-9]{1,9})?(?:\s{0,5}(?:[+-][0-9]{4}|[A-Za-z]{1,5}))?"
    r"(?:\s{0,5}\([^()]{0,40}\))?\s*$"
)
_TOKEN_RE = re.compile(r"\(|\)|[^\s()]+")


@dataclass
class Hop:
    """One Received header. ``delay_seconds`` is since the previous hop (the Date header for the
    first); ``share`` is that delay's part of all positive delays (None when negative/unknown)."""

    index: int  # 1 = oldest
    from_host: str | None = None
    from_ip: str | None = None
    from_detail: str | None = None
    by: str | None = None
    via: str | None = None
    with_: str | None = None
    id: str | None = None
    for_: str | None = None
    time: datetime | None = None
    tls: bool | None = None  # True: TLS evidence; False: plaintext SMTP; None: not SMTP / unknown
    tls_detail: str | None = None
    delay_seconds: float | None = None
    share: float | None = None
    clock_skew: bool = False
    plaintext: bool = False
    raw: str = ""
    bad_time: str | None = None  # the date text after ';' when it could not be read
    unreadable: str | None = None  # why this Received value could not be parsed at all

    def to_json(self) -> dict[str, Any]:
        names = {"from_host": "from", "with_": "with", "for_": "for"}
        d = {names.get(k, k): v for k, v in asdict(self).items()}
        d["time"] = self.time.isoformat() if self.time else None
        return d


@dataclass
class AuthResult:
    """One Authentication-Results header: who checked (authserv-id) and what they found."""

    authserv_id: str
    results: dict[str, list[str]] = field(default_factory=dict)  # method -> ["pass", ...]
    details: list[str] = field(default_factory=list)

    def first(self, method: str) -> str | None:
        r = self.results.get(method)
        return r[0] if r else None

    def to_json(self) -> dict[str, Any]:
        return {
            "authserv_id": self.authserv_id,
            "spf": self.first("spf"), "dkim": self.first("dkim"), "dmarc": self.first("dmarc"),
            "arc": self.first("arc"), "results": self.results, "details": self.details,
        }


@dataclass
class HeaderAnalysis:
    date: datetime | None
    internaldate: datetime | None
    now: datetime
    hops: list[Hop]
    auth: list[AuthResult]
    key: KeyInfo
    transit_seconds: float | None  # Date -> INTERNALDATE
    date_to_last_hop_seconds: float | None
    last_hop_to_internaldate_seconds: float | None
    waiting_seconds: float | None  # INTERNALDATE -> now
    classification: dict[str, Any]
    summary: dict[str, Any]
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        def iso(d: datetime | None) -> str | None:
            return d.isoformat() if d else None

        return {
            "summary": self.summary,
            "date": iso(self.date),
            "internaldate": iso(self.internaldate),
            "now": iso(self.now),
            "transit_seconds": self.transit_seconds,
            "date_to_last_hop_seconds": self.date_to_last_hop_seconds,
            "last_hop_to_internaldate_seconds": self.last_hop_to_internaldate_seconds,
            "waiting_seconds": self.waiting_seconds,
            "hops": [h.to_json() for h in self.hops],
            "auth": [a.to_json() for a in self.auth],
            "key": self.key.to_json(),
            "classification": self.classification,
            "warnings": self.warnings,
        }

    def render_text(self) -> list[str]:
        """Plain lines for ``peek`` (the caller makes them inert before printing)."""
        k = self.key
        lines = [f"GitLab key: {describe_key(k)}"]
        c = self.classification
        verdicts = []
        if c.get("no_key"):
            verdicts.append("no key: GitLab would reject it and write to the sender")
        if c.get("stale"):
            verdicts.append("stale")
        if c.get("bot"):
            verdicts.append(f"bot: {c.get('bot_reason')}")
        if c.get("suspicious"):
            verdicts.append(f"suspicious: {c.get('suspicious_reason')}")
        lines.append("Verdicts: " + ("; ".join(verdicts) if verdicts else "none"))
        verdict = c.get("gitlab_outcome")
        if verdict:
            handler = c.get("gitlab_handler")
            lines.append(f"GitLab's verdict if re-ingested: {glyph_for(verdict)} {verdict}"
                         + (f" by {handler}" if handler else "") + f": {c.get('gitlab_outcome_reason')}")
        problems = c.get("problems") or ()
        if problems:
            lines.append("Problems: " + "; ".join(problems))
        lines.append(
            f"Transit: {_dur(self.transit_seconds)} (Date → last hop {_dur(self.date_to_last_hop_seconds)}, "
            f"last hop → mailbox {_dur(self.last_hop_to_internaldate_seconds)}); "
            f"waiting in the mailbox: {_dur(self.waiting_seconds)}")
        lines.append(f"Received hops, oldest first ({len(self.hops)}):")
        for h in self.hops:
            tls = "TLS" + (f" {h.tls_detail}" if h.tls_detail else "") if h.tls else (
                "PLAINTEXT" if h.plaintext else "tls ?")
            share = f" ({h.share:.0%})" if h.share is not None else ""
            skew = " CLOCK SKEW" if h.clock_skew else ""
            src = h.from_host or "?"
            if h.from_ip and h.from_ip not in src:
                src += f" [{h.from_ip}]"
            lines.append(f"  {h.index:>2}. {src} → {h.by or '?'}  with {h.with_ or '?'}  {tls}  "
                         f"+{_dur(h.delay_seconds)}{share}{skew}")
        for a in self.auth:
            res = " ".join(f"{m}={a.first(m)}" for m in ("spf", "dkim", "dmarc", "arc") if a.first(m))
            lines.append(f"Authentication-Results by {a.authserv_id or '?'}: {res or '(none)'}")
        lines.extend(f"Warning: {w}" for w in self.warnings)
        return lines


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    if s < 120:
        return f"{sign}{s:.0f}s"
    if s < 7200:
        return f"{sign}{s / 60:.0f}m"
    if s < 172800:
        return f"{sign}{s / 3600:.1f}h"
    return f"{sign}{s / 86400:.1f}d"


def describe_key(k: KeyInfo) -> str:
    """One line for a decoded key: what GitLab would do and for which project."""
    if k.key is None:
        return "none found (GitLab would reject it)" if k.kind == "unknown" else k.kind
    parts = [k.kind]
    if k.project_id is not None:
        parts.append(f"project {k.project_id}" + (f" ({k.project_slug})" if k.project_slug else ""))
    elif k.project_slug:
        parts.append(f"project slug {k.project_slug}")
    if k.project_path:
        parts.append(f"path {k.project_path}")
    if k.issue_iid is not None:
        parts.append(f"issue #{k.issue_iid}")
    if k.reply_key:
        parts.append(f"reply key {k.reply_key}")
    if k.partition is not None:
        parts.append(f"partition {k.partition}")
    if k.namespace_id is not None:
        parts.append(f"namespace {k.namespace_id}")
    if k.matched_header:
        parts.append(f"matched in {k.matched_header}")
    return "  ".join(parts) + f"  [key {k.key}]"


# --- Received -------------------------------------------------------------------------------

def _split_date(value: str) -> tuple[str, datetime | None, str | None]:
    """(clauses, time, unreadable date text): the date follows the last ';' — or, when a server
    forgot the ';', is recognised at the end of the value."""
    head, semi, tail = value.rpartition(";")
    tail = tail.strip() if semi else ""
    if tail:
        dt = parse_date(tail)
        if dt is not None:
            return head, dt, None
    m = _DATE_TAIL_RE.search(value, max(0, len(value) - 120))
    if m:
        dt = parse_date(m.group(0).strip())
        if dt is not None:
            return value[: m.start()], dt, None
        if not semi:
            return value[: m.start()], None, m.group(0).strip()
    return (head if semi else value), None, (tail or None)


def _tokens(text: str) -> list[tuple[str, int]]:
    """Top-level words and parenthesised comments as (text, depth-at-start 0) pairs: comments
    come back whole (nested parentheses included) with a leading '('."""
    out: list[tuple[str, int]] = []
    depth = 0
    buf: list[str] = []
    for m in _TOKEN_RE.finditer(text):
        t = m.group(0)
        if t == "(":
            depth += 1
            buf.append(t)
        elif t == ")":
            if depth:
                buf.append(t)
                depth -= 1
                if depth == 0:
                    out.append((" ".join(buf).replace("( ", "(").replace(" )", ")"), 1))
                    buf = []
        elif depth:
            buf.append(t)
        else:
            out.append((t, 0))
    if buf:
        out.append((" ".join(buf).replace("( ", "("), 1))
    return out


def parse_received(value: str, index: int = 0) -> Hop:
    """One Received value (Postfix, Exim, Sendmail, qmail, Exchange, Gmail...). Never raises."""
    raw = value[:MAX_VALUE]
    clauses_text, when, bad = _split_date(raw)
    hop = Hop(index=index, time=when, raw=" ".join(raw.split()), bad_time=bad)
    current: str | None = None
    values: dict[str, list[str]] = {}
    comments: dict[str, list[str]] = {}
    for tok, is_comment in _tokens(clauses_text):
        low = tok.lower()
        if not is_comment and low in _CLAUSES:
            current = low
            values.setdefault(current, [])
            continue
        if current is None:
            continue  # e.g. qmail's "(qmail 1234 invoked by uid 89)"
        (comments if is_comment else values).setdefault(current, []).append(tok)
    first = {k: v[0] for k, v in values.items() if v}
    hop.from_host = first.get("from")
    hop.by = first.get("by")
    hop.id = first.get("id")
    if values.get("via"):
        hop.via = " ".join(values["via"][:4])[:80]
    if values.get("with"):
        hop.with_ = " ".join(values["with"][:3])[:80] if first["with"].lower() == "microsoft" else first["with"]
    if "for" in first:
        hop.for_ = first["for"].strip("<>;") or None
    fc = " ".join(comments.get("from", []))
    hop.from_detail = fc[:300] or None
    for text in (fc, hop.from_host or ""):
        m = _IP_RE.search(text)
        if m:
            hop.from_ip = m.group(1) or m.group(2)
            break
    proto = (first.get("with") or "").lower()
    if proto == "microsoft" and "smtp" in (hop.with_ or "").lower():
        proto = "smtp"  # Exchange: "with Microsoft SMTP Server (version=TLS1_2, ...)"
    m = _TLS_DETAIL_RE.search(clauses_text)
    if m:
        hop.tls_detail = next(g for g in m.groups() if g)
    if proto in _TLS_PROTOCOLS or m is not None:
        hop.tls = True
    elif proto in _PLAIN_PROTOCOLS:
        hop.tls = False
        hop.plaintext = True
    return hop


def parse_hops(received: list[str], date: datetime | None = None) -> list[Hop]:
    """Received values as listed in the header (newest first) → hops oldest first, with delays
    (the first measured from ``date``) and shares."""
    values = received[:MAX_HOPS]
    hops = []
    for v in reversed(values):
        try:
            hops.append(parse_received(v))
        except Exception as exc:  # noqa: BLE001 - one bad hop never hides the others
            hops.append(Hop(index=0, raw=" ".join(v[:200].split()), unreadable=type(exc).__name__))
    prev = date
    for i, hop in enumerate(hops, start=1):
        hop.index = i
        if hop.time is not None:
            if prev is not None:
                hop.delay_seconds = (hop.time - prev).total_seconds()
                hop.clock_skew = hop.delay_seconds < 0
            prev = hop.time
    positive = sum(h.delay_seconds for h in hops if h.delay_seconds and h.delay_seconds > 0)
    for hop in hops:
        if hop.delay_seconds is not None and hop.delay_seconds >= 0 and positive > 0:
            hop.share = round(hop.delay_seconds / positive, 4)
    return hops


# --- Authentication-Results ----------------------------------------------------------------

def _strip_comments(text: str) -> str:
    out, depth = [], 0
    for c in text:
        if c == "(":
            depth += 1
        elif c == ")":
            depth = max(0, depth - 1)
        elif not depth:
            out.append(c)
    return "".join(out)


def parse_auth_results(value: str) -> AuthResult:
    """``authserv-id [version]; method=result (comment) prop=value; ...``. Never raises."""
    text = _strip_comments(value[:MAX_VALUE])
    parts = [p.strip() for p in text.split(";")]
    head = parts[0].split()
    res = AuthResult(authserv_id=head[0] if head else "")
    for part in parts[1:]:
        if not part or part.lower() == "none":
            continue
        method, eq, rest = part.partition("=")
        if not eq:
            continue
        method = method.strip().lower().split("/")[0]
        words = rest.split()
        result = words[0].lower() if words else ""
        if not method or not result or len(method) > 30:
            continue
        res.results.setdefault(method, []).append(result)
        res.details.append(" ".join(part.split())[:200])
    return res


# --- everything, for peek -----------------------------------------------------------------

def _secs(a: datetime | None, b: datetime | None) -> float | None:
    if a is None or b is None:
        return None
    return round((b - a).total_seconds(), 3)


def analyze_header(
    raw_header: bytes | str | None,
    internaldate: datetime | None,
    now: datetime | None,
    config: AnalysisConfig,
    size: int | None = None,
) -> HeaderAnalysis:
    """Everything ``peek`` shows about one message, from its full header and INTERNALDATE.
    Never raises: each part is its own guarded step (a part that fails is left out with a
    warning), and a last-resort guard returns the bare analysis with the reason."""
    now = now or datetime.now(UTC)
    try:
        return _analyze(raw_header, internaldate, now, config, size)
    except Exception as exc:  # noqa: BLE001 - the preview and peek must show something
        return HeaderAnalysis(
            date=None, internaldate=internaldate, now=now, hops=[], auth=[], key=UNKNOWN,
            transit_seconds=None, date_to_last_hop_seconds=None, last_hop_to_internaldate_seconds=None,
            waiting_seconds=None, classification={"kind": "unknown", "problems": [
                f"header not analysed ({type(exc).__name__}): the full header is below"]},
            summary={}, warnings=[f"the header could not be analysed ({type(exc).__name__})"])


def _analyze(
    raw_header: bytes | str | None,
    internaldate: datetime | None,
    now: datetime,
    config: AnalysisConfig,
    size: int | None = None,
) -> HeaderAnalysis:
    if internaldate is not None and internaldate.tzinfo is None:
        internaldate = internaldate.replace(tzinfo=UTC)
    raw = raw_header.encode("utf-8", "surrogateescape") if isinstance(raw_header, str) else (raw_header or b"")
    warnings: list[str] = []
    headers = Headers.parse(raw)
    # the RFC822.SIZE when known (GitLab's verdict on blank or oversized mail depends on it)
    msg = build_message(0, 0, (), internaldate, len(raw) if size is None else size, raw, config, now)  # never raises
    date = msg.date
    received = headers.get_all("received")
    try:
        hops = parse_hops(received, date)
    except Exception as exc:  # noqa: BLE001
        hops = []
        warnings.append(f"the Received hops could not be analysed ({type(exc).__name__})")
    auth: list[AuthResult] = []
    for v in headers.get_all("authentication-results")[:MAX_AUTH]:
        try:
            auth.append(parse_auth_results(v))
        except Exception as exc:  # noqa: BLE001
            warnings.append(f"an Authentication-Results header could not be read ({type(exc).__name__})")
    try:
        key = find_key(headers, config.address, config.mailbox_kind, getattr(config, "gitlab_host", None))
    except Exception as exc:  # noqa: BLE001
        key = UNKNOWN
        warnings.append(f"the GitLab key could not be decoded ({type(exc).__name__})")

    last_time = next((h.time for h in reversed(hops) if h.time is not None), None)
    last_to_internal = _secs(last_time, internaldate)
    if internaldate is not None and last_time is not None and last_to_internal is not None:
        # the mailbox delivery is the last segment of the transit
        positive = sum(h.delay_seconds for h in hops if h.delay_seconds and h.delay_seconds > 0)
        positive += max(0.0, last_to_internal)
        if positive > 0:
            for h in hops:
                if h.delay_seconds is not None and h.delay_seconds >= 0:
                    h.share = round(h.delay_seconds / positive, 4)
        if last_to_internal < 0:
            warnings.append(f"clock skew: INTERNALDATE is {-last_to_internal:.0f}s before the last hop")
    for h in hops:
        if h.clock_skew and h.delay_seconds is not None:
            warnings.append(f"clock skew at hop {h.index}: {-h.delay_seconds:.0f}s before the previous point")
        if h.plaintext:
            warnings.append(f"hop {h.index} ({h.by or '?'}) was plaintext {h.with_}")
        if h.bad_time is not None:
            warnings.append(f"hop {h.index}: unparseable date {shown(h.bad_time)}")
        if h.unreadable is not None:
            warnings.append(f"hop {h.index}: Received could not be parsed ({h.unreadable}): {shown(h.raw)}")
    if len(received) > MAX_HOPS:
        warnings.append(f"only the first {MAX_HOPS} Received headers were analysed")
    if config.address is None:
        warnings.append("no incoming address template configured: the key cannot be decoded")

    return HeaderAnalysis(
        date=date,
        internaldate=internaldate,
        now=now,
        hops=hops,
        auth=auth,
        key=key,
        transit_seconds=_secs(date, internaldate),
        date_to_last_hop_seconds=_secs(date, last_time),
        last_hop_to_internaldate_seconds=last_to_internal,
        waiting_seconds=_secs(internaldate, now),
        classification={
            "kind": msg.kind, "no_key": msg.no_key, "stale": msg.stale, "bot": msg.bot,
            "bot_reason": msg.bot_reason, "suspicious": msg.suspicious,
            "suspicious_reason": msg.suspicious_reason, "problems": list(msg.problems),
            **{k: v for k, v in msg.to_json(now).items() if k.startswith("gitlab_")},
        },
        summary={
            "from": msg.sender, "to": msg.to, "cc": msg.cc, "subject": msg.subject,
            "message_id": msg.message_id,
        },
        warnings=warnings,
    )
