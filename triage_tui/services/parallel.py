"""Building listed messages in worker processes while the main one reads the socket.

A cold listing is CPU-bound: about three quarters of its time builds messages from their header
blocks (decoding, GitLab's key, the verdicts), which the GIL keeps on one core. A large listing
sends each fetched batch to a few worker processes and takes the results back **in order**, so
the caller sees exactly the batches, rows and order of a listing built in process. A worker
sends each row as the header cache stores it (:func:`~triage_tui.services.cache.values`,
marshalled) and the main process rebuilds it with the cache's
:class:`~triage_tui.services.cache.Rebuilder`; the rare row the cache does not hold (no
INTERNALDATE, an analysis that failed) is pickled whole.

A worker is ``python -m triage_tui.services.buildworker`` with pipes on stdin and stdout (not
``multiprocessing``: its spawn re-imports the caller's main module, and its feeder and manager
threads cost the main process more than the pipes do). Its stderr is /dev/null: the TUI owns
the terminal. It ignores Ctrl-C (the main process stops it) and ends when its stdin closes,
also when the main process dies.

It only ever makes a listing faster: a worker that cannot start, dies or sends something
damaged costs its batches a build in process, and nothing is lost (the main process keeps each
batch until its result is in). Small listings never start workers (starting one costs ~0.1 s).

How many: ``triage.workers`` (``TRIAGE_WORKERS``, ``--workers``; 0 = none), by default two on
two CPUs, one fewer than the CPUs this process may use on more, at most
:data:`MAX_AUTO_WORKERS`; none on a single CPU, counting a container's CPU quota (cgroups)."""

from __future__ import annotations

import collections
import contextlib
import logging
import marshal
import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from triage_tui.domain.analysis import AnalysisConfig
from triage_tui.domain.model import Message
from triage_tui.services.cache import Rebuilder, StoredValues, decode_chunk
from triage_tui.services.imapwire import FetchRecord

log = logging.getLogger(__name__)

MAX_AUTO_WORKERS = 4
#: below this many messages a listing is built in process (workers cost more than they save)
MIN_MESSAGES = 3000
_LEN = struct.Struct("<Q")
#: a worker's answer larger than this is damage, not a batch
MAX_FRAME = 1 << 31
#: a worker that sends nothing for this long (stopped, frozen, or lost in a pathological header)
#: is given up on, and its batches built in process: waited for without a limit, it hung the
#: listing (found by an adversary: SIGSTOP on the workers). A batch takes ~0.1 s.
WORKER_STALL_S = 60.0


def cpu_quota(root: Path = Path("/sys/fs/cgroup"), own: Path = Path("/proc/self/cgroup")) -> float | None:
    """How many CPUs this process's cgroup quota allows (a container's CPU limit: cgroup v2
    ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), None when there is none or it
    cannot be read. A toolbox pod limited to one CPU still shows the node's CPUs to
    ``sched_getaffinity``: worker processes there would only share that one CPU."""
    dirs = [root]
    try:
        for line in own.read_text().splitlines():
            if line.startswith("0::/") and len(line) > 4:  # v2: this process's own group
                dirs.insert(0, root / line[4:])
    except OSError:
        pass
    for d in dirs:
        try:
            quota, period = (d / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else max(0.0, int(quota) / int(period))
        except (OSError, ValueError, ZeroDivisionError):
            continue
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def auto_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = cpu_quota()
    if quota is not None:
        cpus = min(cpus, int(quota))
    # two CPUs: two workers (the main process mostly waits on them and the socket); more: one
    # CPU left to the main process, whose own share (the socket, rebuilding rows, JSON) then
    # bounds the listing
    return 0 if cpus < 2 else min(MAX_AUTO_WORKERS, max(2, cpus - 1))


def write_frame(pipe: IO[bytes], payload: bytes) -> None:
    """One frame to a worker's pipe (or, in the worker, to the main process): never a terminal."""
    pipe.write(_LEN.pack(len(payload)))
    pipe.write(payload)
    pipe.flush()


def read_frame(inp: IO[bytes]) -> bytes | None:
    """One frame, or None at the end of the stream; raises on a damaged one."""
    head = inp.read(_LEN.size)
    if not head:
        return None
    if len(head) != _LEN.size:
        raise EOFError("truncated frame header")
    (n,) = _LEN.unpack(head)
    if n > MAX_FRAME:
        raise ValueError("frame too large")
    body = inp.read(n)
    if len(body) != n:
        raise EOFError("truncated frame")
    return body


def _read_exact(inp: IO[bytes], n: int, stall: float) -> bytes:
    """``n`` bytes of an unbuffered pipe, each wait for more at most ``stall`` seconds."""
    out = bytearray()
    while len(out) < n:
        ready, _, _ = select.select([inp], [], [], stall)
        if not ready:
            raise TimeoutError(f"a build worker sent nothing for {stall:.0f} s")
        got = inp.read(min(n - len(out), 1 << 20))
        if not got:
            raise EOFError("the worker ended")
        out += got
    return bytes(out)


def _answer(inp: IO[bytes], stall: float) -> bytes:
    """One frame of a worker's answer (:func:`read_frame`), with a deadline on each wait."""
    (n,) = _LEN.unpack(_read_exact(inp, _LEN.size, stall))
    if n > MAX_FRAME:
        raise ValueError("frame too large")
    return _read_exact(inp, n, stall)


def _worker_env() -> dict[str, str]:
    """Our environment, with this package's directory first on PYTHONPATH: the worker imports
    the same code even when the caller found it through sys.path, not an install."""
    root = str(Path(__file__).resolve().parent.parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class _Worker:
    """One worker process and the thread that feeds it (so the main thread, which reads the
    answers, never blocks on a full pipe while the worker blocks on its answer)."""

    def __init__(self, setup: bytes) -> None:
        # -P: ``python -m`` puts the working directory first on sys.path, before PYTHONPATH. An
        # operator listing from a directory that holds a triage_tui package (another checkout,
        # or anything planted in /tmp) ran that code as the worker: a build of other rows at
        # best (the pool fell back silently when the frames did not match), someone else's code
        # at worst.
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-P", "-m", "triage_tui.services.buildworker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True, env=_worker_env())
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        # read unbuffered, so that select() sees all there is (see _answer)
        self.stdout: IO[bytes] = self.proc.stdout.raw  # type: ignore[attr-defined]
        self.jobs: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.failed = False
        self.jobs.put(setup)
        self.thread = threading.Thread(target=self._feed, name="triage-buildworker-feed", daemon=True)
        self.thread.start()

    def _feed(self) -> None:
        try:
            while (job := self.jobs.get()) is not None:
                write_frame(self.stdin, job)
        except (OSError, ValueError):  # the worker died: its reader sees the end of the stream
            self.failed = True
        finally:
            with contextlib.suppress(OSError, ValueError):
                self.stdin.close()

    def close(self) -> None:
        self.jobs.put(None)
        with contextlib.suppress(OSError, ValueError):
            self.stdout.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=2)


class BuildPool:
    """Worker processes for one listing (one config, UIDVALIDITY and ``now``)."""

    def __init__(self, cfg: AnalysisConfig, uidvalidity: int, now: datetime, workers: int) -> None:
        self.rebuild = Rebuilder(uidvalidity, cfg.stale_after, now)
        self.broken = False
        setup = pickle.dumps((cfg, uidvalidity, now), protocol=pickle.HIGHEST_PROTOCOL)
        self.workers: list[_Worker] = []
        try:
            for _ in range(workers):
                self.workers.append(_Worker(setup))
        except BaseException:
            self.close()
            raise
        self._next = 0

    def submit(self, records: list[FetchRecord], first_pass: bool = False) -> _Worker | None:
        """Send a batch to the next worker; the worker to collect it from (None: build it here).
        ``first_pass``: see :func:`~triage_tui.domain.analysis.build_message`."""
        if self.broken:
            return None
        w = self.workers[self._next]
        self._next = (self._next + 1) % len(self.workers)
        items = [(r.uid, r.flags or (), r.internaldate, r.size or 0, r.body) for r in records]
        w.jobs.put(pickle.dumps((first_pass, items), protocol=pickle.HIGHEST_PROTOCOL))
        return w

    def collect(self, w: _Worker) -> tuple[list[Message], dict[int, tuple[Any, ...]]] | None:
        """The next batch of ``w``, in order, with the stored values of its rows (what the header
        cache writes: no need to make them again), or None when it must be built in process."""
        if self.broken:
            return None
        try:
            blob = _answer(w.stdout, WORKER_STALL_S)
            rows, chunk, whole_blob = marshal.loads(blob)
            whole = pickle.loads(whole_blob) if whole_blob else {}  # noqa: S301 - our own worker's bytes
            known = StoredValues(decode_chunk(chunk) if chunk is not None else ())
            known.chunk = chunk
            rebuild = self.rebuild
            messages = [rebuild(uid, flags, known[uid]) if stored else whole[uid] for uid, flags, stored in rows]
            return messages, known
        except Exception as exc:  # noqa: BLE001 - a dead worker, a damaged answer: build in process
            self._give_up(exc)
            return None

    def _give_up(self, exc: BaseException) -> None:
        """From now on every batch is built in process (answers still on their way are dropped:
        which of them arrived whole cannot be told from a broken stream)."""
        if not self.broken:
            # info, not warning: it costs speed only, and a warning would reach the terminal
            # (logging's last resort) under the TUI
            log.info("parallel build stopped, building in process: %s: %s", type(exc).__name__, exc)
        self.broken = True

    def close(self) -> None:
        for w in self.workers:
            w.close()


Built = tuple[list[FetchRecord], list[Message], dict[int, tuple[Any, ...]] | None]


def built_in_order(batches: Iterable[list[FetchRecord]], build: Callable[[list[FetchRecord]], list[Message]],
                   pool: BuildPool | None, *, first_pass: bool = False) -> Iterator[Built]:
    """``(records, messages, stored values or None)`` for each batch, in the order the batches
    came: through ``pool`` when there is one (a few batches in flight per worker; the values are
    the workers'), else (or for any batch the pool fails) by ``build`` in process (None)."""
    if pool is None:
        for records in batches:
            yield records, build(records), None
        return
    depth = 2 * len(pool.workers)
    pending: collections.deque[tuple[list[FetchRecord], _Worker | None]] = collections.deque()

    def first() -> Built:
        records, w = pending.popleft()
        got = pool.collect(w) if w is not None else None
        return (records, *got) if got is not None else (records, build(records), None)

    for records in batches:
        pending.append((records, pool.submit(records, first_pass) if records else None))
        while len(pending) > depth or (pending and pending[0][1] is None):
            yield first()
    while pending:
        yield first()
