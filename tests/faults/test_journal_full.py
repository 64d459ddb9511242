"""A full disk under the audit journal, for real: the CLI runs in a subprocess whose file-size
limit (``RLIMIT_FSIZE``, SIGXFSZ ignored, so the write fails with EFBIG exactly as a full disk
fails with ENOSPC) ends the journal part-way through a bulk ``mark-seen``.

What must hold, checked on the Dovecot server and in the journal's bytes:
- the operation stops before the next IMAP command and says, in one line with a non-zero exit,
  exactly what changed;
- exactly the messages the journal confirms (plus those it announced when the cut came after
  the command went out) are \\Seen: nothing after the failure was sent;
- the torn record is fenced by the next append, and ``undo`` restores exactly what the journal
  confirms, naming what it leaves alone.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Mailbox
from tests.mailgen import backlog
from triage_tui.domain import uidset
from triage_tui.services.journal import AuditJournal
from triage_tui.services.triage import LEFT_UNCONFIRMED

N = 200
CHUNK = 20  # --chunk 20 --pipeline 1: one command (and one intent record) per 20 UIDs


def run_cli(mb: Mailbox, *args: str, fsize: int | None = None) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = {**os.environ, **mb.env(), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "triage_tui", "--chunk", str(CHUNK), "--pipeline", "1", *args],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, preexec_fn=limit)


def unsee_all(mb: Mailbox) -> None:
    c = mb.client()
    try:
        c.select_folder("INBOX")
        c.remove_flags(c.search("ALL"), [b"\\Seen"], silent=True)
    finally:
        c.logout()


def layout(mb: Mailbox) -> list[tuple[int, int, dict[str, Any]]]:
    """Run the whole mark-seen once without a limit and return where each record sits in the
    journal: (offset, length, record). Then put the mailbox and the journal back."""
    r = run_cli(mb, "mark-seen", "--all", "--yes")
    assert r.returncode == 0, r.stderr
    path = AuditJournal().path
    out, pos = [], 0
    for line in path.read_bytes().splitlines(keepends=True):
        out.append((pos, len(line), json.loads(line)))
        pos += len(line)
    path.unlink()
    unsee_all(mb)
    assert mb.search("SEEN") == []
    return out


def cut_inside(records: list[tuple[int, int, dict[str, Any]]], phase: str, nth: int) -> int:
    """A file-size limit that ends the journal in the middle of the nth record of ``phase``."""
    hits = [(off, n) for off, n, rec in records if rec["phase"] == phase]
    off, n = hits[nth]
    return off + n // 2


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    return lines[0]


def journal_bytes() -> bytes:
    return AuditJournal().path.read_bytes()


@pytest.fixture
def mb(mailbox: Mailbox) -> Mailbox:
    mailbox.seed(backlog(N, now=1_700_000_000.0))
    return mailbox


def test_disk_full_at_an_intent_stops_before_its_command(mb: Mailbox, cli: Any) -> None:
    records = layout(mb)
    r = run_cli(mb, "mark-seen", "--all", "--yes", fsize=cut_inside(records, "intent", 3))
    line = one_error_line(r)
    assert line == ("triage-tui: error: stopped: the audit journal could not be written (File too large); "
                    "60 of 200 message(s) were marked \\Seen (UIDs 1:60), nothing else was sent"), line
    assert mb.search("SEEN") == list(range(1, 61)), "exactly the confirmed chunks went out"
    raw = journal_bytes()
    assert not raw.endswith(b"\n"), "the fourth intent is torn"
    j = AuditJournal()
    recs = list(j.records())
    assert j.skipped_lines == 1
    done = [u for rec in recs if rec["phase"] == "progress" for u in uidset.parse(rec["done"])]
    assert done == list(range(1, 61)) and all(isinstance(rec.get("modseq"), int) for rec in recs
                                              if rec["phase"] == "progress")
    assert [rec["phase"] for rec in recs] == ["begin"] + ["intent", "progress"] * 3

    u = cli(["undo", "--yes", "--json"], env=mb.env())
    assert u.code == 0, u.err
    out = json.loads(u.out)
    assert out["changed"] == 60 and out["left_alone"] == []
    assert mb.search("SEEN") == []
    fences = [rec for rec in AuditJournal().records() if rec["phase"] == "fence"]
    assert len(fences) == 1 and fences[0]["torn_bytes"] > 0
    assert cli(["undo", "--yes"], env=mb.env()).code == 4  # nothing left to undo


def test_disk_full_at_a_done_record_sends_nothing_more(mb: Mailbox, cli: Any) -> None:
    """The fourth command went out and was answered, but its done record could not be written:
    it counts as changed (the message says so), nothing more is sent; undo restores what the
    journal confirms and names the announced-but-unconfirmed chunk instead of guessing."""
    records = layout(mb)
    r = run_cli(mb, "mark-seen", "--all", "--yes", fsize=cut_inside(records, "progress", 3))
    line = one_error_line(r)
    assert line.endswith("80 of 200 message(s) were marked \\Seen (UIDs 1:80), nothing else was sent"), line
    assert mb.search("SEEN") == list(range(1, 81))
    u = cli(["undo", "--yes"], env=mb.env())
    assert u.code == 0, u.err
    assert "undo: 60 of 60 restored" in u.out
    assert f"left 20 alone: {LEFT_UNCONFIRMED} (UIDs 61:80)" in u.out
    assert mb.search("SEEN") == list(range(61, 81))


def test_disk_full_at_begin_sends_nothing(mb: Mailbox) -> None:
    records = layout(mb)
    r = run_cli(mb, "mark-seen", "--all", "--yes", fsize=cut_inside(records, "begin", 0))
    line = one_error_line(r)
    assert line.endswith("(File too large); nothing was sent, no message was changed"), line
    assert mb.search("SEEN") == []


def test_disk_full_at_the_end_record_says_all_changed_and_undo_still_works(mb: Mailbox, cli: Any) -> None:
    records = layout(mb)
    r = run_cli(mb, "mark-seen", "--all", "--yes", fsize=cut_inside(records, "end", 0))
    line = one_error_line(r)
    assert "after the change: all 200 message(s) were marked \\Seen (UIDs 1:200)" in line, line
    assert mb.search("SEEN") == list(range(1, N + 1))
    u = cli(["undo", "--yes"], env=mb.env())
    assert u.code == 0 and "undo: 200 of 200 restored" in u.out, u.out + u.err
    assert mb.search("SEEN") == []


def test_a_full_journal_refuses_undo_before_any_command(mb: Mailbox, cli: Any) -> None:
    """undo is journaled ahead too: with no room for its begin record it sends nothing."""
    assert cli(["mark-seen", "--all", "--yes"], env=mb.env()).code == 0
    size = AuditJournal().path.stat().st_size
    r = run_cli(mb, "undo", "--yes", fsize=size + 10)
    line = one_error_line(r)
    assert line.endswith("nothing was sent, no message was changed"), line
    assert mb.search("SEEN") == list(range(1, N + 1))


def test_the_journal_directory_unwritable_sends_nothing(mb: Mailbox, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("TRIAGE_STATE_DIR", str(blocker / "state"))
    r = run_cli(mb, "mark-seen", "--all", "--yes")
    line = one_error_line(r)
    assert "the audit journal could not be written (Not a directory); nothing was sent" in line, line
    assert mb.search("SEEN") == []


def test_disk_full_mid_expunge_stops_before_the_next_uid_expunge(mailbox: Mailbox) -> None:
    mailbox.seed(backlog(100, now=1_700_000_000.0, deleted_every=1))
    r = run_cli(mailbox, "expunge", "--yes")
    assert r.returncode == 0, r.stderr
    path = AuditJournal().path
    records, pos = [], 0
    for raw in path.read_bytes().splitlines(keepends=True):
        records.append((pos, len(raw), json.loads(raw)))
        pos += len(raw)
    path.unlink()
    mailbox.seed(backlog(100, now=1_700_000_000.0, deleted_every=1))  # UIDs 101..200
    # seed() writes into a maildir Dovecot has already indexed, in the same second and under the
    # file names it just expunged: make Dovecot read the directory again now (a real delivery goes
    # through Dovecot and updates the index itself), so the expunge sees all 100 from its first EXAMINE
    r = mailbox.server.doveadm("force-resync", "-u", mailbox.user, "INBOX")
    assert r.returncode == 0, r.stderr
    assert mailbox.search("DELETED") == list(range(101, 201))
    r = run_cli(mailbox, "expunge", "--yes", fsize=cut_inside(records, "intent", 2))
    line = one_error_line(r)
    assert line.endswith("40 of 100 message(s) were expunged (UIDs 101:140), nothing else was sent"), line
    assert mailbox.search("ALL") == list(range(141, 201))
