"""undo: revert the last flag change recorded in the audit journal."""

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
    plan, record = ctx.service().plan_undo()
    if not args.json:
        ctx.say(f"last change: {record.get('action')} of {record.get('changed_count', '?')} message(s) "
                f"at {record.get('time')} by {record.get('os_user')}@{record.get('host')} (op {record.get('op')})")
    return run_plan(args, ctx, plan)
