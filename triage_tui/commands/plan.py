"""plan: the incident in one plan. Lists the mailbox (UNSEEN, seen-stuck, \\Deleted; locks when
Redis is configured), sorts every message into the runbook's buckets (:mod:`triage_tui.domain.plan`)
and prints the counts, samples, why, and the steps in order with the exact commands. ``--apply``
runs the steps through the same services as mark-seen, release and expunge, one journal op each.
"""

from __future__ import annotations

import argparse
from typing import Any

from triage_tui.commands._flow import describe
from triage_tui.commands._select import uids_arg
from triage_tui.domain import plan as P
from triage_tui.domain import uidset
from triage_tui.domain.age import format_age
from triage_tui.domain.text import inert
from triage_tui.errors import Refused, UsageError

NAME = "plan"
PRECONNECT = "examine"  # the IMAP connection and the mailbox open while the command gets ready (services/preconnect.py)
HELP = ("the incident in one plan: sort the mailbox into the runbook's buckets (ignore, review, release, "
        "un-see and release, expunge), print the steps and commands; --apply runs them")
DESCRIPTION = (
    "Read-only unless --apply. Buckets, in order (a message belongs to the first that takes it): "
    "bots (auto-generated or dropped by GitLab) -> ignore; stale-rejected -> ignore; stale -> ignore; "
    "problems (a header field unreadable) -> review; suspicious -> review; release (the rest of UNSEEN) -> "
    "release locks now; crash-trapped (seen-stuck, fresh, not junk) -> un-see and release; seen-left -> "
    "leave \\Seen; deleted -> expunge only with --include-expunge. 'review' and 'leave' change nothing. "
    "--apply runs the steps in order (mark-seen, un-see + release, release, expunge), each its own journal "
    "op (so `undo` undoes the last flag step), and stops at the first failed step.")

STEP_TEXT = P.STEP_TEXT


#: a printed command longer than this is not printed (it is never cut: a cut UID set is a wrong one)
COMMAND_MAX = 4000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output (one JSON document)")
    a = p.add_argument_group("changing the plan")
    names = ", ".join(P.BUCKETS)
    a.add_argument("--keep", action="append", default=[], metavar="BUCKET", choices=P.BUCKETS,
                   help=f"give a bucket's messages to GitLab (release; un-see and release if \\Seen); repeatable. "
                   f"Buckets: {names}")
    a.add_argument("--ignore", action="append", default=[], metavar="BUCKET", choices=P.BUCKETS,
                   help="mark a bucket's UNSEEN messages ignored (\\Seen + keyword); a \\Seen bucket stays \\Seen")
    a.add_argument("--keep-uids", metavar="SET", type=uids_arg,
                   help="the same for single messages: UIDs like 5:9,12 or 5-9")
    a.add_argument("--ignore-uids", metavar="SET", type=uids_arg, help="the same for single messages")
    a.add_argument("--include-expunge", action="store_true", help="also expunge the \\Deleted leftovers")
    x = p.add_argument_group("running it")
    x.add_argument("--apply", action="store_true", help="run the steps in order (refused in read-only mode)")
    x.add_argument("--dry-run", action="store_true", help="with --apply: print what each step would send, change nothing")
    x.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation (one question per step)")


def _overrides(args: argparse.Namespace) -> P.Overrides:
    both = set(args.keep) & set(args.ignore)
    if both:
        raise UsageError(f"bucket {sorted(both)[0]} is both --keep and --ignore: choose one")
    buckets = {**{b: P.KEEP for b in args.keep}, **{b: P.IGNORE for b in args.ignore}}
    uids: dict[int, str] = {}
    keep_runs = uidset.parse_ranges(args.keep_uids, dashes=True) if args.keep_uids else []
    ignore_runs = uidset.parse_ranges(args.ignore_uids, dashes=True) if args.ignore_uids else []
    if sum(b - a + 1 for a, b in keep_runs + ignore_runs) > 100_000:
        raise UsageError("--keep-uids/--ignore-uids name more than 100000 UIDs: move whole buckets with "
                         "--keep/--ignore instead")
    for runs, choice in ((keep_runs, P.KEEP), (ignore_runs, P.IGNORE)):
        for a, b in runs:
            for u in range(a, b + 1):
                if uids.get(u, choice) != choice:
                    raise UsageError(f"UID {u} is both --keep-uids and --ignore-uids: choose one")
                uids[u] = choice
    return P.Overrides(buckets=buckets, uids=uids, include_expunge=args.include_expunge)


def compute(ctx: Any, overrides: P.Overrides) -> tuple[P.IncidentPlan, str | None]:
    from triage_tui.services.incident import compute_incident  # noqa: PLC0415 - lazy: start-up cost

    return compute_incident(ctx.service(), ctx.lock_service(), overrides)


def _cut(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _flags(args: argparse.Namespace) -> str:
    out = [f"--keep {b}" for b in args.keep] + [f"--ignore {b}" for b in args.ignore]
    if args.keep_uids:
        out.append(f"--keep-uids {args.keep_uids}")
    if args.ignore_uids:
        out.append(f"--ignore-uids {args.ignore_uids}")
    if args.include_expunge:
        out.append("--include-expunge")
    return " ".join(out)


def command_for(step: P.Step, uidvalidity: int) -> str:
    """The single command that does the same as ``step`` (same services, same journal)."""
    sel = f"--uidvalidity {uidvalidity} --uids {uidset.compress(step.uids)}"
    return {
        P.IGNORE: f"triage-tui mark-seen {sel}",
        P.UNSEE_RELEASE: f"triage-tui release --mark-unseen --include-junk {sel}",
        P.RELEASE: f"triage-tui release --include-junk {sel}",
        P.EXPUNGE: f"triage-tui expunge {sel}",
    }[step.action]


def lines(plan: P.IncidentPlan, mailbox: str, args: argparse.Namespace) -> list[str]:
    limit = format_age(plan.stale_after_s)
    out = [f"Incident plan for {mailbox} (UIDVALIDITY {plan.uidvalidity}; stale: older than {limit}; "
           f"locks {'read' if plan.locks_read else 'not read'})"]
    for b in plan.buckets:
        if not b.count:
            continue
        moved = sum(1 for u in b.uids if u in plan.moved)
        extra = f" ({moved} moved by you)" if moved else ""
        probs = (f"; {b.with_problems} with an unreadable header field (~)"
                 if b.with_problems and b.name != P.PROBLEMS else "")
        out.append(f"  {b.name:<15}{b.count:>7,}  {b.action:<14} UIDs {_cut(b.ranges)}{extra}")
        out.append(f"      why: {b.why}{probs}")
        for s in b.sample:
            age = format_age(s.age_seconds) if s.age_seconds is not None else "?"
            # one line each: a newline or an escape in mail text is shown, never obeyed
            sender, subject = inert(s.sender, limit=36), inert(s.subject, limit=60)
            out.append(f"      {s.uid:>7} {age:>5}  {sender:<36}  {subject}")
    if not plan.steps:
        out.append("Nothing to do: no step (review and leave change nothing).")
        return out
    out.append("Steps, in order (each is its own journal op; `triage-tui undo` undoes the last flag step):")
    for i, s in enumerate(plan.steps, 1):
        out.append(f"  {i}. {s.count:,} message(s): {STEP_TEXT[s.action]}  [{', '.join(s.buckets)}]")
        cmd = command_for(s, plan.uidvalidity)
        # exact or not at all: a cut command would act on the wrong UIDs
        out.append(f"     {cmd}" if len(cmd) <= COMMAND_MAX else
                   "     (UID set too long to print: `plan --json` has the exact sets; `plan --apply` runs them)")
    flags = _flags(args)
    out.append(f"Run them all: triage-tui plan --apply --yes{' ' + flags if flags else ''}")
    if any(s.action in (P.RELEASE, P.UNSEE_RELEASE) for s in plan.steps):
        released = sorted(u for s in plan.steps if s.action in (P.RELEASE, P.UNSEE_RELEASE) for u in s.uids)
        watch = f"triage-tui release --natural --wait --include-junk --uids {uidset.compress(released)}"
        out.append(f"Then watch the pickup: {watch}" if len(watch) <= COMMAND_MAX else
                   "Then watch the pickup: triage-tui release --natural --wait --include-junk --all")
    return out


# -- applying ------------------------------------------------------------------------------------


def _run_step(ctx: Any, svc: Any, ls: Any, step: P.Step, uv: int, dry: bool, yes: bool) -> dict[str, Any]:
    """One step: plan it through the service (re-checks UIDVALIDITY and the flags), confirm, run."""
    from triage_tui.services.incident import execute_step, prepare_step  # noqa: PLC0415 - lazy: start-up cost

    prepared = prepare_step(svc, ls, step, uv)
    if step.action in (P.IGNORE, P.EXPUNGE):
        fp = prepared.flags
        if dry:
            return {"dry_run": True, **fp.to_json(), "text": describe(fp)}
        if prepared.nothing_to_do:
            return {"action": step.action, "nothing_to_do": True, "ok": True, "op": None, "changed": 0}
        if step.action == P.EXPUNGE:
            ctx.confirm(describe(fp) + "\nThis cannot be undone.", yes=yes, typed=prepared.typed)
        else:
            ctx.confirm(describe(fp) + "\nProceed?", yes=yes)
        r = execute_step(svc, ls, prepared)
        doc = r.to_json()
        doc.update(ok=r.ok, op=r.op_id, changed=len(r.changed), failed=[[uidset.compress(u), e] for u, e in r.failed])
        return doc
    rp = prepared.release
    if dry:
        return {"dry_run": True, **rp.to_json(), "text": "\n".join(rp.describe())}
    if prepared.nothing_to_do:
        return {"action": step.action, "nothing_to_do": True, "ok": True, "op": None, "changed": 0,
                "text": "no key needed a change (free already: mail_room takes them on its next poll)"}
    question = "\n".join(rp.describe())
    if rp.count:
        ctx.confirm(question + f"\nThis changes {rp.count} key(s) in Redis; a released key is not restored.",
                    yes=yes, typed=prepared.typed)
    else:
        ctx.confirm(question + "\nProceed?", yes=yes)
    res = execute_step(svc, ls, prepared)
    doc = res.to_json()
    doc.update(op=res.op_id, ok=res.ok, changed=len(res.changed),
               mark_unseen_op=res.mark_unseen.op_id if res.mark_unseen is not None else None)
    return doc


def _summary(step: P.Step, doc: dict[str, Any]) -> str:
    if doc.get("nothing_to_do"):
        return f"{step.action}: nothing to do" + (f" ({doc['text']})" if doc.get("text") else "")
    ops = [o for o in (doc.get("mark_unseen_op"), doc.get("op")) if o]
    what = {P.IGNORE: "marked \\Seen", P.EXPUNGE: "expunged", P.RELEASE: "key(s) released",
            P.UNSEE_RELEASE: "key(s) released"}[step.action]
    un = ""
    if step.action == P.UNSEE_RELEASE and doc.get("mark_unseen"):
        un = f"{doc['mark_unseen'].get('changed', 0)} un-seen, "
    return f"{step.action}: {un}{doc.get('changed', 0)} {what} (journal op {', '.join(ops) or '-'})"


def apply(args: argparse.Namespace, ctx: Any, plan: P.IncidentPlan) -> int:
    svc = ctx.service()
    needs_redis = any(s.action in (P.RELEASE, P.UNSEE_RELEASE) for s in plan.steps)
    ls = ctx.lock_service() if needs_redis else None
    if needs_redis and ls is None:
        raise UsageError("the plan releases mail_room's locks: give --redis-url (or --redis-sentinel with "
                         "--redis-master), or set TRIAGE_REDIS_URL; or --ignore release --ignore crash-trapped")
    if not args.dry_run and plan.steps:
        svc.guard.refuse_if_read_only("plan --apply")
    done: list[dict[str, Any]] = []
    failed: str | None = None
    for i, step in enumerate(plan.steps, 1):
        try:
            doc = _run_step(ctx, svc, ls, step, plan.uidvalidity, args.dry_run, args.yes)
        except Exception as e:
            # one line naming what was done, then the error itself (exit code by its kind)
            if done or not isinstance(e, Refused):
                before = "; ".join(d["summary"] for d in done) or "nothing"
                where = "before" if isinstance(e, Refused) else "at"  # refused: nothing of the step was sent
                line = f"STOPPED {where} step {i} ({step.action}): {inert(str(e), limit=300)}; done before it: {before}"
                if args.json:
                    ctx.emit_json({"plan": plan.to_json(), "dry_run": args.dry_run, "ok": False, "steps": done,
                                   "error": line})
                else:
                    ctx.say(line)
            raise
        if "action" in doc:
            doc["service_action"] = doc.pop("action")  # mark-seen, release-locks, ...
        doc = {"step": i, "action": step.action, "count": step.count, **doc}
        doc["summary"] = f"step {i}: dry run" if args.dry_run else f"step {i} {_summary(step, doc)}"
        if args.dry_run and not args.json:
            ctx.say(f"step {i}: {STEP_TEXT[step.action]}")
            ctx.say("  " + str(doc.pop("text", "")).replace("\n", "\n  "))
        elif not args.json:
            ctx.say(doc["summary"])
        doc.pop("text", None)
        done.append(doc)
        if not doc.get("ok", True):
            before = "; ".join(d["summary"] for d in done[:-1]) or "nothing"
            failed = (f"STOPPED: step {i} ({step.action}) did not finish ({doc.get('error') or 'see journal op ' + str(doc.get('op'))}); "
                      f"done before it: {before}")
            break
    if args.json:
        ctx.emit_json({"plan": plan.to_json(), "dry_run": args.dry_run, "ok": failed is None, "steps": done,
                       "error": failed})
    elif failed is not None:
        ctx.say(failed)
    elif args.dry_run:
        ctx.say("dry run: nothing was changed")
    elif plan.steps:
        ctx.say(f"done: {len(plan.steps)} step(s); `triage-tui undo` undoes the last flag step")
    else:
        ctx.say("nothing to do")
    return 1 if failed else 0


def run(args: argparse.Namespace, ctx: Any) -> int:
    if args.dry_run and not args.apply:
        args.apply = True  # --dry-run alone: show what each step would send
    overrides = _overrides(args)
    plan, err = compute(ctx, overrides)
    if err:
        ctx.note(err)
    if unknown := plan.unknown_uids():
        ctx.note(f"note: {len(unknown)} UID(s) given with --keep-uids/--ignore-uids are in no bucket (gone or never "
                 f"listed): {_cut(uidset.compress(unknown))}")
    if not args.apply:
        if args.json:
            ctx.emit_json(plan.to_json())
        else:
            for line in lines(plan, ctx.service().settings.mailbox, args):
                ctx.say(line)
        return 0
    if not args.json:
        for line in lines(plan, ctx.service().settings.mailbox, args):
            ctx.say(line)
    return apply(args, ctx, plan)
