"""Stable integer "UIDs" for Graph message ids, kept in a small sqlite file per mailbox.

The triage service speaks UIDs under a UIDVALIDITY: the journal, undo and every plan name
messages that way. Graph names them by opaque string ids (the regular id, which changes when a
message moves to another folder; mail_room keys its Redis locks by it). This map gives each id
seen a UID, in ``receivedDateTime`` order among the ids first seen together, and never reuses
one; its UIDVALIDITY is fixed when the file is created, so a new (or deleted) map is a new
UIDVALIDITY and every UID journaled under the old one is refused, as after an IMAP mailbox reset.

One file per (graph endpoint, tenant, mailbox, folder) under ``<state dir>/graph-ids/``, 0600 in
a 0700 directory (it holds message ids, which say nothing secret but are the operator's). Several
processes (the TUI and a CLI run) may share a file: new ids are assigned inside one ``BEGIN
IMMEDIATE`` transaction that first reads what the others added.

Each row carries a CRC-32 of its UID, id, date and folder: SQLite checks its pages' structure,
not the values in them, and a UID changed on disk would name another message (an undo would
act on it). A row that fails its check refuses the whole map, in one line, like a file SQLite
cannot read (move it aside: a new map is a new UIDVALIDITY, so nothing journaled under this one
can reach another message). Rows written before rows carried a CRC get one when the map is
first opened by this version.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from zlib import crc32

from triage_tui.errors import OperationFailed

#: UIDs and UIDVALIDITY are 32-bit in IMAP, and the service checks them as such
MAX_UID = 2**32 - 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ids (uid INTEGER PRIMARY KEY, gid TEXT NOT NULL UNIQUE, received TEXT NOT NULL,
                                folder TEXT NOT NULL, crc INTEGER);
"""


def _crc(uid: int, gid: str, received: str, folder: str) -> int:
    text = "\0".join((str(uid), gid, received, folder))
    return crc32(text.encode("utf-8", "surrogatepass"))


class _Damaged(sqlite3.DatabaseError):
    """A row whose values are not what was written."""


def map_path(state_dir: Path, endpoint: str, tenant: str, mailbox: str, folder: str) -> Path:
    """Where the map of this mailbox lives (named by a hash: no address in a file name)."""
    ident = "\n".join((endpoint.rstrip("/").lower(), tenant.lower(), mailbox.lower(), folder.lower()))
    return state_dir / "graph-ids" / (hashlib.sha256(ident.encode("utf-8")).hexdigest()[:32] + ".sqlite")


class IdMap:
    """Graph id <-> UID, with the folder each id was last seen in and its receivedDateTime."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._by_gid: dict[str, int] = {}
        self._by_uid: dict[int, tuple[str, str, str]] = {}  # uid -> (gid, received, folder)
        self._max = 0
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.exists():
                fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
            self._db = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
            self._db.executescript(_SCHEMA)
            if "crc" not in {r[1] for r in self._db.execute("PRAGMA table_info(ids)")}:
                try:
                    self._db.execute("ALTER TABLE ids ADD COLUMN crc INTEGER")  # a map from before
                except sqlite3.OperationalError as e:  # another process added it meanwhile
                    if "duplicate column" not in str(e):
                        raise
            with self._transaction():
                self._db.executemany("UPDATE ids SET crc = ? WHERE uid = ?", [
                    (_crc(u, g, r, f), u) for u, g, r, f in
                    self._db.execute("SELECT uid, gid, received, folder FROM ids WHERE crc IS NULL").fetchall()])
                row = self._db.execute("SELECT v FROM meta WHERE k = 'uidvalidity'").fetchone()
                if row is None:
                    # a new map: a new UIDVALIDITY (seconds since the epoch, as many IMAP servers do),
                    # never the one of a map this one replaces (created in an earlier second)
                    uv = max(1, min(MAX_UID, int(time.time())))
                    self._db.execute("INSERT INTO meta (k, v) VALUES ('uidvalidity', ?)", (str(uv),))
                else:
                    uv = int(row[0])
            self._catch_up()
        except _Damaged as e:
            raise OperationFailed(f"the Graph id map {path} cannot be used: {e}; move it aside to start a new "
                                  "one (a new map means a new UIDVALIDITY: UIDs listed before are refused)") from None
        except (sqlite3.Error, OSError, ValueError) as e:
            raise OperationFailed(f"the Graph id map {path} cannot be used ({type(e).__name__}: {e}); move it "
                                  "aside to start a new one (a new map means a new UIDVALIDITY: UIDs listed "
                                  "before are refused)") from None
        if not 0 < uv <= MAX_UID:
            raise OperationFailed(f"the Graph id map {path} holds an invalid UIDVALIDITY; move it aside to start "
                                  "a new one")
        self.uidvalidity = uv

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _catch_up(self) -> None:
        for uid, gid, received, folder, crc in self._db.execute(
                "SELECT uid, gid, received, folder, crc FROM ids WHERE uid > ? ORDER BY uid", (self._max,)):
            if not (isinstance(uid, int) and isinstance(gid, str) and isinstance(received, str)
                    and isinstance(folder, str)) or crc != _crc(uid, gid, received, folder):
                raise _Damaged(f"the row of UID {uid if isinstance(uid, int) else '?'} changed on disk")
            self._by_gid[gid] = uid
            self._by_uid[uid] = (gid, received, folder)
            self._max = max(self._max, uid)

    @property
    def uidnext(self) -> int:
        return self._max + 1

    def assign(self, seen: Iterable[tuple[str, str, str]]) -> dict[str, int]:
        """UIDs for ``(gid, receivedDateTime, folder)`` triples: known ids keep theirs (their folder
        is updated), new ones get the next UIDs in (receivedDateTime, id) order."""
        items = list(seen)
        with self._lock:
            new = [t for t in items if t[0] not in self._by_gid]
            moved = [(f, self._by_gid[g]) for g, _r, f in items
                     if g in self._by_gid and self._by_uid[self._by_gid[g]][2] != f]
            if new or moved:
                try:
                    with self._transaction():
                        self._catch_up()  # what another process added meanwhile
                        fresh = sorted({t[0]: t for t in new if t[0] not in self._by_gid}.values(),
                                       key=lambda t: (t[1], t[0]))
                        start = self._max + 1
                        if start + len(fresh) - 1 > MAX_UID:
                            raise OperationFailed(f"the Graph id map {self.path} ran out of UIDs; move it aside "
                                                  "to start a new one")
                        self._db.executemany("INSERT INTO ids (uid, gid, received, folder, crc) VALUES (?, ?, ?, ?, ?)",
                                             [(start + i, g, r, f, _crc(start + i, g, r, f))
                                              for i, (g, r, f) in enumerate(fresh)])
                        self._db.executemany("UPDATE ids SET folder = ?, crc = ? WHERE uid = ?",
                                             [(f, _crc(uid, *self._by_uid[uid][:2], f), uid) for f, uid in moved])
                    self._catch_up()
                    for f, uid in moved:
                        g, r, _ = self._by_uid[uid]
                        self._by_uid[uid] = (g, r, f)
                except sqlite3.Error as e:
                    raise OperationFailed(f"the Graph id map {self.path} cannot be written ({e})") from None
            return {g: self._by_gid[g] for g, _r, _f in items}

    def refresh(self) -> None:
        """Read what other processes (or other sessions of this one) added since."""
        with self._lock:
            try:
                self._catch_up()
            except sqlite3.Error as e:
                raise OperationFailed(f"the Graph id map {self.path} cannot be read ({e})") from None

    def gid(self, uid: int) -> str | None:
        entry = self.entry(uid)
        return entry[0] if entry else None

    def entry(self, uid: int) -> tuple[str, str, str] | None:
        """(gid, receivedDateTime, folder) of ``uid``, or None."""
        entry = self._by_uid.get(uid)
        if entry is None and isinstance(uid, int) and self._max < uid <= MAX_UID:
            self.refresh()  # assigned elsewhere since (the lock service shares the file with sessions)
            entry = self._by_uid.get(uid)
        return entry

    def uid(self, gid: str) -> int | None:
        found = self._by_gid.get(gid)
        if found is None:
            self.refresh()
            found = self._by_gid.get(gid)
        return found

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()


__all__ = ["IdMap", "map_path"]
