"""A light, tolerant header parser for the list path.

mail-parser costs ~0.4 ms per header block, too slow for 100k messages; this one does only what
the list needs: split fields, unfold, decode 8-bit bytes, decode RFC 2047 encoded words without
ever raising. mail-parser stays for the full single-message preview.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email.utils
import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

T = TypeVar("T")
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,40})\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"\?=[ \t\r\n]+=\?")
_Q_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")
# a field: name, colon, value with its continuation lines; lines that are neither (an mbox
# "From " line, garbage) are skipped, never raised on
_FIELD = re.compile(r"^([!-9;-~]+)[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)", re.MULTILINE)
_FOLD = re.compile(r"[ \t]*\n[ \t]*")
#: charset name (as written) -> the codec it decodes with; bounded (hostile mail names thousands)
_TEXT_CODECS: dict[str, str] = {}
#: the same, by the name exactly as written (the encoded word's charset field)
_RAW_CODECS: dict[str, str] = {}
#: Codecs that are no MIME charset and decode crafted input in quadratic time (a 100 KB
#: punycode word took 0.3 s, a megabyte minutes): read as UTF-8 instead.
_SLOW_CODECS = frozenset({"punycode"})
_SURROGATE_FREE = frozenset({"utf-8", "ascii", "latin-1", "iso8859-1", "cp1252", "iso8859-15"})
_SURROGATE = re.compile("[\ud800-\udfff]")
_SIMPLE_ADDR = re.compile(r'^\s*(?:"([^"\\]*)"|([^"<>,;:()\\@]*?))\s*<([^<>\s,;:()"\\@]+@[^<>\s,;:()"\\@]+)>\s*$'
                          r'|^\s*([^<>\s,;:()"\\@]+@[^<>\s,;:()"\\@]+)\s*$')


_MISS = object()


#: every bounded_memo's cache (clear_memos empties them all: a cold start for tests and benches)
_MEMO_CACHES: list[dict[Any, Any]] = []


def bounded_memo(fn: Callable[..., T], maxsize: int = 2048, maxlen: int = 256) -> Callable[..., T]:
    """``fn`` (pure, string or None arguments, an immutable result) with a bounded cache by
    value: real mail repeats its senders, recipients and subjects. Calls whose strings add up to
    more than ``maxlen`` characters are never kept (hostile mail must not grow memory: at most
    ``maxsize`` x ``maxlen`` characters), and the cache is emptied when full rather than frozen by
    the first ``maxsize`` values it saw. What ``fn`` raises is raised again each time (never
    cached). Thread-safe: dict operations only."""
    cache: dict[Any, T] = {}
    _MEMO_CACHES.append(cache)
    get = cache.get

    def call(*args: str | None) -> T:
        n = 0
        for a in args:
            if a:
                n += len(a)
        if n > maxlen:
            return fn(*args)
        out = get(args, _MISS)
        if out is _MISS:
            out = fn(*args)
            if len(cache) >= maxsize:
                cache.clear()
            cache[args] = out
        return out  # type: ignore[return-value]

    call.cache = cache  # type: ignore[attr-defined]  # for tests
    call.__wrapped__ = fn  # type: ignore[attr-defined]
    return call


def clear_memos() -> None:
    """Empty every :func:`bounded_memo` cache (tests and benchmarks: a cold start)."""
    for cache in _MEMO_CACHES:
        cache.clear()


def bytes_to_text(raw: bytes) -> str:
    """Header bytes as text: UTF-8 when valid (RFC 6532), else Latin-1 (8-bit legacy headers
    keep their bytes visible instead of turning into replacement characters)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _charset_decode(data: bytes, charset: str) -> str:
    """Bytes of an encoded word as text, never raising and never yielding a lone surrogate: an
    unknown charset, a codec that is not a text encoding (``zlib``, ``rot13``, ``base64``...), one
    that refuses ``errors="replace"`` (``idna``), fails anyway (``undefined``) or is quadratic
    (``punycode``) falls back to UTF-8; surrogates a codec lets through (``utf-7``,
    ``unicode_escape``) become U+FFFD."""
    codec = _RAW_CODECS.get(charset)
    if codec is None:
        codec = _codec_for(charset)
        if len(_RAW_CODECS) < 512:
            _RAW_CODECS[charset] = codec
    try:
        text = data.decode(codec, errors="replace")
    except Exception:  # noqa: BLE001 - codecs that refuse 'replace' or fail on their own terms
        text = data.decode("utf-8", errors="replace")
    if codec not in _SURROGATE_FREE and _SURROGATE.search(text):
        text = _SURROGATE.sub("\ufffd", text)
    return text


def _codec_for(charset: str) -> str:
    """The codec a charset name (as written) decodes with."""
    charset = charset.split("*", 1)[0].strip().lower()  # RFC 2231 language suffix
    codec = _TEXT_CODECS.get(charset)
    if codec is None:
        try:
            info = codecs.lookup(charset)
            codec = info.name if getattr(info, "_is_text_encoding", True) and info.name not in _SLOW_CODECS \
                else "utf-8"
        except (LookupError, ValueError, TypeError):  # ValueError: a NUL in the name
            codec = "utf-8"
        if len(_TEXT_CODECS) < 512:
            _TEXT_CODECS[charset] = codec
    return codec


def _q_byte(h: re.Match[bytes]) -> bytes:
    return bytes([int(h.group(1), 16)])


def _decode_word(m: re.Match[str]) -> str:
    charset, enc, payload = m.groups()
    try:
        if enc == "b" or enc == "B":  # noqa: PLR1714
            if payload.isascii():  # a2b_base64 takes an ASCII str as its bytes
                data = binascii.a2b_base64(payload + "=" * (-len(payload) % 4), strict_mode=False)
            else:
                payload_b = payload.encode("ascii", errors="ignore")
                payload_b += b"=" * (-len(payload_b) % 4)
                data = base64.b64decode(payload_b, validate=False)
        elif "=" not in payload:
            data = payload.replace("_", " ").encode("latin-1", errors="replace")
        elif "==" not in payload and payload[-1] != "=":
            # a2b_qp differs from the pattern below only on "==" and a trailing "=" (the payload
            # holds no line breaks): '_' is a space, =XX (either case) a byte, any other '=' kept
            data = binascii.a2b_qp(payload.encode("latin-1", errors="replace"), header=True)
        else:
            data = _Q_HEX.sub(_q_byte, payload.replace("_", " ").encode("latin-1", errors="replace"))
    except (binascii.Error, ValueError):
        return m.group(0)
    return _charset_decode(data, charset)


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded words; malformed words are left as they are. Never raises."""
    if "=?" not in value:
        return value
    if "?=" in value:
        value = _BETWEEN_WORDS.sub("?==?", value)
    return _ENCODED_WORD.sub(_decode_word, value)


#: field name as written -> lower-cased (bounded: hostile mail invents names)
_LOWER: dict[str, str] = {}


def _lower(name: str) -> str:
    low = name.lower()
    if len(_LOWER) < 4096 and len(name) <= 64:  # a megabyte-long name is lowered, not kept
        _LOWER[name] = low
    return low


def _unfold(value: str) -> str:
    """``_FOLD.sub(" ", value).strip()`` without a regex that starts matching at every character:
    each line break with the blanks and tabs around it becomes one space."""
    return " ".join([part.strip(" \t") for part in value.split("\n")]).strip()


class Headers:
    """Header fields in order: lower-cased names, unfolded raw values (encoded words kept)."""

    __slots__ = ("_first", "_grouped", "fields")

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self.fields = fields
        self._first: dict[str, str] | None = None  # built on first use (fields are not changed after)
        self._grouped: dict[str, list[str]] | None = None

    @classmethod
    def parse(cls, raw: bytes | str | None) -> Headers:
        if not raw:
            return cls([])
        text = bytes_to_text(raw) if isinstance(raw, bytes) else raw
        if "\r" in text:
            text = text.replace("\r\n", "\n")
            if "\r" in text:
                text = text.replace("\r", "\n")
        if "\x00" in text:
            text = text.replace("\x00", "")
        end = text.find("\n\n")  # the header ends at the first empty line
        if end >= 0:
            text = text[:end]
        if text.startswith("\n"):
            return cls([])
        lower = _LOWER.get
        fields = [(lower(name) or _lower(name), _unfold(value) if "\n" in value else value.strip())
                  for name, value in _FIELD.findall(text)]
        return cls(fields)

    def get(self, name: str, default: str | None = None) -> str | None:
        first = self._first
        if first is None:
            first = self.first()
        return first.get(name.lower(), default)

    def first(self) -> dict[str, str]:
        """Each name's first value (lower-cased names). Built once; do not change it."""
        first = self._first
        if first is None:
            first = self._first = dict(reversed(self.fields))  # the first occurrence is the last write
        return first

    def grouped(self) -> dict[str, list[str]]:
        """Every value of each name, in order (lower-cased names). Built once; do not change it."""
        grouped = self._grouped
        if grouped is None:
            grouped = {}
            for name, value in self.fields:
                lst = grouped.get(name)
                if lst is None:
                    grouped[name] = [value]
                else:
                    lst.append(value)
            self._grouped = grouped
        return grouped

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for n, v in self.fields if n == name]

    def decoded(self, name: str, default: str | None = None) -> str | None:
        v = self.get(name)
        return decode_words(v) if v is not None else default

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __len__(self) -> int:
        return len(self.fields)


_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                          "nov", "dec"), 1)}
# also the obsolete two-digit years and the zone names the stdlib reads as +0000 (RFC 5322 §4.3)
_DATE_FAST = re.compile(r"^\s*(?:[A-Za-z]{3},\s*)?(\d{1,2}) ([A-Za-z]{3}) (\d{4}|\d\d) (\d\d):(\d\d)(?::(\d\d))? "
                        r"(?:([+-])(\d\d)(\d\d)|(?i:GMT|UTC|UT|Z))\s*(?:\([^()]*\))?\s*$")
_TZS: dict[str, timezone] = {}


def parse_date(value: str | None) -> datetime | None:
    """A Date header as an aware datetime, or None when missing or unparseable (offsets of 24 h
    or more, years 0 or 10000, day 99...: whatever a header says, this never raises)."""
    if not value:
        return None
    try:
        return _parse_date(value)
    except Exception:  # noqa: BLE001 - last resort: the stdlib parser has raised on hostile input
        return None


def _parse_date(value: str) -> datetime | None:
    m = _DATE_FAST.match(value)
    # RFC 5322's usual shape; anything else goes to the stdlib's lenient parser (and so does a
    # two-digit year with a +HH60..+HH99 offset, which email.utils reads as HH+1 hours: as before)
    if m and not (len(m.group(3)) == 2 and m.group(9) and m.group(9) >= "60"):
        day, mon, year, hh, mi, ss, sign, oh, om = m.groups()
        month = _MONTHS.get(mon.lower())
        if sign is None:  # GMT, UT, UTC, Z in any case: what email.utils reads as offset 0
            sign, oh, om = "+", "00", "00"
        if not month or oh >= "24" or om >= "60":  # timezone() refuses a day or more (+2400, -9999)
            return None
        if m.group(7) is None or len(year) == 2:
            # shapes email.utils used to read: its years (POSIX): 69-99 are 1969-1999, 0-68 are
            # 2000-2068, also when written with four digits ("0026" with a zone name)
            y = int(year)
            if y < 100:
                year = str(y + (1900 if y > 68 else 2000))
        key = sign + oh + om
        tz = _TZS.get(key)
        if tz is None:
            off = timedelta(hours=int(oh), minutes=int(om))
            tz = _TZS.setdefault(key, timezone(off if sign == "+" else -off))
        try:
            return datetime(int(year), month, int(day), int(hh), int(mi), int(ss or 0), tzinfo=tz)
        except ValueError:
            return None
    dt = email.utils.parsedate_to_datetime(value)
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt


#: What an address looks like inside a display name or a comment (after look-alike '@'s and
#: invisible characters are normalised away).
_ADDR_IN_TEXT = re.compile(r"[^\s<>()\"',;:@]+@[^\s<>()\"',;:@]+")
_ADDR_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|\\.?|[(),:;<>]|[^"\\(),:;<>]+', re.DOTALL)
_WS = re.compile(r"\s+")
MAX_ADDRESS_FIELD = 16 * 1024  # a From value is read this far (a 1 MB From is not a sender)


def _unquote(tok: str) -> str:
    if tok.startswith('"'):
        tok = tok[1:-1] if len(tok) > 1 and tok.endswith('"') else tok[1:]
        if "\\" in tok:
            tok = re.sub(r"\\(.)", r"\1", tok, flags=re.DOTALL)
    return tok


def first_address(value: str | None) -> tuple[str, str]:
    """(display name decoded, address) of the first mailbox in a header value.

    The address is what is in angle brackets (the last pair, as GitLab's Mail gem reads it);
    everything else of that mailbox (phrase, comments, earlier angle brackets) is the display
    name, shown literally: ``noreply@github.com <attacker@evil.example>`` is attacker@evil.example
    with the display name "noreply@github.com" (Python's getaddresses returned the display
    name's address there: a phishing shape). Linear, never raises."""
    if not value:
        return "", ""
    m = _SIMPLE_ADDR.match(value)
    if m:  # "Name <a@b>", "\"Name\" <a@b>" or "a@b": the common cases, without the tokenizer
        if m.group(4):
            return "", m.group(4)
        return decode_words((m.group(1) if m.group(1) is not None else m.group(2) or "").strip()), m.group(3)
    return _first_mailbox(value[:MAX_ADDRESS_FIELD])


def _first_mailbox(value: str) -> tuple[str, str]:
    phrase: list[str] = []  # outside comments and angle brackets
    comments: list[str] = []
    angles: list[list[str]] = []  # each <...>, in order
    angle: list[str] | None = None  # the open one
    comment: list[str] = []
    depth = 0
    for mt in _ADDR_TOKEN.finditer(value):
        tok = mt.group(0)
        if depth:
            if tok == "(":
                depth += 1
            elif tok == ")":
                depth -= 1
                if depth == 0:
                    comments.append("".join(comment))
                    comment = []
                    continue
            comment.append(tok)
            continue
        if tok == "(":
            depth = 1
        elif angle is not None:
            if tok == ">":
                angles.append(angle)
                angle = None
            elif tok != "<":
                angle.append(tok)
        elif tok == "<":
            angle = []
        elif tok == ",":
            if phrase or angles or comments:
                break  # the first mailbox is complete
        elif tok == ":":
            phrase, comments, angles = [], [], []  # a group's display name
        elif tok == ";":
            if phrase or angles:
                break
        elif tok not in (">", ")"):
            phrase.append(tok)
    if comment:
        comments.append("".join(comment))  # an unclosed comment
    if angle is not None:
        angles.append(angle)  # an unclosed angle bracket
    comment_text = " ".join(" ".join(c.split()) for c in comments if c.strip())
    if angles:
        addr = "".join(t if t.startswith('"') else _WS.sub("", t) for t in angles[-1])
        words = [_unquote(t) for t in phrase]
        words += [f"<{''.join(a).strip()}>" for a in angles[:-1]]  # earlier brackets: shown, not used
        name = " ".join("".join(words).split())
    elif any("@" in t for t in phrase if not t.startswith('"')):
        # a bare addr-spec (its comments are its display name); quoted local parts keep their spaces
        addr = "".join(t if t.startswith('"') else _WS.sub("", t) for t in phrase)
        name = ""
    else:
        addr = ""
        name = " ".join("".join(_unquote(t) for t in phrase).split())
    if comment_text:
        name = f"{name} ({comment_text})" if name else comment_text
    return decode_words(name), addr


#: Characters that look like '@' or '.' without being them (NFKC leaves these alone).
_LOOKALIKE = str.maketrans({"\u3002": ".", "\uff61": ".", "\u2024": ".", "\ufe52": "."})
_BIDI_REVERSING = ("\u202e", "\u202b", "\u2067")


def _visible_form(text: str) -> str:
    """What a reader sees: compatibility forms folded (U+FF20 FULLWIDTH '@' is '@'), invisible
    format characters (U+200B, U+200D, U+FEFF, U+00AD, tags...) dropped."""
    text = unicodedata.normalize("NFKC", text).translate(_LOOKALIKE)
    return "".join(c for c in text if unicodedata.category(c) != "Cf")


def impersonated_address(name: str, addr: str) -> str | None:
    """The address a display name (or comment) shows when it is not the sender's real address:
    ``noreply@github.com <attacker@evil.example>`` -> ``noreply@github.com``. None when the name
    shows no address or only the real one (``"a@b.org" <a@b.org>``). Look-alike '@' (U+FF20,
    U+FE6B), invisible characters and a right-to-left override are seen through."""
    if not name:
        return None
    if name.isascii():
        if "@" not in name:
            return None
        candidates = [name]
    else:
        if "@" not in name and "\uff20" not in name and "\ufe6b" not in name:  # all that NFKC makes '@'
            return None
        seen = _visible_form(name[:MAX_ADDRESS_FIELD])
        if "@" not in seen:
            return None
        candidates = [seen]
        if any(c in name for c in _BIDI_REVERSING):  # "\u202emoc.buhtig@ylperon" reads noreply@github.com
            candidates.insert(0, seen[::-1])
    real = _visible_form(addr).lower().strip("<>") if addr else ""
    for text in candidates:
        for found in _ADDR_IN_TEXT.findall(text):
            found = found.strip(".")
            if found.lower() != real:
                return found
    return None
