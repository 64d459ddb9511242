"""GitLab's incoming-email key: where GitLab finds it and what it says, decoded offline.

Everything here mirrors GitLab's own parsing (the ``gitlab-email_handler`` gem:
``MailKey``, ``ReplyKey`` and the handler ``Matchers``; ``ServiceDeskHandler`` for the
service_desk_email mailbox), because what decides where a message goes is GitLab's reading of
it, not a human's. Three consequences operators meet:

- The address template becomes an anchored, **case-sensitive** pattern; a display name is dropped
  but a quoted local part keeps its quotes (so it never matches).
- Headers are searched in GitLab's order and the *first header carrying a key* wins, even when
  that key is one no handler accepts (GitLab then rejects the mail: it does not look further).
- Slugs are greedy: ``a-1-glimt-x-2-y-issue`` is project 2 with slug ``a-1-glimt-x``.

GitLab's slug patterns (``(?<slug>.+)-(?<id>\\d+)-(?<token>.+)-issue``) backtrack quadratically
on long hostile keys; they are implemented here as linear scans with identical results (the unit
tests check them against literal translations of GitLab's regexes).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from triage_tui.domain.headers import Headers, bounded_memo

WILDCARD_PLACEHOLDER = "%{key}"
UNSUBSCRIBE_SUFFIX = "-unsubscribe"
UNSUBSCRIBE_SUFFIX_LEGACY = "+unsubscribe"

#: Kinds, in GitLab's handler order (Identifier::MATCHERS), then ``unknown``.
KINDS: tuple[str, ...] = (
    "reply", "new_issue", "note_on_issuable", "unsubscribe", "new_merge_request", "service_desk",
    "unknown",
)
#: GitLab's handler names for each kind (``handler:`` in the filter language).
HANDLER_NAMES: dict[str, str] = {
    "create_note": "reply",
    "create_issue": "new_issue",
    "create_note_on_issuable": "note_on_issuable",
    "unsubscribe": "unsubscribe",
    "create_merge_request": "new_merge_request",
    "service_desk": "service_desk",
}
#: Where GitLab looks, first match wins (MailKey.each_candidate): To, the References fallback,
#: then RECIPIENT_HEADERS.
HEADER_ORDER: tuple[str, ...] = (
    "To", "References", "Delivered-To", "X-Delivered-To", "Envelope-To", "X-Envelope-To",
    "Received", "X-Original-To", "X-Forwarded-To", "Cc",
)
_HEADER_LOWER = {h.lower(): h for h in HEADER_ORDER}
_ORDER = tuple((h, h.lower()) for h in HEADER_ORDER)

# ReplyKey: BASE36 = [0-9a-z]; legacy 32 lowercase hex; partitioned <1-4>-<25>[-<1-13>].
_PARTITIONED = r"(?P<partition>[0-9a-z]{1,4})-(?P<reply25>[0-9a-z]{25})(?:-(?P<namespace>[0-9a-z]{1,13}))?"
_FULL_REPLY = rf"(?:(?P<legacy>[a-f0-9]{{32}})|{_PARTITIONED})"
_REPLY_RE = re.compile(rf"{_FULL_REPLY}")
_UNSUBSCRIBE_RE = re.compile(rf"(?P<token>{_FULL_REPLY})(?:{re.escape(UNSUBSCRIBE_SUFFIX)}|{re.escape(UNSUBSCRIBE_SUFFIX_LEGACY)})")
# MailKey::RECEIVED_HEADER_REGEX = /for\s+<([^<]+)>/ (Ruby \s is ASCII whitespace).
_RECEIVED_FOR_RE = re.compile(r"for[ \t\r\n\f\v]+<([^<]+)>")

#: Header values longer than this are scanned only this far: GitLab would read further, but no
#: real address list is this long and the list must stay fast on hostile input.
MAX_SCAN = 256 * 1024


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What GitLab would make of a message's key. Fields the key does not carry are None;
    ``project_slug`` is the slug exactly as in the key (a slug cannot be turned back into a path);
    ``project_path`` only comes from the legacy forms, which carry the full path."""

    kind: str = "unknown"
    key: str | None = None
    project_id: int | None = None
    project_slug: str | None = None
    project_path: str | None = None
    issue_iid: int | None = None
    reply_key: str | None = None
    namespace_id: int | None = None
    matched_header: str | None = None
    partition: int | None = None  # partitioned reply keys only

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def with_header(self, header: str | None) -> KeyInfo:
        return KeyInfo(self.kind, self.key, self.project_id, self.project_slug, self.project_path,
                       self.issue_iid, self.reply_key, self.namespace_id, header, self.partition)


UNKNOWN = KeyInfo()


# --- the address template -------------------------------------------------------------------

@lru_cache(maxsize=64)
def template_regex(template: str) -> re.Pattern[str]:
    """GitLab's MailKey.address_regex: ``\\A<?ESCAPED>?\\z`` with the first ``%{key}`` as
    ``(.+)``. Case-sensitive. A template without ``%{key}`` (a dedicated address) has no group
    and so never yields a key: such mailboxes only get keys from References."""
    escaped = re.escape(template).replace(re.escape(WILDCARD_PLACEHOLDER), "(.+)", 1)
    return re.compile(rf"\A<?{escaped}>?\Z")


def key_from_address(address: str, template: str | None) -> str | None:
    """The key in one address (as GitLab sees it: no display name, quotes kept), or None."""
    if not template or not address:
        return None
    m = template_regex(template).match(address)
    if m is None or m.re.groups < 1:
        return None
    return m.group(1)


# --- address lists (what Mail::Message#to returns) -----------------------------------------

_SPECIAL_RE = re.compile(r'[",;:()\\<>]')
_HARD_RE = re.compile(r'[",;:()\\]')
_TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"?|\\.?|[(),:;<>]|[^"\\(),:;<>]+', re.DOTALL)
_WS_RE = re.compile(r"\s+")


def _clean_spec(parts: list[str]) -> str:
    """An addr-spec from its tokens: whitespace outside quoted strings dropped (as the Mail gem
    does when it rebuilds ``local@domain``); quoted strings kept with their quotes."""
    return "".join(p if p.startswith('"') else _WS_RE.sub("", p) for p in parts)


def split_addresses(value: str | None) -> list[str]:
    """Addresses of an address-list header value, in order: display names and comments dropped,
    groups flattened, quoted local parts kept quoted. Tolerant: never raises, linear time."""
    if not value:
        return []
    if len(value) > MAX_SCAN:
        value = value[:MAX_SCAN]
    if _SPECIAL_RE.search(value) is None:
        v = value.strip()
        if " " in v or "\t" in v:
            v = _WS_RE.sub("", v)
        return [v] if v else []
    if (value.endswith(">") and _HARD_RE.search(value) is None and value.count("<") == 1
            and value.count(">") == 1):
        inner = value[value.index("<") + 1:-1].strip()
        if " " in inner or "\t" in inner:
            inner = _WS_RE.sub("", inner)
        return [inner] if inner else []
    out: list[str] = []
    outside: list[str] = []  # tokens outside <...> (phrase or bare addr-spec)
    angle: list[str] | None = None  # tokens inside the last <...>
    in_angle = False
    depth = 0  # comment nesting

    def flush() -> None:
        nonlocal angle, outside
        spec = _clean_spec(angle) if angle is not None else _clean_spec(outside)
        if spec:
            out.append(spec)
        outside, angle = [], None

    for m in _TOKEN_RE.finditer(value):
        tok = m.group(0)
        if depth:
            if tok == "(":
                depth += 1
            elif tok == ")":
                depth -= 1
            continue
        if tok == "(":
            depth = 1
        elif in_angle:
            if tok == ">":
                in_angle = False
            elif tok == "<":
                angle = []
            elif angle is not None and tok not in (",", ";", ":", ")"):
                angle.append(tok)
        elif tok == "<":
            in_angle, angle = True, []
        elif tok == "," or tok == ";":  # noqa: PLR1714
            if outside or angle is not None:  # ", , , ;;;" (hostile lists) costs no flush
                flush()
        elif tok == ":":
            outside, angle = [], None  # a group's display name
        elif tok in (">", ")"):
            continue
        elif not tok.isspace():  # whitespace outside quotes is dropped from an addr-spec anyway
            outside.append(tok)
    if in_angle or angle is not None or outside:
        flush()
    return out


# --- the References fallback ----------------------------------------------------------------

def reference_ids(value: str | None) -> list[str]:
    """Message ids of a References value: GitLab's ``scan(/(?!<)[^<>]+(?=>)/)``, linear."""
    if not value:
        return []
    if len(value) > MAX_SCAN:
        value = value[:MAX_SCAN]
    pieces = value.split(">")
    out = []
    for piece in pieces[:-1]:  # every piece but the last is followed by '>'
        tail = piece.rsplit("<", 1)[-1]
        if tail:
            out.append(tail)
    return out


def key_from_message_id(mail_id: str, gitlab_host: str | None) -> str | None:
    """``reply-<key>@<gitlab host>`` (``\\Areply-(.+)@HOST\\z``). GitLab needs its host here; with
    the host unknown, any host is accepted (the caller says so)."""
    if not mail_id.startswith("reply-"):
        return None
    if gitlab_host:
        suffix = "@" + gitlab_host
        if not mail_id.endswith(suffix):
            return None
        key = mail_id[6:len(mail_id) - len(suffix)]
    else:
        key, at, host = mail_id[6:].rpartition("@")
        if not at or not host or "\n" in host:
            return None
    if not key or "\n" in key:
        return None
    return key


# --- key classification (the handler matchers) ----------------------------------------------

def _int(digits: str, base: int = 10) -> int | None:
    try:
        return int(digits, base)
    except ValueError:  # absurdly long digit runs (Python's int-from-str limit)
        return None


# On the reversed body, ``-<digits>-`` followed by a character: the first such match (at index >= 1,
# so the token is not empty) is GitLab's rightmost split, i.e. its greedy slug. Linear, in C.
_REV_SPLIT_RE = re.compile(r"-([0-9]+)-(?=.)", re.DOTALL)
_ALL_DIGITS_RE = re.compile(r"[0-9]+")
_DIGIT_RUN_RE = re.compile(r"[0-9]*")
_SD_PROJECT_KEY_RE = re.compile(r"[a-z0-9_]+")


def _split_base(body: str) -> tuple[str, str, str] | None:
    """``\\A(?<slug>.+)-(?<project_id>\\d+)-(?<token>.+)\\z`` with Ruby's backtracking: the slug is
    the longest prefix for which the rest matches. Returns (slug, id digits, token)."""
    rev = body[::-1]
    m = _REV_SPLIT_RE.search(rev, 1)
    if m is None:
        return None
    n = len(body)
    token_end = n - 1 - m.start()  # body index of the "-" before the token
    slug_end = n - m.end()  # body index of the "-" after the slug
    return body[:slug_end], body[slug_end + 1:token_end], body[token_end + 1:]


def _split_base_tail(body: str) -> tuple[str, str] | None:
    """``\\A(?<slug>.+)-(?<project_id>\\d+)\\z``: (slug, id digits)."""
    i = body.rfind("-")
    if i <= 0 or _ALL_DIGITS_RE.fullmatch(body, i + 1) is None:
        return None
    return body[:i], body[i + 1:]


def _reply_info(m: re.Match[str], kind: str, key: str, reply_key: str, header: str | None = None) -> KeyInfo:
    if m.group("legacy"):
        return KeyInfo(matched_header=header, kind=kind, key=key, reply_key=reply_key)
    ns = m.group("namespace")
    return KeyInfo(matched_header=header, kind=kind, key=key, reply_key=reply_key,
                   namespace_id=_int(ns, 36) if ns else None,
                   partition=_int(m.group("partition"), 36))


def _slug_info(kind: str, key: str, slug: str, digits: str, iid: str | None = None,
               header: str | None = None) -> KeyInfo:
    return KeyInfo(matched_header=header, kind=kind, key=key, project_slug=slug, project_id=_int(digits),
                   issue_iid=_int(iid) if iid is not None else None)


def _match_create_issue(key: str, header: str | None = None) -> KeyInfo | None:
    if "/" not in key and "\n" not in key and key.endswith("-issue"):
        parts = _split_base(key[:-6])
        if parts:
            return _slug_info("new_issue", key, parts[0], parts[1], header=header)
    # legacy: \A(?<project_path>[^+]*)\+(?<token>.*)\z, token without '+', no '+unsubscribe'
    path, plus, token = key.partition("+")
    if plus and "\n" not in token and "+" not in token and UNSUBSCRIBE_SUFFIX_LEGACY not in key:
        return KeyInfo(matched_header=header, kind="new_issue", key=key, project_path=path)
    return None


def _match_note_on_issuable(key: str, header: str | None = None) -> KeyInfo | None:
    if "\n" in key:
        return None
    n = len(key)
    run = _DIGIT_RUN_RE.match(key[::-1])
    k = n - (run.end() if run else 0)
    if k == n or not key.endswith("-issue-", 0, k):
        return None
    parts = _split_base(key[:k - 7])
    if parts is None:
        return None
    return _slug_info("note_on_issuable", key, parts[0], parts[1], key[k:], header=header)


def _match_create_merge_request(key: str, header: str | None = None) -> KeyInfo | None:
    if "/" not in key and "\n" not in key and key.endswith("-merge-request"):
        parts = _split_base(key[:-14])
        if parts:
            return _slug_info("new_merge_request", key, parts[0], parts[1], header=header)
    # legacy: \A(?<project_path>[^+]*)\+merge-request\+(?<token>.*)   (no \z in GitLab)
    path, plus, rest = key.partition("+")
    if plus and rest.startswith("merge-request+"):
        return KeyInfo(matched_header=header, kind="new_merge_request", key=key, project_path=path)
    return None


def _match_service_desk(key: str, header: str | None = None) -> KeyInfo | None:
    if "/" not in key and "\n" not in key and key.endswith("-issue-"):
        parts = _split_base_tail(key[:-7])
        if parts:
            return _slug_info("service_desk", key, parts[0], parts[1], header=header)
    # legacy: \A(?<project_path>[^+]*)\z with a '/' and no '+'
    if "+" not in key and "/" in key:
        return KeyInfo(matched_header=header, kind="service_desk", key=key, project_path=key)
    return None


def _service_desk_mailbox(key: str, header: str | None = None) -> KeyInfo:
    """The service_desk_email mailbox: ServiceDeskHandler takes every key (its opaque
    ``<slug>-<service desk key>`` form is resolved in GitLab's database)."""
    if "/" not in key and "\n" not in key and key.endswith("-issue-"):
        parts = _split_base_tail(key[:-7])
        if parts:
            return _slug_info("service_desk", key, parts[0], parts[1], header=header)
    if "+" not in key and "/" in key:
        return KeyInfo(matched_header=header, kind="service_desk", key=key, project_path=key)
    # PROJECT_KEY_PATTERN = \A(?<slug>.+)-(?<key>[a-z0-9_]+)\z
    i = key.rfind("-")
    if i > 0 and "\n" not in key[:i] and _SD_PROJECT_KEY_RE.fullmatch(key, i + 1) is not None:
        return KeyInfo(matched_header=header, kind="service_desk", key=key, project_slug=key[:i])
    return KeyInfo(matched_header=header, kind="service_desk", key=key)


def classify_key(key: str, mailbox_kind: str = "incoming") -> KeyInfo:
    """The handler GitLab would pick for ``key``, with what the key carries. Never raises."""
    return _classify(key, mailbox_kind, None)


def _classify(key: str, mailbox_kind: str, header: str | None) -> KeyInfo:
    """:func:`classify_key` with ``matched_header`` set (one KeyInfo built, not two)."""
    if mailbox_kind == "service_desk":
        return _service_desk_mailbox(key, header)
    m = _REPLY_RE.fullmatch(key)
    if m:
        return _reply_info(m, "reply", key, key, header)
    info = _match_create_issue(key, header) or _match_note_on_issuable(key, header)
    if info:
        return info
    m = _UNSUBSCRIBE_RE.fullmatch(key)
    if m:
        return _reply_info(m, "unsubscribe", key, m.group("token"), header)
    info = _match_create_merge_request(key, header) or _match_service_desk(key, header)
    return info or KeyInfo(matched_header=header, kind="unknown", key=key)


# --- whole messages ---------------------------------------------------------------------------

def decode_address(value: str, template: str | None, mailbox_kind: str = "incoming") -> KeyInfo:
    """Decode one address or a whole To-style header value: the first address matching the
    template wins. ``matched_header`` stays None (no header involved)."""
    for addr in split_addresses(value):
        key = key_from_address(addr, template)
        if key is not None:
            return classify_key(key, mailbox_kind)
    return UNKNOWN


def _candidates(name: str, values: list[str], at: bool = False) -> list[str]:
    """``at``: only addresses with an '@' can match (the template has one): a value without any
    (a megabyte of ``; ;`` or parentheses) is not tokenized at all."""
    if name in ("to", "cc"):
        return [a for v in values if not at or "@" in v for a in split_addresses(v)]
    if name == "received":
        out = []
        for v in values:
            m = _RECEIVED_FOR_RE.search(v, 0, MAX_SCAN)
            if m:
                out.append(m.group(1))
        return out
    return [v.strip() for v in values]  # a raw field value, matched whole


def find_key(
    headers: Headers,
    template: str | None,
    mailbox_kind: str = "incoming",
    gitlab_host: str | None = None,
) -> KeyInfo:
    """GitLab's MailKey.each_candidate: the first header (in :data:`HEADER_ORDER`) whose value
    carries a key decides; ``matched_header`` names it. No key anywhere → kind ``unknown``,
    ``key`` None (GitLab rejects such mail and writes to the sender).

    ``gitlab_host`` is GitLab's own host, needed to read ``reply-<key>@<host>`` References;
    when it is not known any host is accepted there."""
    if not template:
        return UNKNOWN
    grouped: dict[str, list[str]] = {}
    for name, value in headers.fields:
        if name in _HEADER_LOWER:
            grouped.setdefault(name, []).append(value)
    return find_key_grouped(grouped, template, mailbox_kind, gitlab_host)


def find_key_grouped(
    grouped: dict[str, list[str]],
    template: str | None,
    mailbox_kind: str = "incoming",
    gitlab_host: str | None = None,
) -> KeyInfo:
    """:func:`find_key` over header values already grouped by lower-cased name (the classifier
    groups a message's fields once and shares them)."""
    if not template or not grouped:
        return UNKNOWN
    at = "@" in template
    for header, name in _ORDER:
        values = grouped.get(name)
        if not values:
            continue
        if name == "references":
            for v in values:
                for mail_id in reference_ids(v):
                    key = key_from_message_id(mail_id, gitlab_host)
                    if key is not None:
                        return _classified(key, mailbox_kind, header)
            continue
        if name == "received":  # a different value in every message: nothing to cache
            for addr in _candidates(name, values, at):
                key = key_from_address(addr, template)
                if key is not None:
                    return _classified(key, mailbox_kind, header)
            continue
        for v in values:  # the first value with a key wins, as over _candidates' flattened list
            key = _key_in_value(name, v, template)
            if key is not None:
                return _classified(key, mailbox_kind, header)
    return UNKNOWN


# Recipients repeat across a mailbox (the project's address in To, the mailbox in Delivered-To):
# each distinct value is searched for a key, and each distinct key classified, once (bounded_memo).
def _key_in_value_of(name: str, value: str, template: str) -> str | None:
    """The first key of one value of an address header (``to``/``cc`` split as an address list,
    the others matched whole): :func:`_candidates` and :func:`key_from_address` on one value."""
    for addr in _candidates(name, [value], "@" in template):
        key = key_from_address(addr, template)
        if key is not None:
            return key
    return None


_key_in_value = bounded_memo(_key_in_value_of)
#: :func:`_classify`, each distinct (key, mailbox kind, header) once (KeyInfo is frozen)
_classified = bounded_memo(lambda key, mailbox_kind, header: _classify(key, mailbox_kind, header))
