"""list: the messages of a view, streamed as chunks arrive (``--json``: one object per line)."""

from __future__ import annotations

import argparse
import shutil
from datetime import UTC, datetime
from typing import Any

from triage_tui.commands._select import compile_filter, filter_arg
from triage_tui.domain.age import format_age
from triage_tui.domain.classify import mark_duplicates
from triage_tui.domain.model import Message, View
from triage_tui.domain.numbers import int_arg
from triage_tui.domain.text import inert

NAME = "list"
HELP = "list messages of a view (unseen, seen-stuck, deleted) with age, sender, subject and GitLab key"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--view", choices=[v.value for v in View], default=View.UNSEEN.value,
                   help="unseen (default): waiting for mail_room; seen-stuck: \\Seen but not \\Deleted "
                   "(a crashed mail_room's leftovers); deleted: awaiting expunge")
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
    text = inert(text)
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
    return "".join(g if on else "." for g, on in (("B", m.bot), ("S", m.stale), ("!", m.suspicious), ("?", m.no_key)))


def run(args: argparse.Namespace, ctx: Any) -> int:
    svc = ctx.service()
    flt = compile_filter(args.filter)
    now = datetime.now(UTC)
    width = shutil.get_terminal_size((120, 24)).columns
    subj_w = max(10, width - 7 - 5 - 5 - 26 - 22 - 8)
    shown = 0
    first_uid: dict[str, int] = {}  # streaming: a later copy of a Message-ID is flagged
    if not args.json:
        ctx.say(f"{'UID':>7} {'AGE':>4} {'FLG':4} {'FROM':26} {'PROJECT/KIND':22} SUBJECT")
    locks = ctx.lock_service()  # None when no Redis is configured
    lock_error: str | None = None
    # the server narrows first (a superset of the matches: dates, FROM, SUBJECT...), we decide
    narrow = flt.pushdown(now) if flt is not None and not args.no_pushdown else None
    for batch in svc.iter_list(View(args.view), now=now, narrow=narrow):
        if locks is not None:
            from triage_tui.services.locks import annotate_safely  # noqa: PLC0415 - keeps redis off the path

            err = annotate_safely(locks, batch)
            if err and err != lock_error:
                lock_error = err
                ctx.note(err)  # "Redis unavailable: <reason>", once: the IMAP side keeps working
        for m in batch:
            mid = m.message_id.strip()
            if mid:
                uid0 = first_uid.setdefault(mid, m.uid)
                if uid0 != m.uid:
                    mark_duplicates([Message(uid=uid0, uidvalidity=m.uidvalidity, message_id=mid), m])
            if flt is not None and not flt.matches(m, now):
                continue
            if args.json:
                ctx.emit_json(m.to_json(now))
            else:
                age = m.age_seconds(now)
                ctx.say(f"{m.uid:>7} {format_age(age) if age is not None else '?':>4} {_glyphs(m):4} "
                        f"{_trunc(m.sender, 26):26} {_trunc(_project(m) + ' ' + m.kind, 22):22} "
                        f"{_trunc(m.subject, subj_w)}")
            shown += 1
            if args.limit and shown >= args.limit:
                return 0
    if not args.json:
        ctx.note(f"{shown} message(s) in view {args.view} of {svc.settings.mailbox} "
                 f"(flags: B bot, S stale, ! suspicious, ? no key)")
    return 0
