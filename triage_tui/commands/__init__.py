"""Subcommands. Each module here defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args, ctx) -> int``; modules are discovered, so adding a command touches no other file.
Modules starting with ``_`` are helpers, not commands."""

from __future__ import annotations

import pkgutil

_PREFERRED = ["list_", "peek", "mark_seen", "mark_unseen", "expunge", "undo", "locks", "release", "plan",
              "decode", "check", "config", "demo", "tui"]

_found = {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
COMMAND_MODULES: list[str] = [n for n in _PREFERRED if n in _found] + sorted(_found - set(_PREFERRED))
