"""Two faults at once: a concurrent change that CONDSTORE catches (``[MODIFIED]``) and, in the
same bulk STORE, a lost connection. What the other client changed must stay reported as
skipped (changed by someone else), not be counted, journaled and undone as ours after the
reconnect."""

from __future__ import annotations

import socket
import time

from tests.conftest import Mailbox
from tests.faults.conftest import FAST_RETRY
from tests.mailgen import backlog
from tests.proxy import LatencyProxy
from triage_tui.domain import uidset
from triage_tui.domain.model import View
from triage_tui.services.imap import Limits
from triage_tui.services.journal import AuditJournal
from triage_tui.services.triage import TriageService


class RacingProxy(LatencyProxy):
    """Just before the first ``UID STORE`` reaches Dovecot, another client (mail_room fetching)
    sets \\Seen on ``racing``; then the proxy cuts the stream after the second STORE."""

    racing: list[int]
    mailbox: Mailbox
    raced: bool = False

    def _throttle(self, data: bytes, client: socket.socket) -> bytes:
        if not self.raced and b" UID STORE " in data:
            self.raced = True
            c = self.mailbox.client()
            c.select_folder("INBOX")
            c.add_flags(self.racing, [b"\\Seen"], silent=True)
            c.logout()
        return data


def test_condstore_skips_survive_a_reconnect(mailbox: Mailbox) -> None:
    mailbox.seed(backlog(200, now=time.time()))
    proxy = RacingProxy(mailbox.server.imap_port, cut_pattern=b" UID STORE ", cut_after=2,
                        throttle_pattern=b" UID STORE ", throttle_times=0)
    proxy.racing, proxy.mailbox = list(range(1, 11)), mailbox
    with proxy:
        svc = TriageService(mailbox.settings(port=proxy.port, security="none"), read_only=False,
                            journal=AuditJournal(), retry=FAST_RETRY, limits=Limits(max_count=20, window=1))
        uv, unseen = svc.search(View.UNSEEN)
        result = svc.execute(svc.plan_flags("mark-seen", uv, unseen))
        svc.close()
    assert proxy.raced and proxy.cuts == 1
    assert mailbox.search("UNSEEN") == []
    assert result.ok
    assert result.skipped_concurrent == list(range(1, 11)), result.to_json()
    assert not set(result.changed) & set(range(1, 11)), "mail_room's change was counted as ours"
    assert result.changed == list(range(11, 201))
    end = [r for r in AuditJournal().records() if r.get("op") == result.op_id and r["phase"] == "end"][0]
    assert uidset.parse(end["changed"]) == list(range(11, 201))
    assert end["skipped_concurrent"] == "1:10"


def test_what_others_change_while_we_reconnect_is_not_ours(mailbox: Mailbox) -> None:
    """The connection drops with one STORE unanswered; while we reconnect, mail_room fetches (sets
    \\Seen on) messages further down our list that we never sent. After the reconnect they no
    longer need the change, but only the unanswered command's UIDs can be ours: the others are
    "no longer needed", and neither the result nor the journal (nor a later undo) claims them."""
    mailbox.seed(backlog(200, now=time.time()))
    theirs = list(range(150, 161))

    def mail_room_meanwhile(message: str, attempt: int) -> None:
        c = mailbox.client()
        c.select_folder("INBOX")
        c.add_flags(theirs, [b"\\Seen"], silent=True)
        c.logout()

    with LatencyProxy(mailbox.server.imap_port, cut_pattern=b" UID STORE ", cut_after=2) as proxy:
        svc = TriageService(mailbox.settings(port=proxy.port, security="none"), read_only=False,
                            journal=AuditJournal(), retry=FAST_RETRY, limits=Limits(max_count=20, window=1),
                            on_reconnect=mail_room_meanwhile)
        uv, unseen = svc.search(View.UNSEEN)
        result = svc.execute(svc.plan_flags("mark-seen", uv, unseen))
        undo, _ = svc.plan_undo()
        svc.close()
    assert proxy.cuts == 1
    assert mailbox.search("UNSEEN") == []
    assert result.ok and set(result.in_flight) <= set(range(21, 41)), result.to_json()
    assert result.vanished_or_done == len(theirs)
    assert result.changed == [u for u in range(1, 201) if u not in theirs]
    recs = [r for r in AuditJournal().records() if r.get("op") == result.op_id]
    assert any(r.get("done_by_others") == "150:160" for r in recs)
    assert not set(uidset.parse(recs[-1]["changed"])) & set(theirs)
    assert not set(undo.uids) & set(theirs), "undo would un-see what mail_room fetched"


class FlappingProxy(LatencyProxy):
    """Cuts every connection at each step of ``steps`` in turn: (pattern, how many client lines
    with it since the previous cut, whether to cut before the line reaches the server, so that
    its answer can never arrive)."""

    steps: list[tuple[bytes, int, bool]]

    def _step(self, data: bytes, before: bool) -> bool:
        with self._lock:
            if not self.steps or self.steps[0][2] != before:
                return False
            pattern, after, _ = self.steps[0]
            self._seen += data.count(pattern)
            if self._seen < after:
                return False
            self.steps.pop(0)
            self._seen = 0
            self.cuts += 1
            return True

    def _should_cut(self, data: bytes) -> bool:
        return self._step(data, before=False)

    def _throttle(self, data: bytes, client: socket.socket) -> bytes:
        if self._step(data, before=True):
            self.cut()
            return b""
        return data


def test_lost_again_while_resuming(mailbox: Mailbox) -> None:
    """The link flaps: cut mid-STORE, then cut again during the SEARCH that finds out what the lost
    command did. The operation reconnects a second time and still ends exactly as asked."""
    mailbox.seed(backlog(200, now=time.time()))
    proxy = FlappingProxy(mailbox.server.imap_port, throttle_pattern=b"", throttle_times=0)
    proxy.steps = [(b" UID STORE ", 2, False), (b" UID SEARCH ", 1, True)]
    with proxy:
        svc = TriageService(mailbox.settings(port=proxy.port, security="none"), read_only=False,
                            journal=AuditJournal(), retry=FAST_RETRY, limits=Limits(max_count=20, window=1))
        uv, unseen = svc.search(View.UNSEEN)
        result = svc.execute(svc.plan_flags("mark-seen", uv, unseen))
        svc.close()
    assert proxy.cuts == 2 and not proxy.steps
    assert result.ok and result.changed == unseen
    assert mailbox.search("UNSEEN") == []
    recs = [r for r in AuditJournal().records() if r.get("op") == result.op_id]
    assert sum(1 for r in recs if r.get("event") == "reconnect") == 2
    assert recs[-1]["phase"] == "end" and recs[-1]["result"] == "ok"
