"""Plan → (dry run | confirm → execute) → report: the same flow for every mutating subcommand."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from triage_tui.domain import uidset
from triage_tui.domain.text import inert


def _progress_printer(label: str) -> Any:
    if not sys.stderr.isatty():
        return None

    label = inert(label)

    def show(done: int, total: int) -> None:
        sys.stderr.write(f"\r{label}: {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def _short(ranges: str, limit: int = 200) -> str:
    return ranges if len(ranges) <= limit else ranges[:limit] + "..."


def describe(plan: Any) -> str:
    from triage_tui.services.triage import left_alone_lines  # noqa: PLC0415 - lazy: start-up cost

    verb = {"mark-seen": "mark \\Seen (mail_room will skip them; they stay in the mailbox)",
            "mark-unseen": "remove \\Seen",
            "expunge": "expunge (permanently remove)"}[plan.action]
    lines = [f"{plan.count} message(s) to {verb}"]
    if getattr(plan, "warning", None):
        lines.append(plan.warning)
    if plan.undoes:
        lines[0] = f"undo of operation {plan.undoes}: " + lines[0]
        lines.extend(getattr(plan, "notes", []))
        lines.extend(left_alone_lines(getattr(plan, "left_alone", []), future=True))
    if plan.all_deleted:
        lines.append(f"plain EXPUNGE: removes every \\Deleted message, including {plan.others_deleted} "
                     "outside your selection")
    if plan.skipped and not plan.undoes:
        lines.append(f"{plan.skipped} selected message(s) need no change (already done or gone)")
    if getattr(plan, "budget", None) is None:
        lines.append(f"UIDVALIDITY {plan.uidvalidity}; UIDs {_short(plan.ranges) or '-'}; {plan.cost_text}")
    else:  # a line of its own: after up to 200 characters of UIDs it was lost, and it is what a Graph operator weighs
        lines.append(f"UIDVALIDITY {plan.uidvalidity}; UIDs {_short(plan.ranges) or '-'}")
        lines.append(f"Graph budget: {plan.cost_text}")
    return "\n".join(lines)


def run_plan(args: argparse.Namespace, ctx: Any, plan: Any) -> int:
    from triage_tui.services.triage import left_alone_lines  # noqa: PLC0415 - lazy: start-up cost

    svc = ctx.service()
    if args.dry_run:
        if args.json:
            ctx.emit_json({"dry_run": True, **plan.to_json()})
        else:
            ctx.say(describe(plan))
            ctx.say("dry run: nothing was changed")
        return 0
    action = "undo" if plan.undoes else plan.action
    svc.guard.refuse_if_read_only(action)
    if plan.count == 0:
        if args.json:
            ctx.emit_json({"nothing_to_do": True, **plan.to_json()})
        else:
            ctx.say("nothing to do: no selected message needs this change")
            for line in left_alone_lines(getattr(plan, "left_alone", [])):
                ctx.say(line)
        return 0
    # the question is only built when it is asked: describing the plan walks the whole UID set
    # twice (its ranges and its command count), which --yes never shows
    if plan.action == "expunge" and not args.yes:
        ctx.confirm(describe(plan) + "\nThis cannot be undone.", yes=False, typed=str(plan.count))
    elif not args.yes:
        ctx.confirm(describe(plan) + "\nProceed?", yes=False)
    result = svc.execute(plan, progress=_progress_printer(action))
    if args.json:
        ctx.emit_json(result.to_json())
    else:
        if plan.undoes:  # what it left alone, and why, follows line by line
            ctx.say(f"undo: {len(result.changed)} of {result.requested} restored in {result.commands} "
                    f"command(s) (journal op {result.op_id})")
        else:
            ctx.say(f"{action}: {len(result.changed)} changed"
                    + (f", {len(result.skipped_concurrent)} skipped (changed concurrently)"
                       if result.skipped_concurrent else "")
                    + (f", {result.vanished_or_done} no longer needed" if result.vanished_or_done else "")
                    + f" in {result.commands} command(s) (journal op {result.op_id})")
        if result.interrupted:
            ctx.say(f"INTERRUPTED: {len(result.interrupted)} message(s) never sent "
                    f"{_short(uidset.compress(result.interrupted))}; run the command again to finish")
        for uids, err in result.failed:
            ctx.say(f"FAILED {len(uids)} message(s) {_short(uidset.compress(uids))}: {err}")
        for line in left_alone_lines(getattr(result, "left_alone", [])):
            ctx.say(line)
    return 0 if result.ok else 1
