"""Helpers for the fault-injection suite: Dovecot kicking our sessions, a journal tail that tells
when a bulk operation is half-way, and a seeded ~20k-message mailbox shared by a module.

Faults are injected by the real servers wherever possible (``doveadm kick`` ends the imap
process like an admin or an OOM kill would; redis-server is really stopped and restarted), so
what the tests see is what an operator would see, not what a mock thinks happens.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Mailbox
from tests.mailgen import backlog
from tests.servers import Dovecot
from triage_tui.domain import uidset
from triage_tui.services.journal import AuditJournal
from triage_tui.services.triage import RetryPolicy

#: Reconnect quickly in tests; production defaults back off up to 8 s.
FAST_RETRY = RetryPolicy(attempts=6, base=0.05, cap=0.4)
#: Big enough that a bulk STORE in small chunks lasts long enough to be kicked mid-way.
BIG = 20_000


def kick(server: Dovecot, user: str) -> bool:
    """``doveadm kick <user>``: Dovecot terminates every imap process of that user (SIGTERM; the
    client gets ``* BYE Server shutting down.`` or a bare EOF). True if a session was kicked."""
    r = server.doveadm("kick", user)
    assert r.returncode == 0, f"doveadm kick failed: {r.stdout} {r.stderr}"
    return user in r.stdout


def wait_until(cond: Callable[[], bool], timeout: float = 20.0, step: float = 0.01, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        time.sleep(step)


class JournalTail:
    """Reads the audit journal as it grows (the same file an operator would ``tail -f``)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or AuditJournal().path
        self._pos = 0
        self.records: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return self.records
        with self.path.open("rb") as f:
            f.seek(self._pos)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a half-written line waits for the next poll
        self._pos += end
        for line in data[:end].splitlines():
            if line.strip():
                self.records.append(json.loads(line))
        return self.records

    def progress_done(self, action: str | None = None) -> int:
        """How many chunks are confirmed so far (``progress`` records that carry ``done``)."""
        return sum(1 for r in self.poll() if r.get("phase") == "progress" and "done" in r
                   and (action is None or r.get("action") == action))


class Kicker(threading.Thread):
    """Kicks ``user`` each time the journal shows the next threshold of confirmed chunks: the
    operation is really mid-way (some chunks done, more in flight), not before or after it."""

    def __init__(self, server: Dovecot, user: str, thresholds: list[int], action: str) -> None:
        super().__init__(daemon=True, name="kicker")
        self.server, self.user, self.action = server, user, action
        self.thresholds = list(thresholds)
        self.kicked_at: list[int] = []  # chunks confirmed when each kick went out
        self.stop_flag = threading.Event()
        self.tail = JournalTail()

    def run(self) -> None:
        while self.thresholds and not self.stop_flag.is_set():
            n = self.tail.progress_done(self.action)
            if n >= self.thresholds[0]:
                self.thresholds.pop(0)
                kick(self.server, self.user)
                self.kicked_at.append(n)
            time.sleep(0.003)

    def stop(self) -> None:
        self.stop_flag.set()
        self.join(5)


_UID_CMD = re.compile(rb"^\S+ UID (STORE|EXPUNGE|FETCH) ([0-9:,]+)")


def sends_per_uid(lines: list[bytes], verb: str) -> Counter[int]:
    """How many times each UID went to the server in ``UID <verb>`` commands (from a proxy's
    recording of client lines)."""
    counts: Counter[int] = Counter()
    for line in lines:
        m = _UID_CMD.match(line)
        if m and m.group(1).decode() == verb:
            counts.update(uidset.parse(m.group(2).decode()))
    return counts


def all_flags(mb: Mailbox) -> dict[int, set[str]]:
    """UID -> flags for a big mailbox, through a separate EXAMINE connection in 2,000-UID
    FETCHes (one FETCH of 20k UIDs is longer than Dovecot's command line limit)."""
    c = mb.client()
    try:
        c.select_folder("INBOX", readonly=True)
        uids = sorted(c.search("ALL"))
        out: dict[int, set[str]] = {}
        for i in range(0, len(uids), 2000):
            for uid, v in c.fetch(uids[i:i + 2000], ["FLAGS"]).items():
                out[uid] = {f.decode() for f in v[b"FLAGS"]} - {"\\Recent"}
        return out
    finally:
        c.logout()


def op_records(op_id: str) -> list[dict[str, Any]]:
    return [r for r in AuditJournal().records() if r.get("op") == op_id]


def check_journal(op_id: str, targets: list[int], in_flight: list[int]) -> list[dict[str, Any]]:
    """The journal of one bulk operation is consistent: ``begin`` then progress then ``end ok``;
    each confirmed chunk names UIDs no other chunk names; the chunks plus the in-flight UIDs
    (changed by a command whose answer the kick ate) are exactly the targets. Returns the records."""
    recs = op_records(op_id)
    assert recs[0]["phase"] == "begin" and recs[-1]["phase"] == "end", [r["phase"] for r in recs]
    assert recs[-1]["result"] == "ok", recs[-1]
    done: list[int] = []
    for r in recs:
        if r["phase"] == "progress" and "done" in r:
            chunk = uidset.parse(r["done"])
            assert len(chunk) == r["count"]
            done.extend(chunk)
    assert len(done) == len(set(done)), "a chunk was journaled as done twice"
    assert not set(done) & set(in_flight)
    assert sorted(done + in_flight) == sorted(targets), "journal does not add up to the targets"
    assert uidset.parse(recs[-1]["changed"]) == sorted(targets)
    return recs


@pytest.fixture(scope="module")
def big_mailbox(dovecot: Dovecot) -> Iterator[Mailbox]:
    """~20k messages, every 7th already \\Seen, shared by the tests of one module (seeding is the
    slow part: ~5 s). Tests in the module run in file order and each reads the state it starts from."""
    mb = Mailbox(dovecot, dovecot.new_user("big"))
    mb.seed(backlog(BIG, now=time.time(), seen_every=7))
    yield mb
