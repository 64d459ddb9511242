"""release: the runbook's "stop mail_room for > 10 minutes", targeted and timed.

Shortens the TTL of the lock keys of selected messages that are still UNSEEN (default 0:
delete now), optionally in staggered waves, or touches nothing and watches them expire;
``--mark-unseen`` first gives seen-stuck messages back to mail_room. ``--wait`` then watches the
pickup and exits 0 once every targeted message left UNSEEN, 1 with a diagnosis otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from triage_tui.commands._select import add_plan_args, add_selector_args, resolve
from triage_tui.commands.locks import require_locks
from triage_tui.domain import uidset
from triage_tui.domain.model import View
from triage_tui.domain.numbers import float_arg, int_arg
from triage_tui.domain.provenance import reingest_warning

if TYPE_CHECKING:
    from triage_tui.domain.reingest import ReingestSelection
    from triage_tui.services.locks import WatchStatus

NAME = "release"
HELP = "release mail_room's Redis locks of UNSEEN messages so they are re-ingested (plan, confirm, watch)"
DESCRIPTION = (
    "Release mail_room's arbitration locks of the selected messages that are still UNSEEN, so mail_room "
    "ingests them on its next poll, without stopping mail_room. Only keys under --key-prefix whose "
    "message is UNSEEN right before acting are touched; every key changed is recorded in the audit journal "
    "(name, old TTL, new TTL). Without --ttl/--now/--natural the keys are deleted now (TTL 0).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from triage_tui.services.locks import DEFAULT_POLL_CYCLE  # noqa: PLC0415 - redis: only once release is chosen

    add_selector_args(p)
    a = p.add_argument_group("action").add_mutually_exclusive_group()
    a.add_argument("--ttl", type=int_arg(0, 86400), metavar="SECONDS",
                   help="shorten each key's TTL to SECONDS (never lengthens one; 0 = delete now)")
    a.add_argument("--now", action="store_true", help="delete the keys now (the default; same as --ttl 0)")
    a.add_argument("--natural", action="store_true",
                   help="touch nothing in Redis: count down to the keys' natural expiry (use with --wait)")
    w = p.add_argument_group("waves (the runbook's 'start one instance, wait, then the others')")
    w.add_argument("--waves", type=int_arg(1, 100), default=1, metavar="N",
                   help="split the keys into N waves, oldest UIDs first; wave i gets TTL + i*interval (default 1)")
    w.add_argument("--wave-interval", type=float_arg(0.1, 3600), default=30.0, metavar="SECONDS",
                   help="seconds between waves (default 30)")
    p.add_argument("--include-junk", action="store_true",
                   help="also re-ingest stale messages GitLab would reject (it writes a weeks-late rejection to the "
                   "sender) or drop; by default they are left out and counted")
    p.add_argument("--mark-unseen", action="store_true",
                   help="the combined step for seen-stuck messages: select among \\Seen, not \\Deleted messages, "
                   "remove \\Seen, then release their keys")
    wt = p.add_argument_group("watching the pickup")
    wt.add_argument("--wait", action="store_true",
                    help="watch until every targeted message left UNSEEN (exit 0), or report why not (exit 1); "
                    "prints a progress line at least every 5 s (on stderr with --json)")
    wt.add_argument("--timeout", type=float_arg(0.1, 86400), metavar="SECONDS",
                    help="give up after SECONDS (default: last expiry + 10 poll cycles)")
    wt.add_argument("--poll-cycle", type=float_arg(0.1, 86400), default=DEFAULT_POLL_CYCLE, metavar="SECONDS",
                    help="mail_room's longest gap between polls, its idle_timeout (default 60): no re-claim "
                    "within two cycles after the keys are free means mail_room is not consuming")
    wt.add_argument("--interval", type=float_arg(0.1, 3600), default=2.0, metavar="SECONDS",
                    help="how often to look (default 2)")
    add_plan_args(p)


def _select(svc: Any, uidvalidity: int, uids: list[int], include_junk: bool) -> tuple[list[int], ReingestSelection]:
    """GitLab's verdict on the selection (headers fetched with BODY.PEEK: no flag changes): stale
    mail GitLab would reject or drop is left out unless ``include_junk``. UIDs whose header could
    not be fetched (expunged meanwhile) stay in: the plan says they are no longer there."""
    from triage_tui.domain.reingest import select_for_reingest  # noqa: PLC0415

    now = datetime.now(UTC)
    msgs = [m for batch in svc.iter_messages(uidvalidity, list(uids), headers=True, now=now) for m in batch]
    selection = select_for_reingest(msgs, svc.analysis.stale_after, now=now, include_junk=include_junk)
    found = {m.uid for m in msgs}
    keep = set(selection.included)
    return [u for u in uids if u in keep or u not in found], selection


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _report_result(ctx: Any, result: Any, plan: Any, journal_path: Any) -> None:
    from triage_tui.services.locks import ACTION  # noqa: PLC0415 - redis only for the commands that use it

    if result.mark_unseen is not None:
        m = result.mark_unseen
        ctx.say(f"mark-unseen: {len(m.changed)} message(s) changed (journal op {m.op_id})")
    if result.op_id is None:
        if plan.mode == "ttl":
            ctx.say("no key needed a change: nothing was released")
        return
    verb = "deleted" if plan.ttl_s == 0 and plan.waves == 1 else "shortened"
    ctx.say(f"{ACTION}: {len(result.changed)} key(s) {verb} (journal op {result.op_id})")
    for reason, uids in result.skipped.items():
        ctx.say(f"  skipped {len(uids)} ({reason}): {_short(uidset.compress(uids))}")
    if result.not_unseen:
        ctx.say(f"  left alone {len(result.not_unseen)} no longer UNSEEN: {_short(uidset.compress(result.not_unseen))}")
    if result.error:
        ctx.say(f"FAILED halfway: {result.error}")
        ctx.say(f"  changed:   {len(result.changed)} key(s), UIDs {_short(uidset.compress(c.uid for c in result.changed)) or '-'}")
        if result.in_doubt:
            ctx.say(f"  in doubt:  {len(result.in_doubt)} key(s) of the batch whose reply was lost, UIDs "
                    f"{_short(uidset.compress(result.in_doubt))} (check with `triage-tui locks` once Redis is back)")
        ctx.say(f"  untouched: {len(result.untouched)} key(s), UIDs {_short(uidset.compress(result.untouched)) or '-'}")
        ctx.say(f"  every changed key (name, old TTL, new TTL) is in {journal_path}, op {result.op_id}")


#: ``--wait`` prints a progress line at least this often (seconds), even when nothing moved.
PROGRESS_EVERY = 5.0


class _Progress:
    """``--wait`` progress: a line whenever what was observed changed, and at least every
    :data:`PROGRESS_EVERY` seconds otherwise (a silent terminal for minutes looks like a hang).
    Lines go to stdout, or to stderr with ``--json`` so that stdout stays one JSON document."""

    def __init__(self, write: Callable[[str], None], *, every: float = PROGRESS_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.write, self.every, self.clock = write, every, clock
        self.last_key: tuple[Any, ...] | None = None
        self.last_at: float | None = None

    def __call__(self, st: WatchStatus) -> None:
        now = self.clock()
        key = (st.remaining_unseen, st.delivered, st.seen_only, st.reclaimed, st.held, st.free_for_s is None,
               int(st.cycles_free), st.sidekiq.key() if st.sidekiq is not None else None)
        if st.done or key != self.last_key or self.last_at is None or now - self.last_at >= self.every:
            self.last_key, self.last_at = key, now
            self.write(st.line())


def _printer(ctx: Any, json_mode: bool) -> _Progress:
    if json_mode:
        def write(line: str) -> None:
            ctx.note(line)  # stdout stays pure JSON
    else:
        def write(line: str) -> None:
            ctx.say(line)
            sys.stdout.flush()
    return _Progress(write)


def _warn_stale(svc: Any, plan: Any) -> None:
    """Before anything is un-seen or released: how many of them are older than the stale limit."""
    acted = {t.uid for t in plan.targets} | set(plan.mark_unseen.uids if plan.mark_unseen is not None else [])
    if not acted:
        return
    now = datetime.now(UTC)
    ages = {m.uid: m.age_seconds(now) for batch in svc.iter_messages(plan.uidvalidity, sorted(acted), headers=False,
                                                                     now=now) for m in batch}
    warning = reingest_warning(acted, ages, svc.analysis.stale_after, unsee=plan.mark_unseen is not None)
    if warning:
        plan.warnings.append(warning)


def run(args: argparse.Namespace, ctx: Any) -> int:
    from triage_tui.services.locks import ACTION, MAIL_ROOM_TTL  # noqa: PLC0415 - redis only for the commands that use it

    ls = require_locks(ctx, "release")
    svc = ctx.service()
    view = View.SEEN_STUCK if args.mark_unseen else View.UNSEEN
    uidvalidity, uids = resolve(args, ctx, view)
    if uids is None:
        uidvalidity, uids = svc.search(view)
    uids, selection = _select(svc, uidvalidity, uids, args.include_junk)
    mark = svc.plan_flags("mark-unseen", uidvalidity, uids) if args.mark_unseen else None
    ttl = 0 if (args.now or args.ttl is None) else args.ttl
    plan = ls.plan_release(svc, uidvalidity, uids, ttl=ttl, natural=args.natural, waves=args.waves,
                           wave_interval=args.wave_interval, mark_unseen=mark)
    if not args.json:
        for line in selection.lines():
            ctx.say(line)
    _warn_stale(svc, plan)
    if args.dry_run:
        if args.json:
            ctx.emit_json({"dry_run": True, **plan.to_json(), "selection": selection.to_json()})
        else:
            for line in plan.describe():
                ctx.say(line)
            ctx.say("dry run: nothing was changed")
        return 0
    mutating = plan.count > 0 or plan.mark_unseen_count > 0
    if mutating:
        ls.guard.refuse_if_read_only(ACTION if plan.count else "mark-unseen")
    result = None
    if not mutating and not args.wait:
        if args.json:
            ctx.emit_json({"nothing_to_do": True, **plan.to_json(), "selection": selection.to_json()})
        else:
            for line in plan.describe():
                ctx.say(line)
            ctx.say("nothing to do: no selected UNSEEN message holds a key that needs a change")
        return 0
    if mutating:
        question = "\n".join(plan.describe())
        if plan.count:
            question += (f"\nThis changes {plan.count} key(s) in Redis; mail_room ingests those messages on its next "
                         "poll after each key is gone. A released key is not restored.")
            ctx.confirm(question, yes=args.yes, typed=str(plan.count))
        else:
            ctx.confirm(question + "\nProceed?", yes=args.yes)
        result = ls.release(plan, svc)
        if args.json:
            ctx.emit_json({**result.to_json(), "selection": selection.to_json()})
        else:
            _report_result(ctx, result, plan, ls.journal.path)
        if not result.ok:
            return 1
    if not args.wait:
        return 0
    done_in = plan.effective_done_s
    timeout = args.timeout if args.timeout is not None else (
        (done_in if done_in is not None else MAIL_ROOM_TTL) + 10 * args.poll_cycle)
    watcher = ls.watcher(svc, plan, result, poll_cycle=args.poll_cycle, timeout=timeout)
    final = watcher.run(_printer(ctx, args.json), interval=args.interval)
    if args.json:
        ctx.emit_json({"watch": final.to_json()})
    elif final.failed:
        ctx.say(f"not done: {final.diagnosis}")
    elif final.targeted == 0:
        ctx.say("nothing to watch: no selected message was UNSEEN")
    else:
        ctx.say(f"done: all {final.targeted} targeted message(s) picked up ({final.delivered} delivered"
                + (f", {final.seen_only} \\Seen but not \\Deleted" if final.seen_only else "") + ")")
    return 1 if final.failed else 0
