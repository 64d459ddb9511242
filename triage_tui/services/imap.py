"""IMAP sessions: connecting safely, EXAMINE/SELECT, searching and streaming fetches.

Reads go through EXAMINE and BODY.PEEK only. The mutating primitives (``_store``,
``_uid_expunge``, ``_expunge``) are meant for :mod:`triage_tui.services.execute` alone (the triage
service's writes), which enforces read-only mode, UIDVALIDITY and the audit journal.
"""

from __future__ import annotations

import imaplib
import ipaddress
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import imapclient
from imapclient import exceptions as imap_exc
from imapclient import imap4 as _imap4
from imapclient import tls as _imap_tls

from triage_tui.domain import uidset
from triage_tui.domain.numbers import IMAP_MAX
from triage_tui.domain.redact import register
from triage_tui.domain.redact import scrub as scrub_secrets
from triage_tui.domain.text import inert
from triage_tui.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    ConnectionLost,
    MailboxMissing,
    OperationFailed,
    Refused,
    UsageError,
)
from triage_tui.services.imapwire import Completion, FetchRecord, Response, Wire, parse_fetch, parse_tokens

log = logging.getLogger("triage_tui.imap")
#: at most this many seconds of backing off, as a throttling server asks, per operation
MAX_THROTTLE_WAIT = 120.0
_BACKOFF = re.compile(r"Suggested Backoff Time: *(\d{1,7}) *milliseconds", re.IGNORECASE)

SECURITY_CHOICES = ("ssl", "starttls", "none")


class Secret:
    """A string that never shows itself in repr, str, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass
class ConnectionSettings:
    host: str = "127.0.0.1"
    port: int | None = None
    security: str = "ssl"  # ssl | starttls | none
    user: str = ""
    password: Secret | None = None
    mailbox: str = "INBOX"
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    allow_plaintext: bool = False
    timeout: float = 30.0
    oauth2_token: Secret | None = None  # XOAUTH2 bearer token, when set used instead of LOGIN
    oauth2_mechanism: str = "XOAUTH2"

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.security == "ssl" else 143)

    @property
    def server(self) -> str:
        return f"{self.host}:{self.effective_port}"


@dataclass(frozen=True)
class Limits:
    """How commands are cut (bytes per command, UIDs per command, commands in flight), and how
    many processes build what they bring."""

    max_bytes: int = 8192
    max_count: int = 1000
    window: int = 8
    #: worker processes that build a large listing's rows (None: one per CPU, at most 2; 0: none)
    workers: int | None = None


@dataclass
class MailboxInfo:
    name: str
    uidvalidity: int
    exists: int
    uidnext: int | None
    highestmodseq: int | None
    readonly: bool
    #: PERMANENTFLAGS as the server announced them (EXAMINE: always empty, RFC 3501)
    permanentflags: tuple[str, ...] = ()

    @property
    def keywords_allowed(self) -> bool | None:
        """Whether flags of our own (keywords) can be stored: ``\\*`` in PERMANENTFLAGS (Dovecot,
        Gmail; not Exchange). None under EXAMINE, which announces no permanent flags at all."""
        if self.readonly:
            return None
        return "\\*" in self.permanentflags


@dataclass
class TlsInfo:
    version: str | None
    cipher: str | None
    verified: bool
    subject: str | None = None
    issuer: str | None = None
    not_after: str | None = None

    @property
    def label(self) -> str:
        if not self.version:
            return "plaintext"
        return f"{self.version}{'' if self.verified else ' UNVERIFIED'}"


@dataclass
class StoreResult:
    done: list[int] = field(default_factory=list)
    modified: list[int] = field(default_factory=list)  # skipped: changed since our MODSEQ
    failed: list[tuple[list[int], str]] = field(default_factory=list)
    commands: int = 0
    #: after a lost connection: UIDs of commands sent but not answered (only these can have been
    #: changed by us without our knowing)
    unanswered: list[int] = field(default_factory=list)
    #: after an interruption (``stop`` set): UIDs never sent
    unsent: list[int] = field(default_factory=list)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    if host.lower() in ("localhost", "localhost.localdomain"):
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)
    return False


def make_ssl_context(settings: ConnectionSettings) -> ssl.SSLContext:
    if settings.insecure_skip_verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    try:
        return ssl.create_default_context(cafile=settings.ca_file) if settings.ca_file else ssl.create_default_context()
    except (OSError, ssl.SSLError) as e:
        raise UsageError(f"cannot read CA file {settings.ca_file}: {e}") from e


def _plain_ascii(text: str) -> bool:
    """Printable ASCII only: safe inside an IMAP quoted string."""
    return text.isascii() and text.isprintable()


def _server_text(e: BaseException) -> str:
    text = str(e)
    for prefix in ("b'", 'b"'):
        text = text.replace(prefix, "'")
    return text.strip()


class _GreetingCapabilities:
    """imaplib asks CAPABILITY right after the greeting; servers that put it in the greeting
    (``* OK [CAPABILITY ...]``, RFC 3501 7.1: Dovecot, Cyrus, Gmail...) have already answered, so
    take it from there and save a round trip. Only for the greeting: after STARTTLS imaplib
    asks again, as RFC 2595 requires (nothing said before TLS is trusted)."""

    _greeted = False
    untagged_responses: dict[str, list[Any]]
    capabilities: tuple[str, ...]

    def _get_capabilities(self) -> None:
        if not self._greeted:
            self._greeted = True
            dat = self.untagged_responses.pop("CAPABILITY", None)
            caps = tuple(dat[-1].decode("ascii", "replace").upper().split()) \
                if dat and isinstance(dat[-1], bytes) else ()
            if "IMAP4REV1" in caps:  # anything odd: ask, as imaplib would
                self.capabilities = caps
                return
        super()._get_capabilities()  # type: ignore[misc]


class _PlainIMAP4(_GreetingCapabilities, _imap4.IMAP4WithTimeout):
    pass


class _TlsIMAP4(_GreetingCapabilities, _imap_tls.IMAP4_TLS):
    pass


class _Client(imapclient.IMAPClient):
    """imapclient with :class:`_GreetingCapabilities`."""

    def _create_IMAP4(self) -> imaplib.IMAP4:  # noqa: N802 - imapclient's name
        if self.stream:
            return super()._create_IMAP4()
        connect_timeout = getattr(self._timeout, "connect", None)
        if self.ssl:
            return _TlsIMAP4(self.host, self.port, self.ssl_context, connect_timeout)
        return _PlainIMAP4(self.host, self.port, connect_timeout)


#: an EXAMINE this recent, with no command since, answers the next ``examine()`` (a service opens
#: its reader with one and its first search asks for another: one round trip for nothing)
FRESH_EXAMINE = 0.5



def _answers(items: str) -> Callable[[FetchRecord], bool]:
    """Whether a FETCH record carries what ``items`` asked beyond UID and FLAGS (an unsolicited
    flag update does not): the header section, else INTERNALDATE or RFC822.SIZE."""
    up = items.upper()
    if "BODY" in up:
        return lambda rec: rec.body is not None
    if "INTERNALDATE" in up or "RFC822.SIZE" in up:
        return lambda rec: rec.internaldate is not None or rec.size is not None
    return lambda rec: rec.flags is not None

class ImapSession:
    """One authenticated IMAP connection. Thread-safe for one caller at a time (a lock guards
    the socket: a cancelled Textual worker keeps running, so callers may overlap)."""

    def __init__(self, settings: ConnectionSettings, limits: Limits | None = None) -> None:
        self.settings = settings
        self.limits = limits or Limits()
        self.client: imapclient.IMAPClient | None = None
        self.wire: Wire | None = None
        self.capabilities: frozenset[str] = frozenset()
        self.mailbox: MailboxInfo | None = None
        self.tls: TlsInfo = TlsInfo(None, None, False)
        self.lock = threading.RLock()
        # what the server showed it accepts: a BAD on a long command halves these for the session
        self.max_bytes = self.limits.max_bytes
        self.max_count = self.limits.max_count
        self._throttle_hits = 0
        self._throttle_slept = 0.0
        #: commands sent through imaplib without waiting (ENABLE after login): (name, tag)
        self._pending: list[tuple[str, str]] = []
        #: (monotonic time, imaplib's tag counter) of the last EXAMINE: see :meth:`examine`
        self._opened_at: tuple[float, int] | None = None

    # -- connection ---------------------------------------------------------------------------

    @classmethod
    def open(cls, settings: ConnectionSettings, limits: Limits | None = None) -> ImapSession:
        session = cls(settings, limits)
        session.connect()
        return session

    def connect(self) -> None:
        s = self.settings
        if s.security not in SECURITY_CHOICES:
            raise UsageError(f"--security must be one of {', '.join(SECURITY_CHOICES)}")
        if not s.host:
            raise UsageError("no IMAP host: give --host or TRIAGE_IMAP_HOST")
        if not s.user:
            raise UsageError("no IMAP user: give --user or TRIAGE_IMAP_USER")
        if s.security == "none" and not s.allow_plaintext and not is_loopback(s.host):
            raise Refused(
                f"refusing plaintext IMAP login to {s.host} (not loopback): use --security ssl or starttls, "
                "or --allow-plaintext if you accept sending the password in clear")
        ctx = make_ssl_context(s) if s.security != "none" else None
        where = s.server
        try:
            client = _Client(s.host, port=s.effective_port, ssl=s.security == "ssl",
                                           ssl_context=ctx, timeout=s.timeout)
            if s.security == "starttls":
                caps = {c.decode().upper() for c in client.capabilities()}
                if "STARTTLS" not in caps:
                    client.shutdown()
                    raise ConnectionFailed(f"{where} does not offer STARTTLS: refusing to log in without TLS "
                                           "(use --security ssl if it speaks implicit TLS)")
                client.starttls(ctx)
        except ConnectionFailed:
            raise
        except ssl.SSLCertVerificationError as e:
            raise ConnectionFailed(f"TLS certificate of {where} not trusted: {e.verify_message or e.reason} "
                                   "(give --ca-file with the issuing CA)") from e
        except ssl.SSLError as e:
            raise ConnectionFailed(f"TLS handshake with {where} failed: {e.reason or e}") from e
        except socket.gaierror as e:
            raise ConnectionFailed(f"cannot resolve IMAP host {s.host}: {e.strerror or e}") from e
        except TimeoutError as e:
            raise ConnectionFailed(f"timed out connecting to {where}") from e
        except ConnectionRefusedError as e:
            raise ConnectionFailed(f"connection to {where} refused (is the IMAP server running on that port?)") from e
        except OSError as e:
            raise ConnectionFailed(f"cannot connect to {where}: {e.strerror or e}") from e
        except imap_exc.IMAPClientError as e:
            raise ConnectionFailed(f"IMAP error from {where}: {_server_text(e)}") from e
        self.client = client
        _no_delay(client._imap)
        self.wire = Wire(client._imap)
        self.tls = self._tls_info(client, verified=s.security != "none" and not s.insecure_skip_verify)
        self._login()
        try:
            self.capabilities = frozenset(c.decode().upper() for c in client.capabilities())
            if "CONDSTORE" in self.capabilities and "ENABLE" in self.capabilities:
                # sent now, answered along with the next command (EXAMINE): no round trip of its own
                self._pending.append(("ENABLE", client._imap._command("ENABLE", "CONDSTORE")))
        except (imaplib.IMAP4.abort, OSError) as e:
            self._drop()
            raise ConnectionLost(f"connection to {where} lost: {_server_text(e)}") from e
        except imap_exc.IMAPClientError as e:
            raise ConnectionFailed(f"IMAP error from {where}: {_server_text(e)}") from e

    def _login(self) -> None:
        s, client = self.settings, self.client
        assert client is not None
        try:
            if s.oauth2_token:
                if s.oauth2_mechanism.upper() == "OAUTHBEARER":
                    client.oauthbearer_login(s.user, s.oauth2_token.reveal())
                else:
                    client.oauth2_login(s.user, s.oauth2_token.reveal())
            else:
                if s.password is None:
                    raise UsageError("no IMAP password: set TRIAGE_IMAP_PASSWORD, --password-env or --password-file")
                self._password_login(client, s.password.reveal())
        except AuthenticationFailed:
            self._drop()
            raise
        except UnicodeError:
            # never str(e): a codec error quotes the character and its position in the secret
            self._drop()
            raise AuthenticationFailed(f"authentication failed for user {inert(s.user)} at {s.server}: the user name or "
                                       "password is not ASCII and the server took no UTF-8 login") from None
        except imap_exc.LoginError as e:
            self._drop()
            raise AuthenticationFailed(f"authentication failed for user {inert(s.user)} at {s.server}: "
                                       f"{self._scrub(_server_text(e))}") from None
        except imap_exc.IMAPClientError as e:
            self._drop()
            raise AuthenticationFailed(f"login to {s.server} failed: {self._scrub(_server_text(e))}") from None
        except OSError as e:
            self._drop()
            raise ConnectionLost(f"connection to {s.server} lost during login: {e}") from None

    def _password_login(self, client: imapclient.IMAPClient, password: str) -> None:
        """LOGIN with both arguments quoted (imaplib sends the user name raw: a space or a CRLF in it
        would break or inject a command). A user name or password that is not plain printable
        ASCII goes as UTF-8: AUTHENTICATE PLAIN (RFC 4616 is UTF-8 by definition) when the server
        offers it, else LOGIN with the password as a literal (8-bit data is allowed in literals;
        the server decides whether it matches). imaplib would encode it as ASCII and fail on our
        side with an error that quotes the password's characters."""
        s = self.settings
        user = s.user
        if "\0" in user + password:
            raise AuthenticationFailed(f"authentication failed for user {inert(user)} at {s.server}: the user name or "
                                       "password contains a NUL character, which no IMAP login can carry")
        try:
            (user + password).encode("utf-8")
        except UnicodeError:
            raise AuthenticationFailed(f"authentication failed for user {inert(user)} at {s.server}: the user name or "
                                       "password is not valid UTF-8 text (undecodable bytes where it came from)"
                                       ) from None
        imap = client._imap
        if _plain_ascii(user) and _plain_ascii(password) and not client.has_capability("LOGINDISABLED"):
            self._login_command(imap, imap._quote(user), imap._quote(password))
        elif client.has_capability("AUTH=PLAIN"):
            client.plain_login(user, password)
        elif not _plain_ascii(user):
            raise AuthenticationFailed(f"authentication failed at {s.server}: the user name is not plain ASCII and "
                                       "the server offers no AUTHENTICATE PLAIN to send it as UTF-8")
        else:
            imap.literal = password.encode("utf-8")
            try:
                self._login_command(imap, imap._quote(user))
            finally:
                imap.literal = None

    @staticmethod
    def _login_command(imap: imaplib.IMAP4, *args: str) -> None:
        try:
            typ, data = imap._simple_command("LOGIN", *args)
        except imaplib.IMAP4.abort:
            raise  # the connection broke: reported as such by _login
        except imaplib.IMAP4.error as e:
            raise imap_exc.LoginError(str(e)) from None
        if typ != "OK":
            last = data[-1] if data else b""
            raise imap_exc.LoginError(last.decode("utf-8", "replace") if isinstance(last, bytes) else str(last))
        imap.state = "AUTH"

    def _scrub(self, text: str) -> str:
        """Server text may echo what we sent: never let a password or token through, in any
        spelling (quoted, escaped, percent- or base64-encoded, case-folded)."""
        s = self.settings
        return scrub_secrets(text, [x.reveal() for x in (s.password, s.oauth2_token) if x], user=s.user)

    @staticmethod
    def _tls_info(client: imapclient.IMAPClient, verified: bool) -> TlsInfo:
        sock = getattr(client._imap, "sock", None)
        if not isinstance(sock, ssl.SSLSocket):
            return TlsInfo(None, None, False)
        cipher = sock.cipher()
        info = TlsInfo(sock.version(), cipher[0] if cipher else None, verified)
        cert: dict[str, Any] = sock.getpeercert() or {}
        if cert:
            def name(field_: str) -> str:
                return ", ".join("=".join(x) for rdn in cert.get(field_, ()) for x in rdn)

            info.subject, info.issuer, info.not_after = name("subject"), name("issuer"), cert.get("notAfter")
        return info

    def _drop(self) -> None:
        if self.client is not None:
            try:
                self.client.shutdown()
            except Exception:  # noqa: BLE001 - best effort on an already failing connection
                pass
        self.client = None
        self.wire = None

    def close(self, *, wait: bool = True) -> None:
        """Log out (best effort) and close the socket. ``wait=False`` (a CLI command's exit):
        send LOGOUT and close at once instead of waiting a round trip for its BYE. Every command
        before it has had its answer; the server still logs the session out cleanly (it reads
        LOGOUT before the end of the stream; checked against Dovecot's log)."""
        with self.lock:
            if self.client is None:
                return
            if not wait:
                self._logout_unanswered()
                return
            try:
                self.client.logout()
            except Exception:  # noqa: BLE001 - the connection may already be gone
                self._drop()
            self.client = None
            self.wire = None

    def _logout_unanswered(self) -> None:
        client = self.client
        assert client is not None
        try:
            imap = client._imap
            imap.send(imap._new_tag() + b" LOGOUT\r\n")
            imap.sock.shutdown(socket.SHUT_WR)  # the end of our stream, after LOGOUT
        except Exception:  # noqa: BLE001 - the connection may already be gone
            pass
        self._drop()

    def __enter__(self) -> ImapSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- mailbox ------------------------------------------------------------------------------

    def _require(self, settle: bool = True) -> tuple[imapclient.IMAPClient, Wire]:
        if self.client is None or self.wire is None:
            raise ConnectionLost("not connected")
        self._opened_at = None
        if settle and self._pending:
            self._settle()
        return self.client, self.wire

    def _settle(self) -> None:
        """Collect the answers of commands sent without waiting (before the wire reads on its own)."""
        pending, self._pending = self._pending, []
        where = self.settings.server
        for name, tag in pending:
            if self.client is None:
                return
            try:
                typ, data = self.client._imap._command_complete(name, tag)
            except (imaplib.IMAP4.abort, OSError) as e:
                self._drop()
                raise ConnectionLost(f"connection to {where} lost: {_server_text(e)}") from None
            except imaplib.IMAP4.error as e:
                raise ConnectionFailed(f"IMAP error from {where}: {_server_text(e)}") from None
            if typ != "OK":
                last = data[-1] if data else b""
                text = last.decode("utf-8", "replace") if isinstance(last, bytes) else str(last)
                raise ConnectionFailed(f"IMAP error from {where}: {name} failed: {inert(text)}")

    def examine(self, mailbox: str | None = None) -> MailboxInfo:
        """Open the mailbox read-only (EXAMINE): nothing we do afterwards can change flags.
        An EXAMINE of the same mailbox answered less than :data:`FRESH_EXAMINE` ago, with no
        command since, is taken as this one's answer (once)."""
        name = mailbox or self.settings.mailbox
        info, opened, client = self.mailbox, self._opened_at, self.client
        if (info is not None and info.readonly and info.name == name and opened is not None and client is not None
                and time.monotonic() - opened[0] < FRESH_EXAMINE
                and getattr(client._imap, "tagnum", None) == opened[1]):  # no command at all since
            self._opened_at = None
            return info
        return self._open(name, readonly=True)

    def select(self, mailbox: str | None = None) -> MailboxInfo:
        """Open the mailbox read-write. Only the triage service calls this, for a confirmed write."""
        return self._open(mailbox or self.settings.mailbox, readonly=False)

    def _shrink(self, members: list[int]) -> tuple[list[int], list[int]]:
        """After a BAD on a multi-UID command: halve it, and remember the smaller size."""
        half = len(members) // 2
        self.max_count = max(1, min(self.max_count, half))
        self.max_bytes = max(64, min(self.max_bytes, len(uidset.compress(members[:half])) + 8))
        log.info("server refused a long command; now at most %d UIDs / %d bytes", self.max_count, self.max_bytes)
        return members[:half], members[half:]

    def _throttled(self, done: Completion, members: list[int]) -> bool:
        """A throttling answer (Office 365: "... Suggested Backoff Time: N milliseconds", or a
        [THROTTLED]/[UNAVAILABLE] code): wait as told, halve future commands, and say "retry"."""
        m = _BACKOFF.search(done.text)
        if not m and done.code not in ("THROTTLED", "UNAVAILABLE", "LIMIT"):
            return False
        self._throttle_hits += 1
        if self._throttle_hits == 1:
            self._throttle_slept = 0.0
        wait = min(int(m.group(1)) / 1000 if m else min(30.0, 0.5 * 2 ** min(self._throttle_hits, 6)), 60.0)
        if self._throttle_hits > 20 or self._throttle_slept + wait > MAX_THROTTLE_WAIT:
            # the server keeps saying no: report the chunk as failed (a server answering every
            # command with NO [LIMIT] kept a mark-seen silent for 8 minutes, past any timeout)
            return False
        log.info("server asks to back off %.1f s", wait)
        self._throttle_slept += wait
        time.sleep(wait)
        if len(members) > 1:
            self.max_count = max(1, min(self.max_count, len(members) // 2))
        return True

    def _pieces(self, uids: Iterable[int]) -> Iterator[tuple[str, list[int]]]:
        return uidset.split(uids, max_bytes=self.max_bytes, max_count=self.max_count)

    def _open(self, name: str, readonly: bool) -> MailboxInfo:
        client, _ = self._require(settle=False)  # a pending ENABLE is answered along the way
        with self.lock:
            try:
                r = client.select_folder(name, readonly=readonly)
            except imaplib.IMAP4.abort as e:
                self._drop()
                raise ConnectionLost(f"connection lost opening {name!r}: {_server_text(e)}") from None
            except imap_exc.IMAPClientError as e:
                text = _server_text(e)
                if any(w in text.lower() for w in ("exist", "nonexistent", "not found", "unknown mailbox")):
                    raise MailboxMissing(f"mailbox {name!r} does not exist on {self.settings.server}"
                                         f"{self._folders_hint()}") from None
                raise OperationFailed(f"cannot open mailbox {name!r}: {text}") from None
            except OSError as e:
                self._drop()
                raise ConnectionLost(f"connection lost opening {name!r}: {e}") from None
            except ValueError as e:  # imapclient's int() of a number that is none (UIDNEXT abc)
                raise OperationFailed(f"cannot open mailbox {name!r}: the server's answer does not parse "
                                      f"({' '.join(str(e).split())[:80]})") from None
        uidvalidity = _number(r.get(b"UIDVALIDITY"), IMAP_MAX)
        if uidvalidity is None:
            raise OperationFailed(f"server sent no UIDVALIDITY for {name!r} (or one that is not a number from 1 to "
                                  f"{IMAP_MAX}); refusing to work without it")
        self.mailbox = MailboxInfo(
            name=name,
            uidvalidity=uidvalidity,
            exists=_number(r.get(b"EXISTS"), IMAP_MAX, low=0) or 0,
            uidnext=_number(r.get(b"UIDNEXT"), IMAP_MAX + 1),
            # an absurd one (0, negative, above 2^63-1) is none: no UNCHANGEDSINCE guard built on it
            highestmodseq=_number(r.get(b"HIGHESTMODSEQ"), MAX_MODSEQ),
            readonly=readonly,
            permanentflags=tuple(f.decode("ascii", "replace") if isinstance(f, bytes) else str(f)
                                 for f in (r.get(b"PERMANENTFLAGS") or ())),
        )
        if self._pending:
            self._settle()
        self._opened_at = (time.monotonic(), getattr(client._imap, "tagnum", -1)) if readonly else None
        return self.mailbox

    def _folders_hint(self) -> str:
        try:
            assert self.client is not None
            names = [f[2] for f in self.client.list_folders()][:10]
        except Exception:  # noqa: BLE001 - a hint only
            return ""
        return f" (it has: {', '.join(names)})" if names else ""

    def status(self, mailbox: str | None = None) -> dict[str, int]:
        client, _ = self._require()
        with self.lock:
            try:
                r = client.folder_status(mailbox or self.settings.mailbox,
                                         [b"MESSAGES", b"UNSEEN", b"UIDNEXT", b"UIDVALIDITY"])
            except (imaplib.IMAP4.abort, OSError) as e:
                self._drop()
                raise ConnectionLost(f"connection lost: {_server_text(e)}") from None
            except imap_exc.IMAPClientError as e:
                raise OperationFailed(f"STATUS failed: {_server_text(e)}") from None
        return {k.decode().lower(): int(v) for k, v in r.items()}

    # -- reading ------------------------------------------------------------------------------

    def search(self, criteria: str) -> list[int]:
        """``UID SEARCH``; uses ESEARCH (compact ranges) when offered, so 100k results stay small."""
        _, wire = self._require()
        esearch = "ESEARCH" in self.capabilities
        with self.lock:
            untagged, done, tag = wire.command_tagged(self._search_command(criteria))
            self._check(done, "SEARCH")
        return _search_answer(untagged, esearch, tag)

    def _search_command(self, criteria: str) -> bytes:
        return (b"UID SEARCH RETURN (ALL) " if "ESEARCH" in self.capabilities else b"UID SEARCH ") \
            + criteria.encode("ascii")

    def changed_since_and_search(self, since: int, criteria: str) -> tuple[dict[int, tuple[str, ...]], list[int]]:
        """``UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE since)`` (RFC 7162: the flags of every
        message changed since) and ``UID SEARCH criteria``, pipelined: one round trip for both.
        Raises :class:`OperationFailed` naming the command the server refused."""
        changed, untagged, tags = self._changes_and_searches(since, [("SEARCH", criteria)])
        return changed, _search_answer(untagged, "ESEARCH" in self.capabilities, tags["SEARCH"])

    def search_and_changes(self, criteria: str, since: int, probe: Iterable[int] = (),
                           ) -> tuple[list[int], dict[int, tuple[str, ...]], list[int], list[tuple[int, int]],
                                      dict[int, tuple[datetime | None, int | None]]]:
        """``UID SEARCH criteria``, ``UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE since)``, ``UID
        SEARCH RECENT`` and ``UID SEARCH ALL`` pipelined: what a warm listing asks, in one round
        trip instead of two or three. Needs ESEARCH, whose answers name the command they answer
        (plain ``* SEARCH`` answers could not be told apart) and keep ALL compact. Returns (found,
        changed flags, \\Recent UIDs, every UID as sorted runs, ``{uid: (INTERNALDATE, size)}`` of the
        ``probe`` UIDs still there, asked in the same burst); raises :class:`OperationFailed` if
        the server refused any of them or answered with a set that does not parse."""
        if "ESEARCH" not in self.capabilities:
            raise OperationFailed("SEARCH and FETCH CHANGEDSINCE pipelined need ESEARCH")
        probed: dict[int, tuple[datetime | None, int | None]] = {}
        changed, untagged, tags = self._changes_and_searches(
            since, [("SEARCH", criteria), ("SEARCH RECENT", "RECENT"), ("SEARCH ALL", "ALL")], search_first=True,
            probe=sorted(set(probe)), probed=probed)
        by_tag = _esearch_by_tag([r for r in untagged if _is_esearch(r)])
        if by_tag is None or set(by_tag) != {tags["SEARCH"], tags["SEARCH RECENT"], tags["SEARCH ALL"]}:
            raise OperationFailed("the server's answers to pipelined SEARCHes could not be told apart by their tags")
        return (_server_uids(by_tag[tags["SEARCH"]], "SEARCH"), changed,
                _server_uids(by_tag[tags["SEARCH RECENT"]], "SEARCH RECENT"),
                _server_runs(by_tag[tags["SEARCH ALL"]], "SEARCH ALL"), probed)

    def _changes_and_searches(self, since: int, searches: list[tuple[str, str]], *, search_first: bool = False,
                              probe: list[int] | None = None,
                              probed: dict[int, tuple[datetime | None, int | None]] | None = None,
                              ) -> tuple[dict[int, tuple[str, ...]], list[Response], dict[str, bytes]]:
        """``UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE since)`` and the ``(name, criteria)``
        SEARCHes, all in flight at once (after the first SEARCH if ``search_first``, else
        first). Returns the changed flags, the other untagged answers and each command's tag by
        name; raises :class:`OperationFailed` naming every command the server refused."""
        _, wire = self._require()
        commands = [(self._search_command(criteria), name) for name, criteria in searches]
        fetch = (f"UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE {int(since)})".encode("ascii"), "FETCH CHANGEDSINCE")
        commands.insert(1 if search_first else 0, fetch)
        if probe:
            commands.append((f"UID FETCH {uidset.compress(probe)} (UID INTERNALDATE RFC822.SIZE)".encode("ascii"),
                             "FETCH PROBE"))
        asked = set(probe or ())
        changed: dict[int, tuple[str, ...]] = {}
        untagged: list[Response] = []
        failed: list[str] = []
        with self.lock:
            pipe = wire.pipeline(len(commands))
            for command, name in commands:
                pipe.submit(command, name)
            for ev in pipe.events():
                if isinstance(ev, Response):
                    rec = parse_fetch(ev)
                    if rec is None:
                        untagged.append(ev)
                    elif rec.uid is not None and rec.flags is not None:
                        changed[rec.uid] = rec.flags
                    elif probed is not None and rec.uid in asked and rec.internaldate is not None:
                        probed[rec.uid] = (rec.internaldate, rec.size)
                    continue
                what, done = ev
                if not done.ok:
                    failed.append(f"{what} failed: {done}")
        if failed:
            raise OperationFailed("; ".join(failed))
        return changed, untagged, {name: tag for name, tag in pipe.sent}

    def search_within(self, uids: Iterable[int], criteria: str) -> list[int]:
        """Which of ``uids`` match ``criteria`` now: ``UID SEARCH UID <piece> <criteria>`` per piece
        of the set (pieces bounded by bytes only: SEARCH returns at most what we send), halving a
        piece the server refuses as too long."""
        pending = [members for _, members in uidset.split(uids, max_bytes=self.max_bytes, max_count=10_000_000)]
        asked = {u for members in pending for u in members}
        out: list[int] = []
        while pending:
            members = pending.pop()
            try:
                out.extend(self.search(f"UID {uidset.compress(members)} {criteria}"))
            except OperationFailed as e:
                if " BAD " not in f" {e} " or len(members) < 2:
                    raise
                pending.extend(self._shrink(members))
        # only what was asked: a server that answers UIDs outside the set (one ignoring the UID
        # key) must not turn a narrowing into targets the operator never chose
        return sorted(asked.intersection(out))

    def count(self, criteria: str) -> int:
        _, wire = self._require()
        if "ESEARCH" not in self.capabilities:
            return len(self.search(criteria))
        with self.lock:
            untagged, done, tag = wire.command_tagged(b"UID SEARCH RETURN (COUNT) " + criteria.encode("ascii"))
            self._check(done, "SEARCH")
        resp = _our_esearch(untagged, tag)
        if resp is None:
            return 0
        toks = resp.tokens()
        for i, t in enumerate(toks):
            if isinstance(t, bytes) and t.upper() == b"COUNT" and i + 1 < len(toks):
                n = toks[i + 1]
                if isinstance(n, bytes):
                    n = n.strip()  # the last token keeps the line's CRLF
                if not isinstance(n, bytes) or not n.isdigit() or len(n) > 10:
                    raise OperationFailed(f"the server answered SEARCH RETURN (COUNT) with {_shown_reply(n)}, "
                                          "which is not a count")
                return int(n)
        return 0

    def fetch_stream(
        self,
        uids: Iterable[int],
        items: str,
        *,
        on_untagged: Callable[[Response], None] | None = None,
    ) -> Iterator[list[FetchRecord]]:
        """``UID FETCH`` in pipelined chunks; yields each chunk's records as soon as it completes.

        Round trips: about ``len(uids) / max_count / window``. Each asked UID is given once, from
        the FETCH answer that carries the asked items: a server may send flag updates of its own
        (unsolicited FETCH) in between, with a UID under a UID command (RFC 3501 7.4.2; Dovecot
        leaves it out, others do not), for a UID asked before, later or not at all. Taken as
        answers, they listed a message twice (once with no header) or one that is not in the
        view, which a bulk selection could then mark. They go to ``on_untagged``; one that is all
        a server ever sends for an asked UID is given last (a degraded row, as before).

        Records come out in ascending UID order, whatever order they arrive in: a server may run
        pipelined commands in parallel (RFC 3501 5.5), and Dovecot does when the client reads
        slower than it writes (a cold listing building rows): its answers to several FETCHes
        interleave. Given in arrival order, a listing's order changed from run to run, and with it
        which copy of a duplicate Message-ID ``list`` flagged and what ``--limit`` printed. An
        answer that comes before an earlier UID's waits for it, or for the end of that UID's
        command (a UID expunged meanwhile has no answer): at most the commands in flight.
        """
        if "BODY[" in items.replace("BODY.PEEK[", "") or ("RFC822" in items.replace("RFC822.SIZE", "").replace("RFC822.HEADER", "")):
            raise ValueError("refusing a FETCH that could set \\Seen: use BODY.PEEK")
        _, wire = self._require()
        lim = self.limits
        uids = list(uids)
        asked = set(uids)
        with self.lock:
            self._throttle_hits = 0  # per operation
            pipe = wire.pipeline(lim.window)
            order: list[int] = []  # the asked UIDs, ascending (the pieces are: uidset.split sorts)
            for text, members in self._pieces(uids):
                pipe.submit(f"UID FETCH {text} ({items})".encode("ascii"), members)
                order += members
            batch: list[FetchRecord] = []
            answers = _answers(items)
            given: set[int] = set()
            spare: dict[int, FetchRecord] = {}  # an asked UID's record without the asked items
            early: dict[int, FetchRecord] = {}  # answers that came before an earlier UID's
            unanswered: set[int] = set()  # UIDs whose command ended without their answer
            nxt = 0  # order[nxt] is the next UID to give

            def release() -> None:
                """Give what waited for the UIDs now given or known unanswered."""
                nonlocal nxt
                while nxt < len(order):
                    u = order[nxt]
                    rec = early.pop(u, None)
                    if rec is not None:
                        batch.append(rec)
                    elif u not in unanswered:
                        return
                    nxt += 1

            def full() -> list[list[FetchRecord]]:
                """The whole batches of ``lim.max_count`` records that ``batch`` holds (a release
                can give a few commands' worth at once), taken out of it."""
                nonlocal batch
                m = lim.max_count
                k = len(batch) - len(batch) % m
                parts = [batch[i:i + m] for i in range(0, k, m)]
                batch = batch[k:]
                return parts

            for ev in pipe.events():
                if isinstance(ev, Response):
                    rec = parse_fetch(ev)
                    uid = rec.uid if rec is not None else None
                    if rec is not None and uid in asked and uid not in given and answers(rec):
                        given.add(uid)  # type: ignore[arg-type]
                        if nxt < len(order) and uid == order[nxt]:
                            batch.append(rec)
                            nxt += 1
                            if early:
                                release()
                        elif nxt == len(order) or uid < order[nxt]:  # type: ignore[operator]
                            batch.append(rec)  # after its command ended without it: late, not lost
                        else:
                            unanswered.discard(uid)  # type: ignore[arg-type]
                            early[uid] = rec  # type: ignore[index]
                        if len(batch) >= lim.max_count:
                            yield from full()
                        continue
                    if rec is not None and uid in asked and uid not in given:
                        spare[uid] = rec  # type: ignore[index]
                    if on_untagged is not None:
                        on_untagged(ev)
                    continue
                members, done = ev
                if not done.ok:
                    if self._throttled(done, members):
                        pipe.submit(f"UID FETCH {uidset.compress(members)} ({items})".encode("ascii"), members)
                        continue
                    if done.status == "BAD" and len(members) > 1:
                        # "Too long argument" and friends: halve and retry
                        for part in self._shrink(members):
                            pipe.submit(f"UID FETCH {uidset.compress(part)} ({items})".encode("ascii"), part)
                        continue
                    raise OperationFailed(f"FETCH failed: {done}")
                unanswered.update(u for u in members if u not in given)
                release()
                yield from full()
                if batch:
                    yield batch
                    batch = []
            batch += [early.pop(u) for u in order[nxt:] if u in early]  # every command ended: none
            batch += [rec for u, rec in sorted(spare.items()) if u not in given]
            if batch:
                yield batch

    def fetch_header(self, uid: int) -> FetchRecord | None:
        """The full header of one message, with BODY.PEEK (never sets \\Seen)."""
        for batch in self.fetch_stream([uid], "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER]"):
            for rec in batch:
                if rec.uid == uid:
                    return rec
        return None

    # -- writing (for services.execute only) ----------------------------------------------------

    def _store(self, uids: list[int], flag: str, add: bool, unchangedsince: int | None = None,
               progress: Callable[[list[int]], None] | None = None,
               stop: threading.Event | None = None,
               on_untagged: Callable[[Response], None] | None = None,
               announce: Callable[[list[Any]], bool] | None = None,
               skim: tuple[re.Pattern[bytes], Callable[[bytes], None]] | None = None) -> StoreResult:
        """Silent ``UID STORE`` in compressed, split, pipelined chunks. With ``unchangedsince``,
        UIDs another client changed meanwhile come back in ``modified`` (CONDSTORE), not done.
        ``on_untagged`` sees the untagged answers (the FETCH ... MODSEQ of each change);
        ``announce`` the members of each window of commands before they go, ``skim`` runs of
        one-line untagged answers in bulk (see :class:`Pipeline`)."""
        op = "+FLAGS.SILENT" if add else "-FLAGS.SILENT"
        mod = f" (UNCHANGEDSINCE {unchangedsince})" if unchangedsince is not None else ""

        uncertain: list[int] = []

        def accept(members: list[int], done: Completion, result: StoreResult) -> list[int]:
            if done.code != "MODIFIED":
                return members
            runs = _modified_runs(done.code_arg or "")
            if runs is None:  # not a set: which of them were stored is unknown; their flags tell, below
                uncertain.extend(members)
                return []
            modified = [u for u in members if uidset.contains(runs, u)]
            result.modified.extend(modified)
            skip = set(modified)
            return [u for u in members if u not in skip]

        result = self._chunked(uids, lambda s: f"UID STORE {s}{mod} {op} ({flag})", accept, progress, stop,
                               on_untagged, announce, skim)
        if uncertain:
            have = set(self.search_within(uncertain, _flags_criteria(flag, add)))
            ok = [u for u in uncertain if u in have]
            result.done.extend(ok)
            result.modified.extend(u for u in uncertain if u not in have)
            if progress and ok:
                progress(ok)
        return result

    def _uid_expunge(self, uids: list[int], progress: Callable[[list[int]], None] | None = None,
                     stop: threading.Event | None = None,
                     announce: Callable[[list[Any]], bool] | None = None) -> StoreResult:
        if "UIDPLUS" not in self.capabilities:
            raise Refused("the server does not offer UIDPLUS, so an exact UID EXPUNGE is impossible; "
                          "use --all-deleted to expunge every \\Deleted message")
        return self._chunked(uids, lambda s: f"UID EXPUNGE {s}", lambda members, _d, _r: members, progress, stop,
                             announce=announce)

    def _chunked(
        self,
        uids: list[int],
        command: Callable[[str], str],
        accept: Callable[[list[int], Completion, StoreResult], list[int]],
        progress: Callable[[list[int]], None] | None,
        stop: threading.Event | None,
        on_untagged: Callable[[Response], None] | None = None,
        announce: Callable[[list[Any]], bool] | None = None,
        skim: tuple[re.Pattern[bytes], Callable[[bytes], None]] | None = None,
    ) -> StoreResult:
        """One command per piece of the UID set, pipelined. A throttling answer waits and resends
        the piece, a BAD halves it; ``stop`` ends sending (what is in flight completes). On a lost
        connection the partial result travels on the exception: what was answered, and what was
        sent unanswered (the only UIDs a resume cannot be sure about)."""
        _, wire = self._require()
        result = StoreResult()
        with self.lock:
            self._throttle_hits = 0  # per operation
            pipe = wire.pipeline(self.limits.window, stop, announce, skim)
            for text, members in self._pieces(uids):
                pipe.submit(command(text).encode("ascii"), members)
            try:
                for ev in pipe.events():
                    if isinstance(ev, Response):
                        if on_untagged is not None:
                            on_untagged(ev)  # untagged FETCH with MODSEQ, EXPUNGE counts...
                        continue
                    members, done = ev
                    result.commands += 1
                    if done.ok:
                        ok = accept(members, done, result)
                        result.done.extend(ok)
                        if progress:
                            progress(ok)
                    elif self._throttled(done, members):
                        pipe.submit(command(uidset.compress(members)).encode("ascii"), members)
                    elif done.status == "BAD" and len(members) > 1:
                        for part in self._shrink(members):
                            pipe.submit(command(uidset.compress(part)).encode("ascii"), part)
                    else:
                        result.failed.append((members, str(done)))
            except ConnectionLost as e:
                result.unanswered = [u for p in pipe.inflight.values() for u in (p.context or [])]
                e.partial = result
                raise
            result.unsent = [u for members in pipe.unsent for u in (members or [])]
        return result

    def _expunge_all(self) -> int:
        """Plain EXPUNGE: removes every \\Deleted message in the mailbox. Returns how many went."""
        _, wire = self._require()
        with self.lock:
            untagged, done = wire.command(b"EXPUNGE")
        self._check(done, "EXPUNGE")
        return sum(1 for r in untagged if r.first.rstrip().upper().endswith(b" EXPUNGE"))

    @staticmethod
    def _check(done: Completion, what: str) -> None:
        if not done.ok:
            raise OperationFailed(f"{what} failed: {done}")


def _no_delay(imap: Any) -> None:
    """TCP_NODELAY on the connection: we pipeline, and with Nagle's algorithm each command after
    the first of a burst waits for the server's ACK of the one before (its delayed ACK, or a
    whole round trip on a WAN): the pipeline would cost a round trip per command again."""
    sock = getattr(imap, "sock", None)
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError, ValueError):  # not TCP (a test's stream), or already closed
        pass


_SET_PART = re.compile(r"([0-9]{1,10}|\*)(?::([0-9]{1,10}|\*))?")
_SYSTEM_FLAGS = {"\\seen": "SEEN", "\\deleted": "DELETED", "\\flagged": "FLAGGED", "\\answered": "ANSWERED",
                 "\\draft": "DRAFT"}


def _modified_runs(text: str) -> list[tuple[int, int]] | None:
    """The runs of a ``[MODIFIED <set>]`` code, read as a server may write it (``*``: the
    highest UID, so ``1:*`` is every one), or None when it is no set (``abc``): then which UIDs
    the STORE changed is unknown. More than 10,000 runs count as no set."""
    parts = text.strip().split(",")
    if len(parts) > 10_000:
        return None
    runs = []
    for part in parts:
        m = _SET_PART.fullmatch(part)
        if m is None:
            return None
        a = IMAP_MAX if m.group(1) == "*" else int(m.group(1))
        b = a if m.group(2) is None else IMAP_MAX if m.group(2) == "*" else int(m.group(2))
        runs.append((min(a, b), max(a, b)))
    return uidset.merge(runs)


def _flags_criteria(flags: str, add: bool) -> str:
    """SEARCH criteria for messages that carry every one of ``flags`` (``add``), or none of them."""
    out = []
    for f in flags.split():
        key = _SYSTEM_FLAGS.get(f.lower())
        if key is not None:
            out.append(key if add else "UN" + key)
        else:
            out.append(("KEYWORD " if add else "UNKEYWORD ") + f)
    return " ".join(out)


MAX_MODSEQ = 2**63 - 1  # RFC 7162's mod-sequence-value


def _number(value: object, high: int, *, low: int = 1) -> int | None:
    """A number the server sent in a SELECT answer, if it is one in ``low..high``; else None."""
    try:
        n = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    return n if low <= n <= high else None


def _shown_reply(value: object) -> str:
    text = value.decode("ascii", "backslashreplace") if isinstance(value, bytes) else repr(value)
    return repr(text if len(text) <= 40 else text[:40] + "…")


def _server_runs(text: str, what: str) -> list[tuple[int, int]]:
    """A UID set the server sent, as runs. A set that is none (``*``, ``0``, ``5:abc``) is the
    server's fault, not the operator's: OperationFailed, never the usage advice of
    :func:`uidset.parse_ranges`."""
    try:
        return uidset.parse_ranges(text)
    except UsageError:
        raise OperationFailed(f"the server answered {what} with {_shown_reply(text)}, which is not a set of UIDs"
                              ) from None


def _server_uids(text: str, what: str) -> list[int]:
    return [u for lo, hi in _server_runs(text, what) for u in range(lo, hi + 1)]


def _correlator(toks: list[Any]) -> bytes | None:
    """The tag an ``* ESEARCH (TAG "<tag>") ...`` answer names, None when it names none."""
    c = toks[2] if len(toks) > 2 else None
    if isinstance(c, list) and len(c) == 2 and isinstance(c[0], bytes) and c[0].upper() == b"TAG" \
            and isinstance(c[1], bytes):
        return c[1]
    return None


def _our_esearch(untagged: list[Response], tag: bytes | None) -> Response | None:
    """The ESEARCH answer to the command sent with ``tag``: the one naming it (RFC 4731), or the
    only one naming no tag. An answer naming another tag is not ours (a server's stray answer
    listed \\Seen mail in the UNSEEN view); more than one candidate cannot be told apart."""
    named: list[Response] = []
    bare: list[Response] = []
    for resp in untagged:
        if not _is_esearch(resp):
            continue  # unsolicited: FLAGS, OK [PERMANENTFLAGS ...] after a new keyword, EXISTS
        c = _correlator(resp.tokens())
        if c is None:
            bare.append(resp)
        elif tag is None or c == tag:
            named.append(resp)
    found = named or bare
    if len(found) > 1:
        raise OperationFailed(f"the server sent {len(found)} answers to one SEARCH; they cannot be told apart")
    return found[0] if found else None


def _search_answer(untagged: list[Response], esearch: bool, tag: bytes | None = None) -> list[int]:
    """The UIDs of a ``UID SEARCH`` answer (``* ESEARCH ... ALL <set>`` or ``* SEARCH n n``),
    checked: UIDs are 1 to 2^32-1, and an ESEARCH answer is the one to ``tag``."""
    if esearch:
        resp = _our_esearch(untagged, tag)
        if resp is None:
            return []
        toks = resp.tokens()
        for i, t in enumerate(toks):
            if isinstance(t, bytes) and t.upper() == b"ALL" and i + 1 < len(toks):
                found = toks[i + 1]
                if not isinstance(found, bytes):
                    raise OperationFailed(f"the server answered SEARCH with ALL {_shown_reply(found)}, "
                                          "which is not a set of UIDs")
                return _server_uids(found.decode("ascii", "replace"), "SEARCH")
        return []
    out: list[int] = []
    for resp in untagged:
        line = resp.first
        if line[:9].upper() == b"* SEARCH ":
            for x in line[9:].split():
                if x.isdigit():  # ASCII digits only (bytes); "(MODSEQ n)" trailers are skipped
                    if len(x) > 10 or not 1 <= int(x) <= IMAP_MAX:
                        raise OperationFailed(f"the server answered SEARCH with {_shown_reply(x)}, which is not a UID")
                    out.append(int(x))
    return sorted(set(out))


def _esearch_by_tag(answers: list[Response]) -> dict[bytes, str] | None:
    """``{tag: set}`` of ``* ESEARCH (TAG "<tag>") UID [ALL <set>]`` answers (the set "" when
    ALL is left out: no match). None when they cannot be told apart: an answer without its TAG
    correlator, a tag answered twice, an ALL that is not a set."""
    out: dict[bytes, str] = {}
    for resp in answers:
        toks = resp.tokens()
        if len(toks) < 3 or not isinstance(toks[2], list) or len(toks[2]) != 2 \
                or not isinstance(toks[2][0], bytes) or toks[2][0].upper() != b"TAG" \
                or not isinstance(toks[2][1], bytes) or toks[2][1] in out:
            return None
        found = ""
        for i, t in enumerate(toks):
            if isinstance(t, bytes) and t.upper() == b"ALL":
                if i + 1 >= len(toks) or not isinstance(toks[i + 1], bytes):
                    return None
                found = toks[i + 1].decode("ascii", "replace")
                break
        out[toks[2][1]] = found
    return out


def _is_esearch(resp: Response) -> bool:
    """An ``* ESEARCH`` answer (the others a SEARCH may bring, such as ``* OK [PERMANENTFLAGS
    (... \\*)]`` once a new keyword exists, need not tokenize)."""
    return resp.first[:10].upper() == b"* ESEARCH "


def now_utc() -> datetime:
    return datetime.now(UTC)


__all__ = [
    "ConnectionSettings", "ImapSession", "Limits", "MailboxInfo", "Secret", "StoreResult", "TlsInfo",
    "is_loopback", "parse_tokens",
]
