"""mark-seen: what the runbook does with one RFC822 fetch per message, in a few STORE commands."""

from __future__ import annotations

import argparse
from typing import Any

from triage_tui.commands._flow import run_plan
from triage_tui.commands._select import add_plan_args, add_selector_args, resolve
from triage_tui.domain.model import View

NAME = "mark-seen"
PRECONNECT = True  # the IMAP connection opens while the command gets ready (services/preconnect.py)
HELP = ("mark UNSEEN messages \\Seen so mail_room skips them, with the ignore mark $TriageIgnored where the "
        "mailbox allows keywords (kept in the mailbox, reversible with undo)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_selector_args(p)
    add_plan_args(p)


def run(args: argparse.Namespace, ctx: Any) -> int:
    # select, plan and store on one connection, the mailbox opened once (a dry run, and
    # read-only mode, keep EXAMINE; read-only is refused before the write, as before)
    svc = ctx.service(one_connection=not args.dry_run)
    uidvalidity, uids = resolve(args, ctx, View.UNSEEN)
    # the UIDs come from a SEARCH UNSEEN just now: not searched again (the write narrows them
    # once more right before it stores)
    plan = svc.plan_flags("mark-seen", uidvalidity, uids or [], current=True)
    return run_plan(args, ctx, plan)
