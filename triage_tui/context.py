"""What a subcommand needs: the resolved settings (see :mod:`triage_tui.config`), lazily built
services, output helpers and the confirmation rule."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

from triage_tui.config import Credentials, Settings, obtain_credentials, resolve
from triage_tui.config import read_password_file as read_password_file  # re-exported: public since 0.1
from triage_tui.domain.age import parse_age
from triage_tui.domain.analysis import AnalysisConfig
from triage_tui.domain.jsonline import ENCODER
from triage_tui.domain.text import inert
from triage_tui.errors import OutputFailed, Refused, UsageError
from triage_tui.services.imap import ConnectionSettings, Limits
from triage_tui.services.journal import AuditJournal

# one encoder for every line (json.dumps with options builds a new one per call);
# ensure_ascii: text from mail may hold C0/C1 controls, bidi or invisible format characters,
# lone surrogates: every one leaves as a JSON escape (\u001b, \u202e, \udcff), exact and inert.
# (ensure_ascii=False would let them out raw: tests/integration/test_one_way_out.py checks the bytes.)
_JSON = ENCODER

INSECURE_WARNING = ("triage-tui: WARNING: TLS certificate verification is OFF (--insecure-skip-verify): "
                    "anyone on the network path can read the IMAP password and the mail; every change is "
                    "journaled with this note")


class _Output:
    """Standard output (or the stream a test gives), whose write error is one line with exit 1
    (``list > /dev/full`` said "internal error: OSError"). A closed pipe stays a BrokenPipeError:
    the CLI ends quietly on it (``list | head``)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def _failed(self, e: OSError) -> OutputFailed:
        return OutputFailed(f"cannot write the output: {e.strerror or e}"
                            + ("" if e.errno is None else f" (errno {e.errno})"))

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise self._failed(e) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise self._failed(e) from None

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, getvalue (tests)...
        return getattr(self._stream, name)


class Context:
    def __init__(self, args: argparse.Namespace, stdout: TextIO | None = None, stdin: TextIO | None = None) -> None:
        self.args = args
        out = stdout or sys.stdout
        self.out: Any = out if isinstance(out, _Output) else _Output(out)  # the demo hands its own on
        self.stdin = stdin or sys.stdin
        self._settings: Settings | None = None
        self._read_only: bool | None = None
        self._credentials: Credentials | None = None
        self._warned_insecure = False
        self._service: Any = None
        self._locks: Any = None
        self._journal: AuditJournal | None = None
        self._preconnect: Any = None

    # -- settings -----------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """Resolved once, on first use (so ``config path`` works even when the config file is
        broken), and written back onto ``args`` for code that reads ``args.host`` directly."""
        if self._settings is None:
            self._settings = resolve(self.args, os.environ)
            self._settings.write_back(self.args)
        return self._settings

    @property
    def read_only(self) -> bool:
        if self._read_only is None:
            self._read_only = bool(self.settings["triage.read_only"])
        return self._read_only

    @read_only.setter
    def read_only(self, value: bool) -> None:
        self._read_only = bool(value)

    @property
    def inbox(self) -> str:
        """``imap`` or ``graph`` (``--inbox``, ``TRIAGE_INBOX``, ``[triage] inbox``)."""
        return str(self.settings["triage.inbox"] or "imap")

    def graph_connection_settings(self) -> Any:
        """:class:`~triage_tui.services.graphsession.GraphConnectionSettings` for ``--inbox graph``,
        with the client secret (from a file, a command or the environment)."""
        from triage_tui.config import obtain_graph_secret  # noqa: PLC0415
        from triage_tui.services.graph import GraphSettings  # noqa: PLC0415
        from triage_tui.services.graphsession import GraphConnectionSettings  # noqa: PLC0415

        s = self.settings
        missing = [flag for key, flag in (("graph.tenant_id", "--graph-tenant-id"),
                                          ("graph.client_id", "--graph-client-id"),
                                          ("graph.mailbox", "--graph-mailbox")) if not s[key]]
        if missing:
            raise UsageError(f"--inbox graph needs {', '.join(missing)} (or TRIAGE_GRAPH_* / the [graph] section "
                             "of the config file)")
        g = GraphSettings(tenant_id=s["graph.tenant_id"], client_id=s["graph.client_id"],
                          client_secret=obtain_graph_secret(s), mailbox=s["graph.mailbox"],
                          folder=s["graph.folder"] or "inbox", graph_endpoint=s["graph.graph_endpoint"],
                          azure_ad_endpoint=s["graph.azure_ad_endpoint"], timeout=float(s["imap.timeout"]),
                          allow_plaintext=not s["imap.require_tls"], ca_file=s["imap.ca_file"])
        return GraphConnectionSettings(host=g.graph_endpoint, user=g.mailbox, mailbox=g.folder, graph=g,
                                       timeout=g.timeout, state_dir=self.journal.path.parent)

    def graph_id_map(self) -> Any:
        """The :class:`~triage_tui.services.graphidmap.IdMap` of the configured Graph mailbox."""
        from triage_tui.services.graphidmap import IdMap, map_path  # noqa: PLC0415

        s = self.settings
        if not (s["graph.tenant_id"] and s["graph.mailbox"]):
            raise UsageError("--inbox graph needs --graph-tenant-id and --graph-mailbox")
        return IdMap(map_path(self.journal.path.parent, s["graph.graph_endpoint"], s["graph.tenant_id"],
                              s["graph.mailbox"], s["graph.folder"] or "inbox"))

    def session_factory(self) -> Any:
        """How the triage service opens a session on this inbox."""
        if self.inbox == "graph":
            from triage_tui.services.graphsession import GraphSession  # noqa: PLC0415

            return GraphSession.open
        from triage_tui.services.imap import ImapSession  # noqa: PLC0415

        pre = self._preconnect

        def open_session(settings: ConnectionSettings, limits: Limits | None = None) -> ImapSession:
            session = pre.take(settings) if pre is not None else None
            return session if session is not None else ImapSession.open(settings, limits)

        return open_session

    def preconnect(self, *, examine: bool = False) -> None:
        """Start opening the IMAP connection now, in a thread (see
        :mod:`triage_tui.services.preconnect`): only for an IMAP inbox whose credentials come
        without running or asking anything. ``examine``: a reading command, whose mailbox is
        opened (EXAMINE) in the thread too. Anything wrong here is left for the command to meet
        where it connects, with its usual message."""
        if self._preconnect is not None or self._service is not None:
            return
        try:
            if self.inbox == "graph":
                return
            from triage_tui.config.credentials import _isatty, credential_plan  # noqa: PLC0415
            from triage_tui.services.preconnect import QUIET_CREDENTIALS, Preconnect  # noqa: PLC0415

            if credential_plan(self.settings, interactive=_isatty(self.stdin)).method not in QUIET_CREDENTIALS:
                return
            cs = self.connection_settings()
            limits = self.limits()
        except Exception:  # noqa: BLE001 - the command says it, where it connects
            return
        self._preconnect = Preconnect(cs, limits, examine=examine)

    def base_connection_settings(self) -> ConnectionSettings:
        """Where and how to connect, without the credential (``check`` probes DNS, TCP and TLS
        before anything secret is fetched)."""
        s = self.settings
        if self.inbox == "graph":
            raise UsageError("this subcommand speaks IMAP only; it does not work with --inbox graph yet")
        if not s["imap.host"]:
            if s["mail_room.inbox_method"] == "microsoft_graph":
                raise UsageError("this mailbox is read by mail_room through Microsoft Graph, not IMAP: use --inbox "
                                 "graph with --graph-tenant-id, --graph-client-id, --graph-mailbox and the client "
                                 "secret (TRIAGE_GRAPH_CLIENT_SECRET)")
            raise UsageError("no IMAP host: give --host or set TRIAGE_IMAP_HOST (or --gitlab-config, a config "
                             "file profile, or try `triage-tui demo`)")
        if not s["imap.user"]:
            raise UsageError("no IMAP user: give --user or set TRIAGE_IMAP_USER")
        if s["imap.insecure_skip_verify"] and not self._warned_insecure:
            self._warned_insecure = True
            self.note(INSECURE_WARNING)
        return ConnectionSettings(
            host=s["imap.host"], port=s["imap.port"], security=s["imap.security"], user=s["imap.user"],
            mailbox=s["imap.mailbox"], ca_file=s["imap.ca_file"],
            insecure_skip_verify=bool(s["imap.insecure_skip_verify"]), allow_plaintext=not s["imap.require_tls"],
            timeout=float(s["imap.timeout"]), oauth2_mechanism=s["imap.oauth2_mechanism"])

    def credentials(self, base: ConnectionSettings | None = None) -> Credentials:
        """Run the configured credential source once per process (a vault CLI may ask for MFA)."""
        if self._credentials is None:
            base = base or self.base_connection_settings()
            self._credentials = obtain_credentials(self.settings, stdin=self.stdin, user=base.user,
                                                   server=base.server)
        return self._credentials

    def connection_settings(self) -> ConnectionSettings:
        if self.inbox == "graph":
            return self.graph_connection_settings()  # type: ignore[no-any-return]
        cs = self.base_connection_settings()
        cred = self.credentials(cs)
        cs.password = cred.password
        cs.oauth2_token = cred.oauth2_token
        return cs

    def guard_notes(self) -> dict[str, Any]:
        """Fields every journaled mutation should carry: today, the TLS verification waiver.
        (Whoever builds a TriageService or LockService outside :meth:`service` should
        ``service.guard.context.update(ctx.guard_notes())``.)"""
        s = self.settings
        if self.inbox == "graph":
            return {"inbox": "graph", "tenant": s["graph.tenant_id"]}
        if s["imap.insecure_skip_verify"]:
            return {"tls_verify": "SKIPPED (--insecure-skip-verify)",
                    "tls_verify_source": str(s.source("imap.insecure_skip_verify"))}
        return {}

    def limits(self) -> Limits:
        s = self.settings
        workers = s["triage.workers"]
        return Limits(max_bytes=int(s["triage.max_command_bytes"]), max_count=int(s["triage.chunk"]),
                      window=int(s["triage.pipeline"]), workers=None if workers is None else int(workers))

    def analysis(self) -> AnalysisConfig:
        s = self.settings
        return AnalysisConfig(address=s["gitlab.address"], mailbox_kind=s["gitlab.mailbox_kind"],
                              stale_after=parse_age(s["triage.stale_after"]),
                              bot_sender_patterns=tuple(s["triage.bot_senders"] or ()),
                              bot_subject_patterns=tuple(s["triage.bot_subjects"] or ()),
                              suspicious_patterns=tuple(s["triage.suspicious"] or ()),
                              project_names=dict(s["projects"] or {}), gitlab_host=s["gitlab.host"])

    def keymap(self) -> dict[str, str]:
        """TUI key remapping, binding id -> keys (file tables merged, then TRIAGE_KEYMAP, then --keymap)."""
        return dict(self.settings["keymap"] or {})

    @property
    def theme(self) -> str | None:
        return self.settings["tui.theme"]

    @property
    def mouse(self) -> bool:
        return bool(self.settings["tui.mouse"])

    @property
    def journal(self) -> AuditJournal:
        if self._journal is None:
            self._journal = AuditJournal()
        return self._journal

    def service(self, *, one_connection: bool = False) -> Any:
        """The :class:`~triage_tui.services.triage.TriageService` for these settings (connected).
        ``one_connection``: see :meth:`TriageService.use_one_connection` (first call only)."""
        if self._service is None:
            from triage_tui.services.triage import TriageService  # noqa: PLC0415

            # a reconnect is said on stderr: a listing or bulk change that pauses to reconnect
            # must not look hung, and stdout stays clean for --json
            cs = self.connection_settings()
            svc = TriageService(cs, read_only=self.read_only,
                                journal=self.journal, limits=self.limits(), analysis=self.analysis(),
                                on_reconnect=lambda msg, attempt: self.note(f"{msg} (attempt {attempt})"),
                                cache=self.header_cache(cs), session_factory=self.session_factory())
            svc.guard.context.update(self.guard_notes())
            if one_connection:
                svc.use_one_connection()
            svc.connect()
            self._service = svc
        return self._service

    def header_cache(self, cs: ConnectionSettings, on_problem: Any = "note") -> Any:
        """The :class:`~triage_tui.services.cache.HeaderCache` of this mailbox, or None when
        disabled (``--no-cache``, ``TRIAGE_CACHE=false``, ``[cache] enabled = false``). Its one
        line about a broken cache goes to stderr (``on_problem`` elsewhere, e.g. the TUI)."""
        s = self.settings
        if not s["cache.enabled"] or self.inbox == "graph":
            return None  # Graph: no CONDSTORE to refresh cached flags by; every listing fetches (for now)
        from triage_tui.services.cache import HeaderCache  # noqa: PLC0415

        return HeaderCache.for_mailbox(cs.host, cs.effective_port, cs.user, cs.mailbox, self.analysis(),
                                       max_age_days=int(s["cache.max_age_days"]),
                                       on_problem=(lambda text: self.note(f"triage-tui: {text}"))
                                       if on_problem == "note" else on_problem)

    def redis_configured(self) -> bool:
        s = self.settings
        return bool(s["redis.url"] or s["redis.sentinels"])

    def redis_settings(self) -> Any:
        """:class:`~triage_tui.services.locks.RedisSettings`, or None when no Redis is configured."""
        if not self.redis_configured():
            return None
        import dataclasses  # noqa: PLC0415

        from triage_tui.services.locks import RedisSettings  # noqa: PLC0415
        from triage_tui.services.sidekiq import queue_names  # noqa: PLC0415

        s = self.settings
        sentinels: list[tuple[str, int]] = []
        for item in s["redis.sentinels"] or []:
            host, _, port = item.rpartition(":")
            sentinels.append((host, int(port)))
        kw: dict[str, Any] = dict(url=s["redis.url"], sentinels=sentinels, master=s["redis.master"],
                                  key_prefix=s["redis.key_prefix"], ca_file=s["redis.ca_file"],
                                  sentinel_password=s["redis.sentinel_password"], shared_with=s.shared_with,
                                  sidekiq_queues=queue_names(s["redis.sidekiq_queues"]),
                                  sidekiq_namespace=s["redis.sidekiq_namespace"] or "")
        known = {f.name for f in dataclasses.fields(RedisSettings)}
        return RedisSettings(**{k: v for k, v in kw.items() if k in known})

    def lock_service(self) -> Any:
        """The :class:`~triage_tui.services.locks.LockService`, or None when no Redis is configured."""
        if not self.redis_configured():
            return None
        if self._locks is None:
            from triage_tui.services.locks import LockService  # noqa: PLC0415

            self._locks = LockService(self.redis_settings(), read_only=self.read_only, journal=self.journal)
            if self.inbox == "graph":
                # mail_room keys a Graph mailbox's locks by the Graph message id: the UIDs the
                # services speak are mapped through the same id map the Graph sessions keep
                idmap = self.graph_id_map()
                self._locks.key_namer = idmap.gid
                self._locks.uid_of_ident = idmap.uid
            guard = getattr(self._locks, "guard", None)
            if guard is not None:
                guard.context.update(self.guard_notes())
        return self._locks

    def close(self) -> None:
        if self._preconnect is not None:
            self._preconnect.close()  # a session opened ahead and never used: logged out
        if self._locks is not None:
            self._locks.close()
            self._locks = None
        if self._service is not None:
            self._service.close(wait=False)  # the command is over: no round trip for LOGOUT's BYE
            self._service = None

    # -- output ---------------------------------------------------------------------------------

    # The CLI's only ways out. Whatever a subcommand passes (mail text, Redis key names and
    # values, server replies, journal fields) is made inert here, line by line, so a call site
    # that forgot :func:`inert` cannot leak an escape sequence. (inert is idempotent: text
    # already made inert is unchanged.)

    def emit_json(self, obj: Any) -> None:
        self.out.write(_JSON.encode(obj) + "\n")  # pure ASCII: see _JSON

    def emit_json_lines(self, lines: list[Any]) -> None:
        """Several JSON lines in one write: each a line :func:`~triage_tui.domain.jsonline.message_json`
        wrote (ASCII JSON by construction: checked here all the same, a non-ASCII one is written
        through the encoder, as a string) or an object to encode."""
        if not lines:
            return
        text = "\n".join(x if type(x) is str else _JSON.encode(x) for x in lines)
        if not text.isascii():
            text = "\n".join(x if x.isascii() else _JSON.encode(x) for x in text.split("\n"))
        self.out.write(text + "\n")

    def say(self, text: str = "") -> None:
        self.out.write(inert(text, multiline=True) + "\n")

    def note(self, text: str) -> None:
        sys.stderr.write(inert(text, multiline=True) + "\n")
        sys.stderr.flush()

    # -- confirmation ---------------------------------------------------------------------------

    def confirm(self, question: str, *, yes: bool, typed: str | None = None) -> None:
        """Return if confirmed; raise :class:`Refused` otherwise. Without a TTY, only ``--yes`` confirms."""
        if yes:
            return
        if not self.stdin.isatty():
            raise Refused("confirmation missing: stdin is not interactive; add --yes to act (or --dry-run to look)")
        question = inert(question, multiline=True)  # a plan may name a mailbox or a journal field
        if typed:
            answer = _ask(f"{question}\nType {typed!r} to proceed: ").strip()
            if answer != typed:
                raise Refused("not confirmed: nothing was changed")
        else:
            answer = _ask(f"{question} [y/N] ").strip().lower()
            if answer not in ("y", "yes"):
                raise Refused("not confirmed: nothing was changed")


def _ask(prompt: str) -> str:
    """One answer line, as ``input`` reads it, but interruptible: a SIGTERM or SIGHUP that comes
    while the question waits ends the command at once. ``input`` blocks in one read(): a signal
    delivered just before that read starts is handled only after a line is typed, and the
    process hung at its prompt. Waiting here is a ``select`` that returns to the interpreter
    every 0.2 s (where the signal's handler runs), and the line is read from the descriptor a
    byte at a time (a terminal gives a whole line at once): never past its end, so a line typed
    ahead for a next question stays for it. End of input (^D) is no answer (not confirmed)."""
    out, inp = sys.stdout, sys.stdin
    out.write(prompt)
    out.flush()
    try:
        fd = inp.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (tests hand in a StringIO)
        return inp.readline().rstrip("\r\n")
    import select  # noqa: PLC0415 - only when a question is asked

    line = bytearray()
    while True:
        if not select.select([fd], [], [], 0.2)[0]:
            continue
        b = os.read(fd, 1)
        if not b or b == b"\n":
            return line.decode("utf-8", "replace").rstrip("\r")
        line += b
