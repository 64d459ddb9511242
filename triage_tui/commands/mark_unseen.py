"""mark-unseen: give seen-stuck messages (\\Seen, not \\Deleted) back to mail_room."""

from __future__ import annotations

import argparse
from typing import Any

from triage_tui.commands._flow import run_plan
from triage_tui.commands._select import add_plan_args, add_selector_args, resolve
from triage_tui.domain.model import View

NAME = "mark-unseen"
HELP = "remove \\Seen from seen-stuck messages (\\Seen, not \\Deleted) so mail_room ingests them again"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_selector_args(p)
    add_plan_args(p)


def run(args: argparse.Namespace, ctx: Any) -> int:
    uidvalidity, uids = resolve(args, ctx, View.SEEN_STUCK)
    plan = ctx.service().plan_flags("mark-unseen", uidvalidity, uids or [])
    return run_plan(args, ctx, plan)
