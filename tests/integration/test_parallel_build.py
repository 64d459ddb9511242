"""Rows built in worker processes are exactly the rows built in process, in the same order,
against the real Dovecot: realistic mail in many scripts, the nasty rows (absurd dates, broken
bytes, controls, duplicates), the seen, deleted and held-back (key only in Received) ones; and a
worker that dies, answers garbage or cannot start costs speed, never a row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Mailbox
from tests.integration.test_cache import CFG, NASTY, full_disk
from tests.mailgen import backlog, message
from tests.realistic_headers import blocks
from triage_tui.domain.model import View
from triage_tui.services import parallel
from triage_tui.services.cache import HeaderCache
from triage_tui.services.imap import Limits
from triage_tui.services.journal import AuditJournal
from triage_tui.services.triage import TriageService

NOW = datetime.now(UTC)


@pytest.fixture
def seeded(mailbox: Mailbox) -> Mailbox:
    now = time.time()
    rows = backlog(60, now=now, seen_every=4, deleted_every=7)
    rows += [(raw, now - 3 * 86_400 + i, "") for i, raw in enumerate(NASTY)]
    rows += [(head + b"body\r\n", t.timestamp(), "") for head, t, _size in blocks(240, seed=29)]
    # keys GitLab finds only in Received: the listing's second pass
    rows += [(message(key=None, to="list@lists.example.org",
                      extra={"Received": f"from a by b for <incoming+grp-prj-{i}-issue@incoming.gitlab.example.com>; "
                                         "Mon, 1 Jan 2024 00:00:00 +0000"}), now - i, "") for i in range(30)]
    mailbox.seed(rows)
    return mailbox


def _list(mb: Mailbox, workers: int, view: View = View.ALL,
          cache: HeaderCache | None = None) -> tuple[list[int], list[dict[str, Any]], list[int]]:
    """(UIDs in the order listed, rows, batch sizes)."""
    svc = TriageService(mb.settings(), read_only=True, journal=AuditJournal(), analysis=CFG,
                        limits=Limits(max_count=17, window=1, workers=workers), cache=cache)
    try:
        batches = list(svc.iter_list(view, now=NOW))
    finally:
        svc.close()
    flat = [m for b in batches for m in b]
    return [m.uid for m in flat], [m.to_json(NOW) for m in flat], [len(b) for b in batches]


@pytest.fixture
def always(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "MIN_MESSAGES", 1)


@pytest.fixture
def collected(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """For each batch the pool was asked for, whether a worker built it."""
    got_from_worker: list[bool] = []
    orig = parallel.BuildPool.collect

    def spy(self: parallel.BuildPool, w: Any) -> Any:
        got = orig(self, w)
        got_from_worker.append(got is not None)
        return got

    monkeypatch.setattr(parallel.BuildPool, "collect", spy)
    return got_from_worker


def test_workers_build_exactly_what_the_process_builds(seeded: Mailbox, always: None,
                                                       collected: list[bool]) -> None:
    here = _list(seeded, 0)
    assert not collected
    there = _list(seeded, 2)
    assert collected and all(collected), "every batch came from a worker"
    assert len(here[0]) > 300
    assert there == here  # same UIDs in the same order, same rows, same batches
    for view in (View.UNSEEN, View.DELETED):
        assert _list(seeded, 3, view) == _list(seeded, 0, view)


def test_the_workers_run_our_code_whatever_the_working_directory_holds(
        seeded: Mailbox, always: None, collected: list[bool], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m`` puts the working directory first on sys.path: an operator who lists from a
    directory holding a triage_tui package (another checkout, something planted in /tmp) had
    the workers run that code. They run this package's, and build every batch."""
    decoy = tmp_path / "decoy"
    marker = tmp_path / "ran"
    (decoy / "triage_tui" / "services").mkdir(parents=True)
    (decoy / "triage_tui" / "__init__.py").write_text("")
    (decoy / "triage_tui" / "services" / "__init__.py").write_text("")
    (decoy / "triage_tui" / "services" / "buildworker.py").write_text(
        f"open({str(marker)!r}, 'w').write('planted code ran')\n")
    expected = _list(seeded, 0)
    monkeypatch.chdir(decoy)
    assert _list(seeded, 2) == expected
    assert not marker.exists()
    assert collected and all(collected), "every batch came from a worker"


def test_a_worker_that_dies_costs_no_row(seeded: Mailbox, always: None, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _list(seeded, 0)
    orig = parallel.BuildPool.collect
    calls = []

    def kill_after_first(self: parallel.BuildPool, w: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            for worker in self.workers:
                worker.proc.kill()
                worker.proc.wait()
        return orig(self, w)

    monkeypatch.setattr(parallel.BuildPool, "collect", kill_after_first)
    assert _list(seeded, 2) == expected
    assert len(calls) >= 2


def test_a_worker_answering_garbage_costs_no_row(seeded: Mailbox, always: None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _list(seeded, 0)
    real_popen = subprocess.Popen

    def liar(cmd: list[str], **kw: Any) -> Any:  # a "worker" that answers one absurd frame, then junk
        script = ("import sys; o=sys.stdout.buffer; o.write((5).to_bytes(8,'little')+b'\\xff\\x00junk'); "
                  "o.write(b'x'*100); o.flush(); sys.stdin.buffer.read()")
        return real_popen([sys.executable, "-c", script], **kw)

    monkeypatch.setattr(parallel.subprocess, "Popen", liar)
    assert _list(seeded, 2) == expected


def test_a_worker_that_cannot_start_costs_no_row(seeded: Mailbox, always: None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _list(seeded, 0)

    def refuse(*a: Any, **kw: Any) -> Any:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(parallel.subprocess, "Popen", refuse)
    assert _list(seeded, 2) == expected


def test_workers_end_with_the_listing(seeded: Mailbox, always: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Also when the caller stops reading early (``--limit``): no worker is left behind."""
    started: list[Any] = []
    real_init = parallel._Worker.__init__

    def track(self: Any, setup: bytes) -> None:
        real_init(self, setup)
        started.append(self.proc)

    monkeypatch.setattr(parallel._Worker, "__init__", track)
    svc = TriageService(seeded.settings(), read_only=True, journal=AuditJournal(), analysis=CFG,
                        limits=Limits(max_count=17, window=1, workers=2))
    try:
        it = svc.iter_list(View.ALL, now=NOW)
        assert next(it)
        it.close()
    finally:
        svc.close()
    assert len(started) == 2
    for p in started:
        assert p.wait(timeout=5) is not None


def test_no_workers_for_small_listings_or_one_cpu(seeded: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    started = []
    monkeypatch.setattr(parallel, "_Worker", lambda setup: started.append(setup))
    _list(seeded, 2)  # 400-odd messages: below MIN_MESSAGES
    assert not started
    monkeypatch.setattr(parallel, "cpu_quota", lambda: None)
    for cpus, workers in ((1, 0), (2, 2), (3, 2), (4, 3), (64, parallel.MAX_AUTO_WORKERS)):
        monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid, n=cpus: set(range(n)))
        assert parallel.auto_workers() == workers
    # a container limited to 1.5 CPUs on a 64-CPU node: no workers; to 3: two
    for quota, workers in ((1.5, 0), (0.5, 0), (2.0, 2), (3.0, 2), (5.0, 4)):
        monkeypatch.setattr(parallel, "cpu_quota", lambda q=quota: q)
        assert parallel.auto_workers() == workers, quota


def test_the_cgroup_cpu_quota_is_read(tmp_path: Path) -> None:
    own = tmp_path / "proc-self-cgroup"
    root = tmp_path / "cgroup"
    (root / "kubepods" / "pod1").mkdir(parents=True)
    own.write_text("0::/kubepods/pod1\n")
    assert parallel.cpu_quota(root, own) is None  # nothing to read
    (root / "cpu.max").write_text("max 100000\n")
    assert parallel.cpu_quota(root, own) is None  # the root: unlimited
    (root / "kubepods" / "pod1" / "cpu.max").write_text("150000 100000\n")
    assert parallel.cpu_quota(root, own) == 1.5  # this process's own group first
    (root / "kubepods" / "pod1" / "cpu.max").write_text("garbage\n")
    assert parallel.cpu_quota(root, own) is None  # unreadable there: the root's
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert parallel.cpu_quota(v1, tmp_path / "none") is None
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    assert parallel.cpu_quota(v1, tmp_path / "none") == 2.0
    assert parallel.cpu_quota() is None or parallel.cpu_quota() > 0  # this machine, whatever it says


def test_the_cache_the_workers_wrote_lists_the_same(seeded: Mailbox, always: None, tmp_path: Path) -> None:
    """The workers' stored values go to the header cache as they are: a warm listing from it is
    the cold one, row for row."""
    expected = _list(seeded, 0)
    problems: list[str] = []
    path = tmp_path / "cache" / "box.sqlite3"
    cold = _list(seeded, 2, cache=HeaderCache(path, CFG, on_problem=problems.append))
    warm = _list(seeded, 2, cache=HeaderCache(path, CFG, on_problem=problems.append))
    assert cold[:2] == expected[:2]
    assert sorted(zip(warm[0], warm[1], strict=True), key=lambda p: p[0]) == \
        sorted(zip(expected[0], expected[1], strict=True), key=lambda p: p[0])
    assert not problems
    # the chunks are the workers' own (one per batch of 17, not the cache's 2,000-row ones),
    # every row points to one that is there, and none is left that no row points to
    import sqlite3  # noqa: PLC0415

    db = sqlite3.connect(path)
    try:
        chunks = {cid for (cid,) in db.execute("SELECT id FROM chunks")}
        pointed = [cid for (cid,) in db.execute("SELECT chunk FROM rows")]
    finally:
        db.close()
    assert len(pointed) == len(expected[0]) and set(pointed) == chunks and len(chunks) > 1


def test_workers_run_below_the_process_they_serve() -> None:
    """The build processes are background work: niced below the process that reads the socket
    and draws the UI, so two of them on two cores do not take the UI thread's CPU."""
    import os

    from triage_tui.domain.analysis import AnalysisConfig
    from triage_tui.services import buildworker
    from triage_tui.services.parallel import BuildPool

    pool = BuildPool(AnalysisConfig(address="incoming+%{key}@example.com"), 1, datetime.now(UTC), 2)
    try:
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        want = min(19, ours + buildworker.NICE)
        deadline = time.monotonic() + 20
        got: list[int] = []
        while time.monotonic() < deadline:  # each worker sets it once its imports are done
            got = [os.getpriority(os.PRIO_PROCESS, w.proc.pid) for w in pool.workers]
            if got == [want, want]:
                break
            time.sleep(0.05)
        assert got == [want, want], (ours, got)
    finally:
        pool.close()
    assert os.getpriority(os.PRIO_PROCESS, 0) == ours  # never ours


def test_a_full_disk_under_the_workers_chunks_costs_no_row(seeded: Mailbox, always: None, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunks the workers made are stored as they are; a disk that fills up under them costs
    one line and the cache, never a row, and the next start (disk free again) lists the same."""
    expected = _list(seeded, 0)
    problems: list[str] = []
    path = tmp_path / "cache" / "box.sqlite3"
    with monkeypatch.context() as m:
        full_disk(m)
        assert _list(seeded, 2, cache=HeaderCache(path, CFG, on_problem=problems.append))[:2] == expected[:2]
    assert len(problems) == 1 and "full" in problems[0], problems
    again = _list(seeded, 2, cache=HeaderCache(path, CFG, on_problem=problems.append))
    assert sorted(zip(again[0], again[1], strict=True), key=lambda p: p[0]) == \
        sorted(zip(expected[0], expected[1], strict=True), key=lambda p: p[0])


def test_a_worker_that_stops_answering_costs_no_row_and_no_hang(seeded: Mailbox, always: None,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped workers (SIGSTOP: a frozen cgroup, a debugger, a worker lost in a pathological
    header) hung the listing without end: the answer is waited for WORKER_STALL_S at most."""
    expected = _list(seeded, 0)
    monkeypatch.setattr(parallel, "WORKER_STALL_S", 1.0)
    orig = parallel.BuildPool.submit
    stopped: list[int] = []

    def stop_them(self: parallel.BuildPool, records: Any, first_pass: bool = False) -> Any:
        if not stopped:
            for worker in self.workers:
                worker.proc.send_signal(signal.SIGSTOP)
                stopped.append(worker.proc.pid)
        return orig(self, records, first_pass)

    monkeypatch.setattr(parallel.BuildPool, "submit", stop_them)
    t0 = time.monotonic()
    assert _list(seeded, 2) == expected
    assert stopped and time.monotonic() - t0 < 30
    for pid in stopped:  # ended with the listing, stopped or not
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
