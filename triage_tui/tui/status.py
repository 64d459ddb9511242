"""The app's reporting: the status line and the pulse bar, the one handler of failed workers,
the service's "reconnecting" line, the signals and terminal checks that end the app the normal
way, and the ``?`` help built from the live bindings. The app's ways out (``notify``, titles,
the clipboard gate) stay on the App itself: they override Textual's and call ``super()``."""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import signal
from typing import Any, Protocol

from textual.binding import Binding
from textual.worker import NoActiveWorker, Worker, WorkerState, get_current_worker

from triage_tui.domain.text import inert
from triage_tui.errors import ConnectionFailed, TriageError
from triage_tui.tui.controllers.host import Host
from triage_tui.tui.screens.help import HelpScreen
from triage_tui.tui.screens.preview import PreviewScreen
from triage_tui.tui.widgets.message_list import MessageList
from triage_tui.tui.widgets.pulse import PulseBar

log = logging.getLogger("triage_tui.tui")

#: Actions that change the server. Dimmed in read-only mode; the service refuses them too.
MUTATING = frozenset({"mark_seen", "mark_unseen", "expunge", "expunge_all", "undo", "reingest"})

#: Help sections: binding id prefix -> title (order kept).
HELP_SECTIONS = (
    ("list.", "Move"), ("mark.", "Marks (bulk actions act on marks, or on the cursor row)"),
    ("action.", "Actions (each asks for confirmation)"), ("view.", "Views, sort, group"),
    ("open", "Preview"), ("filter.", "Filter"), ("refresh.", "Refresh"), ("demo.", "Demo"), ("app.", "Other"),
)

#: What each key does, for the ? help (the footer keeps the short descriptions).
HELP_TEXT = {
    "list.down": "next row", "list.up": "previous row", "list.page_down": "next page",
    "list.page_up": "previous page", "list.top": "first row", "list.bottom": "last row",
    "mark.toggle": "toggle the mark on the row (on a group: the whole group) and move down",
    "mark.range": "range mark: first press sets the anchor, second marks every row in between",
    "mark.invert": "invert the marks within the filtered set",
    "mark.clear": "clear every mark",
    "mark.all": "mark every message matching the filter (the whole set, not just the visible rows)",
    "mark.stale": "mark every stale message (older than --stale-after) in the filtered set",
    "mark.bots": "mark every bot message (auto-replies, bounces, noreply, bulk) in the filtered set",
    "action.seen": "mark seen (unseen view): mail_room skips them; they stay in the mailbox",
    "action.unseen": "mark unseen (seen-stuck, ignored views): mail_room ingests them again once their lock is free",
    "action.expunge": "expunge (deleted view): remove \\Deleted messages for good; typed confirmation",
    "action.undo": "undo the last flag change, from the audit journal",
    "action.reingest": "re-ingest: plan the release of the selection's mail_room locks, then release now, "
                       "shorten the TTL, in waves, or just wait; type the count; watch the pickup live "
                       "(seen-stuck: mark unseen first; read-only: plan and watch only; I again: the watch)",
    "action.plan": "the incident as one plan: stale, bots and junk -> ignore; suspicious -> review (k/i per "
                   "message); crash-trapped -> un-see and release; the rest -> release and watch; A applies the "
                   "steps, one confirmation each (read-only: the plan only)",
    "demo.consumer": "demo: start or stop the mail_room stand-in (down at start, as in the story; a re-ingest "
                     "starts it)",
    "view.unseen": "unseen view: what mail_room still has to ingest",
    "view.seen_stuck": "seen-stuck view: \\Seen, not \\Deleted, not ignored (a crashed mail_room's leftovers)",
    "view.ignored": "ignored view: marked \\Seen by triage-tui ($TriageIgnored), not \\Deleted",
    "view.deleted": "deleted view: \\Deleted, awaiting expunge",
    "view.sort": "sort by the next column (age, sender, project, handler, subject, size, verdicts, lock, UID)",
    "view.sort_reverse": "reverse the sort order",
    "view.group": "group by project, handler, sender domain, age bucket, GitLab verdict, or nothing",
    "view.fold_all": "expand or collapse every group",
    "open": "open the header preview (on a group row: fold or unfold it)",
    "filter.open": "filter (the language is below); enter applies, esc closes",
    "refresh.pause": "pause or resume live refresh",
    "refresh.reload": "full re-list of the view (marks kept for messages still there)",
    "app.help": "this help", "app.back": "back out one level: filter box, filter, range anchor, message line",
    "app.palette": "command palette: every action by name, 'mark seen older than 2d', 'filter bot'",
    "app.quit": "log out of IMAP and quit",
    "preview.close": "preview: close", "preview.copy_uid": "preview: copy the UID (OSC 52, works over SSH)",
    "preview.copy_msgid": "preview: copy the Message-ID", "preview.pager": "preview: raw header in $PAGER",
}

FALLBACK_FILTER_HELP = "Filter: free text matches sender and subject."


class StatusHost(Host, Protocol):
    """The app as the reporting sees it (the controllers' host, plus what help and errors need)."""

    BINDINGS: Any
    keymap: dict[str, str]
    demo: bool
    demo_story: str | None
    previewer: Any
    reingester: Any
    _ppid: int

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None: ...

    def _disabled_reason(self, action: str) -> str: ...

    def get_key_display(self, binding: Binding) -> str: ...

    def exit(self, result: int | None = None, return_code: int = 0, message: Any = None) -> None: ...

    def call_from_thread(self, callback: Any, *args: Any, **kwargs: Any) -> Any: ...


class StatusController:
    def __init__(self, host: StatusHost) -> None:
        self.host = host

    # -- status line and pulse bar ----------------------------------------------------------------

    def show(self, text: str, kind: str = "info") -> None:
        try:
            self.host.status_line.show(text, kind)
        except Exception:  # noqa: BLE001 - during shutdown the widget may be gone
            pass

    def pulse(self) -> None:
        h = self.host
        s = h.pulse_state
        m = h.model
        s.view = h.view.value
        s.total = len(m)
        s.shown = len(m.filtered)
        s.marks = len(m.marks)
        s.hidden_marks = m.hidden_marks
        s.filter = m.filter_text
        s.sort, s.reverse, s.group = m.sort_key, m.reverse, m.group_by
        s.paused = h._paused
        try:
            h.query_one("#pulse", PulseBar).show(s)
        except Exception:  # noqa: BLE001
            pass

    def service_reconnecting(self, message: str, attempt: int) -> None:
        """The service lost its connection mid-listing or mid-action and is reconnecting (on a
        worker thread, which waits for this): say so, or a resumed operation looks frozen. Not
        for a background refresh: the watcher's state shows the link, and the line keeps the
        result of the last action."""
        try:
            group = get_current_worker().group
        except NoActiveWorker:
            group = ""
        if group != "sync":
            self.host.call_from_thread(self.host.status, f"{message} (attempt {attempt}; it resumes where it was)",
                                       "warn")

    # -- errors: the one handler ------------------------------------------------------------------

    def worker_state_changed(self, event: Worker.StateChanged) -> None:
        h = self.host
        worker = event.worker
        if worker.state != WorkerState.ERROR:
            return
        err = worker.error
        if isinstance(err, TriageError):
            text = str(err)
        else:
            text = f"internal error: {type(err).__name__}: {err}"
            log.error("worker %s failed", worker.group, exc_info=err)
        if isinstance(err, (ConnectionFailed, OSError)):
            h._needs_reconnect = True
        group = worker.group
        if group == "list":
            h._loading = False
            h.pulse_state.loading = None
            h.list.empty_text = f"✗ {inert(text)}   (R to retry)"
            h.list.refresh()
        elif group == "sync":
            h._sync_running = False
        elif group == "action":
            h._busy = False
            h.pulse_state.progress = ""
            if h._uidvalidity is not None:
                h.request_sync("after-error", force=True)
        elif group == "peek" and h.previewer.screen is not None:
            h.previewer.screen.show_error(text)
        elif group in ("reingest-plan", "reingest", "reingest-watch") and h.reingester.worker_failed(group, text):
            return  # the watch's own line
        h.status(text, "error")
        h._pulse()

    # -- signals and the terminal going away ------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGHUP (an SSH drop) end the app the normal way, so IMAP is logged out."""
        try:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, self.exit_on_signal, sig)
        except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover - not on the main thread
            pass

    def exit_on_signal(self, sig: int) -> None:
        log.info("exiting on signal %s", sig)
        self.host.exit(128 + int(sig))

    def check_terminal(self) -> None:
        """No orphan after an SSH drop: if our parent went away (we were re-parented) or stdin
        is no longer a terminal, exit."""
        gone = os.getppid() != self.host._ppid
        try:
            gone = gone or not os.isatty(0)
        except OSError:
            gone = True
        if gone:
            log.info("terminal gone: exiting")
            self.host.exit(129)

    # -- help ------------------------------------------------------------------------------------

    def key_for(self, binding: Binding) -> str:
        h = self.host
        keys = h.keymap.get(binding.id or "", binding.key)
        shown = []
        for k in keys.split(","):
            k = k.strip()
            shown.append(h.get_key_display(Binding(k, binding.action)))
        return "/".join(shown)

    def help_sections(self) -> builtins.list[tuple[str, builtins.list[tuple[str, str, str]]]]:
        h = self.host
        bindings = list(MessageList.BINDINGS) + list(h.BINDINGS)
        out: list[tuple[str, list[tuple[str, str, str]]]] = []
        for prefix, title in HELP_SECTIONS:
            rows = []
            for b in bindings:
                if isinstance(b, Binding) and b.id and b.id.startswith(prefix):
                    if b.id.startswith("demo.") and h.demo_consumer is None:
                        continue
                    desc = HELP_TEXT.get(b.id, b.description)
                    action = b.action.split("(")[0]
                    if action in MUTATING and h.check_action(action, ()) is not True:
                        desc += f"  (disabled: {h._disabled_reason(action)})"
                    rows.append((self.key_for(b), desc, b.id))
            if prefix == "open":
                rows += [(self.key_for(b), HELP_TEXT.get(b.id or "", b.description), b.id or "")
                         for b in PreviewScreen.BINDINGS if isinstance(b, Binding) and b.show is not False
                         and b.id in ("preview.close", "preview.copy_uid", "preview.copy_msgid", "preview.pager")]
            if rows:
                out.append((title, rows))
        return out

    def help(self, sections: builtins.list[tuple[str, builtins.list[tuple[str, str, str]]]]) -> None:
        h = self.host
        try:
            from triage_tui.domain.filter import FILTER_HELP
        except ImportError:  # pragma: no cover
            FILTER_HELP = FALLBACK_FILTER_HELP  # noqa: N806
        notes = [
            "Glyphs: ▶ cursor · ● marked · verdicts B bot, S stale, ! suspicious, ? no GitLab key, "
            "~ a header field could not be read (the preview says which); G GitLab's verdict if re-ingested: "
            "✓ handled, ∅ dropped (no reply), ↩ rejected (GitLab writes to the sender), ⋯ unknown.",
            "Every key can be remapped by binding id (shown in the key map config, e.g. mark.toggle).",
        ]
        if h.read_only:
            notes.insert(0, "READ-ONLY review mode: mark seen/unseen, expunge and undo are disabled and the "
                            "service refuses them too; re-ingest (I) shows the plan and can only watch keys "
                            "expire. Restart without --read-only to act.")
        preface: list[str] = []
        if h.demo:
            story = (h.demo_story or "").strip()
            # the story is hard-wrapped for a terminal of its own: re-flow its paragraphs here
            paragraphs = [" ".join(p.split()) for p in story.split("\n\n") if p.strip()]
            preface = ["DEMO: an embedded mailbox and Redis; nothing real is touched.", ""]
            for para in paragraphs:
                preface += [para, ""]
            preface.append("The incident in keys: P (the plan), A (apply), then y or the count each step asks for.")
            preface.append("The runbook in keys: / filter (e.g. bot), a mark all matching, S mark seen; 2 seen-stuck, "
                           "/ !bot, a, I (mark unseen + release); 1, a, I release the rest and watch mail_room "
                           "pick them up (M starts or stops it); 3, a, X expunge the \\Deleted leftovers.")
        h.push_screen(HelpScreen(sections, notes, FILTER_HELP, preface))
