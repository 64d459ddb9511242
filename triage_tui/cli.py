"""Entry point: global options, then a subcommand (or the TUI when there is none).

Global options (connection, ``--read-only``, ``--debug``) come before the subcommand:
``triage-tui --read-only list``. Each flag falls back to an environment variable.
Errors are one line on stderr with a distinct exit code (see :mod:`triage_tui.errors`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from triage_tui import __version__
from triage_tui.commands import COMMAND_MODULES
from triage_tui.context import Context
from triage_tui.errors import TriageError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


def _env(name: str, default: str | None = None) -> str | None:
    v = os.environ.get(name)
    return v if v not in (None, "") else default


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="triage-tui",
        description="Triage GitLab's incoming-email IMAP mailbox (mail_room) during an incident. "
        "Without a subcommand, opens the full-screen UI.",
        epilog="Exit codes: 0 ok, 1 failed or incomplete, 2 usage/config, 3 connection/auth/TLS, "
        "4 refused (read-only, UIDVALIDITY changed, confirmation missing).",
    )
    p.add_argument("--version", action="version", version=f"triage-tui {__version__}")
    g = p.add_argument_group("connection (flags override TRIAGE_IMAP_* environment variables)")
    g.add_argument("--host", default=_env("TRIAGE_IMAP_HOST"), help="IMAP host [TRIAGE_IMAP_HOST]")
    g.add_argument("--port", type=int, default=int(_env("TRIAGE_IMAP_PORT", "0") or 0) or None,
                   help="IMAP port (default 993 for ssl, 143 otherwise) [TRIAGE_IMAP_PORT]")
    g.add_argument("--security", choices=("ssl", "starttls", "none"), default=_env("TRIAGE_IMAP_SECURITY", "ssl"),
                   help="implicit TLS (default), STARTTLS (never downgraded), or none (loopback only "
                   "unless --allow-plaintext) [TRIAGE_IMAP_SECURITY]")
    g.add_argument("--user", default=_env("TRIAGE_IMAP_USER"), help="IMAP login [TRIAGE_IMAP_USER]")
    g.add_argument("--mailbox", default=_env("TRIAGE_IMAP_MAILBOX", "INBOX"),
                   help="mailbox mail_room reads (default INBOX) [TRIAGE_IMAP_MAILBOX]")
    g.add_argument("--password-env", metavar="NAME", default="TRIAGE_IMAP_PASSWORD",
                   help="environment variable holding the password (default TRIAGE_IMAP_PASSWORD)")
    g.add_argument("--password-file", metavar="PATH", default=_env("TRIAGE_IMAP_PASSWORD_FILE"),
                   help="file holding the password (must not be readable by group or others)")
    g.add_argument("--ca-file", default=_env("TRIAGE_IMAP_CA_FILE"),
                   help="CA bundle to verify the server certificate [TRIAGE_IMAP_CA_FILE]")
    g.add_argument("--insecure-skip-verify", action="store_true",
                   help="do not verify the server certificate (loud: shown in the UI and the audit journal)")
    g.add_argument("--allow-plaintext", action="store_true",
                   help="allow --security none to a host that is not loopback")
    g.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds (default 30)")
    t = p.add_argument_group("GitLab semantics")
    t.add_argument("--address", default=_env("TRIAGE_ADDRESS"),
                   help="incoming address template, e.g. incoming+%%{key}@incoming.gitlab.example.com [TRIAGE_ADDRESS]")
    t.add_argument("--mailbox-kind", choices=("incoming", "service_desk"), default=_env("TRIAGE_MAILBOX_KIND", "incoming"),
                   help="incoming_email (default) or service_desk_email: on the latter every key is service desk")
    t.add_argument("--stale-after", default=_env("TRIAGE_STALE_AFTER", "2d"), metavar="AGE",
                   help="age after which unseen mail is stale (default 2d; the runbook's 'a couple of days')")
    rd = p.add_argument_group("mail_room's Redis arbitration locks (optional)")
    rd.add_argument("--redis-url", default=_env("TRIAGE_REDIS_URL"),
                    help="redis:// or rediss:// URL with DB number, e.g. redis://:pass@host:6379/0 [TRIAGE_REDIS_URL]")
    rd.add_argument("--redis-sentinel", action="append", default=None, metavar="HOST:PORT",
                    help="a Sentinel address (repeat for several) [TRIAGE_REDIS_SENTINELS, comma-separated]")
    rd.add_argument("--redis-master", default=_env("TRIAGE_REDIS_MASTER"), metavar="NAME",
                    help="Sentinel master name (e.g. gitlab-redis) [TRIAGE_REDIS_MASTER]")
    rd.add_argument("--redis-ca-file", default=_env("TRIAGE_REDIS_CA_FILE"), help="CA bundle for rediss://")
    rd.add_argument("--key-prefix", default=_env("TRIAGE_KEY_PREFIX", "mail_room:gitlab:"),
                    help="arbitration key prefix (default mail_room:gitlab:) [TRIAGE_KEY_PREFIX]")
    r = p.add_argument_group("safety and diagnostics")
    r.add_argument("--read-only", action="store_true", default=_env("TRIAGE_READ_ONLY") in ("1", "true", "yes"),
                   help="review mode: nothing on the server can change (every mutation is refused)")
    r.add_argument("--debug", action="store_true", help="log IMAP commands (credentials redacted) and show tracebacks")
    r.add_argument("--chunk", type=int, default=1000, metavar="N", help="at most N UIDs per IMAP command (default 1000)")
    r.add_argument("--max-command-bytes", type=int, default=8192, metavar="B",
                   help="at most B bytes of UID set per command (default 8192)")
    r.add_argument("--pipeline", type=int, default=8, metavar="K", help="commands kept in flight (default 8)")
    r.add_argument("--no-mouse", action="store_true", help="TUI: do not enable mouse reporting")

    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        mod = importlib.import_module(f"triage_tui.commands.{name}")
        sp = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(sp)
        sp.set_defaults(_run=mod.run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.debug:
            logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                                format="%(asctime)s %(name)s %(levelname)s %(message)s")
        ctx = Context(args)
        try:
            run = getattr(args, "_run", None)
            if run is None:
                from triage_tui.commands import tui  # noqa: PLC0415 - keep Textual off the CLI path

                return int(tui.run(args, ctx) or 0)
            return int(run(args, ctx) or 0)
        finally:
            ctx.close()
    except TriageError as e:
        if debug:
            traceback.print_exc()
        print(f"triage-tui: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("triage-tui: interrupted", file=sys.stderr)
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
            traceback.print_exc()
        print(f"triage-tui: internal error: {type(e).__name__}: {e} (run with --debug for details)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
