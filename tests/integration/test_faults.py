"""Connection loss mid-operation (a proxy cuts the stream): the engine reconnects, resumes from
what it knows was done, and the server ends in exactly the state asked for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.mailgen import backlog
from tests.proxy import LatencyProxy
from triage_tui.domain import uidset
from triage_tui.domain.model import TRIAGE_KEYWORD, View
from triage_tui.services.imap import Limits
from triage_tui.services.journal import AuditJournal
from triage_tui.services.triage import RetryPolicy, TriageService

FAST = RetryPolicy(attempts=4, base=0.05, cap=0.2)


def _svc(mailbox, proxy, **kw):  # type: ignore[no-untyped-def]
    events: list[str] = []
    s = TriageService(mailbox.settings(port=proxy.port, security="none"), read_only=False, journal=AuditJournal(),
                      retry=FAST, on_reconnect=lambda msg, n: events.append(msg), **kw)
    s.connect()
    return s, events


def test_listing_survives_a_cut(mailbox):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(300, now=time.time()))
    with LatencyProxy(mailbox.server.imap_port, cut_pattern=b" UID FETCH ", cut_after=3) as proxy:
        s, events = _svc(mailbox, proxy, limits=Limits(max_count=20, window=2))
        uids = [m.uid for m in s.list(View.UNSEEN)]
    assert proxy.cuts == 1 and events, "the proxy must have cut the stream once"
    assert sorted(uids) == list(range(1, 301)) and len(uids) == len(set(uids))


def test_bulk_mark_seen_survives_a_cut(mailbox):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(400, now=time.time(), seen_every=7))
    before = mailbox.flags()
    with LatencyProxy(mailbox.server.imap_port, cut_pattern=b" UID STORE ", cut_after=6) as proxy:
        s, events = _svc(mailbox, proxy, limits=Limits(max_count=15, window=3))
        uidvalidity, unseen = s.search(View.UNSEEN)
        targets = [u for u in unseen if u % 2 == 0]
        result = s.execute(s.plan_flags("mark-seen", uidvalidity, targets))
        after = mailbox.flags()
        # undo still reverts exactly the change, in-flight chunk included
        plan, _ = s.plan_undo()
        s.execute(plan)
    assert proxy.cuts == 1 and events
    assert result.ok and result.changed == sorted(targets)
    for uid, flags in after.items():
        assert flags == (before[uid] | {"\\Seen", TRIAGE_KEYWORD} if uid in targets else before[uid]), uid
    recs = [r for r in AuditJournal().records() if r.get("op") == result.op_id]
    assert any(r.get("event") == "reconnect" for r in recs)
    assert recs[-1]["phase"] == "end" and recs[-1]["result"] == "ok"
    assert mailbox.flags() == before


def test_expunge_survives_a_cut(mailbox):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(200, now=time.time(), deleted_every=2))
    deleted = mailbox.search("DELETED")
    chosen = deleted[: len(deleted) // 2 + 3]
    with LatencyProxy(mailbox.server.imap_port, cut_pattern=b" UID EXPUNGE ", cut_after=2) as proxy:
        s, events = _svc(mailbox, proxy, limits=Limits(max_count=8, window=2))
        uidvalidity, _ = s.search(View.DELETED)
        result = s.execute(s.plan_expunge(uidvalidity, chosen))
    assert proxy.cuts == 1 and events
    assert result.ok and result.changed == chosen
    assert set(mailbox.search("ALL")) == set(range(1, 201)) - set(chosen)


def test_server_line_limit_halves_commands(cli):  # type: ignore[no-untyped-def]
    """Dovecot with imap_max_line_length=1024 answers "BAD Too long argument" to our 8 KB commands:
    SEARCH, STORE and UID EXPUNGE pieces are halved and the operation completes."""
    from tests.conftest import Mailbox
    from tests.servers import start_dovecot

    server = start_dovecot(tls=False, max_line_length=1024)
    try:
        mb = Mailbox(server, server.new_user())
        mb.seed(backlog(3000, now=time.time()))
        env = {**mb.env(), "TRIAGE_IMAP_PORT": str(server.imap_port), "TRIAGE_IMAP_SECURITY": "none"}
        odd = ",".join(str(u) for u in range(1, 3001, 2))
        r = cli(["mark-seen", "--uids", odd, "--yes", "--json"], env=env)
        assert r.code == 0, r.err
        assert mb.search("SEEN") == list(range(1, 3001, 2))
        c = mb.client()
        c.select_folder("INBOX")
        for text, _ in uidset.split(range(1, 3001, 3), max_bytes=500):
            c.add_flags(text, [b"\\Deleted"], silent=True)
        c.logout()
        r = cli(["expunge", "--yes"], env=env)
        assert r.code == 0, r.err
        assert mb.search("ALL") == [u for u in range(1, 3001) if (u - 1) % 3]
        r = cli(["list", "--json"], env=env)
        assert r.code == 0 and len(r.lines) == len(mb.search("UNSEEN"))
    finally:
        server.stop()


def test_throttling_answers_are_obeyed(mailbox):  # type: ignore[no-untyped-def]
    """Office 365 answers "NO ... Suggested Backoff Time: N milliseconds" and does not run the command:
    the engine waits, retries the same chunk and finishes with exactly the asked result."""
    mailbox.seed(backlog(120, now=time.time()))
    with LatencyProxy(mailbox.server.imap_port, throttle_pattern=b" UID STORE ", throttle_times=3) as proxy:
        s, _ = _svc(mailbox, proxy, limits=Limits(max_count=20, window=4))
        uidvalidity, unseen = s.search(View.UNSEEN)
        result = s.execute(s.plan_flags("mark-seen", uidvalidity, unseen))
    assert proxy.throttled == 3
    assert result.ok and result.changed == unseen
    assert mailbox.search("UNSEEN") == []


def test_cancel_interrupts_a_bulk_change_cleanly(mailbox):  # type: ignore[no-untyped-def]
    """cancel() (the UI quitting, SIGTERM): nothing more is sent, what was in flight completes, the
    journal ends the operation as 'interrupted' with exactly what changed."""
    mailbox.seed(backlog(600, now=time.time()))
    with LatencyProxy(mailbox.server.imap_port, rtt=0.02) as proxy:
        s, _ = _svc(mailbox, proxy, limits=Limits(max_count=10, window=1))
        uidvalidity, unseen = s.search(View.UNSEEN)
        plan = s.plan_flags("mark-seen", uidvalidity, unseen)

        def progress(done: int, total: int) -> None:
            if done >= 50:
                s.cancel()

        result = s.execute(plan, progress=progress)
    assert not result.ok and result.interrupted
    assert sorted(result.changed + result.interrupted) == unseen
    assert mailbox.search("SEEN") == result.changed
    end = [r for r in AuditJournal().records() if r.get("op") == result.op_id][-1]
    assert end["phase"] == "end" and end["result"] == "interrupted"
    assert uidset.parse(end["changed"]) == result.changed


def test_sigterm_during_cli_mark_seen(mailbox):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(800, now=time.time()))
    with LatencyProxy(mailbox.server.imap_port, rtt=0.02) as proxy:
        env = {**os.environ, **mailbox.env(), "TRIAGE_IMAP_PORT": str(proxy.port), "TRIAGE_IMAP_SECURITY": "none"}
        proc = subprocess.Popen([sys.executable, "-m", "triage_tui", "--chunk", "10", "--pipeline", "1",
                                 "mark-seen", "--all", "--yes", "--json"], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        journal = AuditJournal()
        deadline = time.time() + 30
        while time.time() < deadline:
            if sum(1 for r in journal.records() if r.get("phase") == "progress") >= 3:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, (out, err)
    assert "stopping after the commands in flight" in err and "Traceback" not in err
    end = [r for r in journal.records() if r.get("phase") == "end"][-1]
    assert end["result"] == "interrupted"
    changed = uidset.parse(end["changed"])
    assert mailbox.search("SEEN") == changed and 0 < len(changed) < 800


def test_sigterm_during_cli_list_stops_at_once(mailbox):  # type: ignore[no-untyped-def]
    """A listing has nothing to finish: SIGTERM stops it at once with 143 and one line (it used
    to run to its end and exit 0), whether it is reading the socket or building rows in worker
    processes; no worker is left behind, every session is logged out, nothing is journaled and
    nothing changed on the server."""
    mailbox.seed(backlog(4000, now=time.time()))
    with LatencyProxy(mailbox.server.imap_port, rtt=0.05) as proxy:
        env = {**os.environ, **mailbox.env(), "TRIAGE_IMAP_PORT": str(proxy.port), "TRIAGE_IMAP_SECURITY": "none",
               "TRIAGE_WORKERS": "2"}
        proc = subprocess.Popen([sys.executable, "-m", "triage_tui", "--chunk", "100", "list", "--json"], env=env,
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the listing is under way
        assert first.startswith(b'{"uid": ')
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    lines = err.decode().splitlines()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert lines == ["triage-tui: signal 15: stopped (no change was in progress)"], err
    assert took < 3, took
    assert len(out.splitlines()) + 1 < 4000  # it did not run to its end
    time.sleep(0.3)
    with pytest.raises(ProcessLookupError):  # no worker process of its session outlived it
        os.killpg(proc.pid, 0)
    assert mailbox.search("SEEN") == []
    assert not [r for r in AuditJournal().records() if r.get("phase") == "begin"]


def test_sigterm_at_the_cli_confirmation_changes_nothing(mailbox):  # type: ignore[no-untyped-def]
    """SIGTERM while mark-seen waits for its y/N (after listing, before any change): it ends at
    once with 143, nothing journaled, nothing changed."""
    mailbox.seed(backlog(30, now=time.time()))
    env = {**os.environ, **mailbox.env()}
    master, slave = os.openpty()  # an interactive stdin: the question is asked
    proc = subprocess.Popen([sys.executable, "-m", "triage_tui", "mark-seen", "--all"], env=env, cwd=ROOT,
                            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(slave)
    try:
        assert proc.stdout is not None
        asked = b""
        deadline = time.time() + 20
        while time.time() < deadline and b"[y/N]" not in asked:
            asked += proc.stdout.read1(4096)  # type: ignore[attr-defined]
        assert b"[y/N]" in asked, asked
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    finally:
        os.close(master)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert b"no change was in progress" in err and b"Traceback" not in err
    assert mailbox.search("SEEN") == []
    assert not [r for r in AuditJournal().records() if r.get("phase") == "begin"]


def test_a_typed_answer_at_the_cli_confirmation_acts(mailbox):  # type: ignore[no-untyped-def]
    """The interruptible prompt still reads what the operator types on a terminal: "y" acts;
    a "plan --apply"-style second answer typed ahead stays for the next question."""
    mailbox.seed(backlog(12, now=time.time()))
    env = {**os.environ, **mailbox.env()}
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "triage_tui", "mark-seen", "--all"], env=env, cwd=ROOT,
                            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(slave)
    try:
        os.write(master, b"y\nnot for this question\n")  # typed ahead, before the question
        out, err = proc.communicate(timeout=30)
    finally:
        os.close(master)
    assert proc.returncode == 0, err
    assert b"[y/N]" in out and b"Traceback" not in err
    assert len(mailbox.search("SEEN")) == 12
