"""A persistent header cache: the parsed rows of a mailbox, so a warm start does not fetch or
parse headers again (as neomutt, aerc and mbsync keep one).

One SQLite file per (server, port, user, mailbox), named by a hash of the four, in the
platformdirs user cache directory (``$XDG_CACHE_HOME/triage-tui`` on Linux). The directory is
0700 and the files 0600 whatever the umask (a symlink or another user's file is refused): they
hold customer mail headers.

What is stored, per UID: the flags as last known (without ``\\Recent``, asked of the server each
time) and the day the row was last used; and, in chunks of :data:`CHUNK` rows (one marshal blob
each, equal strings stored once), the :class:`~triage_tui.domain.model.Message` fields that come
from the header. What is *not* stored: anything that depends on the time (``stale`` is
recomputed from INTERNALDATE and now at load; a row without INTERNALDATE is never cached), nor
the lock fields.

The whole file is tied to the mailbox's UIDVALIDITY and to a fingerprint of everything that
shapes a row (the analysis config, the package version, :data:`CACHE_FORMAT`, the Message field
set and the code that builds a row): a change of either empties it. So does a server gone back
in time under the same UIDVALIDITY (a restored backup, a failover replica: HIGHESTMODSEQ below
the stored one, or UIDNEXT not above a cached UID).

Flags always come from the server: with CONDSTORE, ``UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE
<stored HIGHESTMODSEQ>)``; the stored value only ever moves to a HIGHESTMODSEQ read *before*
the flags it vouches for were fetched, and never forward past another process's (see
:meth:`HeaderCache.commit`), so it is never newer than what the rows know.

Any failure (a corrupt or foreign file, a locked database, a full disk, a read-only directory)
says one line through ``on_problem`` and the listing goes on without the cache: a cache can
only make a listing faster, never wrong. SQLite checks its pages' structure, not the bytes in
them, so every chunk, every row's UID and flags text and the stored HIGHESTMODSEQ carry a CRC-32:
a value changed on disk is fetched (or asked) again, never listed. A file SQLite reports as
damaged is deleted, so the next listing makes a new one (left in place, every later run would
list cold).
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import hashlib
import logging
import marshal
import operator
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zlib import crc32

import platformdirs

from triage_tui.domain.model import Message
from triage_tui.domain.numbers import IMAP_MAX
from triage_tui.domain.outcome import Outcome
from triage_tui.domain.settings import AnalysisConfig

log = logging.getLogger(__name__)

#: Bump when the stored encoding changes.
CACHE_FORMAT = 3
APP = "triage-tui"
SUFFIX = ".sqlite3"
#: what SQLite keeps beside a database file
SIDE_FILES = ("-wal", "-shm", "-journal")
DEFAULT_MAX_AGE_DAYS = 14
_DAY = 86_400

# The Message fields stored, in Message's positional order from internaldate to problems, so a
# row is rebuilt with one positional call. uid, uidvalidity and flags come from their columns;
# stale is recomputed; lock, lock_ttl and extra are never stored.
_ALL = tuple(f.name for f in fields(Message))
_FIRST, _LAST = _ALL.index("internaldate"), _ALL.index("problems")
STORED = _ALL[_FIRST:_LAST + 1]
_I_INTERNALDATE = STORED.index("internaldate")
_I_DATE = STORED.index("date")
_I_OUTCOME = STORED.index("outcome")
_I_STALE = STORED.index("stale")
_I_SIZE = STORED.index("size")
#: how many of the highest cached UIDs a warm listing checks with its SEARCH
TOP_PROBE = 16
assert _ALL[:_FIRST] == ("uid", "uidvalidity", "flags"), "Message's field order changed: update the cache"
_NOT_ANALYSED = "header not analysed"
_GET = operator.attrgetter(*STORED)
#: the fields whose values repeat across messages (senders, verdict texts): stored once per chunk
_SHARED = tuple(STORED.index(n) for n in (
    "from_name", "from_addr", "to", "cc", "kind", "project_slug", "project_path", "matched_header",
    "bot_reason", "suspicious_reason", "outcome", "problems"))


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/triage-tui`` (``~/.cache/triage-tui``) on Linux, platformdirs elsewhere."""
    return Path(platformdirs.user_cache_dir(APP, appauthor=False))


def cache_path(host: str, port: int, user: str, mailbox: str, directory: Path | None = None) -> Path:
    key = "\0".join((host.lower(), str(port), user, mailbox)).encode("utf-8", "surrogatepass")
    return (directory or cache_dir()) / (hashlib.sha256(key).hexdigest()[:32] + SUFFIX)


_CODE_HASH: str | None = None


#: the services modules that shape a row besides the domain: the wire parser (what a header's
#: bytes decode to) and the listing (which header fields it fetches, how a row is built)
_ROW_SERVICES = ("imapwire.py", "triage.py", "listing.py", "cache.py")


def _code_files() -> list[Path]:
    here = Path(__file__).resolve().parent
    return sorted((here.parent / "domain").rglob("*.py")) + [here / n for n in _ROW_SERVICES if (here / n).exists()]


def _code_hash() -> str:
    """A hash of the code that builds rows (the domain, the wire parser, the listing): a changed
    classifier or decoder re-analyses, also when the version number did not move."""
    global _CODE_HASH
    if _CODE_HASH is None:
        h = hashlib.sha256()
        try:
            for p in _code_files():
                h.update(f"{p.parent.name}/{p.name}".encode())
                h.update(p.read_bytes())
        except OSError:
            h.update(str(time.time()).encode())  # unreadable: a fingerprint that never matches
        _CODE_HASH = h.hexdigest()
    return _CODE_HASH


def fingerprint(config: AnalysisConfig) -> str:
    """Everything that shapes a cached row, hashed."""
    try:
        from triage_tui import __version__ as version  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        version = "?"
    parts = (CACHE_FORMAT, version, _ALL, _code_hash(), config.address, config.mailbox_kind,
             config.stale_after.total_seconds(), tuple(config.bot_sender_patterns),
             tuple(config.bot_subject_patterns), tuple(config.suspicious_patterns),
             sorted((str(k), str(v)) for k, v in (config.project_names or {}).items()), config.gitlab_host)
    return hashlib.sha256(repr(parts).encode("utf-8", "surrogatepass")).hexdigest()


RECENT = "\\Recent"


def flags_text(flags: Iterable[str]) -> str:
    """Flags as stored: without \\Recent, which belongs to a session (an EXAMINE does not clear
    it, CONDSTORE does not track it): the listing asks the server for it each time."""
    return " ".join(f for f in flags if f != RECENT)


def storable(text: str) -> bool:
    """Whether SQLite can take this text (not a lone surrogate, which no UTF-8 can hold)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def split_flags(text: str) -> tuple[str, ...]:
    """The inverse of :func:`flags_text`. At " " only: ``str.split()`` would also cut at \\x1c or
    \\u2028, which a decoded flag may hold (the wire parser splits at ASCII whitespace only)."""
    return tuple(f for f in text.split(" ") if f)


def values(m: Message) -> tuple[Any, ...] | None:
    """A row's stored values, or None when the row must not be cached (it depends on the time,
    or its analysis failed as a whole: the next listing tries again)."""
    if m.internaldate is None or any(p.startswith(_NOT_ANALYSED) for p in m.problems):
        return None
    v = list(_GET(m))
    v[_I_INTERNALDATE] = m.internaldate.isoformat()
    v[_I_DATE] = m.date.isoformat() if m.date is not None else None
    o = m.outcome
    v[_I_OUTCOME] = (o.verdict, o.handler, o.reason, o.needs_db, o.rule) if o is not None else None
    v[_I_STALE] = False
    return tuple(v)


def encode_chunk(rows: list[tuple[int, tuple[Any, ...]]]) -> bytes:
    """Many rows in one marshal blob. Equal strings and outcomes are made one object first, so
    marshal stores each once (its back-references): a chunk is a fraction of its rows' text."""
    same: dict[Any, Any] = {}
    share = same.setdefault
    out = []
    for uid, v in rows:
        v = list(v)
        for i in _SHARED:
            x = v[i]
            if x is not None:
                v[i] = share(x, x)
        out.append((uid, tuple(v)))
    return marshal.dumps(out)


def checked(blob: Any, crc: Any) -> bytes:
    """A stored chunk's blob, if it is still what was written: SQLite checks its own pages'
    structure, not the bytes in them, and one flipped bit in a blob (a failing disk, a bad
    sector, a copied file cut short) can still decode, as another key, subject or date. Raises
    ValueError otherwise (the caller fetches those UIDs again)."""
    if type(blob) is not bytes or type(crc) is not int or crc32(blob) != crc:
        raise ValueError("damaged chunk")
    return blob


def _modseq_crc(value: Any) -> int:
    return crc32(repr(value).encode("ascii", "backslashreplace"))


def row_crc(uid: int, flags: str) -> int:
    """The check value of a row's UID and flags text (a flipped bit in a flag would show a
    message as not deleted, or not seen)."""
    return crc32(flags.encode("utf-8", "surrogatepass"), uid & 0xFFFF_FFFF)


def decode_chunk(blob: bytes) -> list[tuple[int, tuple[Any, ...]]]:
    """Raises on a damaged blob (the caller fetches those UIDs instead). The checks run over
    the whole chunk at C speed (``map``/``set``), not row by row in Python."""
    rows = marshal.loads(blob)
    if type(rows) is not list:
        raise ValueError("damaged chunk")
    if not rows:
        return rows
    try:
        if set(map(type, rows)) != {tuple} or set(map(len, rows)) != {2}:
            raise ValueError("damaged chunk")
        uids, vals = zip(*rows, strict=True)
        if set(map(type, uids)) != {int} or set(map(type, vals)) != {tuple} or set(map(len, vals)) != {len(STORED)}:
            raise ValueError("damaged chunk")
    except TypeError as exc:
        raise ValueError("damaged chunk") from exc
    return rows


def _since(stored: Any, highestmodseq: int | None) -> int | None:
    """The HIGHESTMODSEQ the cached flags are known at, if the server's answers what changed
    since it (CONDSTORE, and not gone back below it)."""
    if type(stored) is not int or highestmodseq is None:
        return None
    return stored if 0 < stored <= highestmodseq else None


class StoredValues(dict[int, tuple[Any, ...]]):
    """``{uid: stored values}`` of rows built elsewhere (a worker process), with ``chunk``: the
    encoded chunk they came in (:func:`encode_chunk`), which :meth:`HeaderCache.commit` stores
    as it is instead of encoding them again."""

    chunk: bytes | None = None


class ChunkRef:
    """A row of :meth:`HeaderCache.rows_of` whose values are in an encoded chunk already: one
    instance per chunk, shared by its rows (which may be fewer than the chunk holds: the
    others simply have no row pointing to it)."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes) -> None:
        self.blob = blob


class Rebuilder:
    """Messages from stored values, for one listing (``now`` and the stale limit fixed)."""

    def __init__(self, uidvalidity: int, stale_after: timedelta, now: datetime) -> None:
        self.uidvalidity = uidvalidity
        self.cutoff = now - stale_after  # stale: delivered before this (age > stale_after)
        self._outcomes: dict[Any, Outcome] = {}

    def __call__(self, uid: int, flags: tuple[str, ...], v: tuple[Any, ...]) -> Message:
        """Raises on damaged values (the caller fetches that UID instead)."""
        m = Message(uid, self.uidvalidity, flags, *v)
        internaldate = _fromiso(v[_I_INTERNALDATE])
        if internaldate.tzinfo is None:
            raise ValueError("damaged row")
        m.internaldate = internaldate
        d = v[_I_DATE]
        if d is not None:
            m.date = _fromiso(d)
        o = v[_I_OUTCOME]
        if o is not None:
            outcome = self._outcomes.get(o)
            if outcome is None:
                outcome = self._outcomes[o] = Outcome(*o)
            m.outcome = outcome
        m.stale = internaldate < self.cutoff
        return m


_fromiso = datetime.fromisoformat


class InOrder:
    """Cached rows (ascending UIDs) given out where a cold listing would give them: each just
    before the first fetched row with a higher UID. What the CLI prints first (``--limit``)
    and which copy of a duplicate Message-ID it flags depend on that order."""

    def __init__(self, rows: list[Message], misses: Iterable[int]) -> None:
        self.rows = rows
        self.misses = sorted(misses)  # the UIDs still to fetch, which arrive in this order
        self.uids = [m.uid for m in rows] if self.misses else []  # nothing to fetch: not needed
        self.i = 0

    def _upto(self, uid: int | None) -> list[Message]:
        j = len(self.rows) if uid is None else bisect.bisect_left(self.uids, uid, self.i)
        part, self.i = self.rows[self.i:j], j
        return part

    def before_fetch(self) -> list[Message]:
        return self._upto(self.misses[0] if self.misses else None)

    def with_batch(self, last_uid: int, fetched: list[Message]) -> list[Message]:
        """The cached rows that go before the next UID still to fetch after ``last_uid``, merged
        with ``fetched``."""
        k = bisect.bisect_right(self.misses, last_uid)
        part = self._upto(self.misses[k] if k < len(self.misses) else None)
        return sorted(part + fetched, key=_UID) if part else fetched

    def rest(self) -> list[Message]:
        return self._upto(None)


_UID = operator.attrgetter("uid")


@dataclass
class Info:
    path: Path
    size: int
    rows: int
    uidvalidity: int | None
    modseq: int | None
    created: float | None
    used: float | None


@dataclass(frozen=True)
class Token:
    """Which cache generation a listing read, and the HIGHESTMODSEQ it saw stored."""

    uidvalidity: int
    fingerprint: str
    created: float
    modseq: Any


class ChunkValues:
    """The stored values of a load's rows: ``got.pop(uid)`` for a row whose chunk is decoded,
    else :meth:`decode`. Each chunk is decoded when one of its rows is first asked for (a warm
    listing hands out its first rows after one chunk, not after all of them), and each row's
    values are given once (the caller keeps what it rebuilds from them: at 90k, holding them
    here to the end left tens of MiB of tuples among the rows). The blobs were read, and their
    CRC checked, within the load: what is decoded later is what the load saw, whatever another
    process writes meanwhile."""

    __slots__ = ("_blobs", "_rows", "got")

    def __init__(self, rows: dict[int, tuple[str, int, int]], blobs: dict[int, bytes]) -> None:
        self._rows = rows
        self._blobs = blobs  # chunk id -> its checked blob, until decoded
        self.got: dict[int, tuple[Any, ...]] = {}  # decoded, not yet given

    def has_any(self, uids: Iterable[int]) -> bool:
        """Whether any of ``uids`` is in a chunk read (and not damaged)."""
        rows, blobs = self._rows, self._blobs
        return any((row := rows.get(u)) is not None and row[2] in blobs for u in uids)

    def decode(self, uid: int) -> tuple[Any, ...] | None:
        """Decode the chunk of ``uid`` if it was not yet, and give its values; None: not cached,
        given already, or in a chunk that does not decode (the caller fetches it)."""
        row = self._rows.get(uid)
        if row is None:
            return None
        cid = row[2]
        blob = self._blobs.pop(cid, None)
        if blob is None:  # decoded already (without this row), or never read
            return None
        try:
            items = decode_chunk(blob)
        except Exception:  # noqa: BLE001 - a damaged chunk: its UIDs are fetched again
            return None
        rows, got = self._rows, self.got
        for u, vals in items:
            r = rows.get(u)
            if r is not None and r[2] == cid:
                got[u] = vals
        return got.pop(uid, None)

    def peek(self, uid: int) -> tuple[Any, ...] | None:
        """:meth:`decode` without giving the values: the row is still given later."""
        values = self.got.get(uid)
        if values is None:
            values = self.decode(uid)
            if values is not None:
                self.got[uid] = values
        return values


def same_message(values: tuple[Any, ...] | None, internaldate: datetime | None, size: int | None) -> bool:
    """Whether a cached row's values are of the message the server now has under its UID, as
    far as its INTERNALDATE and RFC822.SIZE tell (None values: nothing to compare, True)."""
    if values is None or internaldate is None or size is None:
        return True
    return values[_I_SIZE] == size and values[_I_INTERNALDATE] == internaldate.isoformat()


@dataclass
class Loaded:
    rows: dict[int, tuple[str, int, int]]  # every cached uid -> (flags, day last used, its chunk)
    values: ChunkValues  # the rows of the chunks read -> stored values, decoded as they are asked for
    since: int | None  # a usable CHANGEDSINCE value, None: refresh every cached UID's flags
    token: Token


class CacheUnavailable(Exception):
    """Raised inside the cache only; every public method turns it into one line and a no-op."""


#: rows per chunk: a listing loads only the chunks holding rows it lists
CHUNK = 2000
#: ``commit(modseq=KEEP)``: rows only, the stored HIGHESTMODSEQ left as it is
KEEP = object()
_GC = "DELETE FROM chunks WHERE id NOT IN (SELECT DISTINCT chunk FROM rows)"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rows (uid INTEGER PRIMARY KEY, flags TEXT NOT NULL, day INTEGER NOT NULL,
                                 chunk INTEGER NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY, blob BLOB NOT NULL, crc INTEGER NOT NULL);
"""


_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
_SQLITE_FULL = 13
#: what SQLite says of a schema whose text was damaged (a table or column renamed by a flipped
#: bit: the statements fail although the file's structure is sound)
_DAMAGED_SCHEMA = ("no such column", "no such table", "malformed database schema", "could not decode to utf-8")


def _damaged(exc: BaseException) -> bool:
    """Whether this failure says the cache file itself is damaged (then it is deleted: left in
    place, every later run would list without it, cold). A busy, full, read-only or failing
    disk is not: the file may be sound."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    if getattr(exc, "sqlite_errorcode", None) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return True
    return str(exc).lower().startswith(_DAMAGED_SCHEMA)


def _disk_full(exc: BaseException) -> bool:
    """Whether this failure is a full disk or quota (SQLite's SQLITE_FULL, or ENOSPC/EDQUOT)."""
    if isinstance(exc, sqlite3.Error):
        return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == _SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def _went_back(db: sqlite3.Connection, stored: Any, highestmodseq: int | None, uidnext: int | None) -> bool:
    """Whether the server is behind what the cache saw under the same UIDVALIDITY: its state is
    another history, where a cached UID may name another message and a flag change may have
    no MODSEQ above the stored one (RFC 3501 wants a new UIDVALIDITY then; a restore does not
    always give one)."""
    if isinstance(stored, int) and highestmodseq is not None and highestmodseq < stored:
        return True
    if uidnext is not None:
        top = db.execute("SELECT max(uid) FROM rows").fetchone()[0]
        if isinstance(top, int) and top >= uidnext:
            return True
    return False


def _with_side_files(path: Path) -> tuple[Path, ...]:
    return (path, *(Path(str(path) + side) for side in SIDE_FILES))


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise CacheUnavailable(f"{path} is not a directory")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise CacheUnavailable(f"{path} belongs to another user")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


def _no_planted_side_files(path: Path) -> None:
    """SQLite opens its -wal, -shm and -journal files following links: one planted while the
    directory was open to others (its mode is fixed since, not what is in it) is refused."""
    for side in SIDE_FILES:
        p = Path(str(path) + side)
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
            raise CacheUnavailable(f"{p} is not a private regular file")


def _private_file(path: Path) -> None:
    """Create the file 0600 (or make it so), refusing a symlink."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:  # a hard link: another file's data
            raise CacheUnavailable(f"{path} is not a private regular file")
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise CacheUnavailable(f"{path} belongs to another user")
        if stat.S_IMODE(st.st_mode) != 0o600:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


class HeaderCache:
    """The cache of one mailbox. One SQLite connection, used under a lock: listings in several
    threads (the TUI's workers) may share it; each listing carries its own :class:`Token`."""

    def __init__(self, path: Path, config: AnalysisConfig, *, max_age_days: int = DEFAULT_MAX_AGE_DAYS,
                 on_problem: Callable[[str], None] | None = None, busy_timeout: float = 2.0) -> None:
        self.path = path
        self.busy_timeout = busy_timeout  # how long to wait for another process's write
        self.config = config
        self.max_age_days = max_age_days
        self.on_problem = on_problem
        self.problem: str | None = None  # set once the cache is given up for this run
        self._db: sqlite3.Connection | None = None
        self._lock = threading.RLock()  # one sqlite connection, listings in several threads

    @classmethod
    def for_mailbox(cls, host: str, port: int, user: str, mailbox: str, config: AnalysisConfig,
                    **kw: Any) -> HeaderCache:
        return cls(cache_path(host, port, user, mailbox), config, **kw)

    # -- failure ------------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self.problem is None

    def _give_up(self, exc: BaseException) -> None:
        if self.problem is not None:
            return
        what = str(exc) or type(exc).__name__
        what = " ".join(what.split())[:160]
        damaged = _damaged(exc)
        full = not damaged and _disk_full(exc)
        self.problem = f"header cache disabled for this run ({what}): listing without it" + \
            ("; the damaged file is deleted, the next listing makes a new one" if damaged else
             "; its file is deleted to give the space back (the audit journal needs it more)" if full else "")
        with self._lock:
            if self._db is not None:
                with contextlib.suppress(Exception):
                    self._db.close()
                self._db = None
            if damaged or full:
                # a full disk: what the cache wrote (its WAL above all) kept the disk full, and
                # the next mark-seen could not write its journal (found by an adversary)
                self._delete()
        if self.on_problem is not None:
            try:
                self.on_problem(self.problem)
            except Exception:  # noqa: BLE001 - a UI callback must not break a listing
                log.warning("%s", self.problem)
        else:
            log.warning("%s", self.problem)

    def _delete(self) -> None:
        """Delete a damaged cache file and its side files (only regular files: never what a
        symlink points to, nor a directory)."""
        for p in _with_side_files(self.path):
            with contextlib.suppress(OSError):
                if stat.S_ISREG(p.lstat().st_mode):
                    p.unlink()

    # -- the database -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            _private_dir(self.path.parent)
            self._prune_files()
            _private_file(self.path)
            _no_planted_side_files(self.path)
            db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def _prune_files(self) -> None:
        """Drop other mailboxes' cache files unused for longer than the age limit."""
        limit = time.time() - self.max_age_days * _DAY
        try:
            for p in self.path.parent.iterdir():
                if p.name.endswith((SUFFIX, SUFFIX + "-wal", SUFFIX + "-shm")) and p.stat().st_mtime < limit \
                        and not p.name.startswith(self.path.name):
                    p.unlink()
        except OSError:
            pass

    def _meta(self, db: sqlite3.Connection) -> dict[str, Any]:
        meta = dict(db.execute("SELECT k, v FROM meta").fetchall())
        if meta.get("modseq") is not None and meta.get("modseq_crc") != _modseq_crc(meta["modseq"]):
            # damaged: a few bits higher, it would hide the flag changes just above the true
            # value; none, and every cached UID's flags are asked again
            meta["modseq"] = None
        return meta

    # -- use ----------------------------------------------------------------------------------

    def peek_since(self, uidvalidity: int, highestmodseq: int | None) -> int | None:
        """The HIGHESTMODSEQ :meth:`load` would give as ``since`` now (None: it would give none),
        read without writing anything: a listing asks the server for what changed since it
        while it searches, before the load. A guess only: the load decides (the file may change
        in between, another process committing)."""
        if not self.usable or highestmodseq is None:
            return None
        try:
            with self._lock:
                meta = self._meta(self._connect())
        except Exception:  # noqa: BLE001 - the load will say what is wrong
            return None
        if meta.get("uidvalidity") != uidvalidity or meta.get("fingerprint") != fingerprint(self.config) \
                or meta.get("format") != CACHE_FORMAT:
            return None
        return _since(meta.get("modseq"), highestmodseq)

    def top_uids(self, k: int = TOP_PROBE) -> list[int]:
        """The ``k`` highest cached UIDs, read without writing ([] on any trouble): a warm
        listing asks the server for their INTERNALDATE and size with its SEARCH (see
        :func:`same_message`). A guess only, like :meth:`peek_since`."""
        if not self.usable:
            return []
        try:
            with self._lock:
                got = self._connect().execute("SELECT uid FROM rows ORDER BY uid DESC LIMIT ?", (k,)).fetchall()
        except Exception:  # noqa: BLE001 - the load will say what is wrong
            return []
        return sorted(u for (u,) in got if type(u) is int and 0 < u <= IMAP_MAX)

    def load(self, uidvalidity: int, highestmodseq: int | None, wanted: Iterable[int] | None,
             uidnext: int | None = None, *, reset: bool = False) -> Loaded | None:
        """Open the cache for this UIDVALIDITY (None when the cache is off). A different
        UIDVALIDITY or fingerprint empties it first, and so does a server gone back in time
        with the same UIDVALIDITY (a restored backup, a failover replica): a HIGHESTMODSEQ lower
        than the stored one, or a UIDNEXT not above a cached UID (that UID may be given to
        another message). Rows unused for longer than the age limit are dropped. The chunks of
        the ``wanted`` UIDs are read (None: every chunk, before the view's UIDs are known).
        ``reset``: empty it first whatever it holds (a UID found given to another message)."""
        if not self.usable:
            return None
        try:
            with self._lock:
                db = self._connect()
                fp = fingerprint(self.config)
                today = int(time.time() // _DAY)
                db.execute("BEGIN IMMEDIATE")
                try:
                    meta = self._meta(db)
                    if reset or meta.get("uidvalidity") != uidvalidity or meta.get("fingerprint") != fp \
                            or meta.get("format") != CACHE_FORMAT or not isinstance(meta.get("created"), float) \
                            or _went_back(db, meta.get("modseq"), highestmodseq, uidnext):
                        db.execute("DROP TABLE IF EXISTS rows")  # also an older format's tables
                        db.execute("DROP TABLE IF EXISTS chunks")
                        db.execute("DELETE FROM meta")
                        for statement in _SCHEMA.split(";"):
                            if statement.strip():
                                db.execute(statement)
                        db.executemany("INSERT INTO meta VALUES (?, ?)", [
                            ("format", CACHE_FORMAT), ("uidvalidity", uidvalidity), ("fingerprint", fp),
                            ("modseq", None), ("created", time.time())])
                        meta = self._meta(db)
                    if db.execute("DELETE FROM rows WHERE day < ?", (today - self.max_age_days,)).rowcount:
                        db.execute(_GC)
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('used', ?)", (time.time(),))
                    db.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(Exception):
                        db.execute("ROLLBACK")
                    raise
                stored = meta.get("modseq")
                since = _since(stored, highestmodseq)
                rows: dict[int, tuple[str, int, int]] = {
                    uid: (flags, day, chunk) for uid, flags, day, chunk, crc in
                    db.execute("SELECT uid, flags, day, chunk, crc FROM rows WHERE typeof(flags) = 'text' "
                               "AND typeof(day) = 'integer' AND typeof(chunk) = 'integer' AND typeof(crc) = 'integer'")
                    if row_crc(uid, flags) == crc}  # else: fetched again
                hits = rows if wanted is None else [u for u in wanted if u in rows]
                blobs: dict[int, bytes] = {}
                for cid in sorted({rows[u][2] for u in hits}):
                    got = db.execute("SELECT blob, crc FROM chunks WHERE id = ?", (cid,)).fetchone()
                    if got:
                        with contextlib.suppress(Exception):  # a damaged chunk: its UIDs are fetched again
                            blobs[cid] = checked(*got)
        except Exception as exc:  # noqa: BLE001 - sqlite3.Error, OSError, MemoryError...
            self._give_up(exc)
            return None
        return Loaded(rows=rows, values=ChunkValues(rows, blobs), since=since,
                      token=Token(uidvalidity, fp, meta["created"], stored))

    def rows_of(self, messages: Iterable[Message], uidvalidity: int,
                known: dict[int, tuple[Any, ...]] | None = None) -> list[tuple[int, str, Any]]:
        """Built rows as stored (flags as fetched with them), for :meth:`commit`: ``(uid, flags
        text, values)``, or ``(uid, flags text, ChunkRef)`` for a row whose values are in the
        chunk a worker encoded. ``known``: the stored values of some of them, already made (by a
        worker process that built them; a :class:`StoredValues` with its chunk)."""
        if not self.usable:
            return []
        out: list[tuple[int, str, Any]] = []
        chunk = getattr(known, "chunk", None)
        ref = ChunkRef(chunk) if chunk is not None else None
        for m in messages:
            if m.uidvalidity != uidvalidity:
                continue
            if ref is not None and m.uid in known:  # type: ignore[operator]
                text = flags_text(m.flags)
                if storable(text):
                    out.append((m.uid, text, ref))
                continue
            v = known.get(m.uid) if known is not None else None
            if v is None:
                try:
                    v = values(m)
                except Exception:  # noqa: BLE001 - that row is simply not cached
                    continue
            text = flags_text(m.flags)
            if v is not None and storable(text):
                out.append((m.uid, text, v))
        return out

    def commit(self, token: Token, *, rows: list[tuple[int, str, Any]] | None = None,
               flags: dict[int, tuple[str, ...]] | None = None, used: Iterable[int] = (),
               gone: Iterable[int] = (), modseq: int | None | object = None) -> Token | None:
        """One transaction: ``rows`` (from :meth:`rows_of`), the refreshed ``flags``, today as the
        last use of ``used``, ``gone`` deleted; and the stored HIGHESTMODSEQ set to ``modseq``
        (read before any flags written here were fetched; None: no CONDSTORE). It moves to
        ``modseq`` only if nobody changed it since ``token`` (what this listing read or last
        wrote), else to the lower of the two: concurrent listings and processes never leave it
        newer than a row. Nothing is written if the cache was reset meanwhile (another
        UIDVALIDITY or config). ``modseq=KEEP`` leaves the stored value as it is (a listing's
        rows written while it goes on: fetched after that value was read, so it still vouches
        for them). Returns the token for a next commit (None: nothing written)."""
        if not self.usable or self._db is None:
            return None
        db = self._db
        today = int(time.time() // _DAY)
        try:
            with self._lock:
                db.execute("BEGIN IMMEDIATE")
                try:
                    meta = self._meta(db)
                    if (meta.get("uidvalidity"), meta.get("fingerprint"), meta.get("created")) != \
                            (token.uidvalidity, token.fingerprint, token.created):
                        db.execute("ROLLBACK")  # reset meanwhile: these rows belong to the old one
                        return None
                    # rows a worker encoded point to its chunk, stored once as made; the
                    # others are encoded here, CHUNK rows to a chunk
                    own: list[tuple[int, str, tuple[Any, ...]]] = []
                    pointed: list[tuple[int, str, int, int, int]] = []
                    made: dict[int, int] = {}  # id(ChunkRef) -> chunk id
                    for u, f, v in rows or ():
                        if type(v) is not ChunkRef:
                            own.append((u, f, v))
                            continue
                        cid = made.get(id(v))
                        if cid is None:
                            cid = made[id(v)] = db.execute("INSERT INTO chunks (blob, crc) VALUES (?, ?)",
                                                               (v.blob, crc32(v.blob))).lastrowid
                        pointed.append((u, f, today, cid, row_crc(u, f)))
                    for i in range(0, len(own), CHUNK):
                        part = own[i:i + CHUNK]
                        blob = encode_chunk([(u, v) for u, _f, v in part])
                        cid = db.execute("INSERT INTO chunks (blob, crc) VALUES (?, ?)", (blob, crc32(blob))).lastrowid
                        pointed += [(u, f, today, cid, row_crc(u, f)) for u, f, _v in part]
                    db.executemany("INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?, ?)", pointed)
                    gone = list(gone)
                    if flags:
                        texts = [(flags_text(f), u) for u, f in flags.items()]
                        gone += [u for t, u in texts if not storable(t)]  # not kept with old flags
                        db.executemany("UPDATE rows SET flags = ?, crc = ? WHERE uid = ?",
                                       [(t, row_crc(u, t), u) for t, u in texts if storable(t)])
                    used = list(used)
                    if used:
                        db.executemany("UPDATE rows SET day = ? WHERE uid = ?", [(today, u) for u in used])
                    if gone:
                        db.executemany("DELETE FROM rows WHERE uid = ?", [(u,) for u in gone])
                    if gone or rows:  # chunks no row points to any more (replaced or gone rows)
                        db.execute(_GC)
                    stored = meta.get("modseq")
                    if modseq is KEEP:
                        db.execute("COMMIT")
                        return token  # what this listing read: the final commit still compares with it
                    if modseq is None:
                        new = None
                    elif stored == token.modseq:  # nobody moved it since
                        new = modseq
                    elif isinstance(stored, int):  # someone did: never move past their value
                        new = min(stored, modseq)
                    else:
                        new = None
                    db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                   [("modseq", new), ("modseq_crc", _modseq_crc(new))])
                    db.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(Exception):
                        db.execute("ROLLBACK")
                    raise
        except Exception as exc:  # noqa: BLE001
            self._give_up(exc)
            return None
        return Token(token.uidvalidity, token.fingerprint, token.created, new)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                with contextlib.suppress(Exception):
                    self._db.close()
                self._db = None


# -- `cache info` / `cache clear` ----------------------------------------------------------------


def info(path: Path) -> Info:
    """What one cache file holds (read-only; raises sqlite3.Error / OSError). Only a regular
    file is opened, with regular side files: SQLite blocked in its open of a FIFO, deaf to
    Ctrl-C and SIGTERM."""
    size = 0
    for p in _with_side_files(path):
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            if p == path:
                raise
            continue
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{p.name} is not a regular file")
        size += st.st_size if not p.name.endswith(("-shm", "-journal")) else 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
    try:
        meta = dict(db.execute("SELECT k, v FROM meta").fetchall())
        rows = db.execute("SELECT count(*) FROM rows").fetchone()[0]
    finally:
        db.close()
    return Info(path=path, size=size, rows=rows, uidvalidity=meta.get("uidvalidity"), modseq=meta.get("modseq"),
                created=meta.get("created"), used=meta.get("used"))


def files(directory: Path | None = None) -> list[Path]:
    """The cache files in the directory (raises OSError if it is not one)."""
    d = directory or cache_dir()
    try:
        return sorted(p for p in d.iterdir() if p.name.endswith(SUFFIX))
    except FileNotFoundError:
        return []


def clear(directory: Path | None = None) -> tuple[int, list[tuple[Path, str]]]:
    """Delete every cache file (with its WAL and shared-memory files), going on past one that
    cannot be deleted (customer headers must not stay because another entry failed). Returns
    how many caches went, and what could not be deleted, with why. Raises OSError if the
    directory cannot be read."""
    d = directory or cache_dir()
    n = 0
    left: list[tuple[Path, str]] = []
    try:
        entries = list(d.iterdir())
    except FileNotFoundError:
        return 0, left
    for p in entries:
        if p.name.endswith((SUFFIX, *(SUFFIX + side for side in SIDE_FILES))):
            try:
                p.unlink(missing_ok=True)  # a symlink itself, never what it points to
            except OSError as e:
                left.append((p, e.strerror or type(e).__name__))
                continue
            n += p.name.endswith(SUFFIX)
    return n, left
