"""The demo's incident backlog: a deterministic, realistic mailbox that tells the runbook's story.

A newcomer learns the tool by playing one incident end to end, so the mail has to look like what
an operator meets (``shared/docs/gitlab-mail.md``, seed 002), not like ``Message 1..N``:

- several projects and every key kind GitLab knows (replies with legacy and partitioned reply
  keys, new issues and merge requests by email, notes on issues, Service Desk, unsubscribe, the
  legacy ``path+token`` forms), with the key found in To, Cc, References, Delivered-To or
  Received, as GitLab would find it;
- the noise the runbook decides on by age, sender and subject: a three-week-old burst of
  identical "Error fetching data from FOO" alerts, out-of-office replies, DSN bounces
  (``multipart/report``, ``Return-Path: <>``), no-reply and bulk senders, a sign-up confirmation
  sent to a project address (seed 001), mail without a key;
- the hostile and broken: 8-bit raw headers, broken encoded words, bad/missing/absurd dates,
  non-Latin subjects, Rich markup and terminal escape sequences in subjects (they must stay
  inert), duplicated Message-IDs, a very long subject;
- the server states that matter: \\Seen-but-not-\\Deleted messages (the crash trap), \\Deleted
  ones awaiting expunge, and mail_room arbitration keys held in Redis for part of the backlog.

Everything comes from one seeded :class:`random.Random` and is relative to ``now``, so the same
seed gives the same mailbox (tests rely on it) while ages stay realistic whenever the demo runs.
Addresses use reserved names (``*.example``, ``example.com/net/org``) only.
"""

from __future__ import annotations

import base64
import random
import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from typing import TypeVar

T = TypeVar("T")

GITLAB_HOST = "gitlab.example.com"
INCOMING_DOMAIN = "incoming.gitlab.example.com"
#: GitLab's ``incoming_email.address`` for the demo (sub-addressing).
ADDRESS_TEMPLATE = "incoming+%{key}@" + INCOMING_DOMAIN
MX_HOST = "mx1.incoming.gitlab.example.com"
STORE_HOST = "imap.incoming.gitlab.example.com"
NOREPLY = f"gitlab@{GITLAB_HOST}"

DEFAULT_SIZE = 1800
DEFAULT_SEED = 2002
MIN_SIZE = 150  # below this the fixed traps would crowd out the ordinary mail
MAX_SIZE = 20_000  # pymap loads ~1k messages/s and keeps ~55 KiB per message in memory

#: How long mail_room has been down in the story.
OUTAGE = timedelta(days=21, hours=2)

STORY = """\
gitlab.example.com, incoming mail. Three weeks ago the IMAP password of the incoming mailbox was
rotated and gitlab.rb was not updated: mail_room has been failing at LOGIN ever since and the
alert went to a muted channel. Everything that arrived since is UNSEEN, including a burst of
"Error fetching data from FOO" alerts a monitoring bot sent to a project three weeks ago.
In the last ten minutes the on-call fixed the password and restarted mail_room. One pod
crash-looped: its first cycle fetched a batch (now \\Seen but never \\Deleted: the crash trap),
later restarts claimed Redis keys and died before fetching (those messages stay UNSEEN and
skipped until the keys expire). The other pod still ran mail_room < 0.10, whose INCR counters
never expire while it polls; a few of its keys never got a TTL at all. The on-call then stopped
mail_room everywhere and paged you. The mailbox also holds the \\Deleted leftovers of normal
operation (GitLab never expunges by default).

Play the runbook: review the backlog, mark the unwanted (stale, bot, suspicious) as seen, clear
the crash trap, release the stuck locks, start the consumer (mail_room) and watch the rest be
ingested, then expunge the \\Deleted leftovers."""

#: Every tag a message can carry, and what it stands for. Tests check that each one is present.
TAGS: dict[str, str] = {
    "legacy-key": "a legacy key form (path+token, path+merge-request+token, bare path, reply+unsubscribe)",
    "partitioned-reply-key": "a partitioned base36 reply key (<p>-<25>[-<namespace>])",
    "hex-reply-key": "a 32-hex reply key",
    "key-in-cc": "the key is only in Cc (To is a person, no References)",
    "key-in-references": "the key is only in References (reply-<key>@gitlab host)",
    "key-in-delivered-to": "the key is only in Delivered-To (forwarded through a group)",
    "key-in-received": "the key is only in Received 'for <...>' (Bcc)",
    "unknown-key": "the address template matches but no handler accepts the key",
    "no-key": "no header carries a key: GitLab rejects it and writes to the sender",
    "quoted-local-part": "the key is in a quoted local part, which never matches",
    "case-mismatch": "the address differs from the template only in case (GitLab is case-sensitive)",
    "bot-burst": "one of the identical 'Error fetching data from FOO' alerts, three weeks old",
    "auto-reply": "an out-of-office reply (Auto-Submitted and/or X-Autoreply)",
    "auto-submitted-no": "carries 'Auto-Submitted: no' (a human message, explicitly)",
    "bounce": "a delivery status notification (multipart/report, Return-Path <>, MAILER-DAEMON)",
    "noreply": "from a no-reply style sender",
    "bulk": "bulk or list mail (Precedence: bulk, List-Id, List-Unsubscribe)",
    "signup": "a sign-up or verification mail sent to a project address (seed 001)",
    "8bit": "raw 8-bit bytes in a header (no encoded words)",
    "broken-encoded-word": "a malformed RFC 2047 encoded word",
    "bad-date": "an unparseable Date header",
    "missing-date": "no Date header",
    "absurd-date": "a Date far in the past or the future",
    "cjk": "a Chinese, Japanese or Korean subject (RFC 2047)",
    "cyrillic": "a Cyrillic subject (RFC 2047)",
    "arabic": "an Arabic (right-to-left) subject (RFC 2047)",
    "hebrew": "a Hebrew (right-to-left) subject (RFC 2047)",
    "emoji": "emoji in the subject",
    "rich-markup": "Rich markup such as [bold red]URGENT[/] in the subject or sender (must show literally)",
    "escape": "a terminal escape sequence or C1 control in the subject (must show inert)",
    "bidi": "a bidi override character in the subject",
    "long-subject": "a subject of several thousand characters",
    "large": "a large message (an attachment of a few hundred KB)",
    "duplicate-id": "shares its Message-ID with another message in the mailbox",
    "seen-trap": "\\Seen but not \\Deleted: fetched by a crashed mail_room, never delivered",
    "deleted": "\\Deleted, awaiting expunge (delivered before the outage)",
    "plaintext-hop": "crossed a plaintext SMTP hop",
    "spf-fail": "failed SPF/DMARC at our MX",
    "greylisted": "delayed by minutes at our MX (greylisting)",
    "fresh": "arrived less than an hour ago",
    "stale": "UNSEEN and older than two days (the runbook's 'couple of days')",
}


# --- people, projects, routes ------------------------------------------------------------------

def full_path_slug(path: str) -> str:
    """GitLab's ``full_path_slug`` (``Gitlab::Utils.slugify``): what goes in a new-issue key."""
    s = re.sub(r"[^a-z0-9]", "-", path.lower())[:63]
    return s.strip("-.")


@dataclass(frozen=True)
class Project:
    path: str
    id: int
    title: str
    next_iid: int = 100

    @property
    def slug(self) -> str:
        return full_path_slug(self.path)


PROJECTS: tuple[Project, ...] = (
    Project("acme/platform/api", 4211, "Acme / Platform / API", 1180),
    Project("acme/website", 1337, "Acme / Website", 482),
    Project("acme/mobile-app", 5120, "Acme / Mobile App", 733),
    Project("support/helpdesk", 90210, "Support / Helpdesk", 15022),
    Project("data-eng/etl.pipelines", 7734, "Data Eng / etl.pipelines", 64),
    Project("Infra/Ops_Runbooks", 88, "Infra / Ops_Runbooks", 311),
)
SERVICE_DESK = (PROJECTS[3], PROJECTS[2])  # projects with Service Desk enabled
BURST_PROJECT = PROJECTS[0]


@dataclass(frozen=True)
class Route:
    """How a sender's mail reaches our MX: the outbound host, its TLS, the Received style."""

    host: str
    ip: str
    style: str  # postfix | gmail | exchange | legacy (plaintext relay)
    dkim: str | None


ROUTES: dict[str, Route] = {
    "acme.example": Route("smtp.acme.example", "198.51.100.20", "postfix", "acme.example"),
    "example.com": Route("mail-ed1-f49.mx.example.com", "203.0.113.49", "gmail", "example.com"),
    "example.net": Route("EUR05-AM6-obe.outbound.example.net", "198.51.100.131", "exchange", "example.net"),
    "example.org": Route("smtp.example.org", "192.0.2.25", "postfix", "example.org"),
    "legacy.example": Route("relay.legacy.example", "192.0.2.200", "legacy", None),
    "shop.example": Route("mx-out.shop.example", "203.0.113.77", "postfix", "shop.example"),
    "ops.acme.example": Route("alerts.ops.acme.example", "10.40.3.12", "legacy", None),
}


@dataclass(frozen=True)
class Person:
    name: str
    addr: str
    tz_minutes: int = 0
    token: str | None = None  # GitLab incoming-email token (staff only)

    @property
    def domain(self) -> str:
        return self.addr.rpartition("@")[2]

    @property
    def route(self) -> Route:
        for d, r in ROUTES.items():
            if self.domain == d or self.domain.endswith("." + d):
                return r
        return ROUTES["example.org"]


_STAFF = (
    ("Priya Raman", "priya.raman", 330), ("Jonas Schäfer", "jonas.schaefer", 60), ("Chen Wei", "chen.wei", 480),
    ("Olga Petrova", "olga.petrova", 180), ("Amara Okafor", "amara.okafor", 60), ("Mateo García", "mateo.garcia", -300),
    ("Yuki Tanaka", "yuki.tanaka", 540), ("Liam O'Brien", "liam.obrien", 0), ("Sofia Rossi", "sofia.rossi", 60),
    ("Zoë Laurent", "zoe.laurent", 60), ("Hannah Kim", "hannah.kim", -480), ("Omar Haddad", "omar.haddad", 120),
    ("Emma Johansson", "emma.johansson", 60), ("Lucas Silva", "lucas.silva", -180), ("Tomasz Nowak", "tomasz.nowak", 60),
    ("Grace Mensah", "grace.mensah", 0), ("Aleksandr Volkov", "a.volkov", 180), ("Mei Lin", "mei.lin", 480),
)
_CUSTOMERS = (
    ("Dana Whitfield", "dana@example.com", -300), ("王芳", "wang.fang@shop.example", 480),
    ("Дмитрий Иванов", "d.ivanov@example.org", 180), ("محمد الأحمد", "m.alahmad@example.net", 180),
    ("Kenji Sato", "k.sato@example.com", 540), ("Sarah Levi", "sarah.levi@example.org", 120),
    ("Björn Lindqvist", "bjorn@shop.example", 60), ("Ana Souza", "ana.souza@example.com", -180),
    ("Peter Novák", "novak@legacy.example", 60), ("Chloé Martin", "chloe.martin@example.net", 60),
    ("이서준", "seojun.lee@example.com", 540), ("Ngozi Adeyemi", "ngozi@example.org", 60),
    ("", "orders@shop.example", 0), ("Mark Evans", "mark.evans@example.net", 0),
)

_ISSUE_TITLES = (
    "Checkout page returns 500 after login", "Pipeline stuck in pending since the runner upgrade",
    "Dark mode: sidebar text unreadable", "API rate limit headers missing on /v4/projects",
    "Export to CSV drops rows with commas", "Password reset link expires immediately",
    "Search ignores archived projects", "Android app crashes on rotation", "Flaky test: spec/models/user_spec.rb",
    "Upgrade PostgreSQL to 16 on staging", "Nightly ETL job fails on 29 February", "Broken link in the footer",
    "Webhook retries hammer our endpoint", "Invoice PDF shows wrong VAT rate", "SSO login loops on Safari",
    "Memory leak in the sync worker", "Add retry to S3 uploads", "Typo on the pricing page",
    "Timeouts on the merge request diff view", "Runbook: rotating the IMAP password",
)
_MR_TITLES = (
    "Fix off-by-one in pagination", "Bump rack from 3.0.8 to 3.0.9", "Add missing index on events.project_id",
    "Docs: explain incoming email setup", "Handle nil author in notes", "Retry S3 uploads with backoff",
    "Make the ETL job leap-year safe", "Update the IMAP password rotation runbook",
)
_SD_SUBJECTS = (
    "Cannot log in to my account", "Refund for order #88231", "Where is my invoice?", "App shows a blank screen",
    "Question about the enterprise plan", "Data deletion request (GDPR)", "Two-factor code never arrives",
    "Wrong address on my order", "Feature request: export my data", "Your update broke my workflow",
)
_REPLY_BODIES = (
    "Thanks, I can reproduce it on staging as well. Logs attached in the issue.",
    "This is fixed in the latest build, please retest.",
    "+1, we hit this in production yesterday.", "Could you share the exact request ID?",
    "I'll take this one. ETA end of the week.", "Closing as duplicate of the older issue.",
    "Looks good to me, approving.", "Can we get this into the next release?",
    "Still happening after the patch, see screenshot.", "Adding the customer's reply below.",
)


def _b36(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits + string.ascii_lowercase) for _ in range(n))


def _to_b36(n: int) -> str:
    digits = string.digits + string.ascii_lowercase
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def _ew(text: str, charset: str = "utf-8", enc: str = "B") -> str:
    """One RFC 2047 encoded word (or several, space separated, for long text)."""
    data = text.encode(charset)
    if enc.upper() == "B":
        words, chunk = [], 45
        i = 0
        while i < len(data):
            piece = data[i:i + chunk]
            # never cut a UTF-8 character in two across words
            while charset.lower() == "utf-8" and i + len(piece) < len(data) and (data[i + len(piece)] & 0xC0) == 0x80:
                piece = piece[:-1]
            words.append(f"=?{charset}?B?{base64.b64encode(piece).decode()}?=")
            i += len(piece)
        return " ".join(words)
    q = "".join(chr(b) if (48 <= b <= 57 or 65 <= b <= 90 or 97 <= b <= 122) else
                ("_" if b == 32 else f"={b:02X}") for b in data)
    return f"=?{charset}?Q?{q}?="


def _name(text: str) -> str:
    """A display name as a careful MUA writes it: encoded when non-ASCII, quoted when needed."""
    if not text:
        return ""
    if any(ord(c) > 127 for c in text):
        return _ew(text)
    if re.search(r"[()<>@,;:\\\".\[\]']", text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _addr(p: Person) -> str:
    n = _name(p.name)
    return f"{n} <{p.addr}>" if n else p.addr


def incoming(key: str) -> str:
    return ADDRESS_TEMPLATE.replace("%{key}", key)


# --- the draft of one message --------------------------------------------------------------------

Header = tuple[str, "str | bytes"]


@dataclass
class _Draft:
    headers: list[Header]
    content_type: str
    body: bytes
    arrive: datetime
    kind: str
    key: str | None
    tags: set[str]
    flags: set[str] = field(default_factory=set)
    message_id: str = ""
    project: str | None = None

    def raw(self) -> bytes:
        out = bytearray()
        for name, value in self.headers:
            v = value if isinstance(value, bytes) else value.encode("utf-8")
            out += name.encode("ascii") + b": " + v + b"\r\n"
        if self.content_type:
            out += b"MIME-Version: 1.0\r\n"
            out += b"Content-Type: " + self.content_type.encode("ascii") + b"\r\n"
        out += b"\r\n" + self.body
        return bytes(out)


@dataclass(frozen=True)
class DemoMessage:
    """One message of the backlog: what the server stores, and what the generator meant by it."""

    raw: bytes
    internaldate: datetime
    flags: frozenset[str]
    kind: str  # what GitLab makes of the key (keys.KINDS), "unknown" without one
    key: str | None
    tags: frozenset[str]
    message_id: str
    project: str | None = None  # path of the project the key points at, when known

    @property
    def timestamp(self) -> float:
        return self.internaldate.timestamp()

    def item(self) -> tuple[bytes, float, frozenset[str]]:
        """(raw bytes, INTERNALDATE as a Unix timestamp, IMAP flags): what a server loader takes."""
        return self.raw, self.timestamp, self.flags


@dataclass(frozen=True)
class LockSpec:
    """One mail_room arbitration key the demo Redis holds (``<prefix>delivered:<uid>``).

    ``index`` names a message of :attr:`Backlog.messages` (its UID is known once loaded); when it
    is None the key names a UID ``gone_below`` places below the first one: a message expunged
    long ago, whose key lingers. ``style`` is ``set`` (mail_room 0.10: value ``1``) or ``incr``
    (pre-0.10 counter, value > 1 after several polls); ``ttl`` None means the key never expires
    (an INCR whose EXPIRE never ran)."""

    index: int | None
    style: str
    value: int
    ttl: int | None
    why: str
    gone_below: int = 0


@dataclass
class Backlog:
    messages: list[DemoMessage]
    locks: list[LockSpec]
    now: datetime
    seed: int
    story: str = STORY

    def __len__(self) -> int:
        return len(self.messages)

    def items(self) -> list[tuple[bytes, float, frozenset[str]]]:
        """Every message as (raw bytes, INTERNALDATE timestamp, flags), oldest first (UID order)."""
        return [m.item() for m in self.messages]

    def tag_counts(self) -> Counter[str]:
        return Counter(t for m in self.messages for t in m.tags)

    def kind_counts(self) -> Counter[str]:
        return Counter(m.kind for m in self.messages)

    def indexes(self, tag: str) -> list[int]:
        return [i for i, m in enumerate(self.messages) if tag in m.tags]

    def view_counts(self) -> dict[str, int]:
        """What the triage views must show for this backlog."""
        seen = [("\\Seen" in m.flags, "\\Deleted" in m.flags) for m in self.messages]
        return {
            "unseen": sum(1 for s, _ in seen if not s),
            "seen-stuck": sum(1 for s, d in seen if s and not d),
            "ignored": 0,  # nothing is marked by triage-tui yet
            "seen": sum(1 for s, d in seen if s and not d),
            "deleted": sum(1 for _, d in seen if d),
            "all": len(seen),
        }

    def summary(self) -> dict[str, object]:
        return {"size": len(self), "seed": self.seed, "views": self.view_counts(),
                "kinds": dict(sorted(self.kind_counts().items())),
                "tags": dict(sorted(self.tag_counts().items())),
                "locks": dict(Counter(_lock_label(lk) for lk in self.locks))}


def _lock_label(lk: LockSpec) -> str:
    if lk.index is None:
        return "gone"
    if lk.style == "incr":
        return "incr-no-ttl" if lk.ttl is None else "incr"
    return "set"


# --- the generator ---------------------------------------------------------------------------------

class _Gen:
    def __init__(self, rng: random.Random, now: datetime) -> None:
        self.rng = rng
        self.now = now
        self.staff = [Person(n, f"{local}@acme.example", tz,
                             token=("glimt-" if rng.random() < 0.8 else "") + _b36(rng, 25))
                      for n, local, tz in _STAFF]
        self.customers = [Person(n, a, tz) for n, a, tz in _CUSTOMERS]
        self.iids = {p.path: p.next_iid for p in PROJECTS}
        self._mid = 0
        # MIME boundaries come from a small pool per sending software: pymap parses every
        # Content-Type with the (slow) stdlib header parser, and repeated values can be cached,
        # which halves the demo's start-up time. A boundary only has to be unique within a message.
        self._boundaries = {
            "alt": ["b1_" + _b36(rng, 20) for _ in range(12)],
            "mr": ["mr_" + _b36(rng, 16) for _ in range(6)],
            "dsn": [f"{_b36(rng, 10).upper()}.{rng.randrange(10 ** 9, 2 * 10 ** 9)}/smtp.example.org" for _ in range(4)],
        }

    # -- small helpers ------------------------------------------------------------------------

    def pick(self, seq: Sequence[T]) -> T:
        return seq[self.rng.randrange(len(seq))]

    def staffer(self) -> Person:
        return self.staff[self.rng.randrange(len(self.staff))]

    def customer(self) -> Person:
        return self.customers[self.rng.randrange(len(self.customers))]

    def reply_key(self, with_namespace: bool = False) -> tuple[str, str]:
        """(key, tag): a legacy 32-hex key or a partitioned base36 one, usually with a namespace id.

        ``with_namespace`` for unsubscribe keys: ``<p>-<25>-unsubscribe`` is itself a valid
        partitioned reply key (``unsubscribe`` reads as an 11-character base36 namespace id), so
        GitLab takes it for a reply, not an unsubscribe."""
        r = self.rng
        if r.random() < 0.35:
            return "".join(r.choice("0123456789abcdef") for _ in range(32)), "hex-reply-key"
        partition = _to_b36(r.randrange(1, 36 ** 2))
        ns_id = _to_b36(r.choice((9970, 4211, 22, 61_000_123, r.randrange(1, 10 ** 7))))
        ns = "-" + ns_id if with_namespace or r.random() < 0.8 else ""
        return f"{partition}-{_b36(r, 25)}{ns}", "partitioned-reply-key"

    def project(self) -> Project:
        weights = (30, 25, 15, 5, 15, 10)
        return self.rng.choices(PROJECTS, weights=weights)[0]

    def iid(self, p: Project) -> int:
        return self.rng.randrange(1, self.iids[p.path])

    def new_iid(self, p: Project) -> int:
        self.iids[p.path] += 1
        return self.iids[p.path]

    def message_id(self, domain: str) -> str:
        self._mid += 1
        return f"<{_b36(self.rng, 12)}.{self._mid}@{domain}>"

    def age_outage(self) -> timedelta:
        """Arrival during the outage: steady business-hours flow, denser in the last two days
        (people chase unanswered mail), a few minutes old at the newest."""
        r = self.rng
        while True:
            if r.random() < 0.25:
                age = timedelta(minutes=2) + timedelta(hours=r.expovariate(1 / 10))
            else:
                age = timedelta(seconds=r.uniform(600, OUTAGE.total_seconds() - 3600))
            if age >= OUTAGE - timedelta(hours=1):
                continue
            hour = (self.now - age).hour
            if 7 <= hour <= 19 or r.random() < 0.35:
                return age

    # -- transport headers ----------------------------------------------------------------------

    def received(self, sender: Person, arrive: datetime, rcpt: str | None, tags: set[str],
                 spoofed: bool = False) -> tuple[list[Header], datetime]:
        """Return-Path, Received chain (newest first) and Authentication-Results, and the send time."""
        r = self.rng
        route = sender.route
        t_store = arrive - timedelta(seconds=r.uniform(0.2, 2.0))
        delay = r.uniform(0.5, 4.0)
        if r.random() < 0.03:
            delay += r.uniform(300, 900)  # greylisted at our MX, retried
            tags.add("greylisted")
        t_mx = t_store - timedelta(seconds=delay)
        t_out = t_mx - timedelta(seconds=r.uniform(0.5, 25))
        sent = t_out - timedelta(seconds=r.uniform(0, 4))
        tz = timezone(timedelta(minutes=sender.tz_minutes))
        qid = _b36(r, 12).upper()
        for_ = f"\r\n\tfor <{rcpt}>" if rcpt else ""
        envfrom = sender.addr
        hops: list[Header] = [
            ("Return-Path", f"<{envfrom}>"),
            ("Received", f"from {MX_HOST} ({MX_HOST} [10.20.0.5])\r\n\tby {STORE_HOST} with LMTP\r\n"
                         f"\tid {_b36(r, 16)}\r\n\t(envelope-from <{envfrom}>){for_}; {_utc(t_store)}"),
        ]
        plaintext = route.style == "legacy" or r.random() < 0.04
        if plaintext:
            tags.add("plaintext-hop")
            hops.append(("Received", f"from {route.host} ({route.host} [{route.ip}])\r\n\tby {MX_HOST} (Postfix) "
                                     f"with {'SMTP' if route.style == 'legacy' else 'ESMTP'} id {qid}{for_}; {_utc(t_mx)}"))
        else:
            hops.append(("Received", f"from {route.host} ({route.host} [{route.ip}])\r\n"
                                     "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\r\n"
                                     "\t key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256)\r\n"
                                     f"\t(No client certificate requested)\r\n\tby {MX_HOST} (Postfix) with ESMTPS id {qid}"
                                     f"{for_}; {_utc(t_mx)}"))
        if route.style == "gmail":
            hops.append(("Received", f"by 2002:a05:6402:{r.randrange(4096):x}:b0:{r.randrange(4096):x} with SMTP id "
                                     f"{_b36(r, 18)};\r\n\t{format_datetime(t_out.astimezone(timezone(timedelta(hours=-8))))} (PST)"))
        elif route.style == "exchange":
            hops.append(("Received", f"from AM9PR05MB{r.randrange(10000)}.eurprd05.prod.example.net "
                                     f"(2603:10a6:20b:{r.randrange(4096):x}::{r.randrange(99)})\r\n"
                                     f"\tby {route.host} with Microsoft SMTP Server (version=TLS1_2,\r\n"
                                     "\t cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.7762.14;\r\n"
                                     f"\t{format_datetime(t_out.astimezone(UTC))}"))
        elif route.style == "postfix":
            client = f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"
            hops.append(("Received", f"from [{client}] (unknown [{client}])\r\n\t(Authenticated sender: {sender.addr})\r\n"
                                     f"\tby {route.host} (Postfix) with ESMTPSA id {_b36(r, 10).upper()};\r\n"
                                     f"\t{format_datetime(t_out.astimezone(tz))}"))
        else:
            hops.append(("Received", f"from localhost (localhost [127.0.0.1])\r\n\tby {route.host} (8.14.4/8.14.4) "
                                     f"with SMTP id {_b36(r, 14)};\r\n\t{format_datetime(t_out.astimezone(tz))}"))
        dom = sender.domain
        if spoofed:
            tags.add("spf-fail")
            auth = (f"{MX_HOST};\r\n\tdkim=none;\r\n\tspf=softfail (domain of {dom} does not designate {route.ip} "
                    f"as permitted sender) smtp.mailfrom={sender.addr};\r\n\tdmarc=fail (p=quarantine dis=none) "
                    f"header.from={dom}")
        elif route.dkim:
            auth = (f"{MX_HOST};\r\n\tdkim=pass (2048-bit key) header.d={route.dkim} header.i=@{route.dkim} "
                    f"header.b={_b36(r, 8)};\r\n\tspf=pass (domain of {sender.addr} designates {route.ip} as "
                    f"permitted sender) smtp.mailfrom={sender.addr};\r\n\tdmarc=pass (p=reject dis=none) header.from={dom}")
        else:
            auth = f"{MX_HOST}; dkim=none; spf=none smtp.mailfrom={sender.addr}; dmarc=none header.from={dom}"
        hops.append(("Authentication-Results", auth))
        if route.dkim and not spoofed:
            sig = base64.b64encode(r.randbytes(96)).decode()
            hops.append(("DKIM-Signature", f"v=1; a=rsa-sha256; c=relaxed/relaxed; d={route.dkim}; s=s2024;\r\n"
                                           f"\tt={int(sent.timestamp())}; h=from:to:subject:date:message-id;\r\n"
                                           f"\tbh={base64.b64encode(r.randbytes(32)).decode()};\r\n\tb={sig[:64]}\r\n\t {sig[64:]}"))
        return hops, sent

    def compose(
        self,
        *,
        sender: Person,
        arrive: datetime,
        to: str | bytes | None,
        subject: str | bytes | None,
        text: str,
        kind: str,
        key: str | None,
        tags: Iterable[str] = (),
        rcpt: str | None = None,
        cc: str | None = None,
        in_reply_to: str | None = None,
        references: str | None = None,
        extra: Iterable[Header] = (),
        date: str | bytes | None | bool = True,
        from_: str | bytes | None = None,
        html: bool | None = None,
        content: tuple[str, bytes] | None = None,
        message_id: str | None = None,
        spoofed: bool = False,
        project: str | None = None,
        transport: Iterable[Header] = (),
        signature: bool = True,
    ) -> _Draft:
        """One message, as it lands in the mailbox. ``rcpt`` is the envelope recipient written
        in Received ``for <...>`` (defaults to the address the key is in)."""
        tg = set(tags)
        if rcpt is None and key is not None:
            rcpt = incoming(key)
        elif rcpt == "":
            rcpt = None  # several recipients: Postfix writes no "for <...>"
        hops, sent = self.received(sender, arrive, rcpt, tg, spoofed=spoofed)
        headers: list[Header] = list(transport) + hops
        headers.append(("From", from_ if from_ is not None else _addr(sender)))
        if to is not None:
            headers.append(("To", to))
        if cc:
            headers.append(("Cc", cc))
        if subject is not None:
            headers.append(("Subject", subject))
        if date is True:
            headers.append(("Date", format_datetime(sent.astimezone(timezone(timedelta(minutes=sender.tz_minutes))))))
        elif date not in (False, None):
            headers.append(("Date", date))  # type: ignore[arg-type]
        mid = message_id or self.message_id(sender.domain)
        headers.append(("Message-ID", mid))
        if in_reply_to:
            headers.append(("In-Reply-To", in_reply_to))
        if references:
            headers.append(("References", references))
        headers.extend(extra)
        if content is None:
            content = self.body(text, html=html if html is not None else self.rng.random() < 0.45,
                                signature=signature)
        ctype, body = content
        if (self.now - arrive) < timedelta(hours=1):
            tg.add("fresh")
        return _Draft(headers=headers, content_type=ctype, body=body, arrive=arrive, kind=kind, key=key,
                      tags=tg, message_id=mid, project=project)

    def body(self, text: str, html: bool, signature: bool = True) -> tuple[str, bytes]:
        sig = "\n\n-- \nSent from my phone" if signature and self.rng.random() < 0.2 else ""
        plain = (text + sig).replace("\n", "\r\n").encode("utf-8")
        if not html:
            return "text/plain; charset=utf-8; format=flowed", plain + b"\r\n"
        boundary = self.pick(self._boundaries["alt"])
        html_part = ("<html><body><div dir=\"auto\">" + text.replace("&", "&amp;").replace("<", "&lt;")
                     .replace("\n", "<br>") + "</div></body></html>").encode("utf-8")
        parts = (f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                 ).encode() + plain + (f"\r\n--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n"
                                       "Content-Transfer-Encoding: 8bit\r\n\r\n").encode() + html_part + \
            f"\r\n--{boundary}--\r\n".encode()
        return f'multipart/alternative; boundary="{boundary}"', parts

    # -- ordinary mail, by key kind -------------------------------------------------------------

    def reply(self, arrive: datetime, variant: str = "to") -> _Draft:
        r = self.rng
        p, who = self.project(), self.staffer() if r.random() < 0.8 else self.customer()
        key, ktag = self.reply_key()
        iid = self.iid(p)
        title = self.pick(_ISSUE_TITLES)
        noun, sigil = ("merge request", "!") if r.random() < 0.25 else ("issue", "#")
        subject = f"Re: {p.title} | {title} ({sigil}{iid})"
        note = r.randrange(10 ** 6, 10 ** 7)
        refs = f"<{noun.replace(' ', '_')}_{r.randrange(10 ** 5, 10 ** 6)}@{GITLAB_HOST}> <note_{note}@{GITLAB_HOST}>"
        gitlab_to = f"{_name(p.title)} <{incoming(key)}>"
        quoted = f"\n\nOn {format_datetime(arrive - timedelta(hours=3))}, GitLab wrote:\n> {self.pick(_REPLY_BODIES)}"
        text = f"{self.pick(_REPLY_BODIES)}{quoted}"
        tags = {ktag}
        if variant == "cc":
            colleague = self.staffer()
            return self.compose(sender=who, arrive=arrive, to=_addr(colleague), cc=gitlab_to, subject=subject,
                                text=text, kind="reply", key=key, tags=tags | {"key-in-cc"}, rcpt="",
                                in_reply_to=f"<note_{note}@{GITLAB_HOST}>")
        if variant == "references":
            colleague = self.staffer()
            return self.compose(sender=who, arrive=arrive, to=_addr(colleague), subject=subject, text=text,
                                kind="reply", key=key, tags=tags | {"key-in-references"}, rcpt=colleague.addr,
                                in_reply_to=f"<note_{note}@{GITLAB_HOST}>",
                                references=f"{refs}\r\n <reply-{key}@{GITLAB_HOST}>")
        return self.compose(sender=who, arrive=arrive, to=gitlab_to, subject=subject, text=text, kind="reply",
                            key=key, tags=tags, in_reply_to=f"<note_{note}@{GITLAB_HOST}>",
                            references=f"{refs}\r\n <reply-{key}@{GITLAB_HOST}>")

    def new_issue(self, arrive: datetime, legacy: bool = False) -> _Draft:
        p, who = self.project(), self.staffer()
        assert who.token
        key = f"{p.path}+{who.token}" if legacy else f"{p.slug}-{p.id}-{who.token}-issue"
        title = self.pick(_ISSUE_TITLES)
        text = f"Steps to reproduce:\n1. ...\n2. ...\n\nExpected: it works.\nActual: {title.lower()}."
        return self.compose(sender=who, arrive=arrive, to=incoming(key), subject=title, text=text, kind="new_issue",
                            key=key, tags={"legacy-key"} if legacy else (), project=p.path)

    def note_on_issue(self, arrive: datetime) -> _Draft:
        p, who = self.project(), self.staffer()
        assert who.token
        iid = self.iid(p)
        key = f"{p.slug}-{p.id}-{who.token}-issue-{iid}"
        return self.compose(sender=who, arrive=arrive, to=f"{_name(p.title)} <{incoming(key)}>",
                            subject=f"Comment on #{iid}", text=self.pick(_REPLY_BODIES), kind="note_on_issuable",
                            key=key, project=p.path)

    def new_mr(self, arrive: datetime, legacy: bool = False) -> _Draft:
        p, who = self.project(), self.staffer()
        assert who.token
        key = f"{p.path}+merge-request+{who.token}" if legacy else f"{p.slug}-{p.id}-{who.token}-merge-request"
        title = self.pick(_MR_TITLES)
        branch = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40]
        boundary = self.pick(self._boundaries["mr"])
        patch = (f"From {_b36(self.rng, 40)} Mon Sep 17 00:00:00 2001\nFrom: {who.name} <{who.addr}>\n"
                 f"Subject: [PATCH] {title}\n\n---\n lib/app.rb | 2 +-\n 1 file changed\n\n"
                 "--- a/lib/app.rb\n+++ b/lib/app.rb\n@@ -1 +1 @@\n-old\n+new\n")
        body = (f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                f"{title}\r\n\r\nSource branch: {branch}\r\n\r\n--{boundary}\r\n"
                f"Content-Type: text/x-patch; name=\"0001-{branch}.patch\"\r\n"
                f"Content-Disposition: attachment; filename=\"0001-{branch}.patch\"\r\n"
                "Content-Transfer-Encoding: base64\r\n\r\n")
        b64 = base64.encodebytes(patch.encode()).decode().replace("\n", "\r\n")
        content = (f'multipart/mixed; boundary="{boundary}"',
                   (body + b64 + f"\r\n--{boundary}--\r\n").encode())
        return self.compose(sender=who, arrive=arrive, to=incoming(key), subject=title, text="", kind="new_merge_request",
                            key=key, tags={"legacy-key"} if legacy else (), content=content, project=p.path)

    def service_desk(self, arrive: datetime, legacy: bool = False, variant: str = "to") -> _Draft:
        p = SERVICE_DESK[0] if self.rng.random() < 0.8 else SERVICE_DESK[1]
        who = self.customer()
        key = p.path if legacy else f"{p.slug}-{p.id}-issue-"
        subject = self.pick(_SD_SUBJECTS)
        text = f"Hello,\n\n{subject}. Could you please help?\n\nBest regards,\n{who.name or who.addr}"
        tags = {"legacy-key"} if legacy else set()
        if variant == "delivered-to":
            group = "support@acme.example"
            return self.compose(sender=who, arrive=arrive, to=f"Acme Support <{group}>", subject=subject, text=text,
                                kind="service_desk", key=key, tags=tags | {"key-in-delivered-to"}, rcpt=group,
                                transport=[("Delivered-To", incoming(key)), ("X-Original-To", group)],
                                project=p.path)
        if variant == "received":
            return self.compose(sender=who, arrive=arrive, to="undisclosed-recipients:;", subject=subject, text=text,
                                kind="service_desk", key=key, tags=tags | {"key-in-received"}, project=p.path)
        return self.compose(sender=who, arrive=arrive, to=f"Acme Support <{incoming(key)}>", subject=subject,
                            text=text, kind="service_desk", key=key, tags=tags, project=p.path)

    def unsubscribe(self, arrive: datetime, legacy: bool = False) -> _Draft:
        who = self.staffer() if self.rng.random() < 0.5 else self.customer()
        reply, ktag = self.reply_key(with_namespace=True)
        key = reply + ("+unsubscribe" if legacy else "-unsubscribe")
        return self.compose(sender=who, arrive=arrive, to=incoming(key), subject="Unsubscribe",
                            text="This message was sent by a List-Unsubscribe mailto link.", kind="unsubscribe", key=key,
                            tags={ktag, "legacy-key"} if legacy else {ktag}, html=False)

    def ordinary(self, arrive: datetime) -> _Draft:
        """Legitimate mail, in the mix a GitLab instance sees."""
        r = self.rng.random()
        if r < 0.44:
            v = self.rng.random()
            return self.reply(arrive, "cc" if v < 0.04 else "references" if v < 0.08 else "to")
        if r < 0.60:
            return self.new_issue(arrive, legacy=self.rng.random() < 0.06)
        if r < 0.67:
            return self.note_on_issue(arrive)
        if r < 0.72:
            return self.new_mr(arrive, legacy=self.rng.random() < 0.1)
        if r < 0.95:
            v = self.rng.random()
            return self.service_desk(arrive, legacy=self.rng.random() < 0.05,
                                     variant="delivered-to" if v < 0.05 else "received" if v < 0.08 else "to")
        return self.unsubscribe(arrive, legacy=self.rng.random() < 0.15)

    # -- noise ---------------------------------------------------------------------------------------

    def bot_alert(self, arrive: datetime) -> _Draft:
        bot = Person("FOO Monitoring", "monitoring-bot@ops.acme.example", 0)
        key = f"{BURST_PROJECT.slug}-{BURST_PROJECT.id}-{self.staff[0].token}-issue"
        text = ("FOO exporter: error fetching data from FOO (upstream timeout after 30s).\n"
                "Check: foo_scrape_success == 0 for 5m\nSeverity: warning\n")
        return self.compose(sender=bot, arrive=arrive, to=incoming(key), subject="Error fetching data from FOO",
                            text=text, kind="new_issue", key=key, tags={"bot-burst"}, html=False, signature=False,
                            extra=[("X-Mailer", "foo-alerter/2.3.1")], project=BURST_PROJECT.path)

    def auto_reply(self, arrive: datetime) -> _Draft:
        r = self.rng
        who = self.staffer() if r.random() < 0.6 else self.customer()
        key, ktag = self.reply_key()
        p = self.project()
        title = self.pick(_ISSUE_TITLES)
        prefix = self.pick(("Automatic reply: ", "Out of Office: ", "Abwesenheitsnotiz: ", "Réponse automatique : ",
                            "Autosvar: "))
        style = r.random()
        extra: list[Header] = []
        if style < 0.5:  # Exchange
            extra = [("Auto-Submitted", "auto-replied"), ("X-Auto-Response-Suppress", "All"),
                     ("X-MS-Exchange-Inbox-Rules-Loop", who.addr)]
        elif style < 0.8:  # vacation(1) / Sieve
            extra = [("Auto-Submitted", "auto-replied (vacation)"), ("Precedence", "bulk")]
        else:  # an old responder: only X-Autoreply
            extra = [("X-Autoreply", "yes")]
        subject = f"{prefix}Re: {p.title} | {title}"
        if any(ord(c) > 127 for c in subject):
            subject = _ew(subject, "utf-8", "Q")
        return self.compose(sender=who, arrive=arrive, to=incoming(key), subject=subject,
                            text="I am out of the office until Monday with limited access to email.",
                            kind="reply", key=key, tags={"auto-reply", ktag}, extra=extra)

    def bounce(self, arrive: datetime) -> _Draft:
        r = self.rng
        p = SERVICE_DESK[0]
        key = f"{p.slug}-{p.id}-issue-"
        target = self.customer()
        gmail = r.random() < 0.4
        daemon = (Person("Mail Delivery Subsystem", "mailer-daemon@example.com", 0) if gmail else
                  Person("Mail Delivery System", "MAILER-DAEMON@smtp.example.org", 0))
        boundary = self.pick(self._boundaries["dsn"])
        status = self.pick(("5.1.1", "5.2.2", "4.4.7", "5.7.1"))
        body = (f"This is a MIME-encapsulated message.\r\n\r\n--{boundary}\r\n"
                "Content-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
                "I'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients.\r\n\r\n"
                f"<{target.addr}>: host mx.{target.domain} said: 550 {status} mailbox unavailable\r\n\r\n"
                f"--{boundary}\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n"
                f"Reporting-MTA: dns; smtp.example.org\r\nArrival-Date: {format_datetime(arrive)}\r\n\r\n"
                f"Final-Recipient: rfc822; {target.addr}\r\nAction: failed\r\nStatus: {status}\r\n\r\n"
                f"--{boundary}\r\nContent-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n"
                f"From: {p.title} <{incoming(key)}>\r\nTo: {target.addr}\r\nSubject: Re: {self.pick(_SD_SUBJECTS)}\r\n\r\n"
                f"--{boundary}--\r\n").encode()
        extra: list[Header] = [] if gmail else [("Auto-Submitted", "auto-replied")]
        d = self.compose(sender=daemon, arrive=arrive, to=incoming(key),
                         subject="Delivery Status Notification (Failure)" if gmail else "Undelivered Mail Returned to Sender",
                         text="", kind="service_desk", key=key, tags={"bounce"}, extra=extra, project=p.path,
                         content=(f'multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"', body))
        d.headers = [("Return-Path", "<>") if n == "Return-Path" else (n, v) for n, v in d.headers]
        return d

    def noreply(self, arrive: datetime) -> _Draft:
        r = self.rng
        p = self.project()
        token = self.staff[1].token
        key = f"{p.slug}-{p.id}-{token}-issue"
        sender, subject = self.pick((
            (Person("Jenkins", "noreply@ci.acme.example", 0), f"Build failed: {p.slug} #{r.randrange(1000, 9999)}"),
            (Person("Status Page", "no-reply@status.example.com", 0), "[Resolved] Elevated API error rates"),
            (Person("Cloud Billing", "do-not-reply@billing.example.net", 0), "Your invoice is available"),
            (Person("Calendar", "notifications@calendar.example.com", 0), "Invitation: Incident review @ Thu 15:00"),
        ))
        return self.compose(sender=sender, arrive=arrive, to=incoming(key), subject=subject,
                            text="This is an automated message, do not reply.", kind="new_issue", key=key,
                            tags={"noreply"}, project=p.path)

    def bulk(self, arrive: datetime) -> _Draft:
        p = SERVICE_DESK[0]
        key = f"{p.slug}-{p.id}-issue-"
        sender, subject, list_id = self.pick((
            (Person("DevOps Weekly", "newsletter@lists.example.org", 0), "DevOps Weekly #712: incident reviews",
             "<devops-weekly.lists.example.org>"),
            (Person("Example Cloud", "news@example.net", 0), "Save 30% on reserved instances this week", None),
            (Person("Conference Team", "hello@conf.example.com", 0), "Last chance: early-bird tickets", None),
        ))
        extra: list[Header] = [("Precedence", "bulk"),
                               ("List-Unsubscribe", f"<mailto:unsubscribe@{sender.domain}?subject=unsubscribe>")]
        if list_id:
            extra.append(("List-Id", f"DevOps Weekly {list_id}"))
        return self.compose(sender=sender, arrive=arrive, to=incoming(key), subject=subject,
                            text="View this email in your browser.", kind="service_desk", key=key, tags={"bulk"},
                            extra=extra, html=True, project=p.path)

    def no_key(self, arrive: datetime) -> _Draft:
        who = self.customer() if self.rng.random() < 0.6 else self.staffer()
        to = self.pick((f"incoming@{INCOMING_DOMAIN}", f"GitLab <incoming@{INCOMING_DOMAIN}>",
                        f"postmaster@{INCOMING_DOMAIN}"))
        subject = self.pick(("Hello?", "Is anyone reading this?", "Re: your ticket", "Partnership proposal",
                             "Question about my account"))
        addr = to.rpartition("<")[2].rstrip(">")
        return self.compose(sender=who, arrive=arrive, to=to, subject=subject,
                            text="I wrote to this address because it was in an old email.", kind="unknown",
                            key=None, tags={"no-key"}, rcpt=addr)

    # -- the fixed traps -------------------------------------------------------------------------------

    def traps(self) -> list[_Draft]:
        """One of each hostile or broken shape, at realistic ages."""
        r = self.rng
        out: list[_Draft] = []

        def at(hours: float) -> datetime:
            return self.now - timedelta(hours=hours, seconds=r.uniform(0, 1800))

        sd = SERVICE_DESK[0]
        sd_key = f"{sd.slug}-{sd.id}-issue-"
        web = PROJECTS[1]
        web_issue = f"{web.slug}-{web.id}-{self.staff[3].token}-issue"
        api_issue = f"{PROJECTS[0].slug}-{PROJECTS[0].id}-{self.staff[4].token}-issue"

        def sd_mail(hours: float, subject: str | bytes, tags: set[str], who: Person | None = None,
                    **kw: object) -> _Draft:
            who = who or self.customer()
            return self.compose(sender=who, arrive=at(hours), to=f"Acme Support <{incoming(sd_key)}>", subject=subject,
                                text="Please see the subject.", kind="service_desk", key=sd_key, tags=tags,
                                project=sd.path, **kw)  # type: ignore[arg-type]

        c = {p.addr: p for p in self.customers}
        # sign-up confirmations sent to project addresses (seed 001)
        slack = Person("Slack", "feedback@slack.example", -480)
        out.append(self.compose(sender=slack, arrive=at(30), to=incoming(web_issue),
                                subject="Confirm your email address for Slack",
                                text="Your confirmation code is below: enter it in your open browser window.\n\nQ7X-4KM",
                                kind="new_issue", key=web_issue, tags={"signup"}, html=True, project=web.path))
        out.append(sd_mail(52, "Please verify your email address", {"signup"},
                           who=Person("Notion Team", "team@mail.notion.example", -480)))
        out.append(sd_mail(5, "Welcome to Trello! Confirm your account", {"signup"},
                           who=Person("Trello", "do-not-reply@trello.example", 0)))
        # non-Latin subjects, encoded the way real MUAs do
        out.append(sd_mail(3, _ew("无法登录账户，请帮忙"), {"cjk"}, who=c["wang.fang@shop.example"]))
        out.append(sd_mail(20, _ew("請求書の件について（至急）", "iso-2022-jp"), {"cjk"},
                           who=self.customers[4]))
        out.append(sd_mail(75, _ew("비밀번호 재설정 문의"), {"cjk"}, who=c["seojun.lee@example.com"]))
        out.append(sd_mail(8, _ew("Не работает экспорт в CSV"), {"cyrillic"}, who=c["d.ivanov@example.org"]))
        out.append(sd_mail(200, _ew("Счёт на оплату N 4471", "koi8-r", "Q"), {"cyrillic"}, who=c["d.ivanov@example.org"]))
        out.append(sd_mail(11, _ew("مشكلة في تسجيل الدخول"), {"arabic"}, who=c["m.alahmad@example.net"]))
        out.append(sd_mail(40, _ew("בעיה בתשלום החודשי"), {"hebrew"}, who=c["sarah.levi@example.org"]))
        out.append(sd_mail(1.5, _ew("🔥 Production down? 🔥"), {"emoji"}, who=c["dana@example.com"]))
        # raw 8-bit headers: Latin-1, UTF-8 without encoded words (RFC 6532), cp1252 in a name
        out.append(sd_mail(26, b"R\xe9clamation facture n\xb0 4471", {"8bit"}, who=c["chloe.martin@example.net"]))
        out.append(sd_mail(14, "Größenänderung der Anhänge schlägt fehl".encode(), {"8bit"},
                           from_="Jörg Groß <joerg@shop.example>".encode(), who=c["bjorn@shop.example"]))
        out.append(sd_mail(90, "Invoice question", {"8bit"}, from_=b"\x93Helpdesk\x94 Team <helpdesk@legacy.example>",
                           who=c["novak@legacy.example"]))
        # broken encoded words
        out.append(sd_mail(6, "=?utf-8?B?0J/RgNC40LLQtdGC?", {"broken-encoded-word", "cyrillic"}))
        out.append(sd_mail(33, "=?UTF-8?B?5pel5pys6K?= =?UTF-8?B?6Kqe?=", {"broken-encoded-word", "cjk"}))
        out.append(sd_mail(48, "=?x-unknown-charset?Q?Caf=E9_cr=E8me?=", {"broken-encoded-word"}))
        out.append(sd_mail(120, "=?utf-8?Q?broken=ZZhex=?= and =?utf-8?X?bad_encoding?=", {"broken-encoded-word"},
                           from_='"=?utf-8?q?Zo=C3=AB?=" <zoe@example.com>'))
        # dates: unparseable, missing, absurd
        out.append(sd_mail(9, "Date header says yesterday", {"bad-date"}, date="yesterday"))
        out.append(sd_mail(60, "Calendar sync broken", {"bad-date"}, date="31/02/2024 25:61"))
        out.append(sd_mail(16, "Sent from an old fax gateway", {"missing-date"}, date=False))
        out.append(sd_mail(4, "Clock reset on our mail server", {"absurd-date"}, date="Thu, 01 Jan 1970 00:00:00 +0000"))
        out.append(sd_mail(100, "Hello from the future", {"absurd-date"}, date="Tue, 31 Dec 2999 23:59:59 +0000"))
        out.append(sd_mail(27, "Two-digit year", {"absurd-date"}, date="Mon, 3 Mar 25 10:00:00 EST"))
        # text that must stay inert: markup, escapes, bidi
        who = self.staff[5]
        assert who.token
        out.append(self.compose(sender=who, arrive=at(0.7), to=incoming(api_issue),
                                subject="[bold red]URGENT[/] checkout is down for all EU customers",
                                text="Everything returns 502 since 10:02 UTC.", kind="new_issue", key=api_issue,
                                tags={"rich-markup"}, project=PROJECTS[0].path))
        out.append(sd_mail(18, "Order status", {"rich-markup"},
                           from_='"[link=https://evil.example]Acme Billing[/link]" <billing@shop.example>'))
        out.append(sd_mail(2, b"\x1b]0;owned\x07\x1b[2J\x1b[31mYour account is suspended\x1b[0m", {"escape"},
                           who=Person("Security Team", "security@example.net", 0), spoofed=True))
        out.append(sd_mail(36, "=?utf-8?q?=1B[5mblink=1B[0m_and_a_C1_=C2=9B31m_CSI?=", {"escape"}))
        out.append(sd_mail(12, "invoice_\u202egpj.exe (please open)", {"bidi"},
                           who=Person("Accounts", "accounts@example.net", 0), spoofed=True))
        out.append(sd_mail(70, "Help " * 700 + "(end)", {"long-subject"}))
        # addressing traps
        who = self.staff[6]
        key = f"{web.slug}-{web.id}-{who.token}-issue"
        out.append(self.compose(sender=who, arrive=at(22), to=f'"incoming+{key}"@{INCOMING_DOMAIN}',
                                subject="Quoted local part", text="My client quoted the address.", kind="unknown",
                                key=None, tags={"quoted-local-part", "no-key"}, rcpt=None))
        out.append(self.compose(sender=who, arrive=at(23), to=f"Incoming+{key}@{INCOMING_DOMAIN}",
                                subject="Capitalised address", text="Autocorrect capitalised the address.",
                                kind="unknown", key=None, tags={"case-mismatch", "no-key"},
                                rcpt=f"Incoming+{key}@{INCOMING_DOMAIN}"))
        out.append(self.compose(sender=self.customer(), arrive=at(45), to=incoming("support"),
                                subject="Support request", text="Is this the support address?", kind="unknown",
                                key="support", tags={"unknown-key"}))
        out.append(self.compose(sender=self.staff[7], arrive=at(7), to="Team <team@acme.example>",
                                cc=f"GitLab <{incoming(web_issue)}>", subject="FYI: release notes draft",
                                text="Cc'ing GitLab so it lands in the issue.", kind="new_issue", key=web_issue,
                                tags={"key-in-cc"}, project=web.path, rcpt=""))
        # auto-reply that says it is not one
        d = sd_mail(13, "Re: Your ticket", {"auto-submitted-no"}, extra=[("Auto-Submitted", "no")])
        out.append(d)
        # a large merge request by email
        big = self.new_mr(at(10))
        payload = base64.encodebytes(self.rng.randbytes(300_000)).replace(b"\n", b"\r\n")
        ctype, body = big.content_type, big.body
        boundary = ctype.split('boundary="', 1)[1].rstrip('"')
        big.body = body.replace(f"--{boundary}--".encode(),
                                (f"--{boundary}\r\nContent-Type: application/octet-stream; name=\"heap.dump\"\r\n"
                                 "Content-Disposition: attachment; filename=\"heap.dump\"\r\n"
                                 "Content-Transfer-Encoding: base64\r\n\r\n").encode() + payload
                                + f"\r\n--{boundary}--".encode())
        big.tags.add("large")
        out.append(big)
        return out


def _utc(dt: datetime) -> str:
    return format_datetime(dt.astimezone(UTC)) + " (UTC)"


def build_backlog(size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED, now: datetime | None = None) -> Backlog:
    """The demo mailbox: ``size`` messages, oldest first, and the arbitration keys to hold.

    Proportions follow the story (\\Deleted leftovers ~12 %, bot burst ~7 %, crash trap ~2.5 %,
    noise ~13 %, a fixed set of ~45 traps, the rest ordinary mail); the same seed and ``now``
    give byte-identical messages."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"demo size must be between {MIN_SIZE} and {MAX_SIZE} (got {size})")
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    rng = random.Random(seed)
    g = _Gen(rng, now)
    drafts: list[_Draft] = []

    # the \Deleted leftovers of normal operation, before the outage
    n_deleted = round(size * 0.12)
    for _ in range(n_deleted):
        d = g.ordinary(now - OUTAGE - timedelta(seconds=rng.uniform(600, 6.5 * 86400)))
        d.flags = {"\\Seen", "\\Deleted"}
        d.tags.add("deleted")
        drafts.append(d)

    # the monitoring bot's burst, right after mail_room stopped: identical alerts within 40 min
    n_burst = max(10, min(150, round(size * 0.07)))
    start = now - OUTAGE + timedelta(hours=1, minutes=13)
    for i in range(n_burst):
        drafts.append(g.bot_alert(start + timedelta(seconds=i * 2400 / n_burst + rng.uniform(0, 5))))

    traps = g.traps()
    drafts.extend(traps)

    # a few duplicated Message-IDs: the same message delivered twice (a forwarding loop)
    dup_sources = [g.ordinary(now - g.age_outage()) for _ in range(6)]
    dups: list[_Draft] = []
    for i, src in enumerate(dup_sources):
        src.tags.add("duplicate-id")
        copies = 2 if i == 0 else 1
        for k in range(copies):
            arrive = min(src.arrive + timedelta(seconds=rng.uniform(20, 900) * (k + 1)),
                         now - timedelta(seconds=30 - k))  # never in the future
            dup = _Draft(headers=list(src.headers), content_type=src.content_type, body=src.body,
                         arrive=arrive, kind=src.kind,
                         key=src.key, tags=set(src.tags), message_id=src.message_id, project=src.project)
            dups.append(dup)
    drafts.extend(dup_sources + dups)

    # noise during the outage
    noise = [(g.auto_reply, 0.04), (g.bounce, 0.02), (g.noreply, 0.03), (g.bulk, 0.02), (g.no_key, 0.02)]
    for make, share in noise:
        for _ in range(max(2, round(size * share))):
            drafts.append(make(now - g.age_outage()))

    # the crash trap: a batch fetched (\Seen) by the crash-looping pod, never delivered or deleted
    n_trap = max(5, round(size * 0.025))
    trap_drafts = []
    for _ in range(n_trap):
        d = g.ordinary(now - timedelta(seconds=rng.uniform(1800, 2 * 86400)))
        d.flags = {"\\Seen"}
        d.tags.add("seen-trap")
        trap_drafts.append(d)
    drafts.extend(trap_drafts)

    # ordinary mail fills the rest; a handful arrived in the last minutes
    n_fresh = 8
    while len(drafts) < size - n_fresh:
        drafts.append(g.ordinary(now - g.age_outage()))
    while len(drafts) < size:
        drafts.append(g.ordinary(now - timedelta(seconds=rng.uniform(60, 1500))))
    drafts = drafts[:size]

    for d in drafts:
        if d.arrive < now - timedelta(days=2) and not d.flags:
            d.tags.add("stale")
    drafts.sort(key=lambda d: d.arrive)
    messages = [DemoMessage(raw=d.raw(), internaldate=d.arrive, flags=frozenset(d.flags), kind=d.kind, key=d.key,
                            tags=frozenset(d.tags), message_id=d.message_id, project=d.project) for d in drafts]
    return Backlog(messages=messages, locks=_locks(rng, messages, now), now=now, seed=seed)


def _locks(rng: random.Random, messages: list[DemoMessage], now: datetime) -> list[LockSpec]:
    """Which UIDs hold arbitration keys, per the story."""
    unseen = [i for i, m in enumerate(messages) if "\\Seen" not in m.flags]
    trap = [i for i, m in enumerate(messages) if "seen-trap" in m.tags]
    # the seen-trap batch fetched and \Seen: keys taken in the last ten minutes
    out = [LockSpec(i, "set", 1, rng.randrange(120, 420), "crash trap: fetched, never delivered")
           for i in trap[: max(3, len(trap) // 2)]]
    # restarts that claimed keys (SET NX EX 600) and died before fetching
    n_set = max(5, round(len(messages) * 0.04))
    claimed = rng.sample(unseen, min(len(unseen), n_set + max(4, round(len(messages) * 0.015)) + 3))
    for i in claimed[:n_set]:
        out.append(LockSpec(i, "set", 1, rng.randrange(45, 590), "claimed by a pod that died before fetching"))
    # the pre-0.10 pod: INCR counters refreshed every poll until it was stopped seconds ago
    n_incr = max(4, round(len(messages) * 0.015))
    for i in claimed[n_set:n_set + n_incr]:
        out.append(LockSpec(i, "incr", rng.randrange(2, 40), rng.randrange(540, 600),
                            "mail_room < 0.10 counter (INCR + EXPIRE every poll)"))
    # INCR whose EXPIRE never ran: a key that never expires
    for i in claimed[n_set + n_incr:n_set + n_incr + 3]:
        out.append(LockSpec(i, "incr", rng.randrange(2, 9), None, "INCR without EXPIRE: never expires"))
    # keys of messages expunged long ago
    for below in (3, 17, 42):
        out.append(LockSpec(None, "set", 1, rng.randrange(200, 590), "message expunged long ago", gone_below=below))
    return out


__all__ = ["ADDRESS_TEMPLATE", "DEFAULT_SEED", "DEFAULT_SIZE", "GITLAB_HOST", "MAX_SIZE", "MIN_SIZE", "PROJECTS",
           "STORY", "TAGS", "Backlog", "DemoMessage", "LockSpec", "build_backlog", "full_path_slug", "incoming"]
