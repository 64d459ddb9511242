"""``:`` commands: every action by name, plus a few that take an argument typed in the
palette itself ("mark seen older than 2d", "filter bot age>1w", "older than 36h").

Commands call the app's own actions, so read-only mode and the confirmations apply the same
way as with keys. Typed arguments are shown back as plain content, never as markup.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content

from triage_tui.domain.age import parse_age
from triage_tui.domain.model import View
from triage_tui.domain.text import inert
from triage_tui.errors import UsageError
from triage_tui.tui.listmodel import GROUP_ORDER, GROUPS, SORT_ORDER, SORTS


class PaletteHost(Protocol):
    """What the palette needs of the app (the app satisfies it structurally: this module never
    imports the app, so the two are not a cycle)."""

    async def palette_run(self, action: str) -> None: ...

    def status(self, text: str, kind: str = "info") -> None: ...

    def command_mark_older(self, age_text: str, then_mark_seen: bool) -> None: ...

    def apply_filter_text(self, text: str) -> bool: ...


_OLDER = re.compile(r"^\s*(?:(mark\s+seen|seen|mark)\s+)?(?:older\s+than|age\s*>)\s*(\S+)\s*$", re.IGNORECASE)
_FILTER = re.compile(r"^\s*filter\s+(.+)$", re.IGNORECASE)


def _guarded(app: PaletteHost, cb: Callable[[], Any]) -> Callable[[], Any]:
    """A typed command that fails says so on the status line: it never takes the app down."""
    def run() -> Any:
        try:
            return cb()
        except Exception as e:  # noqa: BLE001 - the UI must survive any typed argument
            app.status(f"command failed: {e}" if isinstance(e, UsageError) else
                       f"command failed: {type(e).__name__}: {e}", "error")
            return None

    return run


class TriageCommands(Provider):
    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        app: PaletteHost = self.app  # type: ignore[assignment]
        run = app.palette_run
        cmds: list[tuple[str, str, Callable[[], Any]]] = []
        for v, key in ((View.UNSEEN, "1"), (View.SEEN_STUCK, "2"), (View.DELETED, "3"), (View.IGNORED, "4")):
            cmds.append((f"Switch view: {v.value}", f"list the {v.value} view (key {key})",
                         partial(run, f"view('{v.value}')")))
        for g in GROUP_ORDER:
            label = GROUPS[g] if g else "nothing (flat list)"
            cmds.append((f"Group by {label}", "collapsible summary with counts and oldest age",
                         partial(run, f"group('{g or ''}')")))
        for s in SORT_ORDER:
            cmds.append((f"Sort by {SORTS[s][0]}", "ascending; run again (or press r) to reverse",
                         partial(run, f"sort('{s}')")))
        cmds += [
            ("Mark all matching the filter", "the whole filtered set, not just the visible rows",
             partial(run, "mark_all")),
            ("Mark all stale", "older than --stale-after", partial(run, "mark_stale")),
            ("Mark all bots", "auto-replies, bounces, noreply, bulk", partial(run, "mark_bots")),
            ("Invert marks", "within the filtered set", partial(run, "invert_marks")),
            ("Clear marks", "", partial(run, "clear_marks")),
            ("Mark seen", "marked messages (or the cursor row): mail_room skips them", partial(run, "mark_seen")),
            ("Mark unseen", "seen-stuck view: mail_room ingests them again", partial(run, "mark_unseen")),
            ("Expunge", "deleted view: remove the marked \\Deleted messages for good", partial(run, "expunge")),
            ("Expunge all \\Deleted", "plain EXPUNGE of every \\Deleted message in the mailbox",
             partial(run, "expunge_all")),
            ("Undo last flag change", "from the audit journal", partial(run, "undo")),
            ("Re-ingest (release Redis locks)", "plan, release now / shorten TTL / waves / wait, then watch the "
             "pickup", partial(run, "reingest")),
            ("Incident plan", "the runbook as one plan: keep/ignore per bucket or message, apply step by step "
             "(key P)", partial(run, "incident_plan")),
            ("Pause / resume live refresh", "", partial(run, "pause")),
            ("Full re-list", "drop the list and fetch the view again", partial(run, "reload")),
            ("Filter…", "open the / filter", partial(run, "filter")),
            ("Clear filter", "", partial(run, "clear_filter")),
            ("Expand / collapse all groups", "", partial(run, "toggle_all_groups")),
            ("Help", "every key", partial(run, "help")),
            ("Quit", "log out of IMAP and exit", partial(run, "quit")),
        ]
        if getattr(app, "demo_consumer", None) is not None:
            cmds.append(("Start / stop mail_room (demo)", "the demo's mail_room stand-in (key M)",
                         partial(run, "demo_consumer")))
        return cmds

    async def discover(self) -> Hits:
        for name, help_text, cb in self._commands():
            yield DiscoveryHit(Content(name), cb, text=name, help=help_text)

    async def search(self, query: str) -> Hits:
        app: PaletteHost = self.app  # type: ignore[assignment]
        m = _OLDER.match(query)
        if m:
            age = m.group(2)
            seen = bool(m.group(1)) and "seen" in m.group(1).lower()
            try:
                parse_age(age)
            except UsageError as e:
                # the bad age is refused where it is typed: choosing this hit only repeats why
                label = f"Cannot mark: {e}"
                yield Hit(1.0, Content(inert(label)), partial(app.status, str(e), "error"), text=label,
                          help="an age needs a unit: older than 90m, 36h, 2d, 1w")
            else:
                label = f"Mark seen: messages older than {age}" if seen else f"Mark messages older than {age}"
                yield Hit(1.0, Content(inert(label)), _guarded(app, partial(app.command_mark_older, age, seen)),
                          text=label, help="within the current filter; mark seen asks for confirmation")
        f = _FILTER.match(query)
        if f:
            text = f.group(1)
            label = f"Filter: {text}"
            yield Hit(1.0, Content(inert(label)), _guarded(app, partial(app.apply_filter_text, text)), text=label,
                      help="apply this filter")
        matcher = self.matcher(query)
        for name, help_text, cb in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), cb, text=name, help=help_text)
