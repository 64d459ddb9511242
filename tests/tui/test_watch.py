"""The live-refresh watcher against the real Dovecot: IDLE, polling, reconnect, stop."""

from __future__ import annotations

import socket
import threading
import time

from tests.mailgen import backlog, message
from triage_tui.services.watch import MailboxWatcher, WatchConfig

NOW = time.time()


class Recorder:
    def __init__(self) -> None:
        self.changes: list[str] = []
        self.states: list[tuple[str, str]] = []
        self.event = threading.Event()

    def change(self, reason: str) -> None:
        self.changes.append(reason)
        self.event.set()

    def state(self, mode: str, detail: str) -> None:
        self.states.append((mode, detail))

    def wait_state(self, mode: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(m == mode for m, _ in self.states):
            assert time.monotonic() < deadline, f"no {mode!r} state: {self.states}"
            time.sleep(0.02)

    def wait_change(self, timeout: float = 10.0) -> str:
        assert self.event.wait(timeout), f"no change reported; states {self.states}"
        self.event.clear()
        return self.changes[-1]


def start(mailbox, **cfg):  # type: ignore[no-untyped-def]
    rec = Recorder()
    w = MailboxWatcher(mailbox.settings(), on_change=rec.change, on_state=rec.state,
                       config=WatchConfig(check_every=0.2, settle=0.2, **cfg))
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    return w, t, rec


def append(mailbox, subject: str) -> None:  # type: ignore[no-untyped-def]
    c = mailbox.client()
    c.append("INBOX", message(subject=subject))
    c.logout()


def test_idle_reports_arrivals_and_flag_changes(mailbox):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(3, now=NOW))
    w, t, rec = start(mailbox)
    try:
        rec.wait_state("idle")
        append(mailbox, "new one")
        assert "exists" in rec.wait_change()
        c = mailbox.client()
        c.select_folder("INBOX")
        c.add_flags([1], [b"\\Seen"], silent=True)  # what mail_room's RFC822 fetch does
        c.logout()
        assert "flags" in rec.wait_change()
    finally:
        w.stop()
        t.join(3)
    assert not t.is_alive(), "stop() ends the IDLE loop within a check interval"
    assert rec.states[-1][0] == "stopped"


def test_polling_when_idle_is_not_used(mailbox):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(2, now=NOW))
    w, t, rec = start(mailbox, force_poll=True, poll_interval=0.3)
    try:
        rec.wait_state("poll")
        time.sleep(0.5)
        assert rec.changes == [], "no change, no notification"
        append(mailbox, "polled")
        assert rec.wait_change() == "poll"
        w.pause(True)
        append(mailbox, "while paused")
        time.sleep(0.8)
        assert len(rec.changes) == 1, "paused: no polling"
        w.pause(False)
        assert rec.wait_change() == "poll"
    finally:
        w.stop()
        t.join(3)
    assert not t.is_alive()


def test_a_dropped_connection_reconnects_and_asks_for_a_resync(mailbox):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(2, now=NOW))
    w, t, rec = start(mailbox, max_backoff=0.5)
    try:
        rec.wait_state("idle")
        session = w._session
        assert session is not None and session.client is not None
        session.client.socket().shutdown(socket.SHUT_RDWR)  # the network goes away under IDLE
        assert rec.wait_change(timeout=15) == "reconnected"
        assert any(m == "reconnecting" for m, _ in rec.states)
        rec.wait_state("idle")
        append(mailbox, "after reconnect")
        assert "exists" in rec.wait_change()
    finally:
        w.stop()
        t.join(3)
    assert not t.is_alive()
