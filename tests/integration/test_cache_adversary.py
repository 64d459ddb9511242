"""The header cache against a server that lies, other clients, the clock and the file system
(an adversarial review): every case against the real Dovecot, the warm listing always equal
to a cold one, never a traceback."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import Mailbox
from tests.integration.test_cache import CFG, NOW, _cold, _db_rows, _flag, _rows, _seed, _svc, _warm_up
from tests.integration.test_cache import path as path  # noqa: F401 - the fixture
from tests.mailgen import message
from tests.servers import MAIL_GID, MAIL_UID
from triage_tui.domain.model import View
from triage_tui.services.cache import HeaderCache
from triage_tui.services.imap import Limits
from triage_tui.services.journal import AuditJournal
from triage_tui.services.triage import TriageService


def _chown_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        os.chown(dirpath, MAIL_UID, MAIL_GID)
        for f in files:
            os.chown(os.path.join(dirpath, f), MAIL_UID, MAIL_GID)


def _backup(mb: Mailbox, tmp_path: Path) -> Path:
    """A copy of the mailbox's maildir (Dovecot's index and UID list with it)."""
    backup = tmp_path / "backup"
    shutil.copytree(mb.server.maildir(mb.user), backup)
    return backup


def _restore(mb: Mailbox, backup: Path) -> None:
    """The maildir put back as :func:`_backup` copied it: the same UIDVALIDITY, UIDs given again."""
    box = mb.server.maildir(mb.user)
    shutil.rmtree(box)
    shutil.copytree(backup, box)
    _chown_tree(box)


def _append(mb: Mailbox, *subjects: str) -> None:
    c = mb.client()
    try:
        for s in subjects:
            c.append("INBOX", message(subject=s, key=None, to="someone@elsewhere.example"))
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
    backup = _backup(mailbox, tmp_path)
    _append(mailbox, "after backup 1", "after backup 2", "after backup 3")
    _flag(mailbox, mailbox.search("UNSEEN")[:4], b"\\Seen")
    _warm_up(mailbox, path)  # caches the three under UIDs the backup never gave out
    assert any(r["subject"] == "after backup 1" for r in _rows(_svc(mailbox, path)[0]))
    _restore(mailbox, backup)
    _append(mailbox, "after restore A", "after restore B")
    svc, spy = _svc(mailbox, path)
    warm = _rows(svc)
    cold = _cold(mailbox)
    assert [r["subject"] for r in warm if r["subject"].startswith("after")] == ["after restore A", "after restore B"]
    assert warm == cold
    assert sorted(spy.uids) == [r["uid"] for r in cold], "a server that went back in time: fetch everything"
    assert _rows(_svc(mailbox, path)[0]) == cold


@pytest.mark.parametrize("probe", ["with the SEARCH", "after it"])
def test_a_restored_backup_is_caught_after_more_mail_than_the_cache_held_beyond_it(
        mailbox: Mailbox, path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, probe: str) -> None:
    """As above, but the warm listing comes only after more new mail than the cache held beyond
    the backup, and other clients' flag changes: UIDNEXT and HIGHESTMODSEQ are above what the
    cache stored, so the load's checks see nothing (an adversary's case: the old bot alerts'
    headers were listed for three customer replies, and ``mark-seen --bots`` marked those). The
    highest cached UID still on the server is asked for its INTERNALDATE and size: in the
    SEARCH burst, or in a FETCH of its own when the burst's probe missed it."""
    if probe == "after it":
        monkeypatch.setattr(HeaderCache, "top_uids", lambda self, k=16: [])
    _seed(mailbox, 10)
    _warm_up(mailbox, path)
    backup = _backup(mailbox, tmp_path)
    _append(mailbox, "old bot 1", "old bot 2", "old bot 3")
    _warm_up(mailbox, path)
    before = _meta(path)
    _restore(mailbox, backup)
    _append(mailbox, *(f"customer reply {i}" for i in range(8)))
    for _ in range(6):
        _flag(mailbox, mailbox.search("ALL")[:1], b"\\Flagged")
    c = mailbox.client()
    try:
        st = c.folder_status("INBOX", [b"UIDNEXT", b"HIGHESTMODSEQ"])
    finally:
        c.logout()
    assert st[b"UIDNEXT"] > max(_db_rows(path)) and st[b"HIGHESTMODSEQ"] > int(before["modseq"]), \
        "the load's own checks cannot see this one"
    svc, spy = _svc(mailbox, path)
    warm = _rows(svc)
    cold = _cold(mailbox)
    assert not [r for r in warm if r["subject"].startswith("old bot")]
    assert warm == cold
    assert sorted(spy.uids) == [r["uid"] for r in cold], "the cache was given up: every header fetched"
    svc, spy = _svc(mailbox, path)
    assert _rows(svc) == cold and spy.uids == [], "and made again"


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


# -- every view, --limit, filters: warm output is cold output, order included -------------------


def _seed_order(mb: Mailbox) -> None:
    """Rows whose key only Received holds (a cold listing sends them last), a duplicate
    Message-ID across such a row and a plain one, seen and deleted rows among them."""
    import time

    from tests.mailgen import ADDRESS

    key_addr = ADDRESS.replace("%{key}", "grp-proj-9-glimt-rcv1-issue")
    now = time.time()
    rows: list[tuple[bytes, float, str]] = []
    for i in range(14):
        if i % 3 == 0:
            raw = message(subject=f"received only {i}", key=None, to="someone@elsewhere.example",
                          extra={"Received": f"from mx by gl for <{key_addr}>; Mon, 1 Jan 2024 00:00:00 +0000"},
                          message_id="<twin@example.org>" if i == 3 else None)
        else:
            raw = message(subject=f"plain {i}", message_id="<twin@example.org>" if i == 7 else None)
        rows.append((raw, now - 86_400 * (i % 5) - i, "S" if i % 4 == 1 else ("T" if i == 11 else "")))
    mb.seed(rows)


def _cli_rows(cli: object, env: dict[str, str], *args: str) -> list[dict[str, object]]:
    import json

    r = cli([*args, "--json"], env=env)  # type: ignore[operator]
    assert r.code == 0, r.err
    assert "Traceback" not in r.err and not r.err.strip(), r.err
    out = [json.loads(line) for line in r.out.splitlines() if line.strip()]
    for x in out:
        x.pop("age_seconds", None)
        if isinstance(x.get("evidence"), dict):
            x["evidence"].pop("age_seconds")  # seen-stuck: the age again
    return out


@pytest.mark.parametrize("args", [
    ("--view", "all"), ("--view", "all", "--limit", "5"), ("--view", "unseen", "--limit", "3"),
    ("--view", "seen"), ("--view", "seen-stuck"), ("--view", "ignored"), ("--view", "deleted"),
    ("--view", "all", "--filter", "subject:received"),
], ids=lambda a: " ".join(a))
def test_cli_warm_output_is_cold_output_order_included(mailbox: Mailbox, cli: object, args: tuple[str, ...]) -> None:
    from tests.mailgen import ADDRESS

    _seed_order(mailbox)
    _flag(mailbox, mailbox.search("SEEN")[:1], b"$TriageIgnored")
    env = {**mailbox.env(), "TRIAGE_ADDRESS": ADDRESS}
    cold = _cli_rows(cli, env, "--no-cache", "list", *args)
    assert cold
    for warm_up in (("--view", "unseen"), ("--view", "all")):  # part of the rows cached, then all
        _cli_rows(cli, env, "list", *warm_up)
        warm = _cli_rows(cli, env, "list", *args)
        diff = [(w["uid"], c["uid"], {k: (w[k], c[k]) for k in w if w[k] != c.get(k)}) for w, c in zip(warm, cold, strict=False)
                if w != c]
        assert warm == cold, (warm_up, len(warm), len(cold), diff[:3])


# -- other clients during a listing -------------------------------------------------------------


def test_changes_during_a_warm_listing_show_on_the_next_one(mailbox: Mailbox, path: Path) -> None:
    """Between the flag refresh and the listing's end another operator flips \\\\Seen and our
    keyword both ways, mail_room deletes and expunges, new mail arrives: the next warm start of
    every view equals a cold one, and the stored flags are the server's."""
    _seed(mailbox, 16)
    _flag(mailbox, mailbox.search("SEEN")[:2], b"$TriageIgnored")
    _warm_up(mailbox, path, View.UNSEEN)  # part cached: the ALL listing below also fetches
    svc = TriageService(mailbox.settings(), read_only=True, journal=AuditJournal(), analysis=CFG,
                        cache=HeaderCache(path, CFG), limits=Limits(max_count=3, window=1))
    it = svc.iter_list(View.ALL, now=NOW)
    assert next(it)
    unseen, seen = mailbox.search("UNSEEN"), mailbox.search("SEEN")
    ignored = mailbox.search("KEYWORD $TriageIgnored")
    _flag(mailbox, unseen[:2], b"\\Seen")  # cached rows, already given out
    _flag(mailbox, ignored[:1], b"$TriageIgnored", add=False)  # ignored -> seen-stuck
    _flag(mailbox, seen[-2:], b"$TriageIgnored")  # seen-stuck -> ignored (not fetched yet)
    _flag(mailbox, [seen[-1]], b"\\Seen", add=False)
    gone = [unseen[-1], seen[0]]
    c = mailbox.client()
    try:
        c.select_folder("INBOX")
        c.add_flags(gone, [b"\\Deleted"], silent=True)
        c.uid_expunge(gone)
    finally:
        c.logout()
    _append(mailbox, "arrived during the listing")
    rest = [m for batch in it for m in batch]
    svc.close()
    assert rest  # the listing went on
    for view in View:
        warm = _rows(_svc(mailbox, path)[0], view)
        assert warm == _cold(mailbox, view), view
    assert {u: set(f.split()) for u, f in _db_rows(path).items()} == mailbox.flags()
    assert not set(gone) & set(_db_rows(path))


# -- the files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["-wal", "-shm", "-journal"])
def test_a_symlink_planted_beside_the_db_is_refused(mailbox: Mailbox, path: Path, tmp_path: Path, side: str) -> None:
    """A directory that was open to others (its mode is fixed, what was planted stays): SQLite
    would follow a planted -wal/-shm link and write through it."""
    _seed(mailbox, 4)
    path.parent.mkdir(parents=True)
    os.chmod(path.parent, 0o777)
    target = tmp_path / "victim"
    target.write_bytes(b"precious\n")
    Path(str(path) + side).symlink_to(target)
    problems: list[str] = []
    svc, _ = _svc(mailbox, path, problems=problems)
    assert _rows(svc) == _cold(mailbox)
    assert len(problems) == 1 and side in problems[0], problems
    assert target.read_bytes() == b"precious\n"


@pytest.mark.parametrize("what", ["fifo", "fifo-wal", "dir-of-another-user", "file-of-another-user"])
def test_odd_files_cost_one_line_never_a_row(mailbox: Mailbox, path: Path, what: str) -> None:
    _seed(mailbox, 4)
    path.parent.mkdir(parents=True, mode=0o700)
    if what == "fifo":
        os.mkfifo(path)
    elif what == "fifo-wal":
        os.mkfifo(str(path) + "-wal")
    elif what == "dir-of-another-user":
        os.chown(path.parent, MAIL_UID, MAIL_GID)  # /tmp/x/triage-tui made by someone else first
    else:
        path.write_bytes(b"")
        os.chown(path, MAIL_UID, MAIL_GID)
    problems: list[str] = []
    svc, _ = _svc(mailbox, path, problems=problems)
    assert _rows(svc) == _cold(mailbox)
    assert len(problems) == 1, problems
    assert "\n" not in problems[0] and "Traceback" not in problems[0]


# -- two processes ------------------------------------------------------------------------------------


def test_two_listings_at_once_while_a_third_marks_seen(mailbox: Mailbox, path: Path, cli: object) -> None:
    """A TUI and a CLI (two caches on one file, in threads) listing together while mark-seen runs
    through the CLI: no problem line, and the next warm start equals a cold one."""
    import threading

    from tests.mailgen import ADDRESS

    _seed(mailbox, 40)
    _warm_up(mailbox, path, View.UNSEEN)
    problems: list[str] = []
    errors: list[BaseException] = []
    got: list[list[dict[str, object]]] = []

    def run(view: View) -> None:
        try:
            got.append(_rows(_svc(mailbox, path, problems=problems)[0], view))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(v,)) for v in (View.ALL, View.UNSEEN, View.ALL)]
    for t in threads:
        t.start()
    r = cli(["mark-seen", "--yes", "--all"],  # type: ignore[operator]
            env={**mailbox.env(), "TRIAGE_ADDRESS": ADDRESS})
    for t in threads:
        t.join(60)
    assert not errors and not problems, (errors, problems)
    assert r.code == 0, r.err
    assert mailbox.search("UNSEEN") == []  # it did mark them while the listings ran
    for view in (View.ALL, View.UNSEEN, View.SEEN_STUCK, View.IGNORED):
        assert _rows(_svc(mailbox, path)[0], view) == _cold(mailbox, view), view
    assert {u: set(f.split()) for u, f in _db_rows(path).items()} == mailbox.flags()


# -- the clock ----------------------------------------------------------------------------------------


def test_the_clock_going_back_and_forth(mailbox: Mailbox, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows written by a clock 100 days ahead, read by the right one: used, not lost, not
    wrong; a clock 30 days ahead (past the 14-day limit) drops them and fetches again."""
    import time as real_time

    from triage_tui.services import cache as cache_mod
    from triage_tui.services import triage as triage_mod

    class Clock:
        shift = 0.0

        def time(self) -> float:
            return real_time.time() + self.shift

        def __getattr__(self, name: str) -> object:
            return getattr(real_time, name)

    clock = Clock()
    monkeypatch.setattr(cache_mod, "time", clock)
    monkeypatch.setattr(triage_mod, "time", clock)
    _seed(mailbox, 8)
    cold = _cold(mailbox)
    clock.shift = 100 * 86_400.0
    _warm_up(mailbox, path)
    clock.shift = 0.0
    problems: list[str] = []
    svc, spy = _svc(mailbox, path, problems=problems)
    assert _rows(svc) == cold and spy.uids == [] and not problems
    clock.shift = 30 * 86_400.0
    svc, spy = _svc(mailbox, path, problems=problems)
    assert _rows(svc) == cold and spy.uids and not problems
    clock.shift = -400 * 86_400.0  # before the file was created
    svc, spy = _svc(mailbox, path, problems=problems)
    assert _rows(svc) == cold and spy.uids == [] and not problems


@pytest.mark.parametrize("tamper", [
    "UPDATE rows SET flags = x'5c5365656e' WHERE uid = 2",  # a blob where text belongs
    "UPDATE rows SET day = 'soon' WHERE uid = 3",
    "UPDATE rows SET chunk = 'x' WHERE uid = 4",
    "UPDATE meta SET v = 'high' WHERE k = 'modseq'",
    "UPDATE meta SET v = 99e300 WHERE k = 'modseq'",
    "UPDATE chunks SET blob = 'text' WHERE id = (SELECT min(id) FROM chunks)",
], ids=["flags-blob", "day-text", "chunk-text", "modseq-text", "modseq-huge"] + ["chunk-blob-text"])
def test_a_tampered_row_is_fetched_again_never_a_traceback(mailbox: Mailbox, path: Path, tamper: str) -> None:
    _seed(mailbox, 6)
    _warm_up(mailbox, path)
    db = sqlite3.connect(path)
    db.execute(tamper)
    db.commit()
    db.close()
    problems: list[str] = []
    svc, _ = _svc(mailbox, path, problems=problems)
    assert _rows(svc) == _cold(mailbox)
    assert len(problems) <= 1
    svc, _ = _svc(mailbox, path, problems=problems)
    assert _rows(svc) == _cold(mailbox)
