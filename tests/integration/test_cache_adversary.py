"""The header cache against a server that lies, other clients, the clock and the file system
(an adversarial review): every case against the real Dovecot, the warm listing always equal
to a cold one, never a traceback."""

from __future__ import annotations

import os
import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import Mailbox
from tests.integration.test_cache import NOW, _cold, _db_rows, _rows, _seed, _svc, _warm_up
from tests.integration.test_cache import path as path  # noqa: F401 - the fixture
from tests.mailgen import message
from tests.servers import MAIL_GID, MAIL_UID
from triage_tui.domain.model import View


def _chown_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        os.chown(dirpath, MAIL_UID, MAIL_GID)
        for f in files:
            os.chown(os.path.join(dirpath, f), MAIL_UID, MAIL_GID)


def _append(mb: Mailbox, *subjects: str) -> None:
    c = mb.client()
    try:
        for s in subjects:
            c.append("INBOX", message(subject=s, key=None, to="someone@elsewhere.example"))
    finally:
        c.logout()


def _flag(mb: Mailbox, uids: list[int], flag: bytes, add: bool = True) -> None:
    c = mb.client()
    try:
        c.select_folder("INBOX")
        (c.add_flags if add else c.remove_flags)(uids, [flag], silent=True)
    finally:
        c.logout()


def _meta(path: Path) -> dict[str, object]:
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT k, v FROM meta").fetchall())
    finally:
        db.close()


# -- the server goes back in time (a restored backup, a failover replica) ---------------------------


def test_a_restored_backup_reusing_uids_never_serves_the_old_headers(mailbox: Mailbox, path: Path,
                                                                     tmp_path: Path) -> None:
    """Same UIDVALIDITY, lower HIGHESTMODSEQ and UIDNEXT, and new mail taking UIDs the cache
    holds other messages under: the cache is discarded, not trusted."""
    _seed(mailbox, 10)
    _warm_up(mailbox, path)
    box = mailbox.server.maildir(mailbox.user)
    backup = tmp_path / "backup"
    shutil.copytree(box, backup)
    _append(mailbox, "after backup 1", "after backup 2", "after backup 3")
    _flag(mailbox, mailbox.search("UNSEEN")[:4], b"\\Seen")
    _warm_up(mailbox, path)  # caches the three under UIDs the backup never gave out
    assert any(r["subject"] == "after backup 1" for r in _rows(_svc(mailbox, path)[0]))
    shutil.rmtree(box)
    shutil.copytree(backup, box)
    _chown_tree(box)
    _append(mailbox, "after restore A", "after restore B")
    svc, spy = _svc(mailbox, path)
    warm = _rows(svc)
    cold = _cold(mailbox)
    assert [r["subject"] for r in warm if r["subject"].startswith("after")] == ["after restore A", "after restore B"]
    assert warm == cold
    assert sorted(spy.uids) == [r["uid"] for r in cold], "a server that went back in time: fetch everything"
    assert _rows(_svc(mailbox, path)[0]) == cold


def test_highestmodseq_lower_than_stored_discards_the_cache(mailbox: Mailbox, path: Path,
                                                            tmp_path: Path) -> None:
    """Index files rebuilt (HIGHESTMODSEQ starts over) with the same UIDVALIDITY and UIDs:
    flags changed before the rebuild must not be taken from the cache."""
    _seed(mailbox, 10)
    _warm_up(mailbox, path)
    for _ in range(3):  # push HIGHESTMODSEQ well up
        _flag(mailbox, mailbox.search("ALL"), b"$Junk")
        _flag(mailbox, mailbox.search("ALL"), b"$Junk", add=False)
    _warm_up(mailbox, path)
    stored = _meta(path)["modseq"]
    box = mailbox.server.maildir(mailbox.user)
    for p in box.iterdir():
        if p.name.startswith("dovecot.index"):
            p.unlink()  # the uidlist (UIDVALIDITY, UIDs) stays; modseqs start over
    _flag(mailbox, mailbox.search("UNSEEN")[:2], b"\\Seen")
    c = mailbox.client()
    try:
        info = c.folder_status("INBOX", [b"HIGHESTMODSEQ"])
    finally:
        c.logout()
    assert int(info[b"HIGHESTMODSEQ"]) < stored  # type: ignore[operator]
    svc, spy = _svc(mailbox, path)
    assert _rows(svc) == _cold(mailbox)
    assert spy.uids, "the cache of a server that went back in time was trusted"
    assert {u: set(f.split()) for u, f in _db_rows(path).items()} == mailbox.flags()
