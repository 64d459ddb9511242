"""Process hygiene: the real ``triage-tui`` in a pseudo-terminal against Dovecot, ended by
SIGTERM (mid-action), SIGHUP (an SSH drop) and by its terminal vanishing (the pty master
closed). Each time: it exits within seconds, every IMAP session it opened is logged out (as
Dovecot's own log says), no process of its session is left behind, and the journal is whole.

Also: two operators acting on the same mailbox at once."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import Mailbox
from tests.faults.conftest import JournalTail, wait_until
from tests.mailgen import ADDRESS, backlog
from triage_tui.domain import uidset
from triage_tui.domain.model import View
from triage_tui.services.journal import AuditJournal
from triage_tui.services.triage import TriageService

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / ".venv" / "bin" / "triage-tui"


class PtyApp:
    """``triage-tui`` on the slave side of a pty (its controlling terminal, 120x30), output
    drained from the master in a thread (a full pty buffer would block the app)."""

    def __init__(self, mb: Mailbox, state: Path, *args: str) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_") and k != "NO_COLOR"}
        env.update(mb.env(), TRIAGE_STATE_DIR=str(state), TRIAGE_ADDRESS=ADDRESS, TERM="xterm-256color")
        exe = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "triage_tui"]
        self.proc = subprocess.Popen(
            [*exe, *args], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True,
            start_new_session=True,  # its own session, with the pty as controlling terminal:
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))  # a hangup reaches it
        os.close(slave)
        self.master: int | None = master
        self.out = bytearray()
        self._closing = threading.Event()
        self._reader = threading.Thread(target=self._drain, args=(master,), daemon=True)
        self._reader.start()

    def _drain(self, fd: int) -> None:
        # Never block in read(): a close() from another thread does not release a file that a
        # read() is waiting on, so the terminal would not really vanish (no hangup, no SIGHUP).
        while not self._closing.is_set():
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:
                return
            if not data:
                return
            self.out += data

    def text(self) -> str:
        """What was drawn, escapes removed (enough to find a word on the screen)."""
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b\][^\x07]*\x07", "",
                      bytes(self.out).decode("utf-8", "replace"))

    def send(self, keys: str) -> None:
        assert self.master is not None
        os.write(self.master, keys.encode())

    def close_terminal(self) -> None:
        """The terminal goes away (an SSH session's pty is torn down)."""
        fd, self.master = self.master, None
        if fd is not None:
            self._closing.set()
            self._reader.join(2)
            os.close(fd)

    def wait(self, timeout: float) -> tuple[int, float]:
        t0 = time.monotonic()
        code = self.proc.wait(timeout)
        return code, time.monotonic() - t0

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self.close_terminal()


def session_members(sid: int) -> list[int]:
    """PIDs whose session id is ``sid`` (the app's session: itself and anything it started)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[3]) == sid:  # state ppid pgrp session ...
            out.append(int(d.name))
    return out


def sessions_of(mb: Mailbox) -> tuple[int, int]:
    """(logins, logged-out disconnects) of ``mb.user`` in Dovecot's log."""
    log = mb.server.log()
    logins = log.count(f"Login: user=<{mb.user}>")
    logged_out = sum(1 for line in log.splitlines()
                     if f"imap({mb.user})" in line and "Disconnected: Logged out" in line)
    return logins, logged_out


def journal_is_whole(path: Path) -> list[dict[str, object]]:
    lines = path.read_text().splitlines() if path.exists() else []
    recs = [json.loads(line) for line in lines]  # every line parses: nothing torn
    begins = {r["op"] for r in recs if r["phase"] == "begin"}
    ends = {r["op"] for r in recs if r["phase"] == "end"}
    assert begins == ends, f"operations without an end record: {begins - ends}"
    return recs


def _start(mb: Mailbox, state: Path, *args: str) -> PtyApp:
    app = PtyApp(mb, state, *args)
    try:
        wait_until(lambda: "Message 3" in app.text(), timeout=30, what="the list on the screen")
        wait_until(lambda: sessions_of(mb)[0] >= 2, timeout=15, what="reader and IDLE sessions")
    except BaseException:
        app.kill()
        print(app.text()[-3000:])
        raise
    return app


def _ended_cleanly(app: PtyApp, mb: Mailbox, expected_code: int, limit: float = 5.0) -> float:
    try:
        code, took = app.wait(limit)
    except subprocess.TimeoutExpired:
        app.kill()
        pytest.fail(f"the app did not exit within {limit} s")
    assert code == expected_code, (code, app.text()[-2000:])
    assert "Traceback" not in app.text(), app.text()[-3000:]
    wait_until(lambda: sessions_of(mb)[0] == sessions_of(mb)[1], timeout=5,
               what=f"every session logged out (logins, logouts) = {sessions_of(mb)}")
    time.sleep(0.2)
    assert session_members(app.proc.pid) == [], "a process of the app's session outlived it"
    app.close_terminal()
    return took


def test_sigterm_mid_mark_seen(mailbox: Mailbox, tmp_path: Path) -> None:
    """SIGTERM while a bulk mark-seen runs (small chunks, so it is mid-way): the app exits within
    seconds, logs out, and the journal is whole: the operation has its end record, and the
    chunks it names are exactly what the server shows as changed. The signal cancels the bulk
    change: nothing more is sent, what is in flight completes, and the journal says
    "interrupted"."""
    mailbox.seed(backlog(3000, now=time.time()))
    state = tmp_path / "pty-state"
    app = _start(mailbox, state, "--chunk", "10", "--pipeline", "1")
    app.send("a")
    time.sleep(0.3)
    app.send("S")
    wait_until(lambda: "Mark 3,000" in app.text(), timeout=10, what="the confirmation")
    app.send("y")
    tail = JournalTail(state / "audit.jsonl")
    wait_until(lambda: tail.progress_done() >= 5, timeout=20, what="the first chunks")
    app.proc.send_signal(signal.SIGTERM)
    took = _ended_cleanly(app, mailbox, 128 + signal.SIGTERM)
    recs = journal_is_whole(state / "audit.jsonl")
    done = sorted(u for r in recs if r["phase"] == "progress" and "done" in r for u in uidset.parse(str(r["done"])))
    end = next(r for r in recs if r["phase"] == "end")
    seen = mailbox.search("SEEN")
    assert seen == done == uidset.parse(str(end.get("changed", ""))), (len(seen), len(done), end)
    # the signal stops the bulk change after the commands in flight: "interrupted", with exactly
    # what changed (or "ok" if it had just finished)
    assert len(seen) >= 50 and end["result"] in ("interrupted", "ok"), end
    assert took < 5


def test_sighup_ends_the_app(mailbox: Mailbox, tmp_path: Path) -> None:
    mailbox.seed(backlog(50, now=time.time()))
    app = _start(mailbox, tmp_path / "pty-state")
    app.proc.send_signal(signal.SIGHUP)
    assert _ended_cleanly(app, mailbox, 128 + signal.SIGHUP) < 5
    journal_is_whole(tmp_path / "pty-state" / "audit.jsonl")


def test_vanished_terminal_ends_the_app(mailbox: Mailbox, tmp_path: Path) -> None:
    mailbox.seed(backlog(50, now=time.time()))
    app = _start(mailbox, tmp_path / "pty-state")
    pid = app.proc.pid
    app.close_terminal()  # the kernel hangs up the session: SIGHUP, then EIO on every write
    try:
        code, took = app.wait(20)  # generous: on a loaded 2-core machine (CI beside other work) the
    except subprocess.TimeoutExpired:  # IMAP logouts and Textual's shutdown took over 8 s once
        app.kill()
        pytest.fail("the app kept running after its terminal vanished")
    assert code in (128 + signal.SIGHUP, -signal.SIGHUP, 129), code
    wait_until(lambda: sessions_of(mailbox)[0] == sessions_of(mailbox)[1], timeout=5,
               what=f"every session logged out {sessions_of(mailbox)}")
    assert session_members(pid) == []
    assert took < 15


# -- two operators ---------------------------------------------------------------------------------


def test_two_operators_marking_overlapping_sets_at_once(mailbox: Mailbox) -> None:
    """Operator A marks UIDs 1-1200 seen while operator B marks 801-2000, both from plans made
    before either acted. Final state: exactly 1-2000 \\Seen. Whoever comes second finds the
    overlap already done: its execution narrows on the server (SEARCH UNSEEN) and reports those
    UIDs as ``vanished_or_done`` (the TUI says "N no longer needed"), it does not send them again
    and its journal names only what *it* changed; if both are inside the overlap at the same
    moment, CONDSTORE UNCHANGEDSINCE makes the later STORE skip what the other just changed
    (``skipped_concurrent``). Either way the two journals' ``changed`` sets are disjoint and
    add up to the union."""
    mailbox.seed(backlog(2400, now=time.time()))
    a_set, b_set = list(range(1, 1201)), list(range(801, 2001))
    svcs = [TriageService(mailbox.settings(), read_only=False, journal=AuditJournal()) for _ in range(2)]
    from triage_tui.services.imap import Limits

    for s in svcs:
        s.limits = Limits(max_count=20, window=2)  # slow enough that the two really interleave
    plans = [svcs[0].plan_flags("mark-seen", svcs[0].connect().uidvalidity, a_set),
             svcs[1].plan_flags("mark-seen", svcs[1].connect().uidvalidity, b_set)]
    assert [p.count for p in plans] == [1200, 1200], "both plans see the overlap as still to do"
    results: list[object] = [None, None]
    barrier = threading.Barrier(2)

    def act(i: int) -> None:
        barrier.wait()
        results[i] = svcs[i].execute(plans[i])

    threads = [threading.Thread(target=act, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ra, rb = results
    assert ra is not None and rb is not None
    assert mailbox.search("SEEN") == list(range(1, 2001))
    assert ra.ok and rb.ok  # type: ignore[attr-defined]
    ca, cb = set(ra.changed), set(rb.changed)  # type: ignore[attr-defined]
    assert not ca & cb, "a UID was changed by both operators"
    assert ca | cb == set(range(1, 2001))
    assert ca <= set(a_set) and cb <= set(b_set)
    overlap = set(a_set) & set(b_set)
    second_saw = (len(ra.skipped_concurrent) + ra.vanished_or_done + len(rb.skipped_concurrent)  # type: ignore[attr-defined]
                  + rb.vanished_or_done)  # type: ignore[attr-defined]
    assert second_saw == len(overlap), (ra.to_json(), rb.to_json())  # type: ignore[attr-defined]
    ends = [r for r in AuditJournal().records() if r.get("phase") == "end" and r.get("action") == "mark-seen"]
    assert sorted(len(uidset.parse(str(r["changed"]))) for r in ends) == sorted([len(ca), len(cb)])
    # a third look (a re-plan) finds nothing left to do
    again = svcs[0].plan_flags("mark-seen", svcs[0].connect().uidvalidity, a_set + b_set)
    assert again.count == 0 and again.skipped == 2000
    for s in svcs:
        s.close()
    # the view each operator re-lists afterwards is the same: the 400 UIDs outside both sets
    assert svcs[0].search(View.UNSEEN)[1] == list(range(2001, 2401))
    svcs[0].close()


def test_second_operator_after_the_first_sees_the_overlap_as_done(mailbox: Mailbox) -> None:
    """The usual case: B plans after A's change landed. B's plan already leaves the overlap out
    (``skipped``: the confirmation says "400 of the 1,200 selected need no change"), B's run
    changes only the rest, and B's journal names only that."""
    mailbox.seed(backlog(2400, now=time.time()))
    a, b = (TriageService(mailbox.settings(), read_only=False, journal=AuditJournal()) for _ in range(2))
    uv = a.connect().uidvalidity
    ra = a.execute(a.plan_flags("mark-seen", uv, range(1, 1201)))
    plan_b = b.plan_flags("mark-seen", b.connect().uidvalidity, range(801, 2001))
    assert (plan_b.requested, plan_b.count, plan_b.skipped) == (1200, 800, 400)
    rb = b.execute(plan_b)
    assert ra.changed == list(range(1, 1201)) and rb.changed == list(range(1201, 2001))
    assert rb.vanished_or_done == 0 and rb.skipped_concurrent == []
    assert mailbox.search("UNSEEN") == list(range(2001, 2401))
    a.close()
    b.close()
