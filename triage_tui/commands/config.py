"""config: what the settings resolved to and why (``show``), and where files live (``path``).

``show`` answers "why is it connecting *there*?" during an incident: every setting with the
layer that won (default, gitlab.yml, mail_room, config file with line, environment variable,
flag). Secrets are masked, and no credential command is run: it only says which would be.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

NAME = "config"
HELP = "show the effective settings with their sources (config show), or where files live (config path)"
DESCRIPTION = (
    "config show: every setting with the layer it came from (defaults < --gitlab-config / --mail-room-config "
    "< config file < TRIAGE_* environment < flags); secrets are masked and no password command is run. "
    "config path: the config file, audit journal and state directory.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="effective settings and where each came from (secrets masked)")
    show.add_argument("--json", action="store_true", help="one JSON object")
    path = sub.add_parser("path", help="where the config file, audit journal and state live")
    path.add_argument("--json", action="store_true", help="one JSON object")
    path.set_defaults(_lazy_settings=True)  # must work even when the config file does not parse


def run(args: argparse.Namespace, ctx: Any) -> int:
    if args.config_action == "path":
        return _path(args, ctx)
    return _show(args, ctx)


def _path(args: argparse.Namespace, ctx: Any) -> int:
    """Works without resolving the settings, so it helps even when the config file is broken."""
    from triage_tui.config import journal_path, locate_config, state_dir  # noqa: PLC0415 - lazy: start-up cost

    cfg, src, _ = locate_config(args, os.environ)
    info = {"config_file": str(cfg), "config_file_exists": cfg.exists(), "config_file_source": src.label,
            "audit_journal": str(journal_path()), "state_dir": str(state_dir())}
    if args.json:
        ctx.emit_json(info)
        return 0
    exists = "exists" if cfg.exists() else "not found"
    ctx.say(f"config file    {cfg}  ({exists}; {src.label})")
    ctx.say(f"audit journal  {info['audit_journal']}")
    ctx.say(f"state dir      {info['state_dir']}")
    return 0


def _show(args: argparse.Namespace, ctx: Any) -> int:
    from triage_tui.config import SPECS, credential_plan, graph_credential_plan  # noqa: PLC0415 - lazy: start-up cost

    s = ctx.settings
    # a Graph inbox is reached with the app's client secret: the IMAP password plan does not apply
    plan = graph_credential_plan(s) if s["triage.inbox"] == "graph" else \
        credential_plan(s, interactive=bool(getattr(ctx.stdin, "isatty", lambda: False)()))
    imported = {w: mb.files for w, mb in s.imported.items()}
    if args.json:
        ctx.emit_json({
            "config_file": {"path": str(s.config_path), "exists": s.config_exists, "source": s.config_source.label},
            "profile": {"name": s.profile, "source": str(s.profile_source) if s.profile_source else None,
                        "available": s.profiles},
            "imported": {"mailboxes": imported, "using": s.mailbox_source},
            "credential": {"method": plan.method, "detail": plan.detail, "source": str(plan.source)},
            "settings": {spec.name: {"value": s.jsonable(spec.name), "source": str(s.source(spec.name)),
                                     "layer": s.source(spec.name).kind} for spec in SPECS},
            "notes": _notes(s),
        })
        return 0
    where = "exists" if s.config_exists else "not found"
    ctx.say(f"config file   {s.config_path}  ({where}; {s.config_source.label})")
    if s.profile:
        others = f"; profiles: {', '.join(s.profiles)}" if s.profiles else ""
        ctx.say(f"profile       {s.profile}  ({s.profile_source}{others})")
    elif s.profiles:
        ctx.say(f"profile       none  (profiles: {', '.join(s.profiles)}; choose with --profile)")
    for which, files in imported.items():
        using = "  <- in use" if which == s.mailbox_source else ""
        ctx.say(f"imported      {which}_email from {', '.join(files)}{using}")
    ctx.say(f"credential    {plan.describe()}{' (not run by config show)' if 'command' in plan.method else ''}")
    ctx.say("")
    width = max(len(spec.name) for spec in SPECS)
    rows = [(spec.name, s.display(spec.name), str(s.source(spec.name))) for spec in SPECS]
    vwidth = min(40, max(len(v) for _, v, _ in rows))
    for name, value, source in rows:
        ctx.say(f"{name:<{width}}  {value:<{vwidth}}  {source}")
    for note in _notes(s):
        ctx.say(f"note: {note}")
    return 0


def _notes(s: Any) -> list[str]:
    out = list(s.notes)
    if s.shared_with and (s["redis.url"] or s["redis.sentinels"]):
        out.append(f"{', '.join(s.shared_with)} uses the same Redis and key prefix {s['redis.key_prefix']!r}: "
                   "their delivered:<uid> keys collide with this mailbox's")
    return out
