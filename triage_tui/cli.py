"""Entry point: global options, then a subcommand (or the TUI when there is none).

Global options (connection, ``--read-only``, ``--debug``) come before the subcommand:
``triage-tui --read-only list``. Settings flags have no argparse defaults (they are ``None``
when absent): :func:`triage_tui.config.resolve` layers defaults < GitLab's files < config file <
environment < flags in one place and records each value's source (``triage-tui config show``).
Errors are one line on stderr with a distinct exit code (see :mod:`triage_tui.errors`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import shlex
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from triage_tui import __version__
from triage_tui.commands import COMMAND_MODULES
from triage_tui.domain.numbers import float_arg, int_arg
from triage_tui.domain.redact import mask_urls_in, scrub_registered
from triage_tui.domain.text import inert
from triage_tui.errors import TriageError, UsageError

if TYPE_CHECKING:
    from triage_tui.context import Context

_INVALID_CHOICE = re.compile(r"argument (?P<arg>[^:]+): invalid choice: (?P<value>'.*') \(choose from (?P<choices>.*)\)$",
                             re.DOTALL)


class _Parser(argparse.ArgumentParser):
    """A parser whose arguments may be added on first use: a subcommand's ``add_arguments`` runs
    only when that subcommand is parsed, or its help shown, or its arguments looked at (argparse
    and callers all go through ``_actions``), so ``mark-seen`` never pays for ``release``'s Redis
    constants or ``demo``'s backlog."""

    _fill: Callable[[argparse.ArgumentParser], None] | None = None

    @property  # type: ignore[override]
    def _actions(self) -> list[argparse.Action]:
        fill = self.__dict__.pop("_fill", None)
        if fill is not None:
            fill(self)
        return self.__dict__["_actions_list"]

    @_actions.setter
    def _actions(self, value: list[argparse.Action]) -> None:
        self.__dict__["_actions_list"] = value

    def error(self, message: str) -> None:  # type: ignore[override]
        message = _did_you_mean(message)
        raise UsageError(f"{mask_urls_in(message)} (see {self.prog} --help)")  # it may quote a typed URL

    def _get_option_tuples(self, option_string: str) -> list[Any]:
        """The main parser's abbreviation lookup sees every argument, also those after the
        subcommand: ``demo --graph`` would be an ambiguous abbreviation of the global
        ``--graph-*`` options before the demo's own ``--graph`` is looked at. An ambiguous
        abbreviation is left to the subcommand instead (which knows it, or says it is unknown)."""
        found: list[Any] = super()._get_option_tuples(option_string)  # type: ignore[misc]
        return found if len(found) <= 1 or self._subparsers is None else []

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            misplaced = _global_options_in(self, extras)
            if misplaced and getattr(parsed, "command", None):
                names = [m.split(" ", 1)[0] for m in misplaced]
                what = f"{names[0]} is a global option" if len(names) == 1 else \
                    f"{', '.join(names)} are global options"
                raise UsageError(f"{what}: put {'it' if len(names) == 1 else 'them'} before the subcommand: "
                                 f"{self.prog} {' '.join(misplaced)} {parsed.command}")
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def _global_options_in(parser: argparse.ArgumentParser, extras: list[str]) -> list[str]:
    """The global options (with a placeholder for their value) found among the arguments a
    subcommand did not recognise: ``list --read-only`` means ``--read-only list``."""
    found: list[str] = []
    for tok in extras:
        name = tok.split("=", 1)[0] if tok.startswith("--") else tok
        action = parser._option_string_actions.get(name)
        if action is None or not tok.startswith("-") or action.dest in ("help", "version"):
            continue
        if action.nargs == 0:
            found.append(name)
        else:  # the value is not echoed (it may be a password-bearing URL): its placeholder is
            found.append(f"{name} {action.metavar or action.dest.upper()}")
    return found


def _did_you_mean(message: str) -> str:
    """argparse's "invalid choice: 'lsit' (choose from ...)" with the nearest choice named first."""
    m = _INVALID_CHOICE.match(message)
    if m is None:
        return message
    import ast  # noqa: PLC0415 - only on a typo: start-up stays light
    import difflib  # noqa: PLC0415

    choices = re.findall(r"'([^']*)'", m["choices"])
    try:
        value = ast.literal_eval(m["value"])
    except (ValueError, SyntaxError):
        return message
    if not isinstance(value, str):
        return message
    what = "subcommand" if m["arg"] in ("COMMAND", "ACTION") else f"value for {m['arg']}"
    close = difflib.get_close_matches(value.lower(), choices, n=1, cutoff=0.6)
    if close:
        return f"unknown {what} {inert(value, limit=40)!r}: did you mean {close[0]}?"
    return f"unknown {what} {inert(value, limit=40)!r}: choose from {', '.join(choices)}"


def _on() -> dict[str, object]:
    """A switch whose absence is None, not False: only a flag that was given overrides the layers below."""
    return {"action": "store_const", "const": True, "default": None}


def invoked_as() -> str:
    """How to call this program again, for the commands an error or ``--help`` suggests:
    ``triage-tui`` when that name on PATH is this program, else the path it was run by (right
    after the README's install, ``.venv/bin/triage-tui`` is not on PATH)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) != "triage-tui":
        return "triage-tui"  # python -m triage_tui, a test runner
    found = shutil.which("triage-tui")
    try:
        if found and os.path.samefile(found, argv0):
            return "triage-tui"
    except OSError:
        pass
    return shlex.quote(inert(argv0, limit=200))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=invoked_as(),
        description="Triage GitLab's incoming-email IMAP mailbox (mail_room) during an incident. "
        "Without a subcommand, opens the full-screen UI. Settings come from (lowest first) defaults, "
        "--gitlab-config / --mail-room-config, the config file (see `%(prog)s config path`), "
        "TRIAGE_* environment variables, then flags; `%(prog)s config show` says which won. "
        "Global options (all but --help and --version below) go before the subcommand: "
        "`%(prog)s --read-only list`.",
        epilog="Exit codes: 0 ok, 1 failed or incomplete, 2 usage/config, 3 connection/auth/TLS, "
        "4 refused (read-only, UIDVALIDITY changed, confirmation missing).",
    )
    p.add_argument("--version", action="version", version=f"triage-tui {__version__}")
    c = p.add_argument_group("configuration")
    c.add_argument("--config", metavar="PATH", help="TOML config file (default: the user config dir, see "
                   "`%(prog)s config path`) [TRIAGE_CONFIG]")
    c.add_argument("--profile", metavar="NAME", help="use [profiles.NAME] of the config file [TRIAGE_PROFILE]")
    c.add_argument("--gitlab-config", metavar="PATH",
                   help="read incoming_email / service_desk_email from a rendered gitlab.yml, e.g. "
                   "/var/opt/gitlab/gitlab-rails/etc/gitlab.yml [TRIAGE_GITLAB_CONFIG]")
    c.add_argument("--gitlab-env", metavar="ENV", help="environment section of gitlab.yml (default production) "
                   "[TRIAGE_GITLAB_ENV]")
    c.add_argument("--mail-room-config", metavar="PATH",
                   help="read mailboxes and Redis arbitration (redis_url, namespace, sentinels) from a rendered "
                   "mail_room YAML [TRIAGE_MAIL_ROOM_CONFIG]")
    c.add_argument("--mailbox-source", choices=("incoming", "service_desk"),
                   help="which imported mailbox to triage when both are configured (default incoming); "
                   "service_desk implies --mailbox-kind service_desk [TRIAGE_MAILBOX_SOURCE]")
    g = p.add_argument_group("connection (flags override TRIAGE_IMAP_* environment variables)")
    g.add_argument("--host", help="IMAP host [TRIAGE_IMAP_HOST]")
    g.add_argument("--port", type=int_arg(1, 65535), help="IMAP port (default 993 for ssl, 143 otherwise) [TRIAGE_IMAP_PORT]")
    g.add_argument("--security", choices=("ssl", "starttls", "none"),
                   help="implicit TLS (default), STARTTLS (never downgraded), or none (loopback only "
                   "unless --allow-plaintext) [TRIAGE_IMAP_SECURITY]")
    g.add_argument("--user", help="IMAP login [TRIAGE_IMAP_USER]")
    g.add_argument("--mailbox", help="mailbox mail_room reads (default INBOX) [TRIAGE_IMAP_MAILBOX]")
    g.add_argument("--password-env", metavar="NAME",
                   help="environment variable holding the password (default TRIAGE_IMAP_PASSWORD)")
    g.add_argument("--password-file", metavar="PATH",
                   help="file holding the password (must not be readable by group or others) "
                   "[TRIAGE_IMAP_PASSWORD_FILE]")
    g.add_argument("--password-command", metavar="CMD",
                   help="program printing the password on its first line, run without a shell, e.g. "
                   "'vault kv get -field=password secret/incoming' [TRIAGE_IMAP_PASSWORD_COMMAND]")
    g.add_argument("--oauth2-token-command", metavar="CMD",
                   help="program printing an OAuth2 access token (Gmail, Microsoft 365) [TRIAGE_OAUTH2_TOKEN_COMMAND]")
    g.add_argument("--oauth2-token-env", metavar="NAME", help="environment variable holding an OAuth2 access token")
    g.add_argument("--oauth2-mechanism", type=str.upper, choices=("XOAUTH2", "OAUTHBEARER"),
                   help="SASL mechanism for the token (default XOAUTH2) [TRIAGE_OAUTH2_MECHANISM]")
    g.add_argument("--ca-file", help="CA bundle to verify the server certificate [TRIAGE_IMAP_CA_FILE]")
    g.add_argument("--insecure-skip-verify", **_on(),  # type: ignore[arg-type]
                   help="do not verify the server certificate (loud: a warning, the UI and the audit journal)")
    g.add_argument("--allow-plaintext", **_on(),  # type: ignore[arg-type]
                   help="allow --security none to a host that is not loopback (config: require_tls = false)")
    g.add_argument("--timeout", dest="imap_timeout", type=float_arg(0.1, 3600), metavar="SECONDS",
                   help="network timeout in seconds (default 30) [TRIAGE_IMAP_TIMEOUT]")
    gr = p.add_argument_group("Microsoft Graph inbox (--inbox graph; the client secret as the IMAP password: "
                              "environment, file or command)")
    gr.add_argument("--inbox", choices=("imap", "graph"),
                    help="reach the mailbox over IMAP (default) or Microsoft Graph [TRIAGE_INBOX]")
    gr.add_argument("--graph-tenant-id", metavar="ID", help="Azure AD tenant [TRIAGE_GRAPH_TENANT_ID]")
    gr.add_argument("--graph-client-id", metavar="ID", help="app registration (client) id [TRIAGE_GRAPH_CLIENT_ID]")
    gr.add_argument("--graph-mailbox", metavar="ADDRESS", help="the mailbox's address [TRIAGE_GRAPH_MAILBOX]")
    gr.add_argument("--graph-folder", metavar="NAME",
                    help="folder mail_room reads (default inbox) [TRIAGE_GRAPH_FOLDER]")
    gr.add_argument("--graph-secret-env", metavar="NAME",
                    help="environment variable holding the client secret (default TRIAGE_GRAPH_CLIENT_SECRET)")
    gr.add_argument("--graph-secret-file", metavar="PATH",
                    help="file holding the client secret (not readable by group or others) "
                    "[TRIAGE_GRAPH_CLIENT_SECRET_FILE]")
    gr.add_argument("--graph-secret-command", metavar="CMD",
                    help="program printing the client secret on its first line, run without a shell "
                    "[TRIAGE_GRAPH_CLIENT_SECRET_COMMAND]")
    gr.add_argument("--graph-endpoint", metavar="URL",
                    help="Graph endpoint (default https://graph.microsoft.com; national clouds differ) "
                    "[TRIAGE_GRAPH_ENDPOINT]")
    gr.add_argument("--azure-ad-endpoint", metavar="URL",
                    help="Azure AD endpoint (default https://login.microsoftonline.com) [TRIAGE_AZURE_AD_ENDPOINT]")
    t = p.add_argument_group("GitLab semantics")
    t.add_argument("--address",
                   help="incoming address template, e.g. incoming+%%{key}@incoming.gitlab.example.com [TRIAGE_ADDRESS]")
    t.add_argument("--gitlab-host", dest="gitlab_host_global", metavar="HOST",
                   help="GitLab's host name, e.g. gitlab.example.com: GitLab only accepts reply-<key>@<host> "
                   "in References [TRIAGE_GITLAB_HOST]")
    t.add_argument("--mailbox-kind", choices=("incoming", "service_desk"),
                   help="incoming_email (default) or service_desk_email: on the latter every key is service desk "
                   "[TRIAGE_MAILBOX_KIND]")
    t.add_argument("--stale-after", metavar="AGE",
                   help="age after which unseen mail is stale (default 2d; the runbook's 'a couple of days') "
                   "[TRIAGE_STALE_AFTER]")
    rd = p.add_argument_group("mail_room's Redis arbitration locks (optional)")
    rd.add_argument("--redis-url",
                    help="redis:// or rediss:// URL with DB number, e.g. redis://:pass@host:6379/0 [TRIAGE_REDIS_URL]")
    rd.add_argument("--redis-sentinel", action="append", default=None, metavar="HOST:PORT",
                    help="a Sentinel address (repeat for several) [TRIAGE_REDIS_SENTINELS, comma-separated]")
    rd.add_argument("--redis-master", metavar="NAME",
                    help="Sentinel master name (e.g. gitlab-redis) [TRIAGE_REDIS_MASTER]")
    rd.add_argument("--redis-ca-file", help="CA bundle for rediss:// [TRIAGE_REDIS_CA_FILE]")
    rd.add_argument("--key-prefix",
                    help="arbitration key prefix (default mail_room:gitlab:) [TRIAGE_KEY_PREFIX]")
    rd.add_argument("--sidekiq-queue", action="append", default=None, metavar="NAME",
                    help="a GitLab Sidekiq queue the watch after a release reads on this Redis, read-only (repeat "
                    "for several; default email_receiver and default) [TRIAGE_SIDEKIQ_QUEUES, comma-separated]")
    rd.add_argument("--sidekiq-namespace", metavar="PREFIX",
                    help="key prefix of those queues (older GitLab: resque:gitlab:) [TRIAGE_SIDEKIQ_NAMESPACE]")
    r = p.add_argument_group("safety and diagnostics")
    r.add_argument("--read-only", **_on(),  # type: ignore[arg-type]
                   help="review mode: nothing on the server can change (every mutation is refused) [TRIAGE_READ_ONLY]")
    r.add_argument("--debug", action="store_true", help="log IMAP commands (credentials redacted) and show tracebacks")
    r.add_argument("--chunk", type=int_arg(1, 100_000), metavar="N", help="at most N UIDs per IMAP command (default 1000)")
    r.add_argument("--max-command-bytes", type=int_arg(64, 1_048_576), metavar="B",
                   help="at most B bytes of UID set per command (default 8192)")
    r.add_argument("--pipeline", type=int_arg(1, 256), metavar="K", help="commands kept in flight (default 8)")
    r.add_argument("--workers", type=int_arg(0, 16), metavar="N",
                   help="processes that build a large listing's rows while the socket is read (default: 2 on two "
                   "CPUs, one fewer than the CPUs on more, at most 4; 0: none) [TRIAGE_WORKERS]")
    r.add_argument("--no-mouse", **_on(), help="TUI: do not enable mouse reporting")  # type: ignore[arg-type]
    r.add_argument("--no-cache", **_on(),  # type: ignore[arg-type]
                   help="do not read or write the header cache (customer mail headers kept on this disk "
                   "for fast warm starts; `cache clear` deletes it) [TRIAGE_CACHE=false]")

    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        mod = importlib.import_module(f"triage_tui.commands.{name}")
        sp = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        sp.set_defaults(_run=mod.run, _preconnect=getattr(mod, "PRECONNECT", False))
        sp._fill = mod.add_arguments  # type: ignore[attr-defined]  # run when this subcommand is used
    p.set_defaults(_build_parser=build_parser)  # `demo` parses what it types with this, never importing cli
    return p


def _cancel_on_signals(ctx: Context, *, tui: bool = False) -> dict[int, Any]:
    """SIGTERM/SIGHUP. While a bulk change runs (a journaled operation is open), the first one
    stops sending (what is in flight completes, the journal says "interrupted" with exactly
    what changed) and a second one exits. A command that is only reading (a listing, a plan, a
    watch) has nothing to finish: it stops at once, with 128 + the signal's number (a killed
    `list` used to run to its end and exit 0). The TUI keeps the first behaviour: it ends its
    own way."""
    def handler(signum: int, frame: object) -> None:
        guard = sys.modules.get("triage_tui.services.guard")  # not loaded: nothing was ever changed
        svc = getattr(ctx, "_service", None)
        if not tui and (guard is None or guard.MutationGuard.in_flight == 0):
            if svc is not None:
                svc.cancel()  # a change about to start (after this line) refuses to
            _error_line(f"triage-tui: signal {signum}: stopped (no change was in progress)")
            raise SystemExit(128 + signum)
        if svc is not None and not svc._cancel.is_set():
            _error_line(f"triage-tui: signal {signum}: stopping after the commands in flight")
            svc.cancel()
            return
        raise SystemExit(128 + signum)

    previous: dict[int, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            previous[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread (tests calling main() from a worker)
            pass
    return previous


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    # a library's warning with no handler configured goes to logging's last resort: inert too
    logging.lastResort = _inert_handler(logging.WARNING)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.debug:
            # log records quote server replies: inert too
            logging.basicConfig(level=logging.DEBUG, handlers=[_inert_handler(
                logging.DEBUG, "%(asctime)s %(name)s %(levelname)s %(message)s")])
        from triage_tui.context import Context  # noqa: PLC0415 - after parsing: --help/--version stay light

        ctx = Context(args)
        if not getattr(args, "_lazy_settings", False):
            # resolve now, so every subcommand (also those that read args.address directly) sees
            # the resolved values; `config path` opts out to stay usable with a broken config file
            _ = ctx.settings
        run = getattr(args, "_run", None)
        # the TUI (no subcommand) and the commands that list or change; "examine": the mailbox too
        pre = getattr(args, "_preconnect", "examine" if run is None else False)
        if pre:
            ctx.preconnect(examine=pre == "examine")
        previous = _cancel_on_signals(ctx, tui=run is None)
        try:
            if run is None:
                from triage_tui.commands import tui  # noqa: PLC0415 - keep Textual off the CLI path

                return int(tui.run(args, ctx) or 0)
            code = int(run(args, ctx) or 0)
            ctx.out.flush()  # a full disk says so here, not as "Exception ignored" at exit
            return code
        finally:
            ctx.close()
            for sig, old in previous.items():
                signal.signal(sig, old)
    except TriageError as e:
        if debug:
            _print_traceback()
        # one line, inert: an error often quotes a server reply, a mailbox name or mail text
        _error_line(f"triage-tui: error: {e}")
        return e.exit_code
    except KeyboardInterrupt:
        _error_line("triage-tui: interrupted")
        return 130
    except BrokenPipeError:
        # e.g. `triage-tui list | head`: not an error worth a traceback
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        except OSError:
            pass
        return 0
    except Exception as e:  # noqa: BLE001 - the last line of defence: never a traceback by default
        if debug:
            _print_traceback()
        _error_line(f"triage-tui: internal error: {type(e).__name__}: {e} (run with --debug for details)")
        return 1


class _InertStderr(logging.Handler):
    """Log records on stderr, inert (they quote server replies). ``sys.stderr`` is looked up
    per record, so a redirected stderr is honoured."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _error_line(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def _inert_handler(level: int, fmt: str = "%(message)s") -> logging.Handler:
    handler = _InertStderr(level)
    handler.setFormatter(logging.Formatter(fmt))
    return handler


def _error_line(text: str) -> None:
    """The last line a failing command prints, made inert (multi-line messages keep their lines)."""
    try:
        sys.stderr.write(inert(scrub_registered(text), multiline=True) + "\n")
        sys.stderr.flush()
    except OSError:  # stderr itself is gone or full: the exit code is all that is left to say it
        pass


def _print_traceback() -> None:
    """``--debug``: the traceback, inert too (its last line repeats the exception's text)."""
    import traceback  # noqa: PLC0415

    sys.stderr.write(inert(scrub_registered(traceback.format_exc()), multiline=True))


if __name__ == "__main__":
    raise SystemExit(main())
