"""Live refresh: tell the UI when the mailbox changed, through IMAP IDLE or by polling.

The watcher owns its own connection (an IDLE'ing connection can do nothing else) and never
reads a listing itself: it only says "something changed" and the UI re-syncs through the
triage service, so there is one code path that turns server state into rows.

- IDLE (RFC 2177) where the server offers it: EXISTS / EXPUNGE / FETCH responses mean mail
  arrived, mail_room picked something up, or flags changed. Bursts (mail_room deleting a
  thousand messages) are collapsed into one notification. IDLE is re-issued every few minutes
  (servers drop an IDLE after 30).
- Polling otherwise: STATUS (MESSAGES UIDNEXT UNSEEN, plus HIGHESTMODSEQ with CONDSTORE, which
  catches flag changes too) every ``poll_interval`` seconds, the next check armed only when
  the previous one has finished, so checks never overlap on a slow server.
- imapclient's ``idle_check`` can raise ``AbortError`` (a line split across TCP segments,
  upstream issue #519) or silently swallow an EOF: both end in a reconnect with backoff and a
  "reconnected" notification (events may have been missed, so the UI re-syncs).

No Textual here: callbacks are plain callables, invoked on the watcher's thread.
"""

from __future__ import annotations

import imaplib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from imapclient import exceptions as imap_exc

from triage_tui.errors import TriageError
from triage_tui.services.imap import ConnectionSettings, ImapSession, Limits

log = logging.getLogger("triage_tui.watch")

OnChange = Callable[[str], None]  # reason: "exists", "expunge", "flags", "poll", "reconnected"
OnState = Callable[[str, str], None]  # (mode, detail): ("idle", ""), ("poll", "30s"), ("reconnecting", why)

_CHANGE_WORDS = {b"EXISTS": "exists", b"EXPUNGE": "expunge", b"FETCH": "flags", b"VANISHED": "expunge"}
_NET_ERRORS = (OSError, socket.timeout, ssl.SSLError, imaplib.IMAP4.abort, imap_exc.IMAPClientAbortError,
               imap_exc.IMAPClientError, TriageError)


class _Dead(Exception):
    """The IDLE connection is gone (BYE, or EOF that imapclient swallowed)."""


@dataclass
class WatchConfig:
    poll_interval: float = 30.0  # seconds between STATUS checks when there is no IDLE
    idle_renew: float = 300.0  # re-issue IDLE this often (RFC 2177: servers may drop it after 29 min)
    check_every: float = 0.5  # how often the IDLE loop looks at the stop flag
    settle: float = 0.3  # wait this long after a change for the rest of a burst
    max_backoff: float = 30.0
    force_poll: bool = False  # poll even when IDLE is offered (tests, broken IDLE servers)


class MailboxWatcher:
    """Runs in one thread (:meth:`run`) until :meth:`stop`. Thread-safe controls."""

    def __init__(
        self,
        settings: ConnectionSettings,
        limits: Limits | None = None,
        *,
        on_change: OnChange,
        on_state: OnState | None = None,
        config: WatchConfig | None = None,
        session_factory: Callable[[ConnectionSettings, Limits], ImapSession] = ImapSession.open,
    ) -> None:
        self.settings = settings
        self.limits = limits or Limits()
        self.on_change = on_change
        self.on_state = on_state or (lambda mode, detail: None)
        self.config = config or WatchConfig()
        self._factory = session_factory
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._session: ImapSession | None = None
        self.mode = "starting"

    # -- controls (any thread) ----------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def pause(self, paused: bool) -> None:
        """While paused, polling sends nothing; IDLE stays open (it is cheap) but changes are
        held back and reported once on resume."""
        if paused:
            self._paused.set()
        else:
            self._paused.clear()

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        """Connect, watch, reconnect on failure; returns when stopped. Never raises."""
        backoff = 1.0
        first = True
        while not self._stop.is_set():
            try:
                self._session = self._factory(self.settings, self.limits)
                if not first:
                    self._notify("reconnected")
                first = False
                backoff = 1.0
                if "IDLE" in self._session.capabilities and not self.config.force_poll:
                    self._idle_loop(self._session)
                else:
                    self._poll_loop(self._session)
            except (_Dead, *_NET_ERRORS) as e:
                why = str(e) or type(e).__name__
                log.debug("watch connection failed: %s", why)
                self._set_state("reconnecting", why)
                self._close()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.config.max_backoff)
            except Exception as e:  # noqa: BLE001 - a watcher must never take the app down
                log.exception("watcher crashed")
                self._set_state("stopped", f"{type(e).__name__}: {e}")
                self._close()
                return
        self._close()
        self._set_state("stopped", "")

    def _idle_loop(self, session: ImapSession) -> None:
        client = session.client
        assert client is not None
        cfg = self.config
        with session.lock:
            session.examine()
        self._set_state("idle", "")
        pending: set[str] = set()
        while not self._stop.is_set():
            with session.lock:
                client.idle()
                started = time.monotonic()
                quick_empty = 0
                try:
                    while not self._stop.is_set() and time.monotonic() - started < cfg.idle_renew:
                        t0 = time.monotonic()
                        responses = client.idle_check(timeout=cfg.check_every)
                        if not responses:
                            # imapclient swallows EOF: an empty answer well before the timeout,
                            # repeatedly, means the socket is readable but closed.
                            quick_empty = quick_empty + 1 if time.monotonic() - t0 < cfg.check_every / 4 else 0
                            if quick_empty >= 3:
                                raise _Dead("IDLE connection closed by the server")
                            if pending and not self._paused.is_set():
                                break  # the burst settled: report it
                            continue
                        quick_empty = 0
                        for resp in responses:
                            if len(resp) >= 2 and resp[0] == b"BYE":
                                raise _Dead(f"server said BYE: {resp[1]!r}")
                            if len(resp) >= 2 and isinstance(resp[1], bytes) and resp[1] in _CHANGE_WORDS:
                                pending.add(_CHANGE_WORDS[resp[1]])
                        if pending and not self._paused.is_set():
                            # let the rest of a burst arrive, then report once
                            more = client.idle_check(timeout=cfg.settle)
                            for resp in more:
                                if len(resp) >= 2 and isinstance(resp[1], bytes) and resp[1] in _CHANGE_WORDS:
                                    pending.add(_CHANGE_WORDS[resp[1]])
                            break
                finally:
                    try:
                        client.idle_done()
                    except _NET_ERRORS as e:
                        raise _Dead(f"IDLE ended badly: {e}") from e
            if pending and not self._paused.is_set():
                self._notify(",".join(sorted(pending)))
                pending.clear()

    def _status(self, session: ImapSession) -> tuple[int, ...]:
        poll = getattr(session, "poll_status", None)
        if callable(poll):  # a Graph mailbox: its folder's counts (Graph has no IDLE; mail_room polls too)
            with session.lock:
                return tuple(poll())
        client = session.client
        assert client is not None
        items = [b"MESSAGES", b"UIDNEXT", b"UNSEEN", b"UIDVALIDITY"]
        if "CONDSTORE" in session.capabilities:
            items.append(b"HIGHESTMODSEQ")
        with session.lock:
            r = client.folder_status(self.settings.mailbox, items)
        return tuple(int(r.get(k, 0)) for k in items)

    def _poll_loop(self, session: ImapSession) -> None:
        cfg = self.config
        self._set_state("poll", f"{cfg.poll_interval:g}s")
        last = self._status(session)
        while not self._stop.wait(cfg.poll_interval):
            if self._paused.is_set():
                continue
            now = self._status(session)  # the next check is armed only after this one returns
            if now != last:
                last = now
                self._notify("poll")

    # -- helpers ------------------------------------------------------------------------------

    def _notify(self, reason: str) -> None:
        try:
            self.on_change(reason)
        except Exception:  # noqa: BLE001 - the UI side may be shutting down
            log.debug("on_change failed", exc_info=True)

    def _set_state(self, mode: str, detail: str) -> None:
        self.mode = mode
        try:
            self.on_state(mode, detail)
        except Exception:  # noqa: BLE001
            log.debug("on_state failed", exc_info=True)

    def _close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            try:
                session.close()
            except Exception:  # noqa: BLE001 - best effort logout
                pass
