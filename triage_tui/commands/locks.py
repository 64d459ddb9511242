"""locks: mail_room's Redis arbitration keys joined with the mailbox (read-only, SCAN, never KEYS)."""

from __future__ import annotations

import argparse
from typing import Any

from triage_tui.domain import uidset
from triage_tui.domain.numbers import int_arg
from triage_tui.domain.text import inert
from triage_tui.errors import UsageError

NAME = "locks"
HELP = "show mail_room's Redis locks joined with the mailbox: which UNSEEN messages they block, and until when"
DESCRIPTION = (HELP + ". Every key under --key-prefix is read with SCAN and classified: stuck (locked and UNSEEN), "
               "seen, deleted, gone (harmless), other; pre-0.10 INCR counters are flagged.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON document: summary, warnings and every key")
    p.add_argument("--limit", type=int_arg(0, 100_000_000), default=50, metavar="N",
                   help="text output: list at most N keys, stuck ones first (default 50; 0 for all)")


def require_locks(ctx: Any, what: str) -> Any:
    ls = ctx.lock_service()
    if ls is None:
        raise UsageError(f"{what} needs mail_room's Redis: give --redis-url (or --redis-sentinel with "
                         "--redis-master), or set TRIAGE_REDIS_URL")
    return ls


def _ttl(pttl_ms: int) -> str:
    return "never" if pttl_ms < 0 else f"{pttl_ms / 1000:.0f}s"


def run(args: argparse.Namespace, ctx: Any) -> int:
    from triage_tui.services.locks import COUNTER_NOTE, STATES, ttl_distribution  # noqa: PLC0415 - lazy: redis is imported only by the commands that use it

    ls = require_locks(ctx, "locks")
    report = ls.report(ctx.service())
    if args.json:
        ctx.emit_json(report.to_json())
        return 0
    counts = report.counts
    ctx.say(f"{len(report.entries)} key(s) under {report.prefix!r} on {report.redis}")
    ctx.say(f"mailbox {report.mailbox}: UIDVALIDITY {report.uidvalidity}, {report.unseen} UNSEEN")
    for state, text in STATES.items():
        if counts[state]:
            ctx.say(f"  {counts[state]:>7} {state:8} {text}")
    stuck = report.by_state("stuck")
    if stuck:
        dist = ttl_distribution(e.pttl_ms for e in stuck)
        nat = report.natural_expiry_s()
        ctx.say(f"stuck UIDs: {uidset.compress(report.stuck_uids)[:200]}")
        ctx.say("stuck TTLs: " + ", ".join(f"{k} {v}" for k, v in dist.items())
                + (f"; waiting frees them all in {nat:.0f} s" if nat is not None else
                   "; waiting never frees them all while mail_room runs (counters or keys without expiry)"))
    if report.counters:
        ctx.say(f"{len(report.counters)} counter key(s): {COUNTER_NOTE}")
    for w in report.warnings:
        ctx.say(f"warning: {w}")
    rows = sorted(report.entries, key=lambda e: (e.state != "stuck", e.uid or 0))
    if args.limit:
        rows = rows[: args.limit]
    if rows:
        ctx.say(f"{'UID':>8} {'TTL':>6} {'VALUE':>6} STATE")
        for e in rows:
            value = inert(e.value, limit=7)  # a value is anything a Redis client wrote: shown visibly, cut
            value = value if len(value) <= 6 else value[:5] + "…"
            ctx.say(f"{e.uid if e.uid is not None else '-':>8} {_ttl(e.pttl_ms):>6} {value:>6} {e.state}"
                    + ("  counter (pre-0.10)" if e.counter else "")
                    + (f"  {inert(e.key)}" if e.state == "other" else ""))
        if len(rows) < len(report.entries):
            ctx.say(f"... {len(report.entries) - len(rows)} more (--limit 0 or --json for all)")
    if stuck:
        ctx.say("to re-ingest the stuck messages: triage-tui release --uids "
                f"{uidset.compress(report.stuck_uids)[:60]} --uidvalidity {report.uidvalidity} --dry-run")
    return 0
