"""tui: the full-screen triage UI (also what ``triage-tui`` opens without a subcommand).

The service is built here but not connected: the app connects in a worker, so the first
frame (with "connecting…") appears at once even over a slow link. Textual is imported only
inside :func:`run`, so the scriptable subcommands never pay for it.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from triage_tui.errors import UsageError

NAME = "tui"
PRECONNECT = "examine"  # the IMAP connection and the mailbox open while the command gets ready (services/preconnect.py)
HELP = "open the full-screen triage UI (the default when no subcommand is given)"
DESCRIPTION = (
    "Open the full-screen triage UI: live list of the mailbox (IMAP IDLE), marks, filter, header "
    "preview, mark seen/unseen, expunge and undo with confirmation. Press ? inside for every key. "
    "Global options (connection, --read-only, --no-mouse) go before the subcommand."
)


VIEWS = ("unseen", "seen-stuck", "deleted")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--view", choices=VIEWS, default=None,
                   help="view to open (default unseen) [TRIAGE_VIEW]")
    p.add_argument("--theme", default=None, metavar="NAME",
                   help="Textual theme, e.g. ansi-dark (uses the terminal's own palette) [TRIAGE_THEME]")
    p.add_argument("--keymap", default=None, metavar="JSON",
                   help='remap keys by binding id, e.g. \'{"mark.toggle": "x", "action.seen": "ctrl+s"}\' '
                   "(ids are listed in the ? help) [TRIAGE_KEYMAP]")


def build_service(ctx: Any) -> Any:
    """A TriageService from the context's settings, not yet connected. Its mutations carry the
    config layer's audit notes (e.g. that TLS verification was skipped), as the CLI's do."""
    from triage_tui.services.triage import TriageService

    cs = ctx.connection_settings()
    make_cache = getattr(ctx, "header_cache", None)
    # a broken cache must not write on the TUI's screen: it is given up (svc.cache.problem), and
    # the listing says so once, as a notification (ListingController.note_cache)
    cache = make_cache(cs, on_problem=lambda _text: None) if callable(make_cache) else None
    factory = getattr(ctx, "session_factory", None)
    extra = {"session_factory": factory()} if callable(factory) else {}
    svc = TriageService(cs, read_only=ctx.read_only, journal=ctx.journal,
                        limits=ctx.limits(), analysis=ctx.analysis(), cache=cache, **extra)
    notes = getattr(ctx, "guard_notes", None)
    if callable(notes):
        svc.guard.context.update(notes())
    return svc


def demo_options(args: argparse.Namespace) -> dict[str, Any]:
    """What ``triage-tui demo`` hands the UI: the DEMO badge, its mail_room stand-in and the story.
    ``TRIAGE_DEMO=1`` (from ``demo --print-env``) gives the badge alone: the stand-in lives in the
    demo's own process there (``kill -USR1`` starts it)."""
    demo = bool(getattr(args, "demo", False)) or os.environ.get("TRIAGE_DEMO") == "1"
    return {"demo": demo, "demo_consumer": getattr(args, "demo_consumer", None),
            "demo_story": getattr(args, "demo_story", None)}


def run(args: argparse.Namespace, ctx: Any) -> int:
    keymap = ctx.keymap()
    if keymap:  # an unknown id or key would silently do nothing: refuse it before connecting
        from triage_tui.tui.keymap import check_keymap

        check_keymap(keymap, str(ctx.settings.source("keymap")))
    env_view = os.environ.get("TRIAGE_VIEW")
    if not getattr(args, "view", None) and env_view and env_view not in VIEWS:
        raise UsageError(f"environment variable TRIAGE_VIEW={env_view[:40]!r}: expected one of {', '.join(VIEWS)}")
    if not sys.stdout.isatty() or not sys.stdin.isatty():
        raise UsageError("the UI needs a terminal; for scripts use a subcommand (triage-tui list --json, ...)")
    service = build_service(ctx)
    locks = ctx.lock_service()
    view = getattr(args, "view", None) or os.environ.get("TRIAGE_VIEW") or "unseen"
    # key map and theme: file < TRIAGE_KEYMAP/TRIAGE_THEME < --keymap/--theme, all resolved (and
    # validated, with the file and key named) by the config layer
    theme = ctx.theme
    from triage_tui.tui.app import TriageApp

    app = TriageApp(service, lock_service=locks, keymap=ctx.keymap(), theme=theme if isinstance(theme, str) else None,
                    view=view, **demo_options(args))
    try:
        code = app.run(mouse=not getattr(args, "no_mouse", False))
    finally:
        app.shutdown_services()
    if code is None and app.return_code:  # ended by an error, not by q or a signal: never 0
        return int(app.return_code)
    return int(code or 0)
