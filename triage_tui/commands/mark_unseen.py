"""mark-unseen: give \\Seen messages (never \\Deleted ones) back to mail_room: the crash-trapped
(seen-stuck) and the ignored alike, or only one of them (``--view``)."""

from __future__ import annotations

import argparse
from typing import Any

from triage_tui.commands._flow import run_plan
from triage_tui.commands._select import add_plan_args, add_selector_args, resolve
from triage_tui.domain.model import TRIAGE_KEYWORD, View

NAME = "mark-unseen"
PRECONNECT = "examine"  # the IMAP connection and the mailbox open while the command gets ready (services/preconnect.py)
HELP = ("remove \\Seen (and triage-tui's ignore mark) from \\Seen, not \\Deleted messages so mail_room "
        "ingests them again")
VIEWS = (View.SEEN, View.SEEN_STUCK, View.IGNORED)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--view", choices=[v.value for v in VIEWS], default=View.SEEN.value,
                   help=f"where to select: seen (default): every \\Seen, not \\Deleted message; seen-stuck: "
                   f"those without the {TRIAGE_KEYWORD} mark (a crashed mail_room's leftovers); ignored: "
                   "those marked \\Seen by triage-tui (restoring an ignore decision). \\Deleted mail is never "
                   "un-seen")
    add_selector_args(p)
    add_plan_args(p)


def run(args: argparse.Namespace, ctx: Any) -> int:
    view = View(getattr(args, "view", None) or View.SEEN.value)
    uidvalidity, uids = resolve(args, ctx, view)
    plan = ctx.service().plan_flags("mark-unseen", uidvalidity, uids or [])
    return run_plan(args, ctx, plan)
