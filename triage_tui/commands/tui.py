"""tui: the full-screen triage UI (also what ``triage-tui`` opens without a subcommand).

The service is built here but not connected: the app connects in a worker, so the first
frame (with "connecting…") appears at once even over a slow link. Textual is imported only
inside :func:`run`, so the scriptable subcommands never pay for it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from triage_tui.errors import ConfigError, UsageError

NAME = "tui"
HELP = "open the full-screen triage UI (the default when no subcommand is given)"
DESCRIPTION = (
    "Open the full-screen triage UI: live list of the mailbox (IMAP IDLE), marks, filter, header "
    "preview, mark seen/unseen, expunge and undo with confirmation. Press ? inside for every key. "
    "Global options (connection, --read-only, --no-mouse) go before the subcommand."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--view", choices=("unseen", "seen-stuck", "deleted"), default=None,
                   help="view to open (default unseen) [TRIAGE_VIEW]")
    p.add_argument("--theme", default=None, metavar="NAME",
                   help="Textual theme, e.g. ansi-dark (uses the terminal's own palette) [TRIAGE_THEME]")
    p.add_argument("--keymap", default=None, metavar="JSON",
                   help='remap keys by binding id, e.g. \'{"mark.toggle": "x", "action.seen": "ctrl+s"}\' '
                   "(ids are listed in the ? help) [TRIAGE_KEYMAP]")


def _keymap(args: argparse.Namespace, ctx: Any) -> dict[str, str]:
    """Key map from the config layer when it offers one, else --keymap / TRIAGE_KEYMAP (JSON)."""
    from_ctx = getattr(ctx, "keymap", None)
    if callable(from_ctx):
        km = from_ctx()
        if km:
            return dict(km)
    raw = getattr(args, "keymap", None) or os.environ.get("TRIAGE_KEYMAP")
    if not raw:
        return {}
    try:
        km = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--keymap is not valid JSON: {e}") from None
    if not isinstance(km, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in km.items()):
        raise ConfigError('--keymap must be a JSON object of binding id -> key, e.g. {"mark.toggle": "x"}')
    return km


def build_service(ctx: Any) -> Any:
    """A TriageService from the context's settings, not yet connected."""
    from triage_tui.services.triage import TriageService

    return TriageService(ctx.connection_settings(), read_only=ctx.read_only, journal=ctx.journal,
                         limits=ctx.limits(), analysis=ctx.analysis())


def run(args: argparse.Namespace, ctx: Any) -> int:
    if not sys.stdout.isatty() or not sys.stdin.isatty():
        raise UsageError("the UI needs a terminal; for scripts use a subcommand (triage-tui list --json, ...)")
    service = build_service(ctx)
    locks = ctx.lock_service()
    view = getattr(args, "view", None) or os.environ.get("TRIAGE_VIEW") or "unseen"
    theme = getattr(args, "theme", None) or os.environ.get("TRIAGE_THEME") or getattr(ctx, "theme", None)
    from triage_tui.tui.app import TriageApp

    app = TriageApp(service, lock_service=locks, keymap=_keymap(args, ctx), theme=theme if isinstance(theme, str) else None,
                    view=view)
    try:
        code = app.run(mouse=not getattr(args, "no_mouse", False))
    finally:
        app.shutdown_services()
    return int(code or 0)
