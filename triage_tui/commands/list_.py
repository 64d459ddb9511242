"""list: the messages of a view, streamed as chunks arrive (``--json``: one object per line)."""

from __future__ import annotations

import argparse
import shutil
from datetime import UTC, datetime
from typing import Any

from triage_tui.commands._select import compile_filter, filter_arg
from triage_tui.domain.age import format_age
from triage_tui.domain.classify import mark_duplicates
from triage_tui.domain.headers import impersonated_address
from triage_tui.domain.model import Message, View
from triage_tui.domain.numbers import int_arg
from triage_tui.domain.provenance import evidence, evidence_cell
from triage_tui.domain.text import inert

NAME = "list"
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
    p.add_argument("--json", action="store_true", help="one JSON object per message per line")
    p.add_argument("--limit", type=int_arg(1, 100_000_000), metavar="N", help="stop after N messages")


class _FilterHelp(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: argparse.ArgumentParser, *a: Any, **kw: Any) -> None:
        from triage_tui.domain.filter import FILTER_HELP  # noqa: PLC0415

        print(FILTER_HELP)
        parser.exit(0)


def _trunc(text: str, width: int) -> str:
    text = inert(text, limit=width + 1)  # cut before escaping: a 1 MB subject costs a line
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


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
    if m.suspicious and m.from_name and impersonated_address(m.from_name, m.from_addr):
        return m.from_addr or "(no address)"
    return m.sender


def _row(m: Message, now: datetime, subj_w: int) -> str:
    age = m.age_seconds(now)
    return (f"{m.uid:>7} {format_age(age) if age is not None else '?':>4} {_glyphs(m):5} "
            f"{_trunc(_sender(m), 26):26} {_trunc(_project(m) + ' ' + m.kind, 22):22} "
            f"{_trunc(m.subject, subj_w)}")


def _broken_row(m: Message, exc: Exception, as_json: bool) -> Any:
    """What is written for a message whose row could not be made: its UID and why."""
    uid = getattr(m, "uid", 0)
    why = f"row not shown ({type(exc).__name__}): peek {uid} shows the header"
    if as_json:
        return {"uid": uid, "problems": [why]}
    return f"{uid:>7} {'?':>4} {'....~':5} {why}"


def run(args: argparse.Namespace, ctx: Any) -> int:
    svc = ctx.service()
    flt = compile_filter(args.filter)
    now = datetime.now(UTC)
    width = shutil.get_terminal_size((120, 24)).columns
    subj_w = max(10, width - 7 - 5 - 6 - 26 - 22 - 8 - (11 if args.view == View.SEEN_STUCK else 0))
    shown = 0
    first_uid: dict[str, int] = {}  # streaming: a later copy of a Message-ID is flagged
    if not args.json:
        ev = f" {'LOCK':>10}" if args.view == View.SEEN_STUCK else ""
        ctx.say(f"{'UID':>7}{ev} {'AGE':>4} {'FLAGS':5} {'FROM':26} {'PROJECT/KIND':22} SUBJECT")
    locks = ctx.lock_service()  # None when no Redis is configured
    lock_error: str | None = None
    # the server narrows first (a superset of the matches: dates, FROM, SUBJECT...), we decide
    narrow = flt.pushdown(now) if flt is not None and not args.no_pushdown else None
    view = View(args.view)
    if view in (View.IGNORED, View.SEEN_STUCK, View.SEEN) and (note := svc.keyword_note()):
        ctx.note(f"note: {note}")
    stuck = view == View.SEEN_STUCK
    for batch in svc.iter_list(view, now=now, narrow=narrow):
        if locks is not None:
            from triage_tui.services.locks import annotate_safely  # noqa: PLC0415 - keeps redis off the path

            err = annotate_safely(locks, batch)
            if err and err != lock_error:
                lock_error = err
                ctx.note(err)  # "Redis unavailable: <reason>", once: the IMAP side keeps working
        for m in batch:
            try:
                mid = m.message_id.strip()
                if mid:
                    uid0 = first_uid.setdefault(mid, m.uid)
                    if uid0 != m.uid:
                        mark_duplicates([Message(uid=uid0, uidvalidity=m.uidvalidity, message_id=mid), m])
                if flt is not None and not flt.matches(m, now):
                    continue
                if stuck:  # the evidence of a seen-stuck row: mail_room's lock and the age
                    m.extra["evidence"] = evidence(m, now, locks is not None, svc.analysis.stale_after)
                out: Any = m.to_json(now) if args.json else _row(m, now, subj_w)
                if stuck and not args.json:
                    out = f"{out[:7]} {evidence_cell(m, locks is not None):>10}{out[7:]}"
            except Exception as exc:  # noqa: BLE001 - one bad message costs its own row, never the listing
                out = _broken_row(m, exc, args.json)
            if args.json:
                ctx.emit_json(out)
            else:
                ctx.say(out)
            shown += 1
            if args.limit and shown >= args.limit:
                return 0
    if not args.json:
        ctx.note(f"{shown} message(s) in view {args.view} of {svc.settings.mailbox} "
                 f"(flags: B bot, S stale, ! suspicious, ? no key, "
                 f"~ a header field could not be read: peek UID says which)")
    return 0
