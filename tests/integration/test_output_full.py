"""Standard output on a full disk (/dev/full), against the real Dovecot: one line and exit 1, not
"internal error: OSError"; a change made before the output failed is journaled whole, and undo
reverts exactly it. A closed pipe (| head) still ends quietly with 0."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import Mailbox
from tests.faults.test_process import journal_is_whole
from tests.mailgen import ADDRESS, backlog


def _run(mb: Mailbox, state: Path, args: str, redirect: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **mb.env(), "TRIAGE_STATE_DIR": str(state), "TRIAGE_ADDRESS": ADDRESS}
    cli = f"{sys.executable} -m triage_tui {args}"
    return subprocess.run(f"{cli} {redirect}; echo rc=${{PIPESTATUS[0]}} >&2", shell=True, executable="/bin/bash",
                          env=env, capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])


def test_a_full_disk_on_stdout_is_one_line_and_nothing_is_lost(mailbox: Mailbox, tmp_path: Path) -> None:
    now = time.time()
    mailbox.seed(backlog(300, now=now, step=600))  # 300 messages, one every 10 minutes: half older than 1d
    state = tmp_path / "state"
    for args in ("list --json", "list", "peek 1", "decode incoming+a-1-b-issue@x"):
        r = _run(mailbox, state, args, "> /dev/full")
        assert r.stderr.splitlines() == ["triage-tui: error: cannot write the output: No space left on device "
                                         "(errno 28)", "rc=1"], (args, r.stderr)
    old = mailbox.search(f"BEFORE {time.strftime('%d-%b-%Y', time.gmtime(now - 86400))}")
    r = _run(mailbox, state, "mark-seen --older-than 1d --yes", "> /dev/full")
    assert r.stderr.endswith("rc=1\n") and "cannot write the output" in r.stderr and "internal error" not in r.stderr
    seen = mailbox.search("SEEN")
    assert seen and set(old) <= set(seen)  # the change was made; the output could not say so
    recs = journal_is_whole(state / "audit.jsonl")
    assert any(r["phase"] == "end" for r in recs)
    r = _run(mailbox, state, "undo --yes", "")
    assert r.stderr.endswith("rc=0\n"), r.stderr
    assert mailbox.search("SEEN") == []
    r = _run(mailbox, state, "list --json", "| head -1")
    assert r.stderr == "rc=0\n" and r.stdout.count("\n") == 1


def test_stderr_on_a_full_disk_keeps_the_exit_code(tmp_path: Path) -> None:
    """The error line cannot be written either: the exit code still says what failed (3: the
    connection), not 1 from a failed write in the error handler."""
    env = {**os.environ, "TRIAGE_IMAP_PASSWORD": "x", "TRIAGE_STATE_DIR": str(tmp_path)}
    r = subprocess.run(f"{sys.executable} -m triage_tui --host 127.0.0.1 --port 1 --user u --security none "
                       "--allow-plaintext list 2>/dev/full", shell=True, env=env, capture_output=True, text=True,
                       timeout=60, cwd=Path(__file__).parents[2])
    assert r.returncode == 3, (r.returncode, r.stdout)
