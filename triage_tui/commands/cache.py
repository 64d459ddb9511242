"""cache: show or delete the persistent header cache (customer mail headers on this disk).

``cache info`` lists every cache file (path, size, rows, UIDVALIDITY, age); ``cache clear``
deletes them all. Neither connects to the server.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from triage_tui.errors import OperationFailed

NAME = "cache"
HELP = "show (info) or delete (clear) the header cache kept for fast warm starts"
DESCRIPTION = ("The header cache keeps the parsed headers of listed messages (customer mail: senders, "
               "subjects, addresses) in the user cache directory, files 0600, so a warm start need not "
               "fetch them again. `cache clear` deletes it; --no-cache (or TRIAGE_CACHE=false, or "
               "[cache] enabled = false) stops using it.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("info", "clear"), help="info: what is cached; clear: delete it all")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(_lazy_settings=True)  # works with a broken config file: it needs none


def _age(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return "?"
    s = max(0, time.time() - ts)
    for unit, n in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if s >= n:
            return f"{s / n:.0f}{unit}"
    return f"{s:.0f}s"


def run(args: argparse.Namespace, ctx: Any) -> int:
    import sqlite3  # noqa: PLC0415 - lazy: every start imports this module for its name and help

    from triage_tui.services import cache  # noqa: PLC0415

    directory = cache.cache_dir()
    if args.action == "clear":
        try:
            n, left = cache.clear(directory)
        except OSError as e:
            raise OperationFailed(f"cannot delete the header cache in {directory}: {e.strerror or e}") from None
        if args.json:
            ctx.emit_json({"action": "clear", "directory": str(directory), "deleted": n,
                           "not_deleted": [{"path": str(p), "error": why} for p, why in left]})
        else:
            ctx.say(f"deleted {n} header cache file(s) in {directory}")
        if left:
            names = ", ".join(f"{p.name} ({why})" for p, why in left[:5]) + (" ..." if len(left) > 5 else "")
            raise OperationFailed(f"could not delete {len(left)} entr{'y' if len(left) == 1 else 'ies'} in "
                                  f"{directory}: {names}; delete them by hand")
        return 0
    entries = []
    try:
        found = cache.files(directory)
    except OSError as e:
        raise OperationFailed(f"cannot read the header cache directory {directory}: {e.strerror or e}") from None
    for path in found:
        try:
            i = cache.info(path)
            entries.append({"path": str(path), "size": i.size, "rows": i.rows, "uidvalidity": i.uidvalidity,
                            "created": i.created, "used": i.used, "error": None})
        except (sqlite3.Error, OSError) as e:
            entries.append({"path": str(path), "size": None, "rows": None, "uidvalidity": None,
                            "created": None, "used": None, "error": " ".join(str(e).split())[:120]})
    if args.json:
        ctx.emit_json({"action": "info", "directory": str(directory), "caches": entries})
        return 0
    ctx.say(f"header cache directory: {directory}")
    if not entries:
        ctx.say("no cached mailboxes")
    for e in entries:
        if e["error"]:
            ctx.say(f"{e['path']}: unreadable ({e['error']}); `cache clear` deletes it")
        else:
            ctx.say(f"{e['path']}: {e['rows']:,} rows, {e['size'] / 1024:,.0f} KiB, UIDVALIDITY {e['uidvalidity']}, "
                    f"created {_age(e['created'])} ago, used {_age(e['used'])} ago")
    return 0
