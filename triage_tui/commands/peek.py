"""peek: one message's full header (BODY.PEEK[HEADER], under EXAMINE: never changes a flag)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from triage_tui.domain.headers import bytes_to_text
from triage_tui.domain.numbers import parse_uid, uid_arg
from triage_tui.domain.text import inert

NAME = "peek"
PRECONNECT = "examine"  # the IMAP connection and the mailbox open while the command gets ready (services/preconnect.py)
HELP = "show a message's full header and its analysis without changing any flag"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("uid", type=uid_arg(), help="the message UID (1 to 4294967295, as listed)")
    p.add_argument("--json", action="store_true", help="structured output")


def _analysis(ctx: Any, peek: Any) -> Any:
    try:
        from triage_tui.domain.hops import analyze_header  # noqa: PLC0415
    except ImportError:  # pragma: no cover - until the header analysis lands
        return None
    return analyze_header(peek.header, peek.internaldate, datetime.now(UTC), ctx.analysis(), size=peek.size)


def run(args: argparse.Namespace, ctx: Any) -> int:
    uid = parse_uid(args.uid)
    peek = ctx.service().peek(uid)
    analysis = _analysis(ctx, peek)
    if args.json:
        out = {"uid": peek.uid, "uidvalidity": peek.uidvalidity, "flags": list(peek.flags),
               "internaldate": peek.internaldate.isoformat() if peek.internaldate else None,
               "size": peek.size, "header": bytes_to_text(peek.header)}
        if analysis is not None:
            out["analysis"] = analysis.to_json()
        ctx.emit_json(out)
        return 0
    ctx.say(f"UID {peek.uid}  UIDVALIDITY {peek.uidvalidity}  flags {' '.join(peek.flags) or '(none)'}  "
            f"size {peek.size}  received {peek.internaldate.isoformat() if peek.internaldate else '?'}")
    ctx.say("")
    # lines end at LF only (splitlines() also breaks at NEL, VT, FF, U+2028...: a header could
    # forge a line of its own); inert shows those characters
    ctx.say(inert(bytes_to_text(peek.header), multiline=True).removesuffix("\n"))
    if analysis is not None and hasattr(analysis, "render_text"):
        ctx.say("")
        for line in analysis.render_text():
            ctx.say(inert(line))
    return 0
