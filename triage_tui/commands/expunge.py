"""expunge: remove \\Deleted leftovers, exactly the ones selected (UID EXPUNGE, UIDPLUS)."""

from __future__ import annotations

import argparse
from typing import Any

from triage_tui.commands._flow import run_plan
from triage_tui.commands._select import add_plan_args, add_selector_args, resolve
from triage_tui.domain.model import View
from triage_tui.errors import UsageError

NAME = "expunge"
PRECONNECT = "examine"  # the IMAP connection and the mailbox open while the command gets ready (services/preconnect.py)
HELP = "permanently remove \\Deleted messages: exactly the selection (UID EXPUNGE), or --all-deleted"
DESCRIPTION = (HELP + ". Without a selector, the \\Deleted messages present now are expunged by UID, so "
               "messages deleted after the plan are not touched. --all-deleted sends a plain EXPUNGE "
               "(needed on servers without UIDPLUS) after saying how many other messages it removes; it "
               "takes no selector, and is refused if more messages are \\Deleted when it runs than the "
               "plan said.")

SELECTORS = (("uids", "--uids"), ("older_than", "--older-than"), ("filter", "--filter"), ("stale", "--stale"),
             ("bots", "--bots"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_selector_args(p, allow_all=False)
    p.add_argument("--all-deleted", action="store_true",
                   help="plain EXPUNGE of every \\Deleted message in the mailbox (takes no selector)")
    add_plan_args(p)


def run(args: argparse.Namespace, ctx: Any) -> int:
    given = [flag for key, flag in SELECTORS if getattr(args, key, None)]
    if args.all_deleted and given:
        # a plain EXPUNGE can not honour a selection: it removes every \Deleted message
        raise UsageError(f"--all-deleted removes every \\Deleted message and can not be limited by "
                         f"{', '.join(given)}: drop --all-deleted to expunge exactly your selection "
                         "(UID EXPUNGE), or drop the selector to expunge them all")
    svc = ctx.service()
    if args.all_deleted:
        uidvalidity, _ = svc.search(View.DELETED)
        if args.uidvalidity is not None:
            uidvalidity = args.uidvalidity  # planning refuses if the mailbox's differs
        plan = svc.plan_expunge(uidvalidity, None, all_deleted=True)
    elif given:
        uidvalidity, uids = resolve(args, ctx, View.DELETED)
        plan = svc.plan_expunge(uidvalidity, uids or [])
    else:
        uidvalidity, uids = resolve(args, ctx, View.DELETED, require=False)
        plan = svc.plan_expunge(uidvalidity, uids)
    return run_plan(args, ctx, plan)
