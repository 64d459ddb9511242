"""Secrets never leave in clear: one place that knows every form a credential takes in text.

- :func:`mask_url` shows a URL without its credentials: the password in the userinfo
  (``redis://user:***@host``), credential-like query parameters (``?password=***``, which redis-py
  reads but ``urlsplit().password`` does not see), and a fragment. A URL that is not well formed
  (no ``scheme://``, spaces, two ``@``, an ``@`` outside the authority, a port that is not a
  number...) might carry a password anywhere, so it is hidden whole.
- :func:`mask_host` does the same for a bare ``host`` or ``host:port`` (IMAP server, Sentinel).
- :func:`scrub` removes a secret from text that may quote it, in every form a server, a library
  or our own code could have turned it into: IMAP quoted-string escaping, Python ``repr`` and
  ``unicode_escape``, JSON, percent-encoding, the UTF-8 bytes read as Latin-1, base64 of the
  SASL PLAIN / XOAUTH2 blobs, and upper/lower case (some servers fold case).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote

MASK = "***"
HIDDEN_URL = "<unparseable URL>"
HIDDEN_HOST = "<host hidden>"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
#: C0, DEL, C1, every kind of Unicode space and format character that could hide a boundary
_DOUBTFUL = re.compile(r"[\x00-\x20\x7f-\xa0\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff]")
_HOSTPORT = re.compile(r"(?:\[[0-9A-Za-z:.%\-]*\]|[^:@\[\]/?#]*)(?::[0-9]{0,5})?")
#: query parameter names whose value is (or may be) a credential, matched in the decoded, lowered name
_SENSITIVE_PARAM = re.compile(r"pass|pwd|secret|token|auth|user|cred|sasl|private|key")


def _mask_query(query: str) -> str:
    out = []
    for piece in query.split("&"):
        name, eq, _value = piece.partition("=")
        if not eq:
            # a bare value (``?hunter2``) is nobody's parameter: it might be anything
            out.append(MASK if piece else piece)
        elif _SENSITIVE_PARAM.search(unquote(name).lower()):
            out.append(f"{name}={MASK}")
        else:
            out.append(piece)
    return "&".join(out)


def mask_url(url: str | None) -> str:
    """``redis://:secret@host/0`` -> ``redis://:***@host/0``: user names in the userinfo stay,
    passwords never show (in messages, ``config show``, ``check``, ``locks``, the audit journal).
    Anything that is not a well-formed URL is replaced whole by ``<unparseable URL>``."""
    if not url:
        return ""
    url = str(url)
    if _DOUBTFUL.search(url) or "\\" in url:
        return HIDDEN_URL
    scheme, colon, rest = url.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme):
        return HIDDEN_URL
    rest, hash_, fragment = rest.partition("#")
    rest, qmark, query = rest.partition("?")
    if "@" in fragment or "@" in query:
        return HIDDEN_URL  # an "@" past the authority: a password with a raw ?/# in it, cut in two
    if rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        path = slash + path
        userinfo, at, hostport = authority.rpartition("@")
        if "@" in userinfo or "@" in path or not _HOSTPORT.fullmatch(hostport):
            return HIDDEN_URL  # two "@", or "redis://:secret" (a password read as a port)
        if at:
            user, has_pw, _pw = userinfo.partition(":")
            # "user:pw" keeps the user name; a bare "word@" may be a password (older clients read it so)
            userinfo = f"{user}:{MASK}" if has_pw else MASK
        authority = f"{userinfo}{at}{hostport}"
        rest = f"//{authority}{path}"
    elif "@" in rest:
        return HIDDEN_URL  # "redis:/:pw@host", "redis:pw@host": the credential is in the path
    out = f"{scheme}:{rest}"
    if qmark:
        out += "?" + _mask_query(query)
    if hash_:
        out += "#" + (MASK if fragment else "")
    return out


_URL_TOKEN = re.compile(r"[^\s'\"]*:[^\s'\"]*@[^\s'\"]*|[^\s'\"]*[?&][^\s'\"=]*(?:pass|pwd|secret|token)[^\s'\"=]*=[^\s'\"]*",
                        re.IGNORECASE)


def mask_urls_in(text: str) -> str:
    """Every URL-like word of free text that carries a credential (``scheme://user:pw@host``,
    ``...?password=...``), masked: for messages that quote what was typed (argparse errors)."""
    return _URL_TOKEN.sub(lambda m: mask_url(m.group(0)), text) if text else text


def mask_host(host: str | None) -> str:
    """A host or ``host:port`` for people and the journal: unchanged unless it carries something a
    host cannot (``user:pw@host``, a URL, spaces), then hidden whole."""
    if not host:
        return ""
    host = str(host)
    if "://" in host:
        return mask_url(host)
    if "@" in host or "/" in host or "?" in host or "#" in host or "\\" in host or _DOUBTFUL.search(host):
        return HIDDEN_HOST
    return host


# -- scrubbing secrets out of free text --------------------------------------------------------------


def _b64(raw: str) -> set[str]:
    data = raw.encode("utf-8", "surrogatepass")
    enc = base64.b64encode(data).decode()
    return {enc, enc.rstrip("="), base64.urlsafe_b64encode(data).decode().rstrip("=")}


def secret_forms(secret: str, *, user: str | None = None) -> set[str]:
    """Every spelling of ``secret`` that text we print could contain."""
    if not secret:
        return set()
    forms = {secret}
    utf8 = secret.encode("utf-8", "surrogatepass")
    # IMAP quoted string (RFC 3501: \" and \\), and the same seen once more through repr
    forms.add(secret.replace("\\", "\\\\").replace('"', '\\"'))
    # Python: repr/str of the str and of its UTF-8 bytes, ascii(), unicode_escape
    forms.add(repr(secret)[1:-1])
    forms.add(ascii(secret)[1:-1])
    forms.add(repr(utf8)[2:-1])
    forms.add(secret.encode("unicode_escape").decode("ascii"))
    forms.add(utf8.decode("ascii", "backslashreplace"))
    # JSON, both ways of writing non-ASCII
    forms.add(json.dumps(secret)[1:-1])
    forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    # percent-encoding (URL userinfo, query strings), either case of hex digits
    for enc in (quote(secret, safe=""), quote(secret), quote_plus(secret)):
        forms.add(enc)
        forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), enc))
    # the UTF-8 bytes decoded as Latin-1 / cp1252 (a server or a log that guessed the charset)
    forms.add(utf8.decode("latin-1"))
    forms.add(utf8.decode("cp1252", "replace"))
    # base64: the secret itself, SASL PLAIN "authzid\0user\0pass" and XOAUTH2's "user=..\1auth=Bearer ..\1\1"
    forms |= _b64(secret)
    for u in {user or "", ""}:
        forms |= _b64(f"\0{u}\0{secret}")
        forms |= _b64(f"{u}\0{u}\0{secret}")
        forms |= _b64(f"user={u}\1auth=Bearer {secret}\1\1")
        forms |= _b64(f"n,a={u},\1auth=Bearer {secret}\1\1")
        forms |= _b64(f"n,,\1auth=Bearer {secret}\1\1")
    # case folding servers
    for f in list(forms):
        forms.add(f.lower())
        forms.add(f.upper())
    forms.discard("")
    return forms


def scrub(text: str, secrets: Iterable[str | None], *, user: str | None = None) -> str:
    """``text`` with every form of every secret replaced by ``***`` (case-insensitive)."""
    if not text:
        return text
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms |= secret_forms(secret, user=user)
    if not forms:
        return text
    pattern = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
    return re.sub(pattern, MASK, text, flags=re.IGNORECASE)


#: Every secret this process has used (see :class:`triage_tui.services.imap.Secret` and the Redis
#: connection): the last line of defence scrubs them out of text nobody wrote for people (an
#: unexpected exception, a ``--debug`` traceback). Very short values are left to the targeted
#: scrubbers (they would mangle every message), and the set is bounded.
_REGISTERED: dict[str, None] = {}
_REGISTER_MIN = 4
_REGISTER_MAX = 32
_registered_pattern: re.Pattern[str] | None = None


def register(*secrets: str | None) -> None:
    global _registered_pattern
    for secret in secrets:
        if isinstance(secret, str) and len(secret) >= _REGISTER_MIN and secret not in _REGISTERED:
            if len(_REGISTERED) >= _REGISTER_MAX:
                _REGISTERED.pop(next(iter(_REGISTERED)))
            _REGISTERED[secret] = None
            _registered_pattern = None


def scrub_registered(text: str) -> str:
    """``text`` without any secret this process used, in any of its spellings."""
    global _registered_pattern
    if not _REGISTERED or not text:
        return text
    if _registered_pattern is None:
        forms: set[str] = set()
        for secret in _REGISTERED:
            forms |= secret_forms(secret)
        _registered_pattern = re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)),
                                         re.IGNORECASE)
    return _registered_pattern.sub(MASK, text)


__all__ = ["HIDDEN_HOST", "HIDDEN_URL", "MASK", "mask_host", "mask_url", "mask_urls_in", "register", "scrub",
           "scrub_registered", "secret_forms"]
