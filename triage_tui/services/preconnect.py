"""Opening the IMAP connection while the command is still getting ready.

A CLI command spends its first ~0.2 s (the TUI ~0.5 s: Textual) importing and preparing before
it asks for its connection; behind a WAN, the TCP connect, the TLS handshake and LOGIN are two to
four round trips more, one after the other. The command line knows where it will connect as soon
as its settings are resolved, so :class:`Preconnect` opens the session then, in a thread, and the
service takes it when it asks for its first connection: the round trips overlap the imports.

Only where nothing can be asked of the operator on the way: credentials from the environment, the
config file or a password file. A password or token command (a vault that may ask for MFA) and
a prompt stay where they were, in the command's own thread, when the service asks. The session
is taken once, only for the same server and user; what opening it raised is raised where the
service asked, as it would have been there. A session nobody took is logged out at the end. For
a command that only reads, the thread EXAMINEs the mailbox too (the service then does not open it
again); one that may write opens it itself (SELECT, on its one connection)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from triage_tui.services.imap import ConnectionSettings, ImapSession, Limits

#: how long an exit waits for a session opened ahead and never used, to log it out
CLOSE_WAIT = 0.5
#: credential sources read without running anything or asking anyone
QUIET_CREDENTIALS = frozenset({"password_env", "password", "password_file", "oauth2_token_env"})


def _where(s: ConnectionSettings) -> tuple[Any, ...]:
    return (s.host, s.effective_port, s.security, s.user, s.ca_file, s.insecure_skip_verify, s.allow_plaintext)


class Preconnect:
    """One session being opened in a daemon thread (see the module's docstring)."""

    def __init__(self, settings: ConnectionSettings, limits: Limits | None,
                 opener: Callable[[ConnectionSettings, Limits | None], ImapSession] = ImapSession.open, *,
                 examine: bool = False) -> None:
        self.where = _where(settings)
        self._session: ImapSession | None = None
        self._error: BaseException | None = None
        self._taken = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._open, args=(opener, settings, limits, examine),
                                        name="triage-preconnect", daemon=True)
        self._thread.start()

    def _open(self, opener: Callable[[ConnectionSettings, Limits | None], ImapSession],
              settings: ConnectionSettings, limits: Limits | None, examine: bool) -> None:
        session = None
        try:
            session = opener(settings, limits)
            if examine:  # a reading command: the mailbox too (EXAMINE changes nothing)
                session.examine()
        except BaseException as e:  # noqa: BLE001 - raised again where the service asks for it
            self._error = e
            if session is not None:
                session.close(wait=False)
            return
        self._session = session

    def take(self, settings: ConnectionSettings) -> ImapSession | None:
        """The session opened ahead, once, if it is for these settings (else None: open one);
        waits for it. Raises what opening it raised."""
        with self._lock:
            if self._taken or _where(settings) != self.where:
                return None
            self._taken = True
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._session

    def close(self, wait: float = CLOSE_WAIT) -> None:
        """Log out a session nobody took (a command that ended before it connected), waiting at
        most ``wait`` seconds for it to open (an unreachable host is left to the timeout of a
        daemon thread, which ends with the process)."""
        with self._lock:
            if self._taken:
                return
            self._taken = True
        self._thread.join(wait)
        if not self._thread.is_alive() and self._session is not None:
            self._session.close(wait=False)
