"""The filter language shared by ``--filter`` and the TUI's ``/``.

Terms are ANDed when written side by side; ``or`` (or ``|``) binds looser than AND; ``!`` or
``not`` negates; parentheses group::

    project:278964 kind:new_issue age>2d bot from:noreply subject:"Error fetching" !suspicious size>1M

Fields (text matches are case-insensitive substrings; ``field:/regex/`` for a regex):

    from:TEXT        sender (display name and address)
    to:TEXT  cc:TEXT recipients as written in To / Cc
    subject:TEXT     subject
    project:N|TEXT   project id (a number), or a substring of the slug or legacy path
    kind:KIND        reply, new_issue, note_on_issuable, unsubscribe, new_merge_request,
                     service_desk, unknown (aliases: issue, note, mr, sd; GitLab handler names
                     with handler:, e.g. handler:create_issue)
    key:TEXT  msgid:TEXT   the decoded key / the Message-ID
    age>2d           INTERNALDATE age; <, >, <=, >= with s, m, h, d, w (90m, 36h, 2d, 1w)
    size>1M          RFC822.SIZE; <, >, <=, >=, = with K, M, G (1024-based)
    uid:N  uid:1,5,10-20  uid>N   UIDs
    iid:N            issue iid of a note_on_issuable key
    outcome:VERDICT  GitLab's predicted verdict if re-ingested: handled, dropped (ignored
                     without a reply), rejected (GitLab writes a rejection to the sender),
                     unknown (local only: never pushed to the server)
    bot stale suspicious nokey seen unseen deleted locked problem
                     verdicts and flags (also is:bot, bot:no, has:problem ...)
    TEXT  "two words"   free text: matches the sender or the subject

An empty filter matches everything. A syntax error names its 1-based position and what was
expected there.

Server-side pre-filtering: :meth:`Filter.pushdown` turns the parts an IMAP server can evaluate
(INTERNALDATE by day, FROM/TO/CC/SUBJECT words, size, UIDs, \\Seen, \\Deleted) into an IMAP SEARCH
criterion that selects a **superset** of the matching messages: dates are widened by two days
(SEARCH compares dates without time or timezone), text is pushed as ASCII words only, and a
negation is pushed only when its inner part is exact. The engine always re-applies
:meth:`Filter.matches` locally, which stays authoritative, so both paths give identical results.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from triage_tui.domain.age import parse_age
from triage_tui.domain.keys import HANDLER_NAMES, KINDS
from triage_tui.domain.model import Message
from triage_tui.domain.numbers import IMAP_MAX
from triage_tui.errors import UsageError

FILTER_HELP = """\
Filter language (list --filter, and / in the TUI)

  Terms side by side are ANDed; 'or' (or |) combines alternatives; '!' or 'not' negates;
  parentheses group. Text matches are case-insensitive substrings; field:/regex/ for a regex.

  from:TEXT       sender (name and address)        to:TEXT  cc:TEXT   recipients
  subject:TEXT    subject (quote spaces: subject:"Error fetching")
  project:N|TEXT  project id, or part of the slug or legacy path
  kind:KIND       reply new_issue note_on_issuable unsubscribe new_merge_request
                  service_desk unknown   (issue, note, mr, sd; handler:create_issue ...)
  key:TEXT        decoded key              msgid:TEXT   Message-ID
  age>2d          age since INTERNALDATE: < > <= >= with s m h d w (90m 36h 2d 1w)
  size>1M         size: < > <= >= = with K M G
  uid:N           uid:1,5,10-20   uid>1000          iid:N   issue iid
  outcome:V       GitLab's verdict if re-ingested: handled, dropped (no reply),
                  rejected (GitLab writes to the sender), unknown
  bot stale suspicious nokey seen unseen deleted locked   (also is:bot, bot:no)
  problem         a header field could not be read (also has:problem)
  TEXT "a phrase" free text: sender or subject

  Examples:
    project:278964 kind:new_issue age>2d
    bot or from:noreply subject:"Error fetching"
    !suspicious (kind:service_desk | kind:new_issue) size>1M
    outcome:rejected stale   (old mail GitLab would answer with a rejection)
"""


class FilterSyntaxError(UsageError):
    """A filter that does not parse: ``position`` is 1-based, ``expected`` says what would fit."""

    def __init__(self, position: int, expected: str, text: str = "") -> None:
        self.position = position
        self.expected = expected
        self.text = text
        super().__init__(f"filter syntax error at position {position}: {expected}")


# --- values ----------------------------------------------------------------------------------

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_SAFE_WORD = re.compile(r"[A-Za-z0-9@._+\-]{1,200}")
_SIZE = re.compile(r"([0-9]{1,30}(?:\.[0-9]{1,9})?)\s*([kmg]?)i?b?", re.IGNORECASE | re.ASCII)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_UIDSET = re.compile(r"[0-9]{1,10}(?:-[0-9]{1,10})?(?:,[0-9]{1,10}(?:-[0-9]{1,10})?)*", re.ASCII)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MAX_TEXT = 4000  # text fields are cut to this before matching
MAX_FILTER = 10_000

KIND_ALIASES: dict[str, str] = {
    **{k: k for k in KINDS},
    **HANDLER_NAMES,
    "issue": "new_issue", "note": "note_on_issuable", "mr": "new_merge_request",
    "merge_request": "new_merge_request", "sd": "service_desk", "servicedesk": "service_desk",
    "none": "unknown",
}
FLAGS = ("bot", "stale", "suspicious", "nokey", "no-key", "no_key", "seen", "unseen", "deleted",
         "locked", "problem")
TEXT_FIELDS = ("from", "to", "cc", "subject", "key", "msgid")
FIELDS = (*TEXT_FIELDS, "project", "kind", "handler", "outcome", "age", "size", "uid", "iid", "is", "has", *FLAGS)
#: GitLab's predicted verdicts (domain.outcome) and the spellings the filter accepts for them.
OUTCOMES = ("handled", "dropped", "rejected", "unknown")
OUTCOME_ALIASES: dict[str, str] = {
    **{v: v for v in OUTCOMES},
    "handle": "handled", "ok": "handled", "drop": "dropped", "ignored": "dropped", "reject": "rejected",
    "rejection": "rejected", "bounce": "rejected",
}


def _imap_date(d: date) -> str:
    return f"{d.day}-{_MONTHS[d.month - 1]}-{d.year}"


def _quote(word: str) -> str:
    return '"' + word + '"'  # only _SAFE_WORD text is ever quoted: nothing to escape


# --- the tree --------------------------------------------------------------------------------

Push = tuple[str | None, bool]  # (criterion or None for "cannot narrow", exact?)


class Node:
    def matches(self, msg: Message, now: datetime) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def push(self, now: datetime) -> Push:
        return None, False


@dataclass
class And(Node):
    parts: list[Node]

    def matches(self, msg: Message, now: datetime) -> bool:
        return all(p.matches(msg, now) for p in self.parts)

    def push(self, now: datetime) -> Push:
        crits, exact = [], True
        for p in self.parts:
            c, e = p.push(now)
            if c is None:
                exact = False  # dropping a conjunct widens: still a superset
            else:
                crits.append(c)
                exact = exact and e
        if not crits:
            return None, False
        return (crits[0] if len(crits) == 1 else "(" + " ".join(crits) + ")"), exact


@dataclass
class Or(Node):
    parts: list[Node]

    def matches(self, msg: Message, now: datetime) -> bool:
        return any(p.matches(msg, now) for p in self.parts)

    def push(self, now: datetime) -> Push:
        pushed = [p.push(now) for p in self.parts]
        if any(c is None for c, _ in pushed):
            return None, False  # one side unbounded: the union is unbounded
        crit = _one(pushed[-1][0])
        for c, _ in reversed(pushed[:-1]):
            crit = f"OR {_one(c)} {crit}"
        return crit, all(e for _, e in pushed)


@dataclass
class Not(Node):
    inner: Node

    def matches(self, msg: Message, now: datetime) -> bool:
        return not self.inner.matches(msg, now)

    def push(self, now: datetime) -> Push:
        c, exact = self.inner.push(now)
        if c is None or not exact:
            return None, False  # NOT of a superset would be a subset: never push it
        return f"NOT {_one(c)}", True


def _one(crit: str | None) -> str:
    """One IMAP search-key: NOT and OR take exactly one, and a leaf may be several
    (``size:2000`` is ``LARGER 1999 SMALLER 2001``), so anything not already a single
    parenthesised group is wrapped."""
    assert crit is not None
    if crit.startswith("(") and _balanced_outer(crit):
        return crit
    if " " not in crit:
        return crit
    return f"({crit})"


def _text_matcher(value: str, regex: re.Pattern[str] | None) -> Callable[[str], bool]:
    if regex is not None:
        return lambda text: regex.search(text[:_MAX_TEXT]) is not None
    if value.isascii():
        needle = value.translate(_ASCII_LOWER)
        # ASCII needles compare ASCII-case-insensitively (as IMAP SEARCH does), so no non-ASCII
        # letter can lower-case into a match the server would not see.
        return lambda text: needle in text[:_MAX_TEXT].translate(_ASCII_LOWER)
    needle = value.lower()
    return lambda text: needle in text[:_MAX_TEXT].lower()


def _push_words(keys: tuple[str, ...], value: str, regex: bool) -> Push:
    """Every ASCII word of the value must occur in a matching field: push those words."""
    if regex:
        return None, False
    words = [w for w in value.split() if _SAFE_WORD.fullmatch(w)]
    if not words:
        return None, False
    alts = []
    for key in keys:
        crits = [f"{key} {_quote(w)}" for w in words]
        alts.append(crits[0] if len(crits) == 1 else "(" + " ".join(crits) + ")")
    crit = alts[-1]
    for a in reversed(alts[:-1]):
        crit = f"OR {a} {crit}"
    return crit, False


_GETTERS: dict[str, Callable[[Message], str]] = {
    "from": lambda m: m.sender,
    "to": lambda m: m.to,
    "cc": lambda m: m.cc,
    "subject": lambda m: m.subject,
    "key": lambda m: m.key or "",
    "msgid": lambda m: m.message_id,
}
_IMAP_KEYS = {"from": ("FROM",), "to": ("TO",), "cc": ("CC",), "subject": ("SUBJECT",)}


@dataclass
class Text(Node):
    fields: tuple[str, ...]  # () = free text (sender or subject)
    value: str
    regex: re.Pattern[str] | None = None

    def __post_init__(self) -> None:
        self._match = _text_matcher(self.value, self.regex)
        self._getters = [_GETTERS[f] for f in (self.fields or ("from", "subject"))]

    def matches(self, msg: Message, now: datetime) -> bool:
        return any(self._match(g(msg)) for g in self._getters)

    def push(self, now: datetime) -> Push:
        fields = self.fields or ("from", "subject")
        if not all(f in _IMAP_KEYS for f in fields):
            return None, False
        keys = tuple(k for f in fields for k in _IMAP_KEYS[f])
        return _push_words(keys, self.value, self.regex is not None)


@dataclass
class Project(Node):
    value: str
    regex: re.Pattern[str] | None = None

    def __post_init__(self) -> None:
        self._id = int(self.value) if self.regex is None and self.value.isascii() and self.value.isdigit() \
            and len(self.value) < 20 else None
        self._match = _text_matcher(self.value, self.regex)

    def matches(self, msg: Message, now: datetime) -> bool:
        if self._id is not None:
            return msg.project_id == self._id
        return any(self._match(t) for t in (msg.project_slug, msg.project_path) if t)


@dataclass
class Kind(Node):
    kind: str

    def matches(self, msg: Message, now: datetime) -> bool:
        return msg.kind == self.kind


@dataclass
class Verdict(Node):
    """``outcome:rejected``: GitLab's predicted verdict (local only: no IMAP criterion)."""

    verdict: str

    def matches(self, msg: Message, now: datetime) -> bool:
        o = msg.outcome
        return (o.verdict if o is not None else "unknown") == self.verdict


_CMP: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b, "=": lambda a, b: a == b,
}


@dataclass
class Age(Node):
    op: str
    seconds: float

    def matches(self, msg: Message, now: datetime) -> bool:
        age = msg.age_seconds(now)
        return age is not None and _CMP[self.op](age, self.seconds)

    def push(self, now: datetime) -> Push:
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        try:
            cutoff = (now.astimezone(UTC) - timedelta(seconds=self.seconds)).date()
            if self.op in (">", ">="):  # older than: INTERNALDATE before the cutoff
                return f"BEFORE {_imap_date(cutoff + timedelta(days=2))}", False
            return f"SINCE {_imap_date(cutoff - timedelta(days=2))}", False
        except (OverflowError, ValueError):
            return None, False


@dataclass
class Size(Node):
    op: str
    size: int

    def matches(self, msg: Message, now: datetime) -> bool:
        return _CMP[self.op](msg.size, self.size)

    def push(self, now: datetime) -> Push:
        n = self.size
        if n + 1 > IMAP_MAX:  # LARGER/SMALLER take 32-bit numbers: do not narrow at the edge
            return None, False
        if self.op == ">":
            return f"LARGER {n}", True
        if self.op == ">=":
            return (f"LARGER {n - 1}", True) if n > 0 else (None, False)
        if self.op == "<":
            return (f"SMALLER {n}", True) if n > 0 else (None, False)
        if self.op == "<=":
            return f"SMALLER {n + 1}", True
        return (f"LARGER {n - 1} SMALLER {n + 1}", True) if n > 0 else (f"SMALLER {n + 1}", True)


@dataclass
class Uid(Node):
    op: str
    ranges: tuple[tuple[int, int], ...]  # for op ":" (set membership)

    def matches(self, msg: Message, now: datetime) -> bool:
        if self.op == ":":
            return any(lo <= msg.uid <= hi for lo, hi in self.ranges)
        return _CMP[self.op](msg.uid, self.ranges[0][0])

    def push(self, now: datetime) -> Push:
        if self.op == ":":
            parts = [str(lo) if lo == hi else f"{lo}:{hi}" for lo, hi in self.ranges]
            return "UID " + ",".join(parts), True
        n = self.ranges[0][0]
        bounds = {">": (n + 1, None), ">=": (n, None), "<": (1, n - 1), "<=": (1, n), "=": (n, n)}
        lo, hi = bounds[self.op]
        if lo < 1:
            lo = 1
        if lo > IMAP_MAX:
            return None, False  # no UID is that large: nothing to narrow with
        if hi is not None and hi > IMAP_MAX:
            hi = IMAP_MAX
        if hi is None:
            return f"UID {lo}:*", False  # n:* also matches the highest UID when it is below n
        if hi < lo:
            return None, False
        return (f"UID {lo}" if lo == hi else f"UID {lo}:{hi}"), True


@dataclass
class Iid(Node):
    op: str
    value: int

    def matches(self, msg: Message, now: datetime) -> bool:
        return msg.issue_iid is not None and _CMP[self.op](msg.issue_iid, self.value)


_FLAG_GET: dict[str, Callable[[Message], bool]] = {
    "bot": lambda m: m.bot,
    "stale": lambda m: m.stale,
    "suspicious": lambda m: m.suspicious,
    "nokey": lambda m: m.no_key,
    "seen": lambda m: m.seen,
    "unseen": lambda m: not m.seen,
    "deleted": lambda m: m.deleted,
    "locked": lambda m: m.lock is not None,
    "problem": lambda m: bool(m.problems),
}
_FLAG_PUSH = {"seen": ("SEEN", "UNSEEN"), "unseen": ("UNSEEN", "SEEN"), "deleted": ("DELETED", "UNDELETED")}


@dataclass
class Flag(Node):
    name: str
    want: bool = True

    def matches(self, msg: Message, now: datetime) -> bool:
        return _FLAG_GET[self.name](msg) is self.want

    def push(self, now: datetime) -> Push:
        pair = _FLAG_PUSH.get(self.name)
        if pair is None:
            return None, False
        return (pair[0] if self.want else pair[1]), True


class _All(Node):
    def matches(self, msg: Message, now: datetime) -> bool:
        return True


@dataclass
class Filter:
    """A parsed filter. ``matches`` is authoritative; ``pushdown`` only narrows a server search."""

    text: str
    root: Node

    def matches(self, msg: Message, now: datetime | None = None) -> bool:
        return self.root.matches(msg, now or datetime.now(UTC))

    def pushdown(self, now: datetime | None = None) -> str | None:
        """An IMAP SEARCH criterion selecting a superset of the matches (to be ANDed with the
        view's own search, e.g. ``UNSEEN``), or None when the server cannot narrow anything.
        Results must still go through :meth:`matches`.

        None for a filter that tests ``suspicious``: a duplicate is a later copy of a message in
        the same listing, so a narrower listing (without the first copy) would change the very
        verdict the filter tests."""
        if self.judges_duplicates:
            return None
        crit, _ = self.root.push(now or datetime.now(UTC))
        if crit and crit.startswith("(") and crit.endswith(")") and _balanced_outer(crit):
            crit = crit[1:-1]
        return crit

    @property
    def empty(self) -> bool:
        return isinstance(self.root, _All)

    @property
    def judges_duplicates(self) -> bool:
        """Whether the filter tests ``suspicious``, which includes the duplicate verdict: a
        verdict on the whole listing, not on the message alone."""
        todo: list[Node] = [self.root]
        while todo:
            node = todo.pop()
            if isinstance(node, Flag) and node.name == "suspicious":
                return True
            if isinstance(node, (And, Or)):
                todo.extend(node.parts)
            elif isinstance(node, Not):
                todo.append(node.inner)
        return False


def _balanced_outer(crit: str) -> bool:
    """True when the first '(' closes at the very end (so the outer parentheses can go)."""
    depth = 0
    in_q = False
    for i, c in enumerate(crit):
        if c == '"':
            in_q = not in_q
        elif not in_q and c == "(":
            depth += 1
        elif not in_q and c == ")":
            depth -= 1
            if depth == 0 and i != len(crit) - 1:
                return False
    return True


# --- tokens ----------------------------------------------------------------------------------

@dataclass
class _Tok:
    kind: str  # "(", ")", "not", "or", "and", "word", "phrase"
    text: str
    pos: int  # 0-based start
    value: str = "plain"  # how the value after field: was written: plain, quoted or regex


_WORD_END = frozenset(" \t\r\n()")
_HEAD_RE = re.compile(r"([A-Za-z][A-Za-z_-]{0,30})(<=|>=|<|>|=|:)")
_FIELD_RE = re.compile(r"([A-Za-z][A-Za-z_-]{0,30})(<=|>=|<|>|=|:)(.*)", re.DOTALL)


def _read_quoted(text: str, i: int) -> tuple[str, int]:
    """Read a "..." string starting at text[i] == '"' (backslash escapes); (content, end)."""
    out = []
    j, n = i + 1, len(text)
    while j < n:
        c = text[j]
        if c == "\\" and j + 1 < n:
            out.append(text[j + 1])
            j += 2
        elif c == '"':
            return "".join(out), j + 1
        else:
            out.append(c)
            j += 1
    raise FilterSyntaxError(i + 1, "expected a closing '\"' for the quote opened here", text)


def _read_regex(text: str, i: int) -> tuple[str, int]:
    """Read /.../ starting at text[i] == '/' (``\\/`` for a slash inside); (pattern, end)."""
    out = []
    j, n = i + 1, len(text)
    while j < n:
        c = text[j]
        if c == "\\" and j + 1 < n:
            out.append("/" if text[j + 1] == "/" else text[j: j + 2])
            j += 2
        elif c == "/":
            return "".join(out), j + 1
        else:
            out.append(c)
            j += 1
    raise FilterSyntaxError(i + 1, "expected a closing '/' for the regex opened here", text)


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
        elif c in "()":
            toks.append(_Tok(c, c, i))
            i += 1
        elif c == "!":
            toks.append(_Tok("not", c, i))
            i += 1
        elif c == "|":
            toks.append(_Tok("or", c, i))
            i += 2 if text.startswith("||", i) else 1
        elif c == "&":
            toks.append(_Tok("and", c, i))
            i += 2 if text.startswith("&&", i) else 1
        elif c == '"':
            s, i2 = _read_quoted(text, i)
            toks.append(_Tok("phrase", s, i))
            i = i2
        else:
            start = i
            m = _HEAD_RE.match(text, i)
            if m and m.end() < n and (text[m.end()] == '"' or (text[m.end()] == "/" and m.group(2) == ":")):
                if text[m.end()] == '"':
                    s, i = _read_quoted(text, m.end())
                    toks.append(_Tok("word", m.group(0) + s, start, "quoted"))
                else:
                    s, i = _read_regex(text, m.end())
                    toks.append(_Tok("word", m.group(0) + s, start, "regex"))
                continue
            while i < n and text[i] not in _WORD_END:
                i += 1
            word = text[start:i]
            low = word.lower()
            toks.append(_Tok(low if low in ("or", "and", "not") else "word", word, start))
    return toks


# --- parser ----------------------------------------------------------------------------------

class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0

    def error(self, pos: int, expected: str) -> FilterSyntaxError:
        return FilterSyntaxError(pos + 1, expected, self.text)

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def parse(self) -> Node:
        if not self.toks:
            return _All()
        node = self.parse_or()
        tok = self.peek()
        if tok is not None:
            if tok.kind == ")":
                raise self.error(tok.pos, "unexpected ')': no '(' is open")
            raise self.error(tok.pos, f"unexpected {tok.text!r}")  # pragma: no cover
        return node

    def parse_or(self) -> Node:
        parts = [self.parse_and()]
        while (tok := self.peek()) is not None and tok.kind == "or":
            self.i += 1
            nxt = self.peek()
            if nxt is None or nxt.kind in (")", "or", "and"):
                raise self.error(self._next_pos(tok), f"expected a term after {tok.text!r}")
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else Or(parts)

    def _next_pos(self, tok: _Tok) -> int:
        nxt = self.peek()
        return nxt.pos if nxt is not None else len(self.text)

    def parse_and(self) -> Node:
        parts = [self.parse_unary()]
        while (tok := self.peek()) is not None and tok.kind not in (")", "or"):
            if tok.kind == "and":
                self.i += 1
                nxt = self.peek()
                if nxt is None or nxt.kind in (")", "or", "and"):
                    raise self.error(self._next_pos(tok), f"expected a term after {tok.text!r}")
            parts.append(self.parse_unary())
        return parts[0] if len(parts) == 1 else And(parts)

    def parse_unary(self) -> Node:
        tok = self.peek()
        if tok is None:
            raise self.error(len(self.text), "expected a term")
        if tok.kind == "not":
            self.i += 1
            if self.peek() is None:
                raise self.error(len(self.text), f"expected a term after {tok.text!r}")
            return Not(self.parse_unary())
        if tok.kind == "(":
            self.i += 1
            nxt = self.peek()
            if nxt is None or nxt.kind == ")":
                raise self.error(nxt.pos if nxt else len(self.text), "expected a term inside '('")
            node = self.parse_or()
            close = self.peek()
            if close is None or close.kind != ")":
                raise self.error(close.pos if close else len(self.text),
                                 f"expected ')' to close the '(' at position {tok.pos + 1}")
            self.i += 1
            return node
        if tok.kind == ")":
            raise self.error(tok.pos, "expected a term, found ')'")
        if tok.kind in ("or", "and"):
            raise self.error(tok.pos, f"expected a term before {tok.text!r}")
        self.i += 1
        if tok.kind == "phrase":
            return Text((), tok.text)
        return self.term(tok)

    # -- terms --

    def term(self, tok: _Tok) -> Node:
        word = tok.text
        low = word.lower()
        if low in _FLAG_GET or low in ("no-key", "no_key"):
            return Flag(_flag_name(low))
        m = _FIELD_RE.fullmatch(word)
        if not m or (m.group(1).lower() not in FIELDS and m.group(2) != ":"):
            if m is None and word[:1] in "<>=":
                raise self.error(tok.pos, "expected a field name before the comparison")
            return Text((), word)
        field, op, value = m.group(1).lower(), m.group(2), m.group(3)
        vpos = tok.pos + len(m.group(1)) + len(op)
        if field not in FIELDS:
            raise self.error(tok.pos, f"unknown field {m.group(1)!r}: expected one of "
                             + ", ".join(f for f in FIELDS if f not in ("no-key", "no_key", "handler")))
        # field:>5 means field>5, but quoted text is text: msgid:"<a@b>" is a Message-ID
        if tok.value == "plain" and op == ":" and value[:1] in ("<", ">", "="):
            op2 = value[:2] if value[:2] in ("<=", ">=") else value[:1]
            op, value, vpos = op2, value[len(op2):], vpos + len(op2)
        if value == "" and tok.value == "plain":
            raise self.error(vpos, f"expected a value after {field + op!r}")
        return self.field_term(field, op, value, vpos, tok.value)

    def field_term(self, field: str, op: str, value: str, vpos: int, written: str) -> Node:
        if field in _FLAG_GET or field in ("no-key", "no_key", "is", "has"):
            return self.flag_term(field, op, value, vpos)
        if field in TEXT_FIELDS or field == "project":
            if op != ":" and op != "=":
                raise self.error(vpos - len(op), f"expected ':' after {field!r} (text fields do not compare; "
                                 f"to match text that begins with {op!r}, quote it: {field}:\"{op}{value}\")")
            regex = self.regex(value, vpos) if written == "regex" else None
            return Project(value, regex) if field == "project" else Text((field,), value, regex)
        if field in ("kind", "handler"):
            kind = KIND_ALIASES.get(value.lower().replace("-", "_"))
            if kind is None or op not in (":", "="):
                raise self.error(vpos, f"unknown kind {value!r}: expected one of {', '.join(KINDS)}")
            return Kind(kind)
        if field == "outcome":
            verdict = OUTCOME_ALIASES.get(value.lower())
            if verdict is None or op not in (":", "="):
                raise self.error(vpos, f"unknown outcome {value!r}: expected one of {', '.join(OUTCOMES)}")
            return Verdict(verdict)
        if field == "age":
            if op in (":", "="):
                raise self.error(vpos - len(op), "expected <, >, <= or >= after 'age' (e.g. age>2d)")
            try:
                secs = parse_age(value).total_seconds()
            except UsageError as e:
                raise self.error(vpos, f"expected an age like 90m, 36h, 2d or 1w: {e}") from None
            return Age(op, secs)
        if field == "size":
            m = _SIZE.fullmatch(value.strip())
            if not m:
                raise self.error(vpos, f"expected a size like 500, 20K or 1M, found {value!r}")
            size = int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
            if size > IMAP_MAX:
                raise self.error(vpos, f"size {value!r} is beyond IMAP's range (sizes are at most {IMAP_MAX} "
                                 "bytes, just under 4G): use at most 4095M")
            return Size("=" if op == ":" else op, size)
        if field == "uid":
            return self.uid_term(op, value, vpos)
        if field == "iid":
            if not value.isdigit() or not value.isascii() or len(value) > 18:
                raise self.error(vpos, f"expected an issue iid (a number), found {value!r}")
            return Iid("=" if op == ":" else op, int(value))
        raise self.error(vpos, f"unsupported field {field!r}")  # pragma: no cover

    def flag_term(self, field: str, op: str, value: str, vpos: int) -> Node:
        if op not in (":", "="):
            raise self.error(vpos - len(op), f"expected ':' after {field!r}")
        low = value.lower()
        if field in ("is", "has"):
            if low in ("problems",):
                low = "problem"
            if low not in _FLAG_GET and low not in ("no-key", "no_key"):
                raise self.error(vpos, f"expected a flag after {field + ':'!r} ({', '.join(_FLAG_GET)})")
            return Flag(_flag_name(low))
        if low in ("yes", "true", "1", "y", "on"):
            return Flag(_flag_name(field))
        if low in ("no", "false", "0", "n", "off"):
            return Flag(_flag_name(field), want=False)
        raise self.error(vpos, f"expected yes or no after {field + ':'!r}")

    def uid_term(self, op: str, value: str, vpos: int) -> Node:
        if op in (":", "="):
            if not _UIDSET.fullmatch(value):
                raise self.error(vpos, f"expected UIDs like 42, 1,5,7 or 100-200, found {value!r}")
            ranges = []
            for part in value.split(","):
                lo, _, hi = part.partition("-")
                a, b = int(lo), int(hi or lo)
                if not (1 <= a <= IMAP_MAX and 1 <= b <= IMAP_MAX):
                    raise self.error(vpos, f"expected UIDs from 1 to {IMAP_MAX}, found {part!r}")
                ranges.append((min(a, b), max(a, b)))
            return Uid(":", tuple(ranges))
        if not value.isdigit() or not value.isascii() or len(value) > 10 or int(value) > IMAP_MAX:
            raise self.error(vpos, f"expected a UID (a number from 0 to {IMAP_MAX}), found {value!r}")
        return Uid(op, ((int(value), int(value)),))

    def regex(self, value: str, vpos: int) -> re.Pattern[str]:
        try:
            return re.compile(value, re.IGNORECASE)
        except (re.error, OverflowError, RecursionError, ValueError) as exc:
            raise self.error(vpos, f"expected a valid regex: {exc}") from None


def _flag_name(low: str) -> str:
    return "nokey" if low in ("no-key", "no_key") else low


def parse_filter(text: str | None) -> Filter:
    """Parse a filter; raises :class:`FilterSyntaxError` (a UsageError) on bad syntax."""
    text = text or ""
    if not text.strip():
        return Filter(text, _All())
    if len(text) > MAX_FILTER:
        raise FilterSyntaxError(MAX_FILTER + 1, f"expected a shorter filter (at most {MAX_FILTER} characters)", text)
    try:
        root = _Parser(text).parse()
    except RecursionError:
        raise FilterSyntaxError(1, "expected fewer nested parentheses or negations", text) from None
    return Filter(text, root)
