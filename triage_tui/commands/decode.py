"""decode: what GitLab makes of an incoming address or a whole message, offline (no IMAP).

``triage-tui decode [--address TEMPLATE] [--mailbox-kind incoming|service_desk] ADDRESS... [--json]``
decodes each argument (an address or a whole To-style header value: the first address matching
the template wins; an argument without ``@`` is taken as a bare key). ``decode --message FILE|-``
reads a message (or just its header) and searches its headers in GitLab's order.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import TYPE_CHECKING, Any

from triage_tui.domain.text import inert
from triage_tui.errors import OperationFailed, UsageError

if TYPE_CHECKING:
    from triage_tui.domain.keys import KeyInfo

NAME = "decode"
HELP = "decode GitLab incoming-email addresses or a message's headers offline (no IMAP needed)"
DESCRIPTION = (
    "Show which GitLab handler an incoming address goes to (reply, new_issue, note_on_issuable, "
    "unsubscribe, new_merge_request, service_desk, unknown) and what its key carries: project id "
    "and slug, legacy path, issue iid, reply key, namespace id. Decodes exactly as GitLab does "
    "(case-sensitive template, greedy slug). ADDRESS may be a whole header value; an ADDRESS "
    "without '@' is decoded as a bare key."
)
MAX_MESSAGE = 16 * 1024 * 1024


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("addresses", nargs="*", metavar="ADDRESS", help="addresses, header values or bare keys")
    p.add_argument("--address", dest="decode_address", metavar="TEMPLATE",
                   help="incoming address template, e.g. incoming+%%{key}@example.com "
                   "(default: the global --address, then TRIAGE_ADDRESS)")
    p.add_argument("--mailbox-kind", dest="decode_mailbox_kind", choices=("incoming", "service_desk"),
                   help="service_desk: the service_desk_email mailbox, where every key goes to Service Desk")
    p.add_argument("--message", metavar="FILE", help="decode a message's headers ('-' for stdin)")
    p.add_argument("--gitlab-host", metavar="HOST",
                   help="GitLab's host, to read reply-<key>@HOST References as GitLab does "
                   "(without it, any host is accepted there)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def _template(args: argparse.Namespace) -> str | None:
    return (getattr(args, "decode_address", None) or getattr(args, "address", None)
            or os.environ.get("TRIAGE_ADDRESS") or None)


def _mailbox_kind(args: argparse.Namespace) -> str:
    return getattr(args, "decode_mailbox_kind", None) or getattr(args, "mailbox_kind", None) or "incoming"


def _read_message(path: str, ctx: Any) -> bytes:
    if path == "-":
        stream = getattr(ctx.stdin, "buffer", None)
        if stream is not None:
            return bytes(stream.read(MAX_MESSAGE))
        return str(ctx.stdin.read(MAX_MESSAGE)).encode("utf-8", "surrogateescape")
    try:
        with open(path, "rb") as f:
            return f.read(MAX_MESSAGE)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None


def _json(info: KeyInfo) -> dict[str, Any]:
    return info.to_json()


def _hint(value: str, template: str | None) -> str:
    """Why an address did not decode, in the operator's terms."""
    if not template:
        return "no key"
    from triage_tui.domain.keys import split_addresses, template_regex  # noqa: PLC0415 - lazy: start-up cost

    addrs = split_addresses(value)
    if any(a.startswith('"') for a in addrs):
        return "no key: a quoted local part never matches GitLab's pattern"
    rx = template_regex(template)
    if any(re.match(rx.pattern, a, re.IGNORECASE) for a in addrs):
        return "no key: matches the template only when ignoring case, and GitLab compares case-sensitively"
    if "%{key}" not in template:
        return "no key: the template has no %{key} (a dedicated address: only References carry keys)"
    return f"no key: no address matches {template}"


def _decode_one(value: str, template: str | None, kind: str) -> KeyInfo:
    from triage_tui.domain.keys import classify_key, decode_address  # noqa: PLC0415 - lazy: start-up cost

    if "@" not in value and value.strip():
        return classify_key(value.strip(), kind)
    return decode_address(value, template, kind)


def run(args: argparse.Namespace, ctx: Any) -> int:
    from triage_tui.domain.headers import Headers  # noqa: PLC0415 - lazy: start-up cost
    from triage_tui.domain.hops import describe_key  # noqa: PLC0415
    from triage_tui.domain.keys import find_key  # noqa: PLC0415

    template = _template(args)
    kind = _mailbox_kind(args)
    if args.message and args.addresses:
        raise UsageError("give either ADDRESS arguments or --message, not both")
    if args.message:
        if not template:
            raise UsageError("no address template: give --address TEMPLATE or set TRIAGE_ADDRESS "
                             "(e.g. incoming+%{key}@incoming.gitlab.example.com)")
        headers = Headers.parse(_read_message(args.message, ctx))
        try:
            info = find_key(headers, template, kind, args.gitlab_host)
        except Exception as exc:  # noqa: BLE001 - hostile headers: one clear line, never a traceback
            raise OperationFailed(f"cannot decode this message's key ({type(exc).__name__}): "
                                  "its recipient headers could not be read") from None
        if args.json:
            ctx.emit_json(_json(info))
        else:
            ctx.say(inert(describe_key(info)))
        return 0
    if not args.addresses:
        raise UsageError("nothing to decode: give one or more ADDRESS arguments or --message FILE")
    if not template and any("@" in a for a in args.addresses):
        raise UsageError("no address template: give --address TEMPLATE or set TRIAGE_ADDRESS "
                         "(e.g. incoming+%{key}@incoming.gitlab.example.com), or pass bare keys")
    for value in args.addresses:
        info = _decode_one(value, template, kind)
        if args.json:
            ctx.emit_json(_json(info))
        elif info.key is None:
            ctx.say(inert(f"{value}: {_hint(value, template)}"))
        else:
            ctx.say(inert(f"{value}: {describe_key(info)}"))
    return 0
