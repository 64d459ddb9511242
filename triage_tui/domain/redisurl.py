"""A Redis URL checked before anything connects: redis-py accepts too much.

``redis://host/abc`` silently means DB 0 in redis-py (a non-integer path is ignored), an
``http://`` URL fails deep inside the client, and ``redis://host:99999`` is only refused when the
socket is made. Each is a usage error here, with the fix, and the message never shows the URL (it may hold a password).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote, urlsplit

from triage_tui.errors import UsageError

SCHEMES = ("redis", "rediss", "unix")
_DB = re.compile(r"[0-9]{1,5}", re.ASCII)
_HIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f\u00ad\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
_EXAMPLE = "e.g. redis://:PASSWORD@redis.example.com:6379/0"


def check_redis_url(url: str) -> None:
    """Raise :class:`UsageError` naming the problem and the fix; return None for a usable URL."""
    if not isinstance(url, str) or not url.strip():
        raise UsageError(f"empty Redis URL: give one, {_EXAMPLE}")
    if _HIDDEN.search(url.strip()):
        raise UsageError("Redis URL contains a space, control or invisible character: retype it "
                         f"({_EXAMPLE})")
    if "://" not in url:
        raise UsageError(f"Redis URL has no scheme: {_EXAMPLE} (or rediss:// for TLS)")
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise UsageError(f"Redis URL is malformed ({e}): {_EXAMPLE}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UsageError(f"Redis URL scheme {parts.scheme + '://'!r} is not Redis: use redis:// (or rediss:// for TLS, "
                         f"unix:// for a socket), {_EXAMPLE}")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"Redis URL: the port is not a number from 1 to 65535 ({_EXAMPLE})") from None
    if port == 0:
        raise UsageError("Redis URL: port 0 is not a port (Redis listens on 6379 by default)")
    db: str | None = None
    if scheme == "unix":
        if not parts.path or parts.path == "/":
            raise UsageError("Redis URL: unix:// needs the socket path, e.g. unix:///run/redis/redis.sock?db=0")
    else:
        path = unquote(parts.path or "")
        if path not in ("", "/"):
            db = path.lstrip("/")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    except ValueError:
        query = {}
    for value in query.get("db", []):
        db = value
    if db is not None and (not _DB.fullmatch(db) or int(db) > 65535):
        raise UsageError(f"Redis URL: the database {db[:20]!r} is not a number: the path is the DB "
                         f"number, e.g. redis://redis.example.com:6379/0 (mail_room uses the one in its redis_url)")
