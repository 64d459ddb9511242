"""Selectors shared by the mutating subcommands: which UIDs an action targets.

Selectors combine with AND: ``--uids``, ``--older-than``, ``--filter``, ``--stale``, ``--bots``;
``--all`` selects the whole view. At least one is required, so a bare ``mark-seen`` never
touches everything by accident.
"""

from __future__ import annotations

import argparse
import math
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


#: Server-side age selection (RFC 5032 ``OLDER``) counts whole seconds on the server's clock; we
#: count on ours. Messages within this many seconds of the boundary have their INTERNALDATE
#: fetched and judged here, so the result is exactly the client-side one (clocks agreeing within
#: this margin), and everything farther from it is decided by the server without a FETCH.
AGE_BAND_SECONDS = 300
#: The server's answers are used only if its clock agrees with ours within the band: one message
#: whose INTERNALDATE we know is searched ``OLDER age - this YOUNGER age + this`` (whole seconds,
#: and the seconds between our clock reading and the server's leave the rest of the band).
CLOCK_PROBE_SECONDS = AGE_BAND_SECONDS - 60


def _now() -> datetime:
    """This machine's clock (the ages the listing shows are counted with it)."""
    return datetime.now(UTC)


class _ClocksDisagree(Exception):
    """The server's age search can not stand for ours (its clock is off by more than the band)."""


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
    now = _now()
    narrow = flt.pushdown(now) if flt is not None else None
    # the age every selected message must exceed (--older-than and --stale combine with AND)
    limits = [a.total_seconds() for a in (age, svc.analysis.stale_after if args.stale else None) if a is not None]
    limit = max(limits) if limits else None
    # age on the server (SEARCH OLDER) where it offers WITHIN; an explicit UID set is searched
    # without it first, so the "not in the view" note counts only what is not in the view
    # a filter on ``suspicious`` judges each message in the whole view (a duplicate is a later
    # copy of a message in it): no narrowing on the server then, and an explicit set is picked
    # from the whole view's verdicts
    whole_view = flt is not None and flt.judges_duplicates
    server_age = limit is not None and "WITHIN" in svc.capabilities and not whole_view
    older = f"OLDER {max(1, math.floor(limit) - AGE_BAND_SECONDS)}" if server_age and limit is not None else None
    pushed = " ".join(c for c in (narrow, older if explicit is None else None) if c) or None
    if view == View.UNSEEN:  # mark-seen: one open of the mailbox, not two (each scans a large maildir)
        uidvalidity, found = svc.select_view(f"{view.search} {pushed}" if pushed else view.search)
    else:
        uidvalidity, found = svc.search(view, pushed)
    if args.uidvalidity is not None and args.uidvalidity != uidvalidity:
        raise UidValidityChanged(f"UIDVALIDITY is {uidvalidity}, not {args.uidvalidity}: the mailbox changed "
                                 "since those UIDs were listed; list again")
    unnarrowed: list[int] = []  # an explicit set in the view, before the server's age search
    if explicit is not None:
        # membership by ranges: a set is never expanded (1:10000000 is two numbers, not 10M)
        candidates = [u for u in found if uidset.contains(explicit, u)]
        missing = sum(hi - lo + 1 for lo, hi in explicit) - len(candidates)
        if missing:
            ctx.note(f"note: {missing} of the given UIDs are not in the {view.value} view (gone or already changed)")
        unnarrowed = candidates
        if older is not None and candidates:
            candidates = svc.search_uids(uidvalidity, older, within=candidates)
    else:
        candidates = found
    if not (age or flt or args.stale or getattr(args, "bots", False)):
        return uidvalidity, candidates
    need_headers = bool(flt) or bool(getattr(args, "bots", False))
    narrowed = server_age and older is not None  # the server's OLDER chose the candidates

    def unnarrowed_view() -> list[int]:
        """The candidates as without the server's age search (its clock is not ours)."""
        ctx.note(f"note: the server's clock differs from this machine's by more than {CLOCK_PROBE_SECONDS // 60} "
                 "minutes: ages are judged here, by each message's INTERNALDATE, as the listing shows them")
        if explicit is not None:
            return unnarrowed
        uv2, again = (svc.select_view(f"{view.search} {narrow}" if narrow else view.search)
                      if view == View.UNSEEN else svc.search(view, narrow))
        if uv2 != uidvalidity:
            raise UidValidityChanged(f"UIDVALIDITY changed from {uidvalidity} to {uv2} while selecting; list again")
        return again

    if not need_headers and limit is not None:
        try:
            return uidvalidity, _older_than(svc, uidvalidity, candidates, limit, now, server_age)
        except _ClocksDisagree:
            # the server's OLDER would select messages younger than asked (its clock ahead) or
            # leave out older ones (behind): judge every message of the view by INTERNALDATE here
            return uidvalidity, _older_than(svc, uidvalidity, unnarrowed_view(), limit, now, False)
    selected: list[int] = []
    ages: dict[int, float] = {}
    only = set(candidates) if whole_view and explicit is not None else None
    for batch in svc.iter_messages(uidvalidity, found if only is not None else candidates, headers=need_headers,
                                   now=now):
        for m in batch:
            if only is not None and m.uid not in only:
                continue
            a = m.age_seconds(now)
            if a is not None:
                ages[m.uid] = a
            if _keep(m, args, age, flt, now, svc):
                selected.append(m.uid)
    if narrowed and candidates:
        # every candidate is judged here; but with the server's clock behind ours, its OLDER
        # left out messages this machine counts as old enough
        try:
            _same_clock(svc, uidvalidity, ages)
        except _ClocksDisagree:
            done = set(candidates)
            rest = [u for u in unnarrowed_view() if u not in done]
            for batch in svc.iter_messages(uidvalidity, rest, headers=need_headers, now=now):
                selected.extend(m.uid for m in batch if _keep(m, args, age, flt, now, svc))
            selected.sort()
    return uidvalidity, selected


def _older_than(svc: Any, uidvalidity: int, candidates: list[int], limit: float, now: datetime,
                server_age: bool) -> list[int]:
    """Which ``candidates`` are more than ``limit`` seconds old at ``now`` by INTERNALDATE, as the
    listing computes it (:meth:`Message.age_seconds`), fetching no header. With ``server_age``
    the candidates are already ``OLDER limit - band``: one SEARCH names the messages within the
    band of the boundary, only those have their INTERNALDATE fetched, the rest are kept as they
    are. Without it, the INTERNALDATE (only) of every candidate is fetched."""
    fetch = candidates
    kept: set[int] = set()
    probe: list[int] = []
    if server_age and candidates:
        # every message (any flags) near the boundary now; a candidate outside it is older than
        # the band (it was OLDER limit - band when selected, and ages only grow)
        near = set(svc.search_uids(uidvalidity, f"OLDER {max(1, math.floor(limit) - AGE_BAND_SECONDS)} "
                                                f"YOUNGER {math.ceil(limit) + AGE_BAND_SECONDS}"))
        fetch = [u for u in candidates if u in near]
        kept = {u for u in candidates if u not in near}
        if not fetch:  # one INTERNALDATE to hold the server's clock against ours
            probe = [max(candidates)]
    ages: dict[int, float] = {}
    for batch in svc.internaldates(uidvalidity, fetch or probe):
        for uid, when in batch:
            a = _age(when, now)
            if a is None:
                continue
            ages[uid] = a
            if a > limit and not probe:
                kept.add(uid)
    if server_age and candidates:
        _same_clock(svc, uidvalidity, ages)
    return [u for u in candidates if u in kept]


def _same_clock(svc: Any, uidvalidity: int, ages: dict[int, float]) -> None:
    """Raise :class:`_ClocksDisagree` unless the server counts one of these messages' ages (ours,
    from their INTERNALDATE) within :data:`CLOCK_PROBE_SECONDS`: its OLDER decided the rest."""
    if not ages:
        return  # no INTERNALDATE to go by: the server's answers stand, as they did before
    uid = max(ages, key=lambda u: (ages[u] > 0, u))
    a = ages[uid]
    older, younger = math.floor(a) - CLOCK_PROBE_SECONDS, math.ceil(a) + CLOCK_PROBE_SECONDS
    if younger < 1:  # a date ahead of our clock by more than the band
        raise _ClocksDisagree
    criteria = (f"OLDER {older} " if older >= 1 else "") + f"YOUNGER {younger}"
    if uid not in svc.search_uids(uidvalidity, criteria, within=[uid]):
        raise _ClocksDisagree


def _age(when: datetime | None, now: datetime) -> float | None:
    """:meth:`Message.age_seconds` of a message with this INTERNALDATE (a naive one counts as UTC,
    as :func:`build_message` takes it)."""
    if not isinstance(when, datetime):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (now - when).total_seconds()


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
