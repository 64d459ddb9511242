"""The order of a listing when the server answers pipelined FETCHes in parallel.

RFC 3501 5.5 lets a server run pipelined commands in parallel, and Dovecot does: when the client
reads slower than it writes (a cold listing, building rows as the answers come), the answers
to several of our UID FETCH commands interleave. Before, ``fetch_stream`` gave records in
arrival order: at 100k realistic messages a cold ``list --json`` had ~70 places where the UIDs
went back, different from run to run and from the warm (cached) listing. Which copy of a
duplicate Message-ID ``list`` flags (the later one it meets) and what ``--limit`` prints
changed with it. Now the records come out in ascending UID order, whatever order they arrive in.

These tests make the real Dovecot interleave (large header fields, small FETCH commands, a
reader that pauses) and check that it did, so that they prove something."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import triage_tui.services.imap as imap_mod
from tests.conftest import Mailbox
from triage_tui.domain.analysis import AnalysisConfig
from triage_tui.domain.model import View
from triage_tui.services.imap import Limits
from triage_tui.services.journal import AuditJournal
from triage_tui.services.listing import FIRST_PASS_ITEMS
from triage_tui.services.triage import TriageService

CFG = AnalysisConfig(address="incoming+%{key}@incoming.gitlab.example.com")
N = 200


def _message(i: int, mid: str | None = None) -> bytes:
    # References is fetched (GitLab reads keys from it): 20 kB of it per message fills the
    # socket's buffers after a few messages, and Dovecot then works on the next commands
    refs = "".join(f" <{k}.{i}.{'r' * 40}@example.org>\r\n" for k in range(300))
    return (f"From: Sender {i} <s{i}@example.org>\r\nTo: incoming+k{i:032x}@incoming.gitlab.example.com\r\n"
            f"Subject: message {i}\r\nMessage-ID: {mid or f'<m{i}@example.org>'}\r\n"
            f"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\nReferences:{refs}\r\nbody\r\n").encode()


def _seed(mailbox: Mailbox, dup: tuple[int, int] | None = None) -> None:
    msgs = []
    for i in range(N):
        mid = "<same@example.org>" if dup and i in dup else None
        msgs.append((_message(i, mid), 1.8e9 + i, ""))
    mailbox.seed(msgs)


def _svc(mailbox: Mailbox, **kw: Any) -> TriageService:
    return TriageService(mailbox.settings(), read_only=True, journal=AuditJournal(), analysis=CFG,
                         limits=Limits(max_count=25, window=8), **kw)


@pytest.fixture
def arrivals(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The UIDs of the FETCH answers in the order they came off the wire."""
    seen: list[int] = []
    real = imap_mod.parse_fetch

    def spy(resp: Any) -> Any:
        rec = real(resp)
        if rec is not None and rec.uid is not None:
            seen.append(rec.uid)
        return rec

    monkeypatch.setattr(imap_mod, "parse_fetch", spy)
    return seen


def _went_back(uids: list[int]) -> int:
    return sum(1 for a, b in zip(uids, uids[1:], strict=False) if b < a)


def _slowly(batches: Any, pause: float = 0.02) -> list[list[Any]]:
    out = []
    for batch in batches:
        out.append(list(batch))
        time.sleep(pause)  # the reader is busy: Dovecot's output to us blocks
    return out


def test_interleaved_answers_come_out_in_uid_order(mailbox: Mailbox, arrivals: list[int]) -> None:
    _seed(mailbox)
    svc = _svc(mailbox, cache=None)
    try:
        svc.connect()
        for _attempt in range(3):  # Dovecot decides when to interleave: give it a few chances
            arrivals.clear()
            batches = _slowly(svc.reader.fetch_stream(list(range(1, N + 1)), FIRST_PASS_ITEMS))
            if _went_back(arrivals):
                break
    finally:
        svc.close()
    assert _went_back(arrivals), "Dovecot answered in order: this test did not test anything"
    got = [r.uid for b in batches for r in b]
    assert got == list(range(1, N + 1))
    assert all(len(b) <= 25 for b in batches)


def test_a_listing_flags_the_later_copy_of_a_duplicate_whatever_the_arrival_order(
        mailbox: Mailbox, arrivals: list[int], cli: Any) -> None:
    """``list`` flags the copies of a Message-ID after the first it meets: the later UIDs."""
    _seed(mailbox, dup=(30, 180))  # UIDs 31 and 181
    env = {**mailbox.env(), "TRIAGE_ADDRESS": CFG.address or ""}
    svc = _svc(mailbox, cache=None)
    try:
        for _attempt in range(3):
            arrivals.clear()
            rows = [m for b in _slowly(svc.iter_list(View.UNSEEN), 0.01) for m in b]
            if _went_back(arrivals[:N]):  # the first pass (a second one may follow)
                break
    finally:
        svc.close()
    assert _went_back(arrivals[:N]), "Dovecot answered in order: this test did not test anything"
    assert [m.uid for m in rows] == list(range(1, N + 1))
    r = cli(["list", "--json"], env=env)
    assert r.code == 0, r.err
    out = [json.loads(line) for line in r.lines]
    assert [d["uid"] for d in out] == list(range(1, N + 1))
    flagged = {d["uid"] for d in out if "duplicate" in (d["suspicious_reason"] or "")}
    assert flagged == {181}
