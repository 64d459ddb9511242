"""check: what ``gitlab:incoming_email:check`` should have been.

One line per step, each PASS, WARN, FAIL or SKIP with what was seen and, when it is not a pass,
what to do about it. The steps follow the path a message takes to mail_room, so the first
failure is usually the cause of the later ones: DNS, TCP, TLS (version, cipher, certificate
subject and expiry, verified or not), login, capabilities, the mailbox and its counts, the
address template, Redis and the lock prefix, then a short observation of whether mail_room is
consuming (UNSEEN messages leaving, lock keys appearing). Nothing is changed anywhere: the
mailbox is only EXAMINEd and Redis only read. Exit status 1 on any FAIL; ``--json`` prints
one object for monitoring.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from triage_tui.domain.age import format_age, parse_age
from triage_tui.domain.numbers import float_arg
from triage_tui.errors import AuthenticationFailed, ConnectionFailed, MailboxMissing, Refused, TriageError

if TYPE_CHECKING:
    import ssl

    from triage_tui.services.imap import ConnectionSettings, ImapSession

NAME = "check"
HELP = "check the whole path step by step: DNS, TCP, TLS, login, capabilities, mailbox, address, Redis, mail_room"
DESCRIPTION = (
    "Check the incoming-email setup step by step, each with PASS/WARN/FAIL and a fix: DNS and TCP "
    "reachability, TLS handshake (version, cipher, certificate subject and expiry, verified or not), "
    "capabilities, login, mailbox and its counts, the address template, Redis and the lock prefix, and "
    "whether mail_room appears to be consuming over a short observation. Changes nothing. Exit status 1 "
    "on any failure.")

#: Capabilities and what their absence costs (mail_room's IDLE matters most).
CAPABILITIES = {
    "IDLE": "mail_room waits for new mail with IDLE: without it, it only polls every idle_timeout",
    "UIDPLUS": "no UID EXPUNGE: expunging a selection must fall back to a plain EXPUNGE of every \\Deleted message",
    "CONDSTORE": "no UNCHANGEDSINCE: a flag change cannot detect a concurrent change by mail_room",
    "ESEARCH": "searches return every UID instead of ranges: slower on large mailboxes",
    "MOVE": "no MOVE (not used by triage-tui or mail_room; informational)",
}
#: Lengths for the local-part check. A legacy reply key is 32 hex characters (partitioned ones
#: are 28-44); project keys are ``<slug>-<project id>-<token>-issue`` with a ``glimt-`` token of
#: ~31 characters, so what varies is the project slug.
REPLY_KEY_LEN = 32
UNSUBSCRIBE_KEY_LEN = REPLY_KEY_LEN + len("-unsubscribe")
PROJECT_KEY_FIXED = len("-12345678-") + len("glimt-") + 25 + len("-issue")
SERVICE_DESK_KEY_FIXED = len("-12345678-issue-")
LOCAL_PART_MAX = 64
CERT_WARN_DAYS = 14
#: the longest Retry-After a Graph check waits out (mail_room backs off up to 10 minutes)
CHECK_MAX_RETRY_AFTER = 20.0


@dataclass
class Step:
    name: str
    status: str  # pass | warn | fail | skip
    detail: str
    hint: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "hint": self.hint, **self.data}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON object: {ok, steps: [...]}, for monitoring")
    p.add_argument("--observe", type=float_arg(0, 3600), default=10.0, metavar="SECONDS",
                   help="watch this long whether mail_room consumes (default 10; 0 skips the step)")


class Checker:
    """Runs the steps in order; a step that cannot run because an earlier one failed is SKIP."""

    def __init__(self, ctx: Any, observe: float, on_step: Callable[[Step], None] | None = None) -> None:
        self.ctx = ctx
        self.observe = observe
        self.steps: list[Step] = []
        self.on_step = on_step
        self.session: ImapSession | None = None
        self.service: Any = None
        self.counts: Any = None
        self.locks: Any = None
        self.graph_cs: Any = None  # GraphConnectionSettings (--inbox graph)
        self.graph_client: Any = None
        self.graph_idmap: Any = None
        self.graph_session: Any = None

    def add(self, name: str, status: str, detail: str, hint: str | None = None, **data: Any) -> Step:
        step = Step(name, status, detail, hint, data)
        self.steps.append(step)
        if self.on_step:
            self.on_step(step)
        return step

    @property
    def ok(self) -> bool:
        return all(s.status != "fail" for s in self.steps)

    # -- the sequence ---------------------------------------------------------------------------

    def run(self) -> None:
        try:
            settings = self.ctx.settings
        except TriageError as e:
            self.add("config", "fail", str(e), "fix the configuration (`triage-tui config path` shows the file)")
            return
        self._config_step(settings)
        if self.ctx.inbox == "graph":
            self._run_graph(settings)
            return
        base: ConnectionSettings | None = None
        try:
            base = self.ctx.base_connection_settings()
        except TriageError as e:
            self.add("imap", "fail", str(e), "configure the IMAP connection (--gitlab-config, a profile, or flags)")
        if base is not None:
            reachable = self._tcp(base) if self._dns(base) else self._skip("tcp", "needs DNS")
            secure = self._tls(base) if reachable else self._skip("tls", "needs TCP")
            if reachable and secure:
                self._login(base)
            else:
                self._skip("login", "needs a working TLS connection" if reachable else "needs TCP")
            if self.session is not None:
                self._capabilities()
                self._mailbox(base)
                if self.service is not None:
                    self._keywords()
            else:
                self._skip("capabilities", "needs a login")
                self._skip("mailbox", "needs a login")
        self._address(settings)
        self._redis(settings)
        self._consuming(settings)

    def close(self) -> None:
        if self.service is not None:
            self.service.close()
        elif self.session is not None:
            self.session.close()
        if self.graph_client is not None:
            self.graph_client.close()
        if self.graph_idmap is not None:
            self.graph_idmap.close()

    def _skip(self, name: str, why: str) -> bool:
        self.add(name, "skip", why)
        return False

    def _config_step(self, s: Any) -> None:
        parts = [f"config file {s.config_path}" if s.config_exists else "no config file"]
        if s.profile:
            parts.append(f"profile {s.profile}")
        for which, mb in s.imported.items():
            use = " (in use)" if which == s.mailbox_source else ""
            parts.append(f"{which}_email from {', '.join(mb.files)}{use}")
        status = "pass"
        hint = None
        if self.ctx.inbox == "graph":
            status, hint = self._graph_config(s, parts)
        elif s["mail_room.inbox_method"] == "microsoft_graph":
            status = "warn"
            hint = ("mail_room reads this mailbox through Microsoft Graph: check it as mail_room reads it, with "
                    "--inbox graph (and the app's tenant, client id and client secret)")
        self.add("config", status, "; ".join(parts) + "".join(f"; note: {n}" for n in s.notes), hint)

    # -- network --------------------------------------------------------------------------------

    def _dns(self, base: ConnectionSettings, name: str = "dns",
             hint: str = "check the host name (gitlab.yml incoming_email.host / --host) and this machine's resolver",
             ) -> bool:
        try:
            infos = socket.getaddrinfo(base.host, base.effective_port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            self.add(name, "fail", f"cannot resolve {base.host}: {getattr(e, 'strerror', None) or e}", hint)
            return False
        addrs = list(dict.fromkeys(str(i[4][0]) for i in infos))
        self._addresses = [(i[0], i[4]) for i in infos]
        self.add(name, "pass", f"{base.host} -> {', '.join(addrs[:4])}{' ...' if len(addrs) > 4 else ''}",
                 addresses=addrs)
        return True

    def _tcp(self, base: ConnectionSettings, name: str = "tcp",
             hint: str = "is the IMAP server running and is the port right (993 implicit TLS, 143 STARTTLS)? "
                         "is a firewall in the way?") -> bool:
        errors = []
        for family, sockaddr in self._addresses:
            start = time.monotonic()
            try:
                with socket.socket(family, socket.SOCK_STREAM) as sock:
                    sock.settimeout(base.timeout)
                    sock.connect(sockaddr)
            except OSError as e:
                errors.append(f"{sockaddr[0]}: {e.strerror or type(e).__name__}")
                continue
            ms = (time.monotonic() - start) * 1000
            self.add(name, "pass", f"connected to {sockaddr[0]} port {base.effective_port} in {ms:.0f} ms",
                     address=sockaddr[0], port=base.effective_port, connect_ms=round(ms, 1))
            return True
        self.add(name, "fail", f"cannot connect to port {base.effective_port}: {'; '.join(errors)}", hint)
        return False

    def _tls(self, base: ConnectionSettings) -> bool:
        import ssl  # noqa: PLC0415 - lazy: start-up cost

        from triage_tui.services.imap import is_loopback, make_ssl_context  # noqa: PLC0415

        if base.security == "none":
            if is_loopback(base.host):
                self.add("tls", "warn", "plaintext IMAP (security none) to a loopback address",
                         "use --security ssl or starttls when the server offers it")
                return True
            if base.allow_plaintext:
                self.add("tls", "warn", "plaintext IMAP to a remote host allowed (--allow-plaintext / "
                         "require_tls = false): the password crosses the network in clear",
                         "use --security ssl (993) or starttls (143)")
                return True
            self.add("tls", "fail", f"security none to {base.host}, which is not loopback: refused (require_tls)",
                     "use --security ssl (993) or starttls (143); only if you accept a clear-text password: "
                     "--allow-plaintext")
            return False
        try:
            context = make_ssl_context(base)
        except TriageError as e:
            self.add("tls", "fail", str(e), "give --ca-file a readable PEM bundle")
            return False
        try:
            info = _handshake(base, context)
        except _NoStartTls as e:
            self.add("tls", "fail", str(e), "the server offers no STARTTLS: use --security ssl (port 993) if it "
                     "speaks implicit TLS; triage-tui never falls back to plaintext")
            return False
        except ssl.SSLCertVerificationError as e:
            reason = e.verify_message or e.reason or str(e)
            try:
                info = _handshake(base, _unverified_context())
                seen = f"; {_describe(info)}"
            except Exception:  # noqa: BLE001 - the details are a bonus
                info, seen = {}, ""
            self.add("tls", "fail", f"certificate of {base.server} not trusted: {reason}{seen}",
                     "give --ca-file with the CA that issued it (self-signed servers: their CA or certificate), "
                     "or fix the server's chain; --insecure-skip-verify only as a last resort", verified=False,
                     **info)
            return False
        except (ssl.SSLError, OSError) as e:
            self.add("tls", "fail", f"TLS handshake with {base.server} failed: {getattr(e, 'reason', None) or e}",
                     "is this port TLS at all? 993 is implicit TLS (--security ssl), 143 is STARTTLS "
                     "(--security starttls)")
            return False
        verified = not base.insecure_skip_verify
        status, hint = _judge(info, verified)
        if not verified:
            if status == "pass":
                status = "warn"
            hint = "certificate verification is OFF (--insecure-skip-verify): give --ca-file instead"
        self.add("tls", status, _describe(info) + ("" if verified else " (NOT VERIFIED)"), hint, **info)
        return True

    # -- IMAP -----------------------------------------------------------------------------------

    def _login(self, base: ConnectionSettings) -> None:
        from triage_tui.services.imap import ImapSession  # noqa: PLC0415 - lazy: start-up cost

        try:
            cred = self.ctx.credentials(base)
        except TriageError as e:
            self.add("login", "fail", str(e), "fix the credential source (`triage-tui config show` names it)")
            return
        settings = dataclasses.replace(base, password=cred.password, oauth2_token=cred.oauth2_token)
        how = cred.plan.describe() if cred.plan else "password"
        try:
            self.session = ImapSession.open(settings, self.ctx.limits())
        except AuthenticationFailed as e:
            self.add("login", "fail", str(e),
                     f"check the user and the credential ({how}); Gmail and Microsoft 365 no longer accept basic "
                     "auth: use --oauth2-token-command")
            return
        except Refused as e:
            self.add("login", "fail", str(e), "use --security ssl or starttls")
            return
        except (ConnectionFailed, TriageError) as e:
            self.add("login", "fail", str(e), "see the tls step above")
            return
        mech = settings.oauth2_mechanism if settings.oauth2_token else "LOGIN"
        self.add("login", "pass", f"logged in as {settings.user} ({mech}; {how})", mechanism=mech)

    def _capabilities(self) -> None:
        assert self.session is not None
        caps = self.session.capabilities
        missing = [c for c in CAPABILITIES if c not in caps]
        have = [c for c in CAPABILITIES if c in caps]
        detail = f"has {', '.join(have) or 'none of ' + ', '.join(CAPABILITIES)}"
        if missing:
            detail += f"; missing {', '.join(missing)}"
        important = [c for c in missing if c != "MOVE"]
        self.add("capabilities", "warn" if important else "pass", detail,
                 "; ".join(CAPABILITIES[c] for c in important) or None, capabilities=sorted(caps))

    def _mailbox(self, base: ConnectionSettings) -> None:
        from triage_tui.services.triage import TriageService  # noqa: PLC0415

        session = self.session
        assert session is not None
        self.service = TriageService(session.settings, read_only=True, journal=self.ctx.journal,
                                     limits=self.ctx.limits(), analysis=self.ctx.analysis(),
                                     session_factory=lambda _s, _l: session)
        try:
            self.service.connect()
            c = self.service.counts()
        except MailboxMissing as e:
            self.add("mailbox", "fail", str(e), "set the mailbox mail_room reads (gitlab.yml mailbox / --mailbox)")
            self.service = None
            return
        except TriageError as e:
            self.add("mailbox", "fail", str(e), "see the steps above")
            self.service = None
            return
        self.counts = c
        s = self.ctx.settings
        now = datetime.now(UTC)
        oldest_age = (now - c.oldest_unseen).total_seconds() if c.oldest_unseen else None
        detail = (f"{base.mailbox}: {c.exists} message(s), {c.unseen} UNSEEN"
                  + (f" (oldest {format_age(oldest_age)} old)" if oldest_age is not None else "")
                  + f", {c.ignored} ignored (marked \\Seen by triage-tui), {c.seen_stuck} seen-stuck (\\Seen, "
                    f"not deleted, not ignored), {c.deleted} \\Deleted pending expunge"
                  + f"; UIDVALIDITY {c.uidvalidity}")
        status, hints = "pass", []
        stale = parse_age(s["triage.stale_after"]).total_seconds()
        if oldest_age is not None and oldest_age > stale:
            status = "warn"
            hints.append(f"UNSEEN mail older than {s['triage.stale_after']}: mail_room is not consuming it "
                         "(see the last step, `triage-tui locks`, `triage-tui list`)")
        if c.seen_stuck and s["mail_room.delete_after_delivery"]:
            status = "warn"
            hints.append(f"{c.seen_stuck} message(s) are \\Seen but not \\Deleted: mail_room fetched them and never "
                         "deleted them (a crashed delivery?); `triage-tui list --view seen-stuck`")
        if c.deleted >= 1000 and not s["mail_room.expunge_deleted"]:
            status = "warn"
            hints.append("mail_room does not expunge (expunge_deleted false, GitLab's default): \\Deleted mail "
                         "accumulates; `triage-tui expunge --all-deleted`")
        self.add("mailbox", status, detail, "; ".join(hints) or None, exists=c.exists, unseen=c.unseen,
                 seen_stuck=c.seen_stuck, ignored=c.ignored, deleted=c.deleted, uidvalidity=c.uidvalidity,
                 oldest_unseen=c.oldest_unseen.isoformat() if c.oldest_unseen else None,
                 oldest_unseen_age_s=round(oldest_age) if oldest_age is not None else None)

    def _keywords(self) -> None:
        """Where ignore decisions live: the server's keyword, or (keywords refused) this machine's journal."""
        from triage_tui.domain.model import TRIAGE_KEYWORD  # noqa: PLC0415

        svc = self.service
        assert svc is not None and self.counts is not None
        try:
            note = svc.keyword_note()
            stray = svc.reader.count(f"UNSEEN KEYWORD {TRIAGE_KEYWORD}")
        except TriageError as e:
            self.add("keywords", "warn", f"could not tell: {e}")
            return
        if note:
            self.add("keywords", "warn", note,
                     "ignore decisions made on other machines are not visible here; undo and mark-unseen still work",
                     keyword=TRIAGE_KEYWORD, keywords_allowed=False, ignored=self.counts.ignored)
            return
        detail = (f"ignore decisions are stored on the server as {TRIAGE_KEYWORD} next to \\Seen "
                  f"({self.counts.ignored} ignored now; a mailbox without keywords falls back to the journal, "
                  "known at the first mark-seen)")
        hint = None
        if stray:
            hint = (f"{stray} UNSEEN message(s) carry {TRIAGE_KEYWORD} (another client removed \\Seen only): if "
                    "mail_room takes one and crashes it looks ignored, not seen-stuck")
        self.add("keywords", "warn" if stray else "pass", detail, hint, keyword=TRIAGE_KEYWORD,
                 keywords_allowed=None, ignored=self.counts.ignored, unseen_with_keyword=stray)

    # -- Microsoft Graph (--inbox graph) --------------------------------------------------------

    def _graph_config(self, s: Any, parts: list[str]) -> tuple[str, str | None]:
        """The Graph part of the config step: what will be used, the secret's source named (never
        its value). Sets :attr:`graph_cs` when everything needed is there."""
        from triage_tui.config import graph_credential_plan  # noqa: PLC0415
        from triage_tui.domain.redact import mask_url  # noqa: PLC0415

        folder = s["graph.folder"] or "inbox"
        parts.append(f"Graph mailbox {s['graph.mailbox'] or '(none)'} folder {folder}, tenant "
                     f"{s['graph.tenant_id'] or '(none)'}, client id {s['graph.client_id'] or '(none)'}, graph "
                     f"endpoint {mask_url(str(s['graph.graph_endpoint']))}, Azure AD endpoint "
                     f"{mask_url(str(s['graph.azure_ad_endpoint']))}")
        try:
            parts.append(graph_credential_plan(s).describe())
        except Exception:  # noqa: BLE001 - naming the source is a bonus; obtaining it below is the test
            pass
        try:
            self.graph_cs = self.ctx.graph_connection_settings()
        except TriageError as e:
            parts.append(str(e))
            return "fail", ("give the app registration mail_room uses: --graph-tenant-id, --graph-client-id, "
                            "--graph-mailbox and the client secret (TRIAGE_GRAPH_CLIENT_SECRET, --graph-secret-file "
                            "or --graph-secret-command), or --gitlab-config with inbox_method: microsoft_graph")
        return "pass", None

    def _run_graph(self, settings: Any) -> None:
        from urllib.parse import urlsplit  # noqa: PLC0415

        from triage_tui.domain.redact import mask_url  # noqa: PLC0415
        from triage_tui.services.imap import ConnectionSettings  # noqa: PLC0415

        cs = self.graph_cs
        if cs is None:
            for name in ("aad-dns", "aad-tcp", "aad-tls", "token", "dns", "tcp", "tls", "mailbox"):
                self._skip(name, "needs the Graph configuration")
        else:
            g = cs.graph
            ok: dict[str, bool] = {}
            for prefix, url, what in (("aad-", g.azure_ad_endpoint, "Azure AD (token) endpoint"),
                                      ("", g.graph_endpoint, "Graph endpoint")):
                problem, port = "is not an http(s) URL", None
                try:
                    split = urlsplit(url)
                    scheme, host = split.scheme.lower(), split.hostname or ""
                except ValueError:
                    scheme, host = "", ""
                else:
                    try:
                        port = split.port
                    except ValueError:
                        problem, host = "has an invalid port", ""
                if scheme not in ("http", "https") or not host:
                    self.add(f"{prefix}dns", "fail", f"the {what} {mask_url(url)} {problem}",
                             "give a URL such as " + ("https://login.microsoftonline.com (--azure-ad-endpoint)"
                                                      if prefix else "https://graph.microsoft.com (--graph-endpoint)"))
                    self._skip(f"{prefix}tcp", "needs DNS")
                    self._skip(f"{prefix}tls", "needs TCP")
                    ok[prefix] = False
                    if prefix:
                        self._skip("token", "needs the Azure AD endpoint")
                    continue
                base = ConnectionSettings(host=host, port=port or (443 if scheme == "https" else 80),
                                          security="ssl", ca_file=g.ca_file, timeout=cs.timeout)
                reachable = (self._tcp(base, f"{prefix}tcp", f"is {host} reachable from here (a proxy or "
                                       "firewall in the way)? the port comes from the endpoint URL")
                             if self._dns(base, f"{prefix}dns", f"check the {what} ({url.split('/')[2] if '//' in url else url}) "
                                          "and this machine's resolver")
                             else self._skip(f"{prefix}tcp", "needs DNS"))
                secure = self._https_tls(f"{prefix}tls", base, scheme, g.allow_plaintext) if reachable \
                    else self._skip(f"{prefix}tls", "needs TCP")
                ok[prefix] = reachable and secure
                if prefix:
                    if ok[prefix]:
                        self._token()
                    else:
                        self._skip("token", "needs the Azure AD endpoint")
            if self.graph_client is not None and ok.get(""):
                self._graph_mailbox(settings)
            else:
                self._skip("mailbox", "needs a token" if self.graph_client is None else "needs the Graph endpoint")
        self._address(settings)
        self._redis(settings)
        self._consuming(settings)
        self._budget()

    def _https_tls(self, name: str, base: ConnectionSettings, scheme: str, allow_plaintext: bool) -> bool:
        import ssl  # noqa: PLC0415 - lazy: start-up cost

        from triage_tui.services.imap import is_loopback, make_ssl_context  # noqa: PLC0415

        if scheme == "http":
            if is_loopback(base.host):
                self.add(name, "skip", f"plain http to loopback {base.host} (a test server such as `triage-tui demo "
                         "--graph`): no TLS to check; Microsoft's endpoints are https")
                return True
            if allow_plaintext:
                self.add(name, "warn", f"plain http to {base.host}, not loopback, allowed (require_tls = false): the "
                         "client secret and the token cross the network in clear", "use the https endpoint")
                return True
            self.add(name, "fail", f"plain http to {base.host}, which is not loopback: refused (require_tls)",
                     "use the https endpoint (https://graph.microsoft.com, https://login.microsoftonline.com, or "
                     "the national cloud's)")
            return False
        try:
            info = _handshake(base, make_ssl_context(base))
        except TriageError as e:
            self.add(name, "fail", str(e), "give --ca-file a readable PEM bundle")
            return False
        except ssl.SSLCertVerificationError as e:
            self.add(name, "fail", f"certificate of {base.server} not trusted: {e.verify_message or e.reason or e}",
                     "a TLS-inspecting proxy? give --ca-file with its CA; otherwise fix this machine's CA store",
                     verified=False)
            return False
        except (ssl.SSLError, OSError) as e:
            self.add(name, "fail", f"TLS handshake with {base.server} failed: {getattr(e, 'reason', None) or e}",
                     "is this port https? the endpoint URL's scheme and port decide")
            return False
        status, hint = _judge(info, True)
        self.add(name, status, _describe(info), hint, **info)
        return True

    def _token(self) -> None:
        """The client-credentials token, as mail_room gets it; a refusal names AAD's code and the fix."""
        import re  # noqa: PLC0415

        from triage_tui.services.graph import GraphClient  # noqa: PLC0415

        # a check must not sit out mail_room's 10-minute back-off: a throttled step fails, saying so
        g = dataclasses.replace(self.graph_cs.graph, max_retry_after=CHECK_MAX_RETRY_AFTER, max_retries=2)
        try:
            client = GraphClient(g)
        except TriageError as e:
            self.add("token", "fail", str(e), "see the config step")
            return
        self.graph_client = client
        start = time.monotonic()
        try:
            client.token()
        except AuthenticationFailed as e:
            m = re.search(r"AADSTS(\d+)", str(e))
            code = m.group(1) if m else None
            self.add("token", "fail", str(e), _AADSTS_FIX.get(code or "", _AADSTS_DEFAULT),
                     aadsts=f"AADSTS{code}" if code else None)
            self.graph_client = None
            client.close()
            return
        except TriageError as e:
            self.add("token", "fail", str(e), "see the aad-* steps above; is a proxy needed to reach Azure AD?")
            self.graph_client = None
            client.close()
            return
        ms = (time.monotonic() - start) * 1000
        self.add("token", "pass", f"client-credentials token for client {g.client_id} of tenant {g.tenant_id} "
                 f"(scope {g.graph_endpoint.rstrip('/')}/.default) in {ms:.0f} ms", token_ms=round(ms, 1))

    def _graph_mailbox(self, s: Any) -> None:
        """GET the folder (the mailbox and the app's access to it), then the counts through the same
        read-only service every subcommand uses."""
        from triage_tui.services.graph import GraphError  # noqa: PLC0415
        from triage_tui.services.graphsession import DELETED_FOLDER, GraphSession  # noqa: PLC0415
        from triage_tui.services.triage import TriageService  # noqa: PLC0415

        client = self.graph_client
        g = self.graph_cs.graph
        try:
            doc = client.folder_info(g.folder)
        except MailboxMissing as e:
            self.add("mailbox", "fail", str(e),
                     f"is {g.mailbox} the address mail_room reads (inbox_options email / --graph-mailbox)? If it is, "
                     "the app may be kept from it by an Exchange application access policy: Test-"
                     f"ApplicationAccessPolicy -Identity {g.mailbox} -AppId {g.client_id}")
            return
        except AuthenticationFailed as e:
            self.add("mailbox", "fail", str(e), "grant the app the Mail.ReadWrite application permission with admin "
                     "consent, and check the Exchange application access policy scoping it to this mailbox")
            return
        except GraphError as e:
            hint = ("the folder does not exist in this mailbox: give the folder mail_room reads (--graph-folder; a "
                    "well-known name such as inbox, or the folder's id)") if e.code == "ErrorItemNotFound" or \
                e.status == 404 else "see the steps above"
            self.add("mailbox", "fail", str(e), hint)
            return
        except TriageError as e:
            self.add("mailbox", "fail", str(e), "see the steps above")
            return
        if g.folder.strip().lower() == DELETED_FOLDER:
            self.add("mailbox", "fail", f"the folder is Deleted Items ({doc.get('displayName')!s})",
                     "give the folder mail_room reads (--graph-folder): Deleted Items is where its deletes go")
            return
        session = GraphSession(self.graph_cs, self.ctx.limits())
        try:
            self.graph_idmap = self.ctx.graph_id_map()
        except TriageError as e:
            self.add("mailbox", "fail", str(e), "check the state directory (TRIAGE_STATE_DIR)")
            return
        session.client = client
        session.idmap = self.graph_idmap
        self.service = TriageService(session.settings, read_only=True, journal=self.ctx.journal,
                                     limits=self.ctx.limits(), analysis=self.ctx.analysis(),
                                     session_factory=lambda _s, _l: session)
        self.graph_client = None  # the service's session owns it now (closed with it)
        self.graph_session = session
        try:
            session.examine()
            c = self.service.counts()
        except TriageError as e:
            self.add("mailbox", "fail", str(e), "see the steps above")
            self.service.close()
            self.service = None
            return
        self.counts = c
        now = datetime.now(UTC)
        oldest_age = (now - c.oldest_unseen).total_seconds() if c.oldest_unseen else None
        detail = (f"{g.mailbox} folder {doc.get('displayName') or g.folder}: {c.exists} message(s), {c.unseen} unread"
                  + (f" (oldest {format_age(oldest_age)} old)" if oldest_age is not None else "")
                  + f", {c.ignored} ignored (read, category TriageIgnored, by triage-tui), {c.seen_stuck} read but "
                    f"not deleted, {c.deleted} in Deleted Items; id map UIDVALIDITY {c.uidvalidity}")
        status, hints = "pass", []
        stale = parse_age(s["triage.stale_after"]).total_seconds()
        if oldest_age is not None and oldest_age > stale:
            status = "warn"
            hints.append(f"unread mail older than {s['triage.stale_after']}: mail_room is not consuming it "
                         "(see the last steps, `triage-tui locks`, `triage-tui list`)")
        if c.seen_stuck and s["mail_room.delete_after_delivery"]:
            status = "warn"
            hints.append(f"{c.seen_stuck} message(s) are read but still in the folder: mail_room marks read then "
                         "deletes, so it stopped in between, or a person read them in Outlook; "
                         "`triage-tui list --view seen-stuck`")
        self.add("mailbox", status, detail, "; ".join(hints) or None, exists=c.exists, unseen=c.unseen,
                 seen_stuck=c.seen_stuck, ignored=c.ignored, deleted=c.deleted, uidvalidity=c.uidvalidity,
                 oldest_unseen=c.oldest_unseen.isoformat() if c.oldest_unseen else None,
                 oldest_unseen_age_s=round(oldest_age) if oldest_age is not None else None)

    def _budget(self) -> None:
        client = self.graph_client
        session = getattr(self, "graph_session", None)
        if client is None and session is not None:
            client = session.client
        if client is None:
            self._skip("budget", "no Graph request was sent")
            return
        st = client.stats
        methods = ", ".join(f"{m} {n}" for m, n in sorted(st.http.items())) or "none"
        self.add("budget", "pass", f"this check spent {st.budget} Graph request(s) ({methods}) and {st.token} token "
                 "request(s), of the ~10,000 per 10 minutes Graph allows per app and mailbox, shared with "
                 "mail_room (each poll: 1 request per 1,000 unread, then per message a download, a PATCH and a "
                 "DELETE)", requests=st.budget, token_requests=st.token, http=dict(st.http), retries=st.retries)

    # -- GitLab ---------------------------------------------------------------------------------

    def _address(self, s: Any) -> None:
        addr = s["gitlab.address"]
        if not addr:
            self.add("address", "warn", "no address template configured: keys cannot be decoded",
                     "set gitlab.address in the config file, --address, or import it with --gitlab-config")
            return
        if "@" not in addr:
            self.add("address", "fail", f"{addr!r} is not an email address", "e.g. incoming+%{key}@example.com")
            return
        local, _, domain = addr.rpartition("@")
        if "%{key}" not in addr:
            self.add("address", "fail", f"{addr} has no %{{key}} placeholder: GitLab can only match replies "
                     "through References, so new issues, merge requests and Service Desk by email cannot work",
                     "use sub-addressing incoming+%{key}@domain (or a catch-all incoming-%{key}@domain); a dedicated "
                     "address supports Reply by Email only")
            return
        if "%{key}" in domain:
            self.add("address", "fail", f"{addr}: %{{key}} is in the domain part",
                     "the placeholder must be in the local part, before the @")
            return
        fixed = len(local) - len("%{key}")
        reply = fixed + REPLY_KEY_LEN
        unsub = fixed + UNSUBSCRIBE_KEY_LEN
        kind_fixed = SERVICE_DESK_KEY_FIXED if s["gitlab.mailbox_kind"] == "service_desk" else PROJECT_KEY_FIXED
        slug_room = LOCAL_PART_MAX - fixed - kind_fixed
        detail = (f"{addr}: local part with a reply key is {reply}/{LOCAL_PART_MAX} characters; "
                  + (f"project keys fit for path slugs up to {slug_room} characters"
                     if slug_room > 0 else "project keys never fit"))
        data: dict[str, Any] = {"reply_local_part": reply, "slug_room": slug_room}
        if reply > LOCAL_PART_MAX:
            self.add("address", "fail", detail, f"shorten the fixed part of the local part ({local.replace('%{key}', '')!r}):"
                     f" local parts over {LOCAL_PART_MAX} characters are refused by some providers", **data)
        elif unsub > LOCAL_PART_MAX or slug_room <= 0:
            self.add("address", "warn", detail, f"keys longer than {LOCAL_PART_MAX - fixed} characters exceed the "
                     f"{LOCAL_PART_MAX}-character local-part limit some providers enforce", **data)
        else:
            self.add("address", "pass", detail, **data)

    def _redis(self, s: Any) -> None:
        if not self.ctx.redis_configured():
            self.add("redis", "skip", "no Redis configured (--redis-url, redis.url, or --mail-room-config)")
            return
        try:
            ls = self.ctx.lock_service()
        except ImportError as e:  # the lock module is optional in a partial build
            self.add("redis", "skip", f"Redis support unavailable: {e}")
            return
        except TriageError as e:
            self.add("redis", "fail", str(e), "fix the Redis settings (`triage-tui config show`)")
            return
        if self.graph_idmap is not None:
            # one id map for the mailbox step, the lock keys and the observation (UIDs it assigns
            # while observing are known to the key namer at once)
            ls.key_namer = self.graph_idmap.gid
            ls.uid_of_ident = self.graph_idmap.uid
        try:
            ls.check()
            keys = ls.scan()
        except Exception as e:  # noqa: BLE001 - LockUnavailable, or anything from a lock module in flux
            text = str(e) if isinstance(e, TriageError) else f"{type(e).__name__}: {_scrub(ls, str(e))}"
            self.add("redis", "fail", text, "check redis.url / --redis-url (password, DB, rediss:// and "
                     "--redis-ca-file), or the Sentinels and master name")
            return
        self.locks = ls
        names = {k.key for k in keys if getattr(k, "present", True)}
        delivered = sum(1 for k in names if k.startswith(f"{ls.prefix}delivered:"))
        status, hints = "pass", []
        ident = "graph id" if self.ctx.inbox == "graph" else "uid"
        detail = (f"{ls.settings.display}: PING ok; {len(names)} key(s) under {ls.prefix!r}, {delivered} "
                  f"delivered:<{ident}> lock(s)")
        if not ls.prefix.endswith(":"):
            status = "warn"
            hints.append("the key prefix does not end with ':': mail_room's namespace X gives keys X:delivered:<uid>")
        if not names:
            detail += " (none right now: normal when no mail arrived in the last 10 minutes; a wrong prefix or DB "
            detail += "looks the same)"
        for other in s.shared_with:
            status = "warn"
            hints.append(f"{other} uses the same Redis and prefix: UIDs of the two mailboxes collide in "
                         "delivered:<uid> keys")
        self.add("redis", status, detail, "; ".join(hints) or None, keys=len(names), delivered=delivered,
                 prefix=ls.prefix)

    def _consuming(self, s: Any) -> None:
        if self.observe <= 0:
            self.add("consuming", "skip", "not observed (--observe 0)")
            return
        if self.service is None:
            self._skip("consuming", "needs the mailbox")
            return
        svc = self.service
        graph = self.ctx.inbox == "graph"
        word = "unread" if graph else "UNSEEN"
        try:
            _, before = svc.search("UNSEEN")
            keys_before = self._key_names()
            deadline = time.monotonic() + self.observe
            while time.monotonic() < deadline:
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            _, after = svc.search("UNSEEN")
            keys_after = self._key_names()
        except TriageError as e:
            self.add("consuming", "fail", f"the mailbox could not be read during the observation: {e}",
                     "run the check again; if it persists, see the network steps")
            return
        before_set, after_set = set(before), set(after)
        picked = sorted(before_set - after_set)
        arrived = sorted(after_set - before_set)
        new_keys = sorted(keys_after - keys_before) if keys_before is not None and keys_after is not None else []
        held = 0
        if self.locks is not None and after:
            try:
                held = len(self.locks.states_for_uids(after))
            except Exception:  # noqa: BLE001 - a detail of the verdict, never a reason to fail it
                held = 0
        secs = f"{self.observe:g} s"
        if graph:  # no IDLE on Graph: mail_room polls every poll_interval, and so does this observation
            secs += " (polled)"
        data: dict[str, Any] = {"observed_s": self.observe, "unseen_before": len(before), "unseen_after": len(after),
                "picked_up": len(picked), "arrived": len(arrived), "new_lock_keys": len(new_keys),
                "held_unseen": held}
        if picked or new_keys:
            self.add("consuming", "pass", f"mail_room is consuming: {len(picked)} of {len(before)} {word} message(s) "
                     f"picked up and {len(new_keys)} new lock key(s) in {secs}", **data)
            return
        if not before and not after:
            self.add("consuming", "pass", f"no {word} mail during {secs}: nothing to consume (so this cannot tell "
                     "whether mail_room runs)", **data)
            return
        idle = int(s["mail_room.idle_timeout"])
        oldest = self.counts.oldest_unseen if self.counts else None
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        held_note = f"; {held} of them hold a lock key (see `triage-tui locks`)" if held else ""
        if held and graph:
            held_note += (" (over Graph, one delivered just before a crash looks the same: releasing it delivers it "
                          "twice; `triage-tui plan` tells them apart where it can)")
        if age > 2 * idle + self.observe:
            self.add("consuming", "fail", f"nothing picked up in {secs}: {len(after)} {word}, the oldest "
                     f"{format_age(age)} old (mail_room polls at least every {idle} s){held_note}",
                     f"mail_room is down or cannot {'get a Graph token' if graph else 'log in'} (gitlab-ctl status "
                     "mailroom; its log), or the messages' "
                     "keys are held by an instance that never fetched them: `triage-tui locks`, then "
                     "`triage-tui release`", **data)
        else:
            self.add("consuming", "warn", f"nothing picked up in {secs}, but the {word} mail is younger than two "
                     f"mail_room cycles ({2 * idle} s){held_note}", f"observe longer: --observe {2 * idle + 10}",
                     **data)

    def _key_names(self) -> set[str] | None:
        if self.locks is None:
            return None
        try:
            return {k.key for k in self.locks.scan() if getattr(k, "present", True)}
        except Exception:  # noqa: BLE001 - Redis going away mid-observation: judge by the mailbox alone
            return None


#: AAD's token errors (AADSTS codes) and what to do about each.
_AADSTS_DEFAULT = ("check tenant_id, client_id and the client secret of the app registration mail_room uses "
                   "(gitlab.yml inbox_options)")
_AADSTS_FIX = {
    "7000215": ("the client secret is wrong: give the secret's Value (not its Secret ID) from Entra ID > App "
                "registrations > the app > Certificates & secrets, the one gitlab.yml inbox_options holds"),
    "7000222": ("the client secret has expired: create a new one (App registrations > Certificates & secrets) and "
                "give it to mail_room (gitlab.yml inbox_options.client_secret) and here"),
    "7000218": "the client secret is empty: set it (TRIAGE_GRAPH_CLIENT_SECRET, --graph-secret-file or -command)",
    "90002": ("the tenant does not exist: check tenant_id (the Directory (tenant) ID, or a verified domain) and, "
              "for a national cloud, the Azure AD endpoint (--azure-ad-endpoint)"),
    "700016": ("no application with this client id in the tenant: check client_id (the Application (client) ID) "
               "and that the app is registered in this tenant"),
    "1002012": "the scope is refused: the Graph endpoint must be Graph's (https://graph.microsoft.com or the "
               "national cloud's)",
    "70003": "the app may not use the client-credentials grant: check the app registration",
}


def _scrub(ls: Any, text: str) -> str:
    """Remove the Redis password from an unexpected error's text."""
    scrub = getattr(getattr(ls, "settings", None), "scrub", None)
    return scrub(text) if callable(scrub) else text


# -- TLS probing --------------------------------------------------------------------------------


class _NoStartTls(Exception):
    pass


def _unverified_context() -> ssl.SSLContext:
    import ssl  # noqa: PLC0415 - lazy: start-up cost

    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


def _read_tagged(sock: socket.socket, tag: bytes) -> bytes:
    """Read until the tagged completion line (without over-reading: the server waits for us)."""
    buf = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise OSError("connection closed by the server")
        buf += chunk
        for line in buf.split(b"\r\n"):
            if line.startswith(tag + b" "):
                return buf
        if len(buf) > 65536:
            raise OSError("no answer to our command")


def _handshake(base: ConnectionSettings, context: ssl.SSLContext) -> dict[str, Any]:
    """A TLS handshake the way ImapSession does it (implicit, or STARTTLS with no downgrade),
    returning what was negotiated and the certificate as seen."""
    sock = socket.create_connection((base.host, base.effective_port), timeout=base.timeout)
    try:
        if base.security == "starttls":
            greeting = b""
            while b"\r\n" not in greeting:
                chunk = sock.recv(4096)
                if not chunk:
                    raise OSError("connection closed before the greeting")
                greeting += chunk
            caps = greeting.upper()
            if b"STARTTLS" not in caps:
                sock.sendall(b"c1 CAPABILITY\r\n")
                caps = _read_tagged(sock, b"c1").upper()
            if b"STARTTLS" not in caps:
                raise _NoStartTls(f"{base.server} does not offer STARTTLS (security starttls): refusing to go on "
                                  "without TLS")
            sock.sendall(b"c2 STARTTLS\r\n")
            answer = _read_tagged(sock, b"c2")
            if b"c2 OK" not in answer:
                raise _NoStartTls(f"{base.server} refused STARTTLS")
        tls = context.wrap_socket(sock, server_hostname=base.host)
    except BaseException:
        sock.close()
        raise
    try:
        cipher = tls.cipher()
        info: dict[str, Any] = {"version": tls.version(), "cipher": cipher[0] if cipher else None}
        cert = tls.getpeercert() or _decode_der(tls.getpeercert(binary_form=True))
        if cert:
            info["subject"] = _name(cert.get("subject", ()))
            info["issuer"] = _name(cert.get("issuer", ()))
            info["not_after"] = cert.get("notAfter")
        return info
    finally:
        tls.close()


def _judge(info: dict[str, Any], verified: bool) -> tuple[str, str | None]:
    """PASS, or WARN/FAIL with a fix, for a handshake's certificate expiry and TLS version."""
    import ssl  # noqa: PLC0415 - lazy: start-up cost

    info["verified"] = verified
    status, hint = "pass", None
    expires = info.get("not_after")
    if expires:
        try:
            left = (ssl.cert_time_to_seconds(expires) - time.time()) / 86400
        except ValueError:
            left = None
        if left is not None:
            info["expires_in_days"] = round(left, 1)
            if left < 0:
                status, hint = "fail", "the server certificate has expired: renew it"
            elif left < CERT_WARN_DAYS:
                status, hint = "warn", f"the server certificate expires in {left:.0f} day(s): renew it"
    if info.get("version") in ("TLSv1", "TLSv1.1", "SSLv3"):
        status, hint = ("warn" if status == "pass" else status), "the server negotiates an obsolete TLS version"
    return status, hint


def _name(rdns: Any) -> str:
    return ", ".join("=".join(x) for rdn in rdns for x in rdn)


def _decode_der(der: bytes | None) -> dict[str, Any]:
    """Subject and expiry of a certificate we did not verify (``getpeercert()`` is empty then).
    Uses CPython's certificate decoder through a temporary PEM file; a bonus, never required."""
    if not der:
        return {}
    import ssl  # noqa: PLC0415 - lazy: start-up cost
    import tempfile  # noqa: PLC0415

    try:
        decode = ssl._ssl._test_decode_cert  # type: ignore[attr-defined]
        with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as f:
            f.write(ssl.DER_cert_to_PEM_cert(der))
            path = f.name
        try:
            return dict(decode(path))
        finally:
            os.unlink(path)
    except Exception:  # noqa: BLE001
        return {}


def _describe(info: dict[str, Any]) -> str:
    parts = [f"{info.get('version')} {info.get('cipher')}"]
    if info.get("subject"):
        parts.append(f"subject {info['subject']}")
    if info.get("issuer"):
        parts.append(f"issuer {info['issuer']}")
    if info.get("not_after"):
        parts.append(f"expires {info['not_after']}")
    return ", ".join(parts)


# -- the command ----------------------------------------------------------------------------------

_LABEL = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}


def run(args: argparse.Namespace, ctx: Any) -> int:
    def show(step: Step) -> None:
        ctx.say(f"{_LABEL[step.status]}  {step.name:<13} {step.detail}")
        if step.hint and step.status != "pass":
            ctx.say(f"      {'':<13} fix: {step.hint}")
        try:
            ctx.out.flush()
        except (AttributeError, OSError):
            pass

    checker = Checker(ctx, args.observe, None if args.json else show)
    try:
        checker.run()
    finally:
        checker.close()
    failed = sum(1 for s in checker.steps if s.status == "fail")
    warned = sum(1 for s in checker.steps if s.status == "warn")
    if args.json:
        ctx.emit_json({"ok": checker.ok, "failed": failed, "warnings": warned,
                       "steps": [s.to_json() for s in checker.steps]})
    else:
        ctx.say(f"check: {'OK' if checker.ok else 'FAILED'} ({failed} failed, {warned} warning(s))")
    return 0 if checker.ok else 1
