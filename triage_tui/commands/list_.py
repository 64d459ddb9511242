"""list: the messages of a view, streamed as chunks arrive (``--json``: JSON Lines, one object
per line).

The plain rows fit the terminal's width, measured in display cells (a CJK name takes two per
character), so a row never wraps and the columns stay straight. When stdout is not a terminal,
``COLUMNS`` decides, else 120.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from triage_tui.commands._select import compile_filter, filter_arg
from triage_tui.domain.age import format_age
from triage_tui.domain.model import Message, View
from triage_tui.domain.numbers import int_arg
from triage_tui.domain.provenance import evidence, evidence_cell
from triage_tui.domain.text import inert
from triage_tui.domain.width import fit

NAME = "list"
PRECONNECT = "examine"  # the IMAP connection and the mailbox open while the command gets ready (services/preconnect.py)
HELP = "list messages of a view (unseen, ignored, seen-stuck, deleted) with age, sender, subject and GitLab key"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--view", choices=[v.value for v in View], default=View.UNSEEN.value,
                   help="unseen (default): waiting for mail_room; ignored: marked \\Seen by triage-tui "
                   "(keyword $TriageIgnored); seen-stuck: \\Seen, not \\Deleted, not ignored (a crashed "
                   "mail_room's leftovers: rows show the lock evidence and age); seen: ignored + seen-stuck; "
                   "deleted: awaiting expunge")
    p.add_argument("--filter", metavar="QUERY", type=filter_arg, help="only messages matching the filter language query")
    p.add_argument("--help-filter", action=_FilterHelp, help="explain the filter language and exit")
    p.add_argument("--no-pushdown", action="store_true",
                   help="evaluate the filter only locally (by default the server pre-selects a superset)")
    p.add_argument("--json", action="store_true",
                   help="JSON Lines: one JSON object per message, one per line (not one JSON array); "
                   "read it with `jq -c`, or `jq -s` for an array")
    p.add_argument("--limit", type=int_arg(1, 100_000_000), metavar="N", help="stop after N messages")


class _FilterHelp(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: argparse.ArgumentParser, *a: Any, **kw: Any) -> None:
        from triage_tui.domain.filter import FILTER_HELP  # noqa: PLC0415

        print(FILTER_HELP)
        parser.exit(0)


def _trunc(text: str, width: int) -> str:
    """``text`` inert, cut and padded to exactly ``width`` display cells."""
    return fit(inert(text, limit=width + 1), width)  # cut before escaping: a 1 MB subject costs a line


#: The fixed columns (UID, AGE, FLAGS and their spaces) and the two spaces after FROM and PROJECT.
_FIXED = 7 + 1 + 4 + 1 + 5 + 1 + 2


@dataclass(frozen=True)
class Layout:
    sender: int
    project: int
    subject: int


def layout(width: int) -> Layout:
    """Column widths for a terminal ``width`` cells wide. One cell is left free: a row that ends
    in the last column makes some terminals wrap. Below ~50 columns the subject keeps 10 cells
    and the row is as narrow as it can be."""
    rest = max(0, width - 1 - _FIXED)
    sender = min(30, max(12, rest * 3 // 10))
    project = min(24, max(10, rest // 4))
    return Layout(sender, project, max(10, rest - sender - project))


def terminal_width() -> int:
    """The terminal's columns (``COLUMNS`` first, as :func:`shutil.get_terminal_size` does); 120
    when stdout is not a terminal and ``COLUMNS`` is unset or not a number."""
    return max(20, shutil.get_terminal_size((120, 24)).columns)


def _project(m: Message) -> str:
    if m.project_path:
        return m.project_path
    if m.project_slug and m.project_id is not None:
        return f"{m.project_slug}#{m.project_id}"
    if m.project_id is not None:
        return f"#{m.project_id}"
    return "-"


def _glyphs(m: Message) -> str:
    return "".join(g if on else "." for g, on in (("B", m.bot), ("S", m.stale), ("!", m.suspicious), ("?", m.no_key),
                                                  ("~", m.problems)))


def _sender(m: Message) -> str:
    """``Name <address>``; the bare address when the display name shows another address (the
    cut would keep the fake and drop the real one)."""
    if m.suspicious and m.from_name:
        from triage_tui.domain.headers import impersonated_address  # noqa: PLC0415 - rare: suspicious rows only

        if impersonated_address(m.from_name, m.from_addr):
            return m.from_addr or "(no address)"
    return m.sender


def _row(m: Message, now: datetime, lay: Layout) -> str:
    age = m.age_seconds(now)
    return (f"{m.uid:>7} {format_age(age) if age is not None else '?':>4} {_glyphs(m):5} "
            f"{_trunc(_sender(m), lay.sender)} {_trunc(_project(m) + ' ' + m.kind, lay.project)} "
            f"{fit(inert(m.subject, limit=lay.subject + 1), lay.subject, pad=False)}")


def header(lay: Layout) -> str:
    return f"{'UID':>7} {'AGE':>4} {'FLAGS':5} {fit('FROM', lay.sender)} {fit('PROJECT/KIND', lay.project)} SUBJECT"


def _broken_row(m: Message, exc: Exception, as_json: bool) -> Any:
    """What is written for a message whose row could not be made: its UID and why."""
    uid = getattr(m, "uid", 0)
    why = f"row not shown ({type(exc).__name__}): peek {uid} shows the header"
    if as_json:
        return {"uid": uid, "problems": [why]}
    return f"{uid:>7} {'?':>4} {'....~':5} {why}"


def run(args: argparse.Namespace, ctx: Any) -> int:
    from triage_tui.domain.jsonline import message_json  # noqa: PLC0415 - lazy: start-up cost

    svc = ctx.service()
    flt = compile_filter(args.filter)
    now = datetime.now(UTC)
    ev_w = 11 if args.view == View.SEEN_STUCK else 0  # the evidence column of seen-stuck rows
    lay = layout(terminal_width() - ev_w)
    shown = 0
    if not args.json:
        head = header(lay)
        ctx.say(f"{head[:7]} {'LOCK':>10}{head[7:]}" if ev_w else head)
    locks = ctx.lock_service()  # None when no Redis is configured
    lock_error: str | None = None
    # the server narrows first (a superset of the matches: dates, FROM, SUBJECT...), we decide
    narrow = flt.pushdown(now) if flt is not None and not args.no_pushdown else None
    view = View(args.view)
    if view in (View.IGNORED, View.SEEN_STUCK, View.SEEN) and (note := svc.keyword_note()):
        ctx.note(f"note: {note}")
    stuck = view == View.SEEN_STUCK
    for batch in svc.iter_list(view, now=now, narrow=narrow):
        lines: list[Any] = []  # JSON: written once per batch
        if locks is not None:
            from triage_tui.services.locks import annotate_safely  # noqa: PLC0415 - keeps redis off the path

            err = annotate_safely(locks, batch)
            if err and err != lock_error:
                lock_error = err
                ctx.note(err)  # "Redis unavailable: <reason>", once: the IMAP side keeps working
        for m in batch:
            try:
                if flt is not None and not flt.matches(m, now):
                    continue
                if stuck:  # the evidence of a seen-stuck row: mail_room's lock and the age
                    m.extra["evidence"] = evidence(m, now, locks is not None, svc.analysis.stale_after)
                out: Any = message_json(m, now) if args.json else _row(m, now, lay)
                if stuck and not args.json:
                    out = f"{out[:7]} {evidence_cell(m, locks is not None):>10}{out[7:]}"
            except Exception as exc:  # noqa: BLE001 - one bad message costs its own row, never the listing
                out = _broken_row(m, exc, args.json)
            if args.json:
                lines.append(out)
            else:
                ctx.say(out)
            shown += 1
            if args.limit and shown >= args.limit:
                ctx.emit_json_lines(lines)
                return 0
        ctx.emit_json_lines(lines)
    if not args.json:
        ctx.note(f"{shown} message(s) in view {args.view} of {svc.settings.mailbox} "
                 f"(flags: B bot, S stale, ! suspicious, ? no key, "
                 f"~ a header field could not be read: peek UID says which)")
    return 0
