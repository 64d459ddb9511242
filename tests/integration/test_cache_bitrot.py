"""The header cache on a disk that changes bytes (a failing disk, a bad sector, a file copied
cut short): SQLite checks its pages' structure, not the values in them. A flipped bit in a
stored row must cost a fetch, never a changed key, date, address or flag; a file SQLite can no
longer read is deleted, so the next listing makes a new one instead of every later run
listing cold. Against the real Dovecot."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import Mailbox
from tests.integration.test_cache import CFG, _cold, _db_rows, _flag, _rows, _seed, _svc, _warm_up
from tests.integration.test_cache import path as path  # noqa: F401 - the fixture
from tests.integration.test_cache_adversary import _meta
from triage_tui.domain.model import View
from triage_tui.services import cache as C


def _sides(path: Path) -> list[Path]:
    return [Path(str(path) + s) for s in ("-wal", "-shm", "-journal")]


def test_flipped_bits_never_change_a_listed_row(mailbox: Mailbox, path: Path) -> None:
    """Seeded random bit flips anywhere in the file: the warm listing equals the cold one, in
    one line at most, and so does the next (the damage is repaired or the file deleted).
    Before chunk and row check values, 56 of 150 such files listed other keys, addresses,
    dates or flags, silently."""
    _seed(mailbox, 40)
    cold = _cold(mailbox)
    _warm_up(mailbox, path)
    _rows(_svc(mailbox, path)[0])  # a warm start: its writes checkpointed at close
    for side in _sides(path):
        side.unlink(missing_ok=True)
    pristine = path.read_bytes()
    rnd = random.Random(13)
    lines = 0
    for case in range(40):
        for side in _sides(path):
            side.unlink(missing_ok=True)
        data = bytearray(pristine)
        for _ in range(rnd.choice([1, 2, 4, 16])):
            i = rnd.randrange(len(data))
            data[i] ^= 1 << rnd.randrange(8)
        path.write_bytes(bytes(data))
        path.chmod(0o600)
        problems: list[str] = []
        assert _rows(_svc(mailbox, path, problems=problems)[0]) == cold, case
        assert len(problems) <= 1 and all("\n" not in p for p in problems), problems
        lines += len(problems)
        again: list[str] = []
        assert _rows(_svc(mailbox, path, problems=again)[0]) == cold, case
        assert again == [], (case, problems, again)
    assert lines < 40  # most flips land in values, which are simply fetched again


def _chunk_of(path: Path, uid: int) -> tuple[int, bytes]:
    db = sqlite3.connect(path)
    try:
        cid = db.execute("SELECT chunk FROM rows WHERE uid = ?", (uid,)).fetchone()[0]
        return cid, db.execute("SELECT blob FROM chunks WHERE id = ?", (cid,)).fetchone()[0]
    finally:
        db.close()


def test_a_changed_byte_in_a_chunk_fetches_its_rows_again(mailbox: Mailbox, path: Path) -> None:
    """One byte of a key, inside a chunk that still decodes: without the check value it was
    listed as another project's mail."""
    _seed(mailbox, 8)
    cold = _cold(mailbox)
    _warm_up(mailbox, path)
    uid = min(_db_rows(path))
    cid, blob = _chunk_of(path, uid)
    assert b"grp-proj" in blob
    db = sqlite3.connect(path)
    db.execute("UPDATE chunks SET blob = ? WHERE id = ?", (blob.replace(b"grp-proj", b"grp-prOj", 1), cid))
    db.commit()
    db.close()
    problems: list[str] = []
    svc, spy = _svc(mailbox, path, problems=problems)
    assert _rows(svc) == cold and not problems
    assert uid in spy.uids
    svc, spy = _svc(mailbox, path)
    assert _rows(svc) == cold and spy.uids == [], "fetched again, cached again"


def test_a_changed_flag_text_fetches_the_row_again(mailbox: Mailbox, path: Path) -> None:
    """``\\Deleted`` read back as ``\\Dgleted`` would list a deleted message as not deleted."""
    _seed(mailbox, 8)
    deleted = mailbox.search("DELETED")
    assert deleted
    cold = _cold(mailbox, View.ALL)
    _warm_up(mailbox, path)
    db = sqlite3.connect(path)
    db.execute("UPDATE rows SET flags = replace(flags, '\\Deleted', '\\Dgleted') WHERE uid = ?", (deleted[0],))
    db.commit()
    db.close()
    svc, spy = _svc(mailbox, path)
    assert _rows(svc) == cold
    assert spy.uids == [deleted[0]]


def test_a_damaged_modseq_asks_every_flag_again(mailbox: Mailbox, path: Path) -> None:
    """A stored HIGHESTMODSEQ a few bits higher, still below the server's: CHANGEDSINCE from it
    would miss the flag changes just above the true value."""
    _seed(mailbox, 10)
    _warm_up(mailbox, path)
    stored = _meta(path)["modseq"]
    assert isinstance(stored, int)
    target = mailbox.search("UNSEEN")[0]
    _flag(mailbox, [target], b"\\Seen")  # stored + 1
    others = [u for u in mailbox.search("ALL") if u != target]
    for _ in range(4):  # push HIGHESTMODSEQ well above, leaving the target's at stored + 1
        _flag(mailbox, others, b"$Junk")
        _flag(mailbox, others, b"$Junk", add=False)
    cold = _cold(mailbox, View.ALL)
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET v = ? WHERE k = 'modseq'", (stored + 2,))
    db.commit()
    db.close()
    svc, spy = _svc(mailbox, path)
    warm = _rows(svc)
    assert warm == cold and spy.uids == []
    assert "\\Seen" in next(r for r in warm if r["uid"] == target)["flags"]


@pytest.mark.parametrize(("exc", "damaged"), [
    (sqlite3.DatabaseError("database disk image is malformed"), False),  # no code: only by its code
    (sqlite3.OperationalError("database is locked"), False),
    (sqlite3.OperationalError("database or disk is full"), False),
    (sqlite3.OperationalError("attempt to write a readonly database"), False),
    (sqlite3.OperationalError("no such column: chunk"), True),
    (sqlite3.DatabaseError("malformed database schema (rows) - near \"0\": syntax error"), True),
    (sqlite3.OperationalError("Could not decode to UTF-8 column 'flags' with text '?Seen'"), True),
    (OSError("disk I/O error"), False),
    (ValueError("damaged chunk"), False),
])
def test_which_failures_delete_the_file(exc: BaseException, damaged: bool) -> None:
    assert C._damaged(exc) is damaged


def test_a_locked_or_full_cache_is_not_deleted(mailbox: Mailbox, path: Path) -> None:
    _seed(mailbox, 4)
    _warm_up(mailbox, path)
    for exc in (sqlite3.OperationalError("database is locked"), sqlite3.OperationalError("database or disk is full")):
        cache = C.HeaderCache(path, CFG)
        cache._give_up(exc)
        assert path.exists() and cache.problem and "deleted" not in cache.problem
