"""Errors that reach a person: one line each, with a distinct exit code.

Exit codes: 0 ok, 1 operation failed or incomplete, 2 usage or configuration error,
3 connection, authentication or TLS error, 4 refused (read-only, UIDVALIDITY changed,
confirmation missing).
"""

from __future__ import annotations


class TriageError(Exception):
    """Base class: ``str(err)`` is the one line shown to the operator."""

    exit_code = 1


class OperationFailed(TriageError):
    exit_code = 1


class OutputFailed(OperationFailed):
    """Standard output could not be written (a full disk, a quota, an I/O error); a closed pipe
    (``| head``) is not this: it ends the command quietly."""


class UsageError(TriageError):
    exit_code = 2


class ConfigError(UsageError):
    exit_code = 2


class ConnectionFailed(TriageError):
    """Network, TLS, authentication, or a lost connection."""

    exit_code = 3


class AuthenticationFailed(ConnectionFailed):
    exit_code = 3


class ConnectionLost(ConnectionFailed):
    """The server closed the connection (BYE) or the socket broke mid-command."""

    exit_code = 3
    #: A bulk command's answers received before the loss (a ``StoreResult``), when there were
    #: any: CONDSTORE skips and failures in them must survive the reconnect.
    partial: object = None


class Refused(TriageError):
    """A safety rule said no: read-only mode, UIDVALIDITY changed, no confirmation."""

    exit_code = 4


class ReadOnlyRefused(Refused):
    pass


class UidValidityChanged(Refused):
    pass


class MailboxMissing(TriageError):
    exit_code = 2
