"""A server's own FETCH responses, sent between the answers to ours: flag updates of another
client's changes. Dovecot sends them without a UID; RFC 3501 7.4.2 lets a server include one
under a UID command, and others do. A proxy in front of the real Dovecot adds such responses
(for a UID asked before, one asked later and one not asked at all) before every tagged answer.

Before: a listing gave the first UID twice (once with no header: an empty sender and subject,
no GitLab key) and a UID that is not in the view at all, which a bulk selection could then
mark; and a STORE journaled the other client's MODSEQ as its own, which hides that change from
undo (it would un-see a message someone changed since)."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import Any

from tests.conftest import Mailbox
from tests.mailgen import backlog
from tests.proxy import LatencyProxy
from triage_tui.domain.analysis import AnalysisConfig
from triage_tui.domain.model import View
from triage_tui.services.imap import Limits
from triage_tui.services.journal import AuditJournal
from triage_tui.services.triage import TriageService

CFG = AnalysisConfig(address="incoming+%{key}@incoming.gitlab.example.com")
_TAGGED_OK = re.compile(rb"(?m)^[A-Za-z]+\d+ OK ")
NEWS = b"* 1 FETCH (UID 1 FLAGS (\\Seen) MODSEQ (99999))\r\n* 40 FETCH (UID 77 FLAGS () MODSEQ (99998))\r\n" \
       b"* 2 FETCH (UID 30 FLAGS (\\Flagged) MODSEQ (99997))\r\n"


def _news_before_every_answer(data: bytes) -> bytes:
    return _TAGGED_OK.sub(lambda m: NEWS + m.group(0), data)


def _svc(mb: Mailbox, port: int, **kw: Any) -> TriageService:
    return TriageService(replace(mb.settings(), port=port, security="none"), analysis=CFG, cache=None,
                         limits=Limits(max_count=5, window=2), **kw)


def _rows(svc: TriageService) -> list[tuple[int, str, str, tuple[str, ...]]]:
    try:
        return [(m.uid, m.subject, m.from_addr, m.flags) for b in svc.iter_list(View.UNSEEN) for m in b]
    finally:
        svc.close()


def test_a_listing_takes_only_the_answers_to_what_it_asked(mailbox: Mailbox) -> None:
    mailbox.seed(backlog(40, now=time.time()))
    direct = _rows(_svc(mailbox, mailbox.server.imap_port, read_only=True, journal=AuditJournal()))
    assert len(direct) == 40 and all(subject for _, subject, _, _ in direct)
    with LatencyProxy(mailbox.server.imap_port, server_says=_news_before_every_answer) as proxy:
        rows = _rows(_svc(mailbox, proxy.port, read_only=True, journal=AuditJournal()))
        svc = _svc(mailbox, proxy.port, read_only=True, journal=AuditJournal())
        try:
            svc.connect()
            peek = svc.peek(30)
        finally:
            svc.close()
    assert rows == direct
    subject = next(s for u, s, _, _ in direct if u == 30)
    assert b"Subject: " + subject.encode() in peek.header and peek.internaldate is not None


def test_a_store_journals_its_own_modseq_not_another_clients(mailbox: Mailbox) -> None:
    mailbox.seed(backlog(10, now=time.time()))
    uv = mailbox.uidvalidity()
    with LatencyProxy(mailbox.server.imap_port, server_says=_news_before_every_answer) as proxy:
        svc = _svc(mailbox, proxy.port, read_only=False, journal=AuditJournal())
        try:
            svc.connect()
            svc.execute(svc.plan_flags("mark-seen", uv, [1, 2, 3, 30], current=True))
        finally:
            svc.close()
    assert mailbox.search("SEEN") == [1, 2, 3]
    seqs = [r["modseq"] for r in AuditJournal().records() if r.get("phase") == "progress" and "modseq" in r]
    c = mailbox.client()
    try:
        top = int(c.folder_status("INBOX", [b"HIGHESTMODSEQ"])[b"HIGHESTMODSEQ"])
    finally:
        c.logout()
    assert seqs and all(s <= top for s in seqs), (seqs, top)
