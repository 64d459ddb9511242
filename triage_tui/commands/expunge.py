"""expunge: remove \\Deleted leftovers, exactly the ones selected (UID EXPUNGE, UIDPLUS)."""

from __future__ import annotations

import argparse
from typing import Any

from triage_tui.commands._flow import run_plan
from triage_tui.commands._select import add_plan_args, add_selector_args, resolve
from triage_tui.domain.model import View

NAME = "expunge"
HELP = "permanently remove \\Deleted messages: exactly the selection (UID EXPUNGE), or --all-deleted"
DESCRIPTION = (HELP + ". Without a selector, the \\Deleted messages present now are expunged by UID, so "
               "messages deleted after the plan are not touched. --all-deleted sends a plain EXPUNGE "
               "(needed on servers without UIDPLUS) after saying how many other messages it removes.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_selector_args(p, allow_all=False)
    p.add_argument("--all-deleted", action="store_true",
                   help="plain EXPUNGE of every \\Deleted message in the mailbox")
    add_plan_args(p)


def run(args: argparse.Namespace, ctx: Any) -> int:
    svc = ctx.service()
    selective = any(getattr(args, k, None) for k in ("uids", "older_than", "filter", "stale", "bots"))
    if args.all_deleted:
        uidvalidity, _ = svc.search(View.DELETED)
        plan = svc.plan_expunge(uidvalidity, None, all_deleted=True)
    elif selective:
        uidvalidity, uids = resolve(args, ctx, View.DELETED)
        plan = svc.plan_expunge(uidvalidity, uids or [])
    else:
        uidvalidity, uids = resolve(args, ctx, View.DELETED, require=False)
        plan = svc.plan_expunge(uidvalidity, uids)
    return run_plan(args, ctx, plan)
