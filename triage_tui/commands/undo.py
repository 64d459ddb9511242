"""undo: revert the last flag change recorded in the audit journal, exactly.

Each chunk of the change is restored ``UNCHANGEDSINCE`` the MODSEQ the server gave it, so a
message another client changed since (mail_room fetched or deleted it) is left alone; every
message left alone is named with the reason, here, in ``--json`` and in the journal.
"""

from __future__ import annotations

import argparse
from typing import Any

from triage_tui.commands._flow import run_plan

NAME = "undo"
HELP = "revert the last mark-seen/mark-unseen on this mailbox (from the audit journal)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="show what would be reverted")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace, ctx: Any) -> int:
    plan, record = ctx.service().plan_undo()  # validated: every field shown here is plain text
    if not args.json:
        ctx.say(f"last change: {record['action']} of {record['changed_count']} message(s) "
                f"at {record['time']} by {record['os_user']}@{record['host']} (op {record['op']})")
    return run_plan(args, ctx, plan)
