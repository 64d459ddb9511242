"""Selectors shared by the mutating subcommands: which UIDs an action targets.

Selectors combine with AND: ``--uids``, ``--older-than``, ``--filter``, ``--stale``, ``--bots``;
``--all`` selects the whole view. At least one is required, so a bare ``mark-seen`` never
touches everything by accident.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from triage_tui.domain import uidset
from triage_tui.domain.age import parse_age
from triage_tui.domain.model import Message, View
from triage_tui.domain.numbers import IMAP_MAX, int_arg
from triage_tui.errors import UidValidityChanged, UsageError


def _checked(check: Any, name: str) -> Any:
    """An argparse type that validates a value while the command line is parsed (so a bad one is
    refused before any connection) and keeps the text as given."""
    def convert(text: str) -> str:
        try:
            check(text)
        except UsageError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return text

    convert.__name__ = name
    return convert


def _check_uids(text: str) -> None:
    if not text.strip():
        raise UsageError("empty UID set: give UIDs like 1:500,502 (as listed)")
    uidset.parse_ranges(text, dashes=True)


def _check_filter(text: str) -> None:
    if text.strip():
        compile_filter(text)


uids_arg = _checked(_check_uids, "UID set")
age_arg = _checked(parse_age, "age")
filter_arg = _checked(_check_filter, "filter")


def add_selector_args(p: argparse.ArgumentParser, *, allow_all: bool = True) -> None:
    g = p.add_argument_group("selection (combined with AND)")
    g.add_argument("--uids", metavar="SET", type=uids_arg, help="UIDs like 1:500,502 or 1-500,502 (as listed)")
    g.add_argument("--uidvalidity", type=int_arg(1, IMAP_MAX), metavar="N",
                   help="the UIDVALIDITY the UIDs were listed under; refused if the mailbox changed since")
    g.add_argument("--older-than", metavar="AGE", type=age_arg, help="INTERNALDATE older than AGE (90m, 36h, 2d, 1w)")
    g.add_argument("--filter", metavar="QUERY", type=filter_arg, help="filter language query (see `triage-tui list --help-filter`)")
    g.add_argument("--stale", action="store_true", help="only stale messages (older than --stale-after)")
    g.add_argument("--bots", action="store_true", help="only bot mail (auto-replies, bounces, noreply, bulk)")
    if allow_all:
        g.add_argument("--all", action="store_true", help="everything in the view")


def add_plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="print the plan (counts, UID ranges, commands) and stop")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def compile_filter(text: str | None) -> Any:
    if not text:
        return None
    from triage_tui.domain.filter import parse_filter  # noqa: PLC0415

    return parse_filter(text)


def resolve(args: argparse.Namespace, ctx: Any, view: View, *, require: bool = True) -> tuple[int, list[int] | None]:
    """(UIDVALIDITY, UIDs) selected in ``view``. ``None`` UIDs means "the whole view" (--all)."""
    any_selector = any(getattr(args, k, None) for k in ("uids", "older_than", "filter", "stale", "bots", "all"))
    if require and not any_selector:
        raise UsageError("say what to act on: --uids, --older-than, --filter, --stale, --bots or --all")
    # every local check before the connection: a typo costs no login
    flt = compile_filter(getattr(args, "filter", None))
    age = parse_age(args.older_than) if getattr(args, "older_than", None) else None
    explicit = uidset.parse_ranges(args.uids, dashes=True) if getattr(args, "uids", None) else None
    svc = ctx.service()
    narrow = flt.pushdown(datetime.now(UTC)) if flt is not None else None
    uidvalidity, found = svc.search(view, narrow)
    if args.uidvalidity is not None and args.uidvalidity != uidvalidity:
        raise UidValidityChanged(f"UIDVALIDITY is {uidvalidity}, not {args.uidvalidity}: the mailbox changed "
                                 "since those UIDs were listed; list again")
    if explicit is not None:
        # membership by ranges: a set is never expanded (1:10000000 is two numbers, not 10M)
        candidates = [u for u in found if uidset.contains(explicit, u)]
        missing = sum(hi - lo + 1 for lo, hi in explicit) - len(candidates)
        if missing:
            ctx.note(f"note: {missing} of the given UIDs are not in the {view.value} view (gone or already changed)")
    else:
        candidates = found
    if not (age or flt or args.stale or getattr(args, "bots", False)):
        return uidvalidity, candidates
    need_headers = bool(flt) or bool(getattr(args, "bots", False))
    now = datetime.now(UTC)
    selected: list[int] = []
    for batch in svc.iter_messages(uidvalidity, candidates, headers=need_headers, now=now):
        selected.extend(m.uid for m in batch if _keep(m, args, age, flt, now, svc))
    return uidvalidity, selected


def _keep(m: Message, args: argparse.Namespace, age: Any, flt: Any, now: datetime, svc: Any) -> bool:
    if age is not None:
        a = m.age_seconds(now)
        if a is None or a <= age.total_seconds():
            return False
    if args.stale:
        a = m.age_seconds(now)
        if a is None or a <= svc.analysis.stale_after.total_seconds():
            return False
    if getattr(args, "bots", False) and not m.bot:
        return False
    return not (flt is not None and not flt.matches(m, now))
