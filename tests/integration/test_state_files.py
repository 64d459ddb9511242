"""The audit journal and the header cache's files when something else stands in their place.

Found by an adversary (2026-12-05): a journal that was a symbolic link had our records appended
to the file it pointed to; a FIFO in its place hung every command that reads it (``list --view
seen``, ``plan``, ``undo``), and ``/dev/zero`` grew memory without end; a FIFO in the cache
directory hung ``cache info`` beyond Ctrl-C and SIGTERM; a directory named like a cache file
stopped ``cache clear`` at the first entry with customer headers left on disk; a cache directory
that is a file made ``cache info`` an internal error; and a cache that gave up on a full disk
kept its WAL, so the next ``mark-seen`` could not write its journal.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, Mailbox, one_line_error
from tests.mailgen import backlog
from triage_tui.domain.settings import AnalysisConfig
from triage_tui.services.cache import HeaderCache

ADDRESS = "incoming+%{key}@incoming.gitlab.example.com"


def _env(mailbox: Mailbox) -> dict[str, str]:
    return {**mailbox.env(), "TRIAGE_ADDRESS": ADDRESS}


def _subprocess(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process: a hang is a timeout here, not a stuck test run."""
    return subprocess.run([sys.executable, "-m", "triage_tui", *args], env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_a_journal_that_is_a_symlink_is_refused_and_its_target_untouched(
        mailbox: Mailbox, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(3))
    state = Path(os.environ["TRIAGE_STATE_DIR"])
    state.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's file\n")
    (state / "audit.jsonl").symlink_to(victim)
    r = cli(["mark-seen", "--all", "--yes"], env=_env(mailbox))
    one_line_error(r)
    assert "symbolic link" in r.err and "nothing was sent" in r.err, r.err
    assert victim.read_text() == "someone else's file\n"
    assert mailbox.search("SEEN") == []
    r = cli(["undo", "--yes"], env=_env(mailbox))
    one_line_error(r)
    assert "symbolic link" in r.err


def test_a_fifo_in_place_of_the_journal_hangs_nothing(mailbox: Mailbox, tmp_path: Path) -> None:
    mailbox.seed(backlog(3))
    state = tmp_path / "fifo-state"
    state.mkdir()
    os.mkfifo(state / "audit.jsonl")
    env = {**_env(mailbox), "TRIAGE_STATE_DIR": str(state), "XDG_CACHE_HOME": str(tmp_path / "c")}
    listed = _subprocess(["list", "--view", "seen", "--json"], env)  # reads the journal for its verdicts
    assert listed.returncode == 0, listed.stderr
    for args in (["undo", "--yes"], ["mark-seen", "--all", "--yes"]):
        r = _subprocess(args, env)
        assert r.returncode != 0 and "not a regular file" in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert mailbox.search("SEEN") == []


def test_cache_info_and_clear_on_odd_entries(mailbox: Mailbox, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(3))
    env = _env(mailbox)
    for user in ("a", "b"):  # two real cache files
        r = cli(["--user", mailbox.user, "list", "--json"], env={**env, "TRIAGE_IMAP_HOST": "127.0.0.1",
                                                              "TRIAGE_IMAP_USER": mailbox.user,
                                                              "TRIAGE_IMAP_MAILBOX": "INBOX" if user == "a" else "inbox"})
        assert r.code == 0, r.err
    d = tmp_path / "cache" / "triage-tui"
    real = sorted(p for p in d.iterdir() if p.name.endswith(".sqlite3"))
    assert real
    os.mkfifo(d / "planted.sqlite3")
    (d / "adir.sqlite3").mkdir()
    info = _subprocess(["cache", "info"], {**env, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert info.returncode == 0, info.stderr
    assert "planted.sqlite3: unreadable" in info.stdout and "not a regular file" in info.stdout
    cleared = cli(["cache", "clear"], env=env)
    one_line_error(cleared)
    assert "adir.sqlite3" in cleared.err and "delete them by hand" in cleared.err
    assert sorted(p.name for p in d.iterdir()) == ["adir.sqlite3"], "every file went, the FIFO too"
    not_a_dir = tmp_path / "afile"
    not_a_dir.write_text("x")
    r = cli(["cache", "info"], env={**env, "XDG_CACHE_HOME": str(not_a_dir)})
    one_line_error(r)
    assert "Not a directory" in r.err


def test_a_cache_that_gives_up_on_a_full_disk_gives_the_space_back(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "box.sqlite3"
    cache = HeaderCache(path, AnalysisConfig(address=ADDRESS), on_problem=lambda _: None)
    assert cache.load(7, None, None) is not None  # makes the file (and its WAL)
    assert path.exists()
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13  # type: ignore[attr-defined]  # SQLITE_FULL, as SQLite raises it on ENOSPC
    cache._give_up(full)
    assert not path.exists() and not Path(str(path) + "-wal").exists()
    assert cache.problem is not None and "give the space back" in cache.problem
    busy = HeaderCache(tmp_path / "other.sqlite3", AnalysisConfig(address=ADDRESS), on_problem=lambda _: None)
    assert busy.load(7, None, None) is not None
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorcode = 5  # type: ignore[attr-defined]  # SQLITE_BUSY: the file is sound, it stays
    busy._give_up(locked)
    assert (tmp_path / "other.sqlite3").exists()
