"""The triage UI: one screen with the pulse bar, the virtual message list and the bars below.

How it is put together (harlequin / dolphie / posting / k9s, see docs/style.md):

- Services come in through the constructor (a :class:`~triage_tui.services.triage.TriageService`
  or anything shaped like it, and optionally the Redis lock service), so tests hand in a
  service on a test mailbox or an in-memory fake.
- Every blocking call runs in a thread worker (``@work(thread=True, exit_on_error=False)``)
  that posts a message back (each with a fixed ``description``: by default Textual builds one
  from ``repr`` of the arguments, 1.4 s on the event loop for 100k messages);
  :meth:`on_worker_state_changed` is the one error handler: a failure becomes one visible
  line, never a crash. Reads on the shared EXAMINE connection are
  serialised by ``_io_lock`` (a cancelled thread worker keeps running).
- The list is a Line-API widget over a UID-keyed model, updated by diff: marks and the cursor
  survive refreshes. After an action the list is re-synced from the server, not patched.
- Refresh: a watcher thread (IDLE, or STATUS polling) says "changed"; one sync runs at a
  time, and a change during a sync re-arms another when it finishes (never overlapping).
- Read-only: mutating actions are dimmed (``check_action`` returns None) and a press says
  why; the service refuses them anyway. The re-ingest screen still opens there, as a plan:
  its writing choices are dimmed and explained, and waiting (which touches nothing) can be watched.
- Re-ingest (``I``): planning, the release and every look of the watch are thread workers; the
  watch is re-armed when the previous look finishes (never overlapping) and lives here, not in
  the screen, so it goes on in the pulse bar after the screen is closed.
- The demo (``triage-tui demo``) says DEMO in the pulse bar and hands in its mail_room stand-in:
  ``M`` starts or stops it, and it starts by itself after a re-ingest (the runbook's last step).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import gc
import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from textual import events, on, work
from textual.app import App, ComposeResult, SuspendNotSupported
from textual.binding import Binding
from textual.widgets import Footer
from textual.worker import NoActiveWorker, Worker, WorkerState, get_current_worker

from triage_tui.domain.model import Message, View
from triage_tui.domain.provenance import reingest_warning
from triage_tui.domain.text import clipboard_refusal, inert
from triage_tui.errors import ConnectionFailed, TriageError
from triage_tui.services.triage import NO_KEYWORDS_SHORT, left_alone_lines
from triage_tui.tui import messages as M
from triage_tui.tui.columns import human_age
from triage_tui.tui.controllers.incident import IncidentCall, IncidentController
from triage_tui.tui.keyorder import KeyOrder
from triage_tui.tui.listmodel import GROUP_ORDER, GROUPS, SORT_ORDER, SORTS, Group, ListModel
from triage_tui.tui.palette import TriageCommands
from triage_tui.tui.screens.confirm import ConfirmRequest, ConfirmScreen
from triage_tui.tui.screens.help import HelpScreen
from triage_tui.tui.screens.preview import PreviewScreen
from triage_tui.tui.screens.reingest import ReingestRequest, ReingestScreen, ReingestWatch, watch_summary
from triage_tui.tui.widgets.bars import FilterBar, FilterInput, StatusLine, marked_text
from triage_tui.tui.widgets.message_list import MessageList
from triage_tui.tui.widgets.pulse import ColumnHeader, PulseBar, PulseState

log = logging.getLogger("triage_tui.tui")

#: Actions that change the server. Dimmed in read-only mode; the service refuses them too.
MUTATING = frozenset({"mark_seen", "mark_unseen", "expunge", "expunge_all", "undo", "reingest"})
#: Which views each flag action belongs to (elsewhere it would be a no-op, so it is dimmed):
#: un-seeing restores an ignore decision as well as a crash-trapped message.
ACTION_VIEW = {"mark_seen": (View.UNSEEN,), "mark_unseen": (View.SEEN_STUCK, View.IGNORED),
               "expunge": (View.DELETED,)}
VIEW_KEYS = {View.UNSEEN: "1", View.SEEN_STUCK: "2", View.DELETED: "3", View.IGNORED: "4"}

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
SYNC_SETTLE = 0.5  # seconds between a sync and the next one a change asked for meanwhile
PROGRESS_EVERY = 0.1
#: mail_room's longest gap between polls (its idle_timeout): no re-claim within two of them after
#: the keys are free means nothing is consuming (the lock service's default)
POLL_CYCLE = 60.0
WATCH_INTERVAL = 2.0  # seconds between the end of one re-ingest watch look and the next
WATCH_RETRY = 5.0  # after a failed look (Redis or IMAP hiccup)
WATCH_LINGER = 60.0  # a finished watch stays in the pulse bar this long


def _now() -> datetime:
    return datetime.now(UTC)


def _while_running(handler: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """For handlers of what workers post back: an answer that arrives while the app shuts down
    (its widgets already removed) is dropped, instead of raising NoMatches on the way out."""
    @functools.wraps(handler)
    def wrapper(self: Any, msg: Any) -> None:
        if not self.is_running:
            return None
        return handler(self, msg)

    return wrapper


def _loopback(settings: Any) -> bool:
    """Plaintext to loopback (the demo, a local test server) is not the loud case."""
    host = getattr(settings, "host", None)
    if not host:
        return False
    from triage_tui.services.imap import is_loopback

    try:
        return bool(is_loopback(host))
    except Exception:  # noqa: BLE001 - a name that does not resolve is not loopback
        return False


class TriageApp(KeyOrder, App[int]):
    """``TriageApp(service, lock_service=..., keymap=..., clock=...)``; ``run()`` returns 0."""

    CSS_PATH = str(Path(__file__).with_name("triage.tcss"))  # absolute: subclasses live elsewhere
    TITLE = "triage-tui"
    COMMANDS: ClassVar = App.COMMANDS | {TriageCommands}
    COMMAND_PALETTE_BINDING = "colon"
    ENABLE_COMMAND_PALETTE = True

    BINDINGS: ClassVar = [
        Binding("question_mark,f1", "help", "Help", id="app.help", tooltip="every key, the filter language"),
        Binding("slash", "filter", "Filter", id="filter.open", tooltip="filter language: age>2d bot from:..."),
        Binding("space", "toggle_mark", "Mark", id="mark.toggle", tooltip="toggle the mark and move down"),
        Binding("enter", "open", "Preview", id="open", tooltip="header and analysis (BODY.PEEK); on a group: fold"),
        Binding("S", "mark_seen", "Seen", id="action.seen", tooltip="mark seen: mail_room skips them"),
        Binding("U", "mark_unseen", "Unseen", id="action.unseen", show=False,
                tooltip="seen-stuck view: remove \\Seen so mail_room ingests them again"),
        Binding("X", "expunge", "Expunge", id="action.expunge", tooltip="deleted view: remove for good"),
        Binding("u", "undo", "Undo", id="action.undo", show=False, tooltip="undo the last flag change"),
        Binding("I", "reingest", "Re-ingest", id="action.reingest", show=False,
                tooltip="plan, release and watch mail_room's Redis locks (seen-stuck: mark unseen first)"),
        Binding("P", "incident_plan", "Plan", id="action.plan", show=False,
                tooltip="the incident as one plan: buckets, keep/ignore, apply step by step"),
        # not in the footer (at 80 columns it would push Quit off); the pulse bar names the key
        Binding("M", "demo_consumer", "mail_room", id="demo.consumer", show=False,
                tooltip="demo: start or stop the mail_room stand-in"),
        Binding("v", "mark_range", "Range mark", show=False, id="mark.range",
                tooltip="first press sets the anchor, second marks every row in between"),
        Binding("asterisk", "invert_marks", "Invert marks", show=False, id="mark.invert"),
        Binding("c", "clear_marks", "Clear marks", show=False, id="mark.clear"),
        Binding("a", "mark_all", "Mark all matching", show=False, id="mark.all",
                tooltip="the whole filtered set, not just the visible rows"),
        Binding("o", "mark_stale", "Mark all stale", show=False, id="mark.stale"),
        Binding("b", "mark_bots", "Mark all bots", show=False, id="mark.bots"),
        Binding("1", "view('unseen')", "Unseen view", show=False, id="view.unseen"),
        Binding("2", "view('seen-stuck')", "Seen-stuck view", show=False, id="view.seen_stuck"),
        Binding("3", "view('deleted')", "Deleted view", show=False, id="view.deleted"),
        Binding("4", "view('ignored')", "Ignored view", show=False, id="view.ignored"),
        Binding("s", "sort_next", "Sort by next column", show=False, id="view.sort"),
        Binding("r", "sort_reverse", "Reverse sort", show=False, id="view.sort_reverse"),
        Binding("z", "group_next", "Group by (project, handler, domain, age, verdict)", show=False, id="view.group"),
        Binding("Z", "toggle_all_groups", "Expand/collapse all groups", show=False, id="view.fold_all"),
        Binding("p", "pause", "Pause/resume live refresh", show=False, id="refresh.pause"),
        Binding("R,f5", "reload", "Full re-list", show=False, id="refresh.reload"),
        Binding("escape", "back", "Back", show=False, id="app.back",
                tooltip="close the filter, then clear it, then clear the message line"),
        Binding("colon", "command_palette", "Commands", id="app.palette", tooltip="command palette"),
        Binding("q", "quit", "Quit", id="app.quit", tooltip="log out of IMAP and exit"),
    ]

    def _fatal_error(self) -> None:
        """Textual's crash report shows every frame's locals: a password or a Redis URL held in a
        local would reach the terminal. The same report, without locals (guarantee 3)."""
        import rich.traceback  # noqa: PLC0415

        real = rich.traceback.Traceback

        def without_locals(*args: Any, **kwargs: Any) -> Any:
            return real(*args, **{**kwargs, "show_locals": False})

        rich.traceback.Traceback = without_locals  # type: ignore[misc]
        try:
            super()._fatal_error()
        finally:
            rich.traceback.Traceback = real  # type: ignore[misc]

    def __init__(
        self,
        service: Any,
        *,
        lock_service: Any = None,
        watcher_factory: Callable[..., Any] | str | None = "auto",
        keymap: dict[str, str] | None = None,
        theme: str | None = None,
        clock: Callable[[], datetime] | None = None,
        view: View | str = View.UNSEEN,
        close_on_exit: bool = True,
        exit_when_orphaned: bool = True,
        demo: bool = False,
        demo_consumer: Any = None,
        demo_story: str | None = None,
        reingest_poll_cycle: float | None = None,
        reingest_interval: float = WATCH_INTERVAL,
    ) -> None:
        super().__init__()
        self.service = service
        self.lock_service = lock_service
        self.demo = bool(demo or demo_consumer is not None)
        self.demo_consumer = demo_consumer  # start()/stop()/running/status: the demo's mail_room
        self.demo_story = demo_story
        if reingest_poll_cycle is None:
            # the demo's stand-in polls every few seconds: its "two poll cycles" are short too
            interval = getattr(demo_consumer, "poll_interval", None)
            reingest_poll_cycle = max(5.0, 3 * float(interval)) if interval else POLL_CYCLE
        self.reingest_poll_cycle = float(reingest_poll_cycle)
        self.reingest_interval = reingest_interval
        self.read_only = bool(getattr(service, "read_only", False) or getattr(getattr(service, "guard", None),
                                                                               "read_only", False))
        self.clock = clock or _now
        self.view = View(view)
        self.keymap = dict(keymap or {})
        self._theme_name = theme
        self.close_on_exit = close_on_exit
        self.exit_when_orphaned = exit_when_orphaned
        self._watcher_factory = watcher_factory
        self.model = ListModel(clock=self.clock)
        settings = getattr(service, "settings", None)
        self.pulse_state = PulseState(
            mailbox=getattr(settings, "mailbox", "") or "", server=getattr(settings, "server", "") or "",
            read_only=self.read_only, locks_configured=lock_service is not None, view=self.view.value,
            insecure=bool(getattr(settings, "insecure_skip_verify", False)), loopback=_loopback(settings),
            demo=self.demo)
        self._io_lock = threading.RLock()
        self.incident = IncidentController(self, self._io_lock)  # P: the guided incident
        self._gen = 0
        self._uidvalidity: int | None = None
        self._loading = False
        self._load_started = 0.0
        self._first_rows_at: float | None = None
        self._rebuild_timer: Any = None
        self._sync_running = False
        self._sync_pending = False
        self._paused = False
        self._busy = False
        self._needs_reconnect = False
        self._own_changed: set[int] = set()
        self._carry_marks: set[int] = set()
        self._range_anchor: int | None = None
        self._watcher: Any = None
        self._watch_started = False
        self._services_closed = False
        self._ppid = os.getppid()
        self._preview: PreviewScreen | None = None
        self._last_progress = 0.0
        self._reingest_screen: ReingestScreen | None = None
        self.reingest_watch: ReingestWatch | None = None
        self._watch_ids = 0
        self._watch_timer: Any = None
        self.stats: dict[str, float] = {}  # timings for the benchmark and the debug log

    # -- layout ---------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield PulseBar(id="pulse")
        header = ColumnHeader(id="colhead")
        yield header
        lst = MessageList(self.model, clock=self.clock, locks=self.lock_service is not None, id="list")
        lst.header = header
        header.text_source = lambda: lst.header_text(self.model.sort_key, self.model.reverse)
        yield lst
        yield FilterBar(id="filterbar")
        yield StatusLine(id="status")
        yield Footer(compact=True, show_command_palette=False)

    @property
    def list(self) -> MessageList:
        return self.query_one("#list", MessageList)

    @property
    def status_line(self) -> StatusLine:
        return self.query_one("#status", StatusLine)

    def on_mount(self) -> None:
        if self._theme_name:
            try:
                self.theme = self._theme_name
            except Exception:  # noqa: BLE001 - an unknown theme name must not stop an incident
                self.status(f"unknown theme {self._theme_name!r}: using the default", "warn")
        if self.keymap:
            self.set_keymap(self.keymap)
        if hasattr(self.service, "on_reconnect") and self.service.on_reconnect is None:
            self.service.on_reconnect = self._service_reconnecting
        self.list.focus()
        if self.is_headless:  # tests, snapshots and screenshots: no blinking cursor to race with
            self.query_one("#filter-input", FilterInput).cursor_blink = False
        self.list.empty_text = f"connecting to {self.pulse_state.server or 'the server'}…"
        self._pulse()
        if self.read_only:
            self.status("read-only review mode: mutating actions are disabled (dimmed); nothing on the "
                        "server can change", "warn")
        elif self.pulse_state.insecure:
            # fits 80 columns: the CLI's longer warning went to stderr, under the alternate screen
            self.status("TLS certificate NOT verified (--insecure-skip-verify): anyone may read this", "error")
        elif self.demo:
            self.status("DEMO · P the incident plan · mail_room is down: M starts it · ? the story"
                        if self.demo_consumer is not None else "DEMO · ? the story", "warn")
        if self.demo_consumer is not None:
            self._demo_tick()
            self.set_interval(1.0, self._demo_tick)
        if not self.is_headless:
            self._install_signal_handlers()
            if self.exit_when_orphaned:
                self.set_interval(2.0, self._check_terminal)
        self._load(first=True)

    # -- signals and the terminal going away ------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        """SIGTERM and SIGHUP (an SSH drop) end the app the normal way, so IMAP is logged out."""
        try:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, self._exit_on_signal, sig)
        except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover - not on the main thread
            pass

    def _exit_on_signal(self, sig: int) -> None:
        log.info("exiting on signal %s", sig)
        self.exit(128 + int(sig))

    def _check_terminal(self) -> None:
        """No orphan after an SSH drop: if our parent went away (we were re-parented) or stdin
        is no longer a terminal, exit."""
        gone = os.getppid() != self._ppid
        try:
            gone = gone or not os.isatty(0)
        except OSError:
            gone = True
        if gone:
            log.info("terminal gone: exiting")
            self.exit(129)

    # -- status and pulse -----------------------------------------------------------------------

    def status(self, text: str, kind: str = "info") -> None:
        """The one line where results and errors appear."""
        try:
            self.status_line.show(text, kind)
        except Exception:  # noqa: BLE001 - during shutdown the widget may be gone
            pass

    # -- the app's own ways out: every notification, title and clipboard write passes here ---------

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every toast (``Widget.notify`` lands here too): inert, and never parsed as markup, so
        a mailbox name, a server reply or a subject in a message shows as itself."""
        super().notify(inert(message, multiline=True, limit=2000), title=inert(title, limit=200),
                       severity=severity, timeout=timeout, markup=False)

    def validate_title(self, title: Any) -> str:
        return inert(super().validate_title(title), limit=500)

    def validate_sub_title(self, sub_title: Any) -> str:
        return inert(super().validate_sub_title(sub_title), limit=500)

    def copy_to_clipboard(self, text: str) -> None:
        """The only way to the clipboard (OSC 52), also for Textual's own copy of a selection:
        no control (but line feed and tab), bidi or invisible character, else refused with a
        notification saying why. Callers copying a value validate its shape first (a
        Message-ID, a UID); this is the gate a forgotten call site cannot pass."""
        reason = clipboard_refusal(text)
        if reason is not None:
            self.notify(f"not copied: {reason}", severity="warning", timeout=6)
            return
        super().copy_to_clipboard(text)

    def _service_reconnecting(self, message: str, attempt: int) -> None:
        """The service lost its connection mid-listing or mid-action and is reconnecting (on a
        worker thread, which waits for this): say so, or a resumed operation looks frozen. Not
        for a background refresh: the watcher's state shows the link, and the line keeps the
        result of the last action."""
        try:
            group = get_current_worker().group
        except NoActiveWorker:
            group = ""
        if group != "sync":
            self.call_from_thread(self.status, f"{message} (attempt {attempt}; it resumes where it was)", "warn")

    def _pulse(self) -> None:
        s = self.pulse_state
        m = self.model
        s.view = self.view.value
        s.total = len(m)
        s.shown = len(m.filtered)
        s.marks = len(m.marks)
        s.hidden_marks = m.hidden_marks
        s.filter = m.filter_text
        s.sort, s.reverse, s.group = m.sort_key, m.reverse, m.group_by
        s.paused = self._paused
        try:
            self.query_one("#pulse", PulseBar).show(s)
        except Exception:  # noqa: BLE001
            pass

    def _refresh_list(self, keep: Any = None) -> None:
        self.list.rows_changed(keep)
        self.query_one("#colhead", ColumnHeader).refresh()
        self._pulse()

    # -- loading ------------------------------------------------------------------------------

    def _load(self, *, first: bool = False, keep_marks: bool = False) -> None:
        self._gen += 1
        self._carry_marks = set(self.model.marks) if keep_marks else set()
        self.model.clear()
        if gc.get_freeze_count():
            # The previous listing was frozen (on_list_done): what of it is cyclic garbage can
            # only go once unfrozen; collected now, it is not still in memory while the new
            # listing loads (bench/soak.py re-lists 100k rows every few minutes).
            gc.unfreeze()
            gc.collect()
        self._uidvalidity = None
        self._loading = True
        self._load_started = time.perf_counter()
        self._first_rows_at = None
        self.pulse_state.vanished = self.pulse_state.arrived = 0
        self.pulse_state.loading = (0, 0)
        self.list.empty_text = f"listing the {self.view.value} view…"
        self._refresh_list()
        self._load_worker(self.view, self._gen, first)

    @work(thread=True, exit_on_error=False, group="list", description="_load_worker")
    def _load_worker(self, view: View, gen: int, first: bool) -> None:
        svc = self.service
        worker = get_current_worker()
        with self._io_lock:
            if gen != self._gen or worker.is_cancelled:
                return
            if self._needs_reconnect:
                svc.reconnect()
                self._needs_reconnect = False
            else:
                svc.connect()
            if first:
                tls = svc.tls
                version = getattr(tls, "version", None)
                self.post_message(M.Connected(getattr(tls, "label", "?"),
                                              bool(getattr(tls, "verified", False)) if version else False,
                                              frozenset(getattr(svc, "capabilities", ()) or ()), version))
            started = time.perf_counter()
            uidvalidity, uids = svc.search(view)
            self.post_message(M.ListStarted(gen, uidvalidity, len(uids)))
            done = 0
            stream = svc.iter_messages(uidvalidity, uids, headers=True, now=self.clock())
            try:
                for batch in stream:
                    if gen != self._gen or worker.is_cancelled:
                        # Stopping mid-stream leaves answers on the wire: start a fresh connection.
                        with contextlib.suppress(Exception):
                            stream.close()  # type: ignore[attr-defined]
                        svc.reconnect()
                        return
                    done += len(batch)
                    self.post_message(M.ListBatch(gen, batch, done))
            finally:
                with contextlib.suppress(Exception):
                    stream.close()  # type: ignore[attr-defined]
            self.post_message(M.ListDone(gen, done, time.perf_counter() - started))
            counts = svc.counts()
        self.post_message(M.CountsReady(counts))

    @_while_running
    def on_connected(self, msg: M.Connected) -> None:
        s = self.pulse_state
        s.connected = True
        s.tls_label, s.tls_ok, s.tls_version = msg.tls_label, msg.tls_ok, msg.tls_version
        self._pulse()

    @_while_running
    def on_list_started(self, msg: M.ListStarted) -> None:
        if msg.gen != self._gen:
            return
        self._uidvalidity = msg.uidvalidity
        self.pulse_state.loading = (0, msg.total)
        if msg.total == 0:
            self.list.empty_text = f"the {self.view.value} view is empty"
        self._pulse()

    @_while_running
    def on_list_batch(self, msg: M.ListBatch) -> None:
        if msg.gen != self._gen:
            return
        self.model.add(msg.batch)
        total = self.pulse_state.loading[1] if self.pulse_state.loading else msg.done
        self.pulse_state.loading = (msg.done, total)
        if self._first_rows_at is None:
            # The first screen appears at once; later batches are folded in a few times a second.
            self._first_rows_at = time.perf_counter()
            self.stats["first_batch_s"] = self._first_rows_at - self._load_started
            self._rebuild()
        elif self._rebuild_timer is None:
            self._rebuild_timer = self.set_timer(0.2, self._rebuild)

    def _rebuild(self) -> None:
        self._rebuild_timer = None
        keep = self.list.current
        self.model.rebuild()
        self._refresh_list(keep)

    @_while_running
    def on_list_done(self, msg: M.ListDone) -> None:
        if msg.gen != self._gen:
            return
        if self._rebuild_timer is not None:
            self._rebuild_timer.stop()
        self._loading = False
        self.pulse_state.loading = None
        if self._carry_marks:
            self.model.marks = self._carry_marks & set(self.model.messages)
            self._carry_marks = set()
        self._rebuild()
        self.stats["list_s"] = time.perf_counter() - self._load_started
        if len(self.model) > 10_000 or gc.get_freeze_count():
            # 100k long-lived Message objects make every full GC pass scan them all (100+ ms
            # pauses mid-keypress); frozen, they are skipped. But a frozen object that becomes
            # cyclic garbage is never collected: unfreeze first, or every earlier listing stays
            # in memory (bench/soak.py: +20 MiB per re-list of 20k rows).
            gc.unfreeze()
            gc.collect()
            if len(self.model) > 10_000:
                gc.freeze()
        self.pulse_state.refreshed = self.clock()
        if not self.model.messages:
            self.list.empty_text = f"the {self.view.value} view is empty"
        self._pulse()
        self._locks_all()
        if not self._watch_started:
            self._watch_started = True
            self._start_watcher()
        if self._sync_pending:
            self.request_sync("pending")

    @_while_running
    def on_counts_ready(self, msg: M.CountsReady) -> None:
        c = msg.counts
        s = self.pulse_state
        s.unseen, s.seen_stuck, s.deleted = c.unseen, c.seen_stuck, c.deleted
        s.keyword_note = NO_KEYWORDS_SHORT if getattr(c, "keyword_note", None) else ""
        s.oldest_unseen_age = ((self.clock() - c.oldest_unseen).total_seconds()
                               if c.oldest_unseen is not None else None)
        self._pulse()

    # -- Redis locks (optional) --------------------------------------------------------------------

    def _locks_all(self) -> None:
        if self.lock_service is not None and self.model.messages:
            self._locks_worker(self._gen, list(self.model.messages.values()))

    @work(thread=True, exit_on_error=False, group="locks", exclusive=True, description="_locks_worker")
    def _locks_worker(self, gen: int, messages: builtins.list[Message]) -> None:
        error = None
        try:
            self.lock_service.annotate(messages)
        except Exception as e:  # noqa: BLE001 - LockUnavailable and friends: IMAP keeps working
            error = str(e) or type(e).__name__
        self.post_message(M.LocksDone(gen, error))

    @_while_running
    def on_locks_done(self, msg: M.LocksDone) -> None:
        s = self.pulse_state
        was = s.locks_error
        s.locks_error = msg.error
        s.locks_held = None if msg.error else sum(1 for m in self.model.messages.values() if m.lock is not None)
        if msg.error and msg.error != was:
            # Once per outage (the pulse bar keeps showing it): said again on every refresh, it
            # overwrote the result of the operator's last action (tests/faults/test_redis.py).
            text = msg.error if msg.error.startswith("Redis unavailable") else f"Redis unavailable: {msg.error}"
            self.status(f"{text} (IMAP keeps working; lock column shows ·)", "warn")
        self.list.set_locks(True)
        self.list.refresh()
        self._pulse()

    # -- live refresh ----------------------------------------------------------------------------

    def _start_watcher(self) -> None:
        factory = self._watcher_factory
        if factory is None:
            self.pulse_state.live = "off"
            return
        if factory == "auto":
            settings = getattr(self.service, "settings", None)
            if settings is None:
                self.pulse_state.live = "off"
                return
            from triage_tui.services.watch import MailboxWatcher

            def make(on_change: Callable[[str], None], on_state: Callable[[str, str], None]) -> Any:
                return MailboxWatcher(settings, getattr(self.service, "limits", None),
                                      on_change=on_change, on_state=on_state)

            factory = make
        assert callable(factory)
        def changed(reason: str) -> None:
            self.post_message(M.WatchChanged(reason))

        def state(mode: str, detail: str) -> None:
            self.post_message(M.WatchState(mode, detail))

        self._watcher = factory(changed, state)
        self._watch_worker(self._watcher)

    @work(thread=True, exit_on_error=False, group="watch", description="_watch_worker")
    def _watch_worker(self, watcher: Any) -> None:
        watcher.run()

    @_while_running
    def on_watch_changed(self, msg: M.WatchChanged) -> None:
        self.request_sync(msg.reason)

    @_while_running
    def on_watch_state(self, msg: M.WatchState) -> None:
        mode = msg.mode
        if mode == "poll":
            mode = f"poll {msg.detail}"
        elif mode == "reconnecting":
            self.status(f"live refresh: reconnecting ({msg.detail})", "warn")
        self.pulse_state.live = mode
        self._pulse()

    def request_sync(self, reason: str, *, force: bool = False) -> None:
        """Re-sync the view with the server. One at a time: a request during a sync (or while
        paused, or during a listing) is remembered and served when that finishes."""
        if self._loading or self._sync_running or (self._paused and not force) or self._uidvalidity is None:
            self._sync_pending = True
            return
        self._sync_pending = False
        self._sync_running = True
        self._sync_worker(self._gen, self.view, set(self.model.messages), self._uidvalidity)

    @work(thread=True, exit_on_error=False, group="sync", description="_sync_worker")
    def _sync_worker(self, gen: int, view: View, known: set[int], uidvalidity: int) -> None:
        svc = self.service
        with self._io_lock:
            if self._needs_reconnect:
                svc.reconnect()
                self._needs_reconnect = False
            uv, found = svc.search(view)
            if uv != uidvalidity:
                self.post_message(M.SyncDone(gen, uv, set(), [], svc.counts(), uidvalidity_changed=True))
                return
            present = set(found)
            gone = known - present
            new_uids = [u for u in found if u not in known]
            new: list[Message] = []
            if new_uids:
                for batch in svc.iter_messages(uv, new_uids, headers=True, now=self.clock()):
                    new.extend(batch)
            counts = svc.counts()
        if self.lock_service is not None and new:
            with contextlib.suppress(Exception):
                self.lock_service.annotate(new)
        self.post_message(M.SyncDone(gen, uv, gone, new, counts))

    @_while_running
    def on_sync_done(self, msg: M.SyncDone) -> None:
        self._sync_running = False
        if msg.gen == self._gen:
            self.on_counts_ready(M.CountsReady(msg.counts))
            if msg.uidvalidity_changed:
                self.status(f"UIDVALIDITY changed to {msg.uidvalidity}: the mailbox was reset, so every UID "
                            "names another message now; marks cleared, list reloaded", "error")
                self._load()
                return
            keep = self.list.current
            picked = msg.gone - self._own_changed
            self._own_changed -= msg.gone
            self.model.remove(msg.gone)
            self.model.add(msg.new)
            self.model.rebuild()
            s = self.pulse_state
            s.vanished, s.arrived = len(picked), len(msg.new)
            s.refreshed = self.clock()
            if not self.model.messages:
                self.list.empty_text = f"the {self.view.value} view is empty"
            self._refresh_list(keep)
            if msg.gone or msg.new:
                self._locks_all()
        if self._sync_pending and not self._paused:
            self.set_timer(SYNC_SETTLE, lambda: self.request_sync("pending"))

    # -- errors: the one handler ------------------------------------------------------------------

    @_while_running
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
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
            self._needs_reconnect = True
        group = worker.group
        if group == "list":
            self._loading = False
            self.pulse_state.loading = None
            self.list.empty_text = f"✗ {inert(text)}   (R to retry)"
            self.list.refresh()
        elif group == "sync":
            self._sync_running = False
        elif group == "action":
            self._busy = False
            self.pulse_state.progress = ""
            if self._uidvalidity is not None:
                self.request_sync("after-error", force=True)
        elif group == "peek" and self._preview is not None:
            self._preview.show_error(text)
        elif group in ("reingest-plan", "reingest"):
            if group == "reingest":
                self._busy = False
                self.pulse_state.progress = ""
                if self._uidvalidity is not None:
                    self.request_sync("after-error", force=True)
                    self._locks_all()
            if self._reingest_screen is not None:
                self._reingest_screen.show_error(text)
        elif group == "reingest-watch":
            w = self.reingest_watch
            if w is not None and not w.finished:
                # a Redis or IMAP hiccup must not end the watch: say so, look again a bit later
                w.error = text
                self._reingest_show(w)
                self._watch_timer = self.set_timer(WATCH_RETRY, self._reingest_look)
            self.status(f"re-ingest watch: {text} (looking again in {WATCH_RETRY:.0f} s)", "warn")
            self._pulse()
            return
        self.status(text, "error")
        self._pulse()

    # -- keys: read-only and "not here" explanations --------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "demo_consumer":
            return self.demo_consumer is not None  # hidden outside the demo
        if action == "reingest":
            # also in read-only mode: the screen is then a plan whose writing choices are dimmed
            if self.reingest_watch is not None and not self.reingest_watch.finished:
                return True  # I shows the running watch again
            ok = self.lock_service is not None and self.view in (View.UNSEEN, View.SEEN_STUCK)
            return True if ok else None
        if action in MUTATING:
            if self.read_only:
                return None
            views = ACTION_VIEW.get(action)
            if views is not None and self.view not in views:
                return None
        return True

    def _disabled_reason(self, action: str) -> str:
        names = {"mark_seen": "mark seen", "mark_unseen": "mark unseen", "expunge": "expunge",
                 "expunge_all": "expunge", "undo": "undo"}
        name = names.get(action, action)
        if self.read_only:
            return (f"read-only mode: {name} is disabled, nothing on the server can change "
                    "(restart without --read-only to act)")
        if action == "reingest":
            if self.lock_service is None:
                return "re-ingest needs mail_room's Redis: start with --redis-url (or --redis-sentinel)"
            return "re-ingest applies to the unseen (1) and seen-stuck (2) views"
        views = ACTION_VIEW.get(action)
        if views is not None:
            if len(views) == 1:
                return f"{name} applies to the {views[0].value} view: press {VIEW_KEYS[views[0]]} to switch"
            where = " or ".join(f"{v.value} ({VIEW_KEYS[v]})" for v in views)
            return f"{name} applies to the {where} views: press one of those keys to switch"
        return f"{name} is not available here"

    def on_key(self, event: events.Key) -> None:
        """A key whose action is dimmed says why instead of doing nothing."""
        active = self.screen.active_bindings.get(event.key)
        if active is not None and not active.enabled and active.binding.action in MUTATING:
            self.status(self._disabled_reason(active.binding.action), "warn")

    async def palette_run(self, action: str) -> None:
        """Run an action from the command palette, explaining instead when it is dimmed."""
        name = action.split("(", 1)[0]
        if self.check_action(name, ()) is not True:
            self.status(self._disabled_reason(name), "warn")
            return
        await self.run_action(action)

    # -- marks -----------------------------------------------------------------------------------

    def _after_marks(self, rows: builtins.list[int] | None = None) -> None:
        self.model.refresh_group_marks()
        lst = self.list
        if rows is None:
            lst.refresh()
        else:
            for r in rows:
                lst.refresh_row(r)
        self._pulse()

    def action_toggle_mark(self) -> None:
        lst = self.list
        row = lst.current
        if row is None:
            return
        index = lst.cursor
        if isinstance(row, Group):
            uids = row.uids
            on = not all(u in self.model.marks for u in uids)
            self.model.mark_many(uids, on)
            self._after_marks(None)
        else:
            self.model.toggle_mark(row)
            self._after_marks([index])
        lst.action_cursor_down()

    def action_mark_range(self) -> None:
        lst = self.list
        if self._range_anchor is None:
            self._range_anchor = lst.cursor
            self.status("range mark: move to the other end and press v again (esc cancels)")
            return
        a, b = sorted((self._range_anchor, lst.cursor))
        self._range_anchor = None
        uids: list[int] = []
        for row in self.model.rows[a: b + 1]:
            uids.extend(self.model.row_uids(row))
        self.model.mark_many(uids)
        self._after_marks()
        self.status(f"marked {len(uids):,} rows in the range")

    def action_invert_marks(self) -> None:
        self.model.invert_marks()
        self._after_marks()

    def action_clear_marks(self) -> None:
        n = len(self.model.marks)
        self.model.clear_marks()
        self._after_marks()
        self.status(f"cleared {n:,} marks" if n else "no marks to clear")

    def action_mark_all(self) -> None:
        n = len(self.model.filtered)
        self.model.mark_all_matching()
        self._after_marks()
        what = f"matching filter {self.model.filter_text!r}" if self.model.filter_text else "in the view"
        self.status(f"marked all {n:,} messages {what} (not just the visible rows)")

    def action_mark_stale(self) -> None:
        before = len(self.model.marks)
        n = self.model.mark_where(lambda m: m.stale)
        self._after_marks()
        self.status(marked_text("stale messages", n, before, len(self.model.marks))
                    + (" (within the filter)" if self.model.filter else ""))

    def action_mark_bots(self) -> None:
        before = len(self.model.marks)
        n = self.model.mark_where(lambda m: m.bot)
        self._after_marks()
        self.status(marked_text("bot messages", n, before, len(self.model.marks))
                    + (" (within the filter)" if self.model.filter else ""))

    def command_mark_older(self, age_text: str, then_mark_seen: bool) -> None:
        """Palette: "mark seen older than 2d" / "older than 36h"."""
        from triage_tui.domain.age import parse_age

        try:
            limit = parse_age(age_text).total_seconds()
        except TriageError as e:
            self.status(str(e), "error")
            return
        now = self.clock()
        before = len(self.model.marks)
        n = self.model.mark_where(lambda m: (a := m.age_seconds(now)) is not None and a > limit)
        self._after_marks()
        self.status(marked_text(f"messages older than {age_text}", n, before, len(self.model.marks)))
        if then_mark_seen and n:
            self.call_later(self.palette_run, "mark_seen")

    # -- view, sort, group ----------------------------------------------------------------------

    def action_view(self, name: str) -> None:
        view = View(name)
        if view == self.view and not self._loading:
            self.status(f"already in the {view.value} view (R re-lists it)")
            return
        marks = len(self.model.marks)
        self.view = view
        self._range_anchor = None
        self._load()
        self.refresh_bindings()
        if marks:
            self.status(f"{marks:,} marks cleared: they belonged to the previous view", "warn")

    def action_sort(self, key: str) -> None:
        keep = self.list.current
        t0 = time.perf_counter()
        rev = (not self.model.reverse) if key == self.model.sort_key else False
        self.model.set_sort(key, rev)
        self.stats["sort_s"] = time.perf_counter() - t0
        self._refresh_list(keep)

    def action_sort_next(self) -> None:
        i = SORT_ORDER.index(self.model.sort_key) if self.model.sort_key in SORT_ORDER else -1
        key = SORT_ORDER[(i + 1) % len(SORT_ORDER)]
        keep = self.list.current
        t0 = time.perf_counter()
        self.model.set_sort(key, False)
        self.stats["sort_s"] = time.perf_counter() - t0
        self._refresh_list(keep)
        self.status(f"sorted by {SORTS[key][0]} (s: next column, r: reverse)")

    def action_sort_reverse(self) -> None:
        keep = self.list.current
        t0 = time.perf_counter()
        self.model.set_sort(self.model.sort_key, not self.model.reverse)
        self.stats["sort_s"] = time.perf_counter() - t0
        self._refresh_list(keep)

    def action_group(self, key: str) -> None:
        self.model.set_group(key or None)
        self.list.cursor = 0
        self._refresh_list()
        if key:
            self.status(f"grouped by {GROUPS[key]}: enter folds/unfolds a group, space marks all of it, Z all groups")

    def action_group_next(self) -> None:
        i = GROUP_ORDER.index(self.model.group_by)
        self.action_group(GROUP_ORDER[(i + 1) % len(GROUP_ORDER)] or "")

    def action_toggle_all_groups(self) -> None:
        if not self.model.groups:
            return
        keep = self.list.current
        self.model.expand_all(not self.model.expanded)
        self._refresh_list(keep)

    def action_pause(self) -> None:
        self._paused = not self._paused
        if self._watcher is not None:
            self._watcher.pause(self._paused)
        if self._paused:
            self.status("live refresh paused: the list stays as it is (p resumes, R re-lists)", "warn")
        else:
            self.status("live refresh resumed")
            if self._sync_pending:
                self.request_sync("resume")
        self._pulse()

    def action_reload(self) -> None:
        self._load(keep_marks=True)
        self.status(f"re-listing the {self.view.value} view (marks kept for messages still there)")

    # -- filter ----------------------------------------------------------------------------------

    def action_filter(self) -> None:
        bar = self.query_one("#filterbar", FilterBar)
        bar.add_class("-open")
        box = self.query_one("#filter-input", FilterInput)
        box.value = self.model.filter_text
        box.cursor_position = len(box.value)
        box.focus()

    def _close_filter_bar(self) -> None:
        self.query_one("#filterbar", FilterBar).remove_class("-open")
        self.list.focus()

    #: Keys that make the filter box close (or may): the keys typed after one of them wait until
    #: the box has closed (or stayed open), then go where the operator expects, in order.
    FILTER_CLOSING_KEYS: ClassVar = frozenset({"enter", "escape"})

    def hold_keys_after(self, target: Any, event: events.Key | events.Paste) -> bool:
        return isinstance(event, events.Key) and event.key in self.FILTER_CLOSING_KEYS \
            and isinstance(target, FilterInput)

    @on(FilterInput.Closed)
    def _filter_closed(self) -> None:
        self._close_filter_bar()
        self.release_keys()

    @on(FilterInput.Submitted, "#filter-input")
    def _filter_submitted(self, event: FilterInput.Submitted) -> None:
        try:
            if not event.value.strip() and self.model.filter is None:
                # enter on an empty box changes nothing: it does not close the box either, so a
                # key typed right after it is not run on the whole list (esc closes)
                self.status("empty filter: type one (F1: syntax), or esc to close", "warn")
            elif self.apply_filter_text(event.value):
                self._close_filter_bar()
        finally:
            self.release_keys()

    def apply_filter_text(self, text: str) -> bool:
        """Parse and apply a filter; on a syntax error say where, and keep the input open."""
        text = text.strip()
        try:
            flt = self._parse_filter(text) if text else None
        except TriageError as e:
            self.status(str(e), "error")
            pos = getattr(e, "position", None)
            with contextlib.suppress(Exception):
                box = self.query_one("#filter-input", FilterInput)
                if pos is not None:
                    box.cursor_position = max(0, int(pos) - 1)
            return False
        keep = self.list.current
        t0 = time.perf_counter()
        self.model.set_filter(flt, text)
        self.stats["filter_s"] = time.perf_counter() - t0
        self.list.cursor = 0 if keep is None else self.list.cursor
        self._refresh_list(keep)
        if text:
            self.status(f"filter: {len(self.model.filtered):,} of {len(self.model):,} match (esc clears)")
        else:
            self.status("filter cleared")
        return True

    @staticmethod
    def _parse_filter(text: str) -> Any:
        try:
            from triage_tui.domain.filter import parse_filter
        except ImportError:  # pragma: no cover - until the filter language lands
            needle = text.lower()

            class _Substring:
                def matches(self, m: Message, now: datetime) -> bool:
                    return needle in m.subject.lower() or needle in m.sender.lower()

            return _Substring()
        return parse_filter(text)

    def action_clear_filter(self) -> None:
        self.apply_filter_text("")

    def action_back(self) -> None:  # type: ignore[override]  # Textual runs sync and async actions alike
        """esc backs out one level: filter box, then the filter, then the range anchor, then
        the message line."""
        bar = self.query_one("#filterbar", FilterBar)
        if bar.has_class("-open"):
            self._close_filter_bar()
        elif self.model.filter is not None:
            self.apply_filter_text("")
        elif self._range_anchor is not None:
            self._range_anchor = None
            self.status("range mark cancelled")
        else:
            self.status_line.clear()

    # -- preview ---------------------------------------------------------------------------------

    def action_open(self) -> None:
        row = self.list.current
        if row is None:
            return
        if isinstance(row, Group):
            self.model.toggle_group(row.key)
            self._refresh_list(row)
            return
        self.open_preview(row)

    @on(MessageList.RowActivated)
    def _row_activated(self) -> None:
        self.action_open()

    def open_preview(self, uid: int) -> None:
        screen = PreviewScreen(uid, self.model.messages.get(uid))
        self._preview = screen

        def closed(_: None) -> None:
            self._preview = None

        self.push_screen(screen, closed)
        self._peek_worker(uid)

    @work(thread=True, exit_on_error=False, group="peek", exclusive=True, description="_peek_worker")
    def _peek_worker(self, uid: int) -> None:
        svc = self.service
        with self._io_lock:
            peek = svc.peek(uid)
        now = self.clock()
        msg = self.model.messages.get(uid)
        flags = " ".join(f for f in peek.flags if f != "\\Recent") or "(none)"  # \\Recent is per session
        lines: list[str] = [
            f"UID {peek.uid} · UIDVALIDITY {peek.uidvalidity} · flags {flags} · "
            f"{peek.size:,} bytes",
            f"INTERNALDATE {peek.internaldate.isoformat() if peek.internaldate else '?'} · in the mailbox for "
            f"{human_age((now - peek.internaldate).total_seconds(), False) if peek.internaldate else '?'}",
        ]
        try:
            from triage_tui.domain.hops import analyze_header

            analysis = analyze_header(peek.header, peek.internaldate, now, svc.analysis, size=peek.size)
            lines += analysis.render_text()
        except ImportError:  # pragma: no cover - until the header analysis lands
            lines.append("(header analysis not available in this build)")
        if msg is not None and (msg.lock is not None or msg.lock_ttl is not None):
            lines.append(f"mail_room lock: value {msg.lock!r}, TTL {msg.lock_ttl}s")
        header = peek.header.decode("utf-8", "replace") if isinstance(peek.header, bytes) else str(peek.header)
        message_id = None
        for line in header.splitlines():
            if line.lower().startswith("message-id:"):
                message_id = line.split(":", 1)[1].strip()
                break
        self.post_message(M.PeekReady(uid, lines, header, message_id))

    @_while_running
    def on_peek_ready(self, msg: M.PeekReady) -> None:
        if self._preview is not None and self._preview.uid == msg.uid:
            self._preview.show_result(msg.lines, msg.header, msg.message_id)

    def open_in_pager(self, text: str) -> None:
        pager = os.environ.get("PAGER") or "less"
        safe = inert(text, multiline=True).removesuffix("\n") + "\n"  # lines end at LF only
        try:
            with self.suspend():
                subprocess.run(shlex.split(pager), input=safe.encode("utf-8"), check=False)
        except SuspendNotSupported:
            self.notify("cannot open $PAGER here (no terminal to hand over)", severity="warning", markup=False)
        except OSError as e:
            self.notify(f"cannot run $PAGER ({pager}): {e}", severity="error", markup=False)

    # -- actions on marks -------------------------------------------------------------------------

    def _targets(self) -> tuple[builtins.list[int], str]:
        m = self.model
        if m.marks:
            hidden = m.hidden_marks
            note = f"{len(m.marks):,} marked" + (f", {hidden:,} of them hidden by the filter" if hidden else "")
            return sorted(m.marks), note
        row = self.list.current
        if row is None:
            return [], ""
        if isinstance(row, Group):
            return list(row.uids), f"the {len(row.uids):,} messages of group {inert(row.label)}"
        return [row], "the cursor row (nothing is marked)"

    def _begin(self) -> bool:
        if self._busy:
            self.status("an action is still running: wait for it to finish", "warn")
            return False
        if self._uidvalidity is None:
            self.status("the list is not loaded yet", "warn")
            return False
        return True

    def action_mark_seen(self) -> None:
        self._plan_action("mark-seen")

    def action_mark_unseen(self) -> None:
        self._plan_action("mark-unseen")

    def action_expunge(self) -> None:
        self._plan_action("expunge")

    # -- re-ingest: plan, release, watch (the screen is in screens/reingest.py) -------------------------

    def action_reingest(self) -> None:
        """Open the re-ingest screen for the marks (or the cursor row); while a watch runs, show it."""
        w = self.reingest_watch
        if w is not None and not w.finished:
            self._push_reingest(ReingestScreen(None, watch=w))
            return
        if not self._begin():
            return
        uids, note = self._targets()
        if not uids:
            self.status("nothing selected: mark rows with space (or a for all matching), or put the cursor on one")
            return
        shown = 5 if self.size.height >= 30 else 3
        msgs = self.model.messages
        request = ReingestRequest(uids=uids, note=note, view=self.view.value, read_only=self.read_only,
                                  sample=self._sample(uids, shown), demo_note=self._demo_reingest_note(),
                                  poll_cycle=self.reingest_poll_cycle,
                                  messages=[msgs[u] for u in uids if u in msgs], now=self.clock(),
                                  stale_after_s=self.service.analysis.stale_after.total_seconds())
        self.status("re-ingest: planning (a dry run: nothing changes until you type the count)")
        self._push_reingest(ReingestScreen(request))

    def _push_reingest(self, screen: ReingestScreen) -> None:
        self._reingest_screen = screen

        def closed(_: None) -> None:
            self._reingest_screen = None
            w = self.reingest_watch
            if w is not None and not w.finished:
                self.status("re-ingest: the watch goes on in the pulse bar (I shows it again)")
            elif screen.watching is None and not screen.executing:
                self.status("re-ingest cancelled: nothing was changed")

        self.push_screen(screen, closed)

    def _demo_reingest_note(self) -> str | None:
        c = self.demo_consumer
        if c is None:
            return None
        if c.running:
            return f"demo: {c.status}: it picks the messages up as soon as their keys are free."
        return ("demo: mail_room (the stand-in) is down, as in the story. It starts by itself once you confirm, "
                "like the runbook's last step (M starts or stops it any time).")

    def reingest_plan(self, token: int, request: ReingestRequest, mode: str, ttl: int, waves: int,
                      interval: float) -> None:
        """Called by the screen: a dry run in a worker; the answer goes back to the screen."""
        if self._uidvalidity is None or self.lock_service is None:
            if self._reingest_screen is not None:
                self._reingest_screen.show_error("the list is not loaded yet" if self.lock_service else
                                                 "re-ingest needs mail_room's Redis: start with --redis-url")
            return
        view = View(request.view)
        self._reingest_plan_worker(token, self._uidvalidity, list(request.uids), view, mode, ttl, waves, interval)

    @work(thread=True, exit_on_error=False, group="reingest-plan", description="_reingest_plan_worker")
    def _reingest_plan_worker(self, token: int, uidvalidity: int, uids: builtins.list[int], view: View, mode: str,
                              ttl: int, waves: int, interval: float) -> None:
        svc = self.service
        try:
            with self._io_lock:
                mark = svc.plan_flags("mark-unseen", uidvalidity, uids) if view == View.SEEN_STUCK else None
                plan = self.lock_service.plan_release(svc, uidvalidity, uids, ttl=ttl, natural=mode == "natural",
                                                      waves=waves, wave_interval=interval, mark_unseen=mark)
            acted = {t.uid for t in plan.targets} | set(mark.uids if mark is not None else [])
            now, known = self.clock(), self.model.messages
            ages = {u: m.age_seconds(now) for u in acted if (m := known.get(u)) is not None}
            warning = reingest_warning(acted, ages, svc.analysis.stale_after, unsee=mark is not None)
            if warning:
                plan.warnings.append(warning)
        except TriageError as e:  # Redis unavailable, UIDVALIDITY changed: for this request's screen
            self.post_message(M.ReingestPlanned(token, None, str(e)))
            return
        self.post_message(M.ReingestPlanned(token, plan))

    @_while_running
    def on_reingest_planned(self, msg: M.ReingestPlanned) -> None:
        screen = self._reingest_screen
        if screen is None or msg.token != screen.token:
            return  # an answer to a superseded choice
        if msg.error is not None:
            screen.show_error(msg.error)
        else:
            screen.show_plan(msg.token, msg.plan)

    def reingest_execute(self, plan: Any) -> None:
        """Called by the screen after the typed confirmation (or, for a plain wait, at once)."""
        if self._busy:
            if self._reingest_screen is not None:
                self._reingest_screen.show_error("an action is still running: wait for it to finish")
            return
        writes = plan.count > 0 or plan.mark_unseen_count > 0
        if writes:
            self._busy = True
            self.status(f"re-ingest: releasing {plan.count:,} key(s)…" if plan.count else
                        f"re-ingest: marking {plan.mark_unseen_count:,} message(s) unseen…")
        self._reingest_release_worker(plan, writes)

    @work(thread=True, exit_on_error=False, group="reingest", description="_reingest_release_worker")
    def _reingest_release_worker(self, plan: Any, writes: bool) -> None:
        ls = self.lock_service
        result = None
        if writes:
            def progress(done: int, total: int) -> None:
                now = time.monotonic()
                if done >= total or now - self._last_progress >= PROGRESS_EVERY:
                    self._last_progress = now
                    self.post_message(M.ActionProgress("release", done, total))

            # release() searches on the shared read connection before and after the writes
            with self._io_lock:
                result = ls.release(plan, self.service, progress=progress)
        watcher = ls.watcher(self.service, plan, result, poll_cycle=self.reingest_poll_cycle)
        self.post_message(M.ReingestReleased(plan, result, watcher))

    @_while_running
    def on_reingest_released(self, msg: M.ReingestReleased) -> None:
        self._busy = False
        self.pulse_state.progress = ""
        plan, r = msg.plan, msg.result
        if self._watch_timer is not None:
            self._watch_timer.stop()
            self._watch_timer = None
        self._watch_ids += 1
        w = ReingestWatch(id=self._watch_ids, plan=plan, result=r, watcher=msg.watcher, started_at=self.clock(),
                          poll_cycle=self.reingest_poll_cycle)
        self.reingest_watch = w
        if r is None:
            text, kind = "re-ingest: nothing written in Redis; watching the keys expire", "ok"
        else:
            text = f"re-ingest: {len(r.changed):,} key(s) changed · op {r.op_id}" if r.op_id else "re-ingest:"
            if r.mark_unseen is not None:
                text += f" · {len(r.mark_unseen.changed):,} marked unseen"
            if r.not_unseen:
                text += f" · {len(r.not_unseen):,} no longer UNSEEN, left alone"
            if r.in_doubt:
                text += f" · {len(r.in_doubt):,} in doubt (reply lost)"
            if r.error:
                text += f" · ERROR: {r.error}"
            kind = "ok" if r.ok else "error"
        self.status(text, kind)
        if self.demo_consumer is not None and not self.demo_consumer.running:
            self._demo_consumer_worker(True, "started by itself after the re-ingest (the runbook's last step)")
        if self._reingest_screen is not None:
            self._reingest_screen.show_watch(w)
        self._pulse_watch()
        self._reingest_look()
        if r is not None:
            self.request_sync("after-release", force=True)
            self._locks_all()

    def _reingest_look(self) -> None:
        """One look of the watch, in a worker; the next is armed when this one has answered."""
        self._watch_timer = None
        w = self.reingest_watch
        if w is None or w.finished:
            return
        self._reingest_watch_worker(w.id, w.watcher)

    @work(thread=True, exit_on_error=False, group="reingest-watch", description="_reingest_watch_worker")
    def _reingest_watch_worker(self, watch_id: int, watcher: Any) -> None:
        with self._io_lock:
            status = watcher.poll()
        self.post_message(M.ReingestStatus(watch_id, status))

    @_while_running
    def on_reingest_status(self, msg: M.ReingestStatus) -> None:
        w = self.reingest_watch
        if w is None or msg.watch_id != w.id or w.stopped:
            return
        w.status, w.error, w.polled_at = msg.status, None, time.monotonic()
        self._reingest_show(w)
        if w.finished:
            w.finished_at = time.monotonic()
            st = w.status
            if st is not None and not st.failed:
                self.status(f"re-ingest done: all {st.targeted:,} targeted message(s) picked up "
                            f"({st.delivered:,} delivered)", "ok")
                self.request_sync("reingest-done", force=True)
            elif st is not None:
                self.status(f"re-ingest: {st.diagnosis}", "error")
            self.set_timer(WATCH_LINGER, self._pulse_watch)
            return
        if msg.status.failed and msg.status.diagnosis:
            self.status(f"re-ingest: {msg.status.diagnosis}", "error")
        self._watch_timer = self.set_timer(self.reingest_interval, self._reingest_look)

    def _reingest_show(self, w: ReingestWatch) -> None:
        self._pulse_watch()
        if self._reingest_screen is not None and self._reingest_screen.watching is w:
            self._reingest_screen.show_watch(w)

    def _pulse_watch(self) -> None:
        w = self.reingest_watch
        s = self.pulse_state
        if w is None or (w.finished_at is not None and time.monotonic() - w.finished_at >= WATCH_LINGER - 0.5):
            s.reingest = ""
        else:
            s.reingest, s.reingest_style = watch_summary(w)
        self._pulse()

    def reingest_stop_watch(self) -> None:
        w = self.reingest_watch
        if w is None:
            return
        w.stopped = True
        w.finished_at = time.monotonic()
        if self._watch_timer is not None:
            self._watch_timer.stop()
            self._watch_timer = None
        self.status("re-ingest: watch stopped (nothing on the servers changed by stopping it)")
        self._pulse_watch()

    def action_incident_plan(self) -> None:
        self.incident.open()

    @_while_running
    def on_incident_call(self, msg: IncidentCall) -> None:
        msg.fn()

    # -- the demo's mail_room ------------------------------------------------------------------------

    def action_demo_consumer(self) -> None:
        c = self.demo_consumer
        if c is None:
            self.status("there is no mail_room to start here: this is not the demo", "warn")
            return
        start = not c.running
        self.status("demo: starting mail_room…" if start else "demo: stopping mail_room…")
        self._demo_consumer_worker(start, "started" if start else "stopped")

    @work(thread=True, exit_on_error=False, group="demo", description="_demo_consumer_worker")
    def _demo_consumer_worker(self, start: bool, why: str) -> None:
        c = self.demo_consumer
        if start:
            c.start()
        else:
            c.stop()
        self.post_message(M.DemoConsumerChanged(c.running, why))

    @_while_running
    def on_demo_consumer_changed(self, msg: M.DemoConsumerChanged) -> None:
        self._demo_tick()
        if msg.running:
            interval = getattr(self.demo_consumer, "poll_interval", None)
            every = f" every {interval:g} s" if interval else ""
            self.status(f"demo: mail_room {msg.note}: it polls{every}, claims each UNSEEN message's key in Redis, "
                        "fetches it and flags it \\Deleted (M stops it)", "ok")
        else:
            self.status(f"demo: mail_room {msg.note} (M starts it again)", "warn")
        if self._reingest_screen is not None and self._reingest_screen.watching is not None:
            self._reingest_screen.show_watch(self._reingest_screen.watching)

    def _demo_tick(self) -> None:
        """The demo's mail_room status line (in-memory counters: cheap enough for a 1 s timer)."""
        c = self.demo_consumer
        if c is None:
            return
        s = self.pulse_state
        try:
            running = bool(c.running)
            s.consumer, s.consumer_running = str(c.status) + ("" if running else " · M starts it"), running
        except Exception as e:  # noqa: BLE001 - a status line must never break the UI
            s.consumer, s.consumer_running = f"mail_room: ? ({type(e).__name__})", False
        self._pulse()

    def action_expunge_all(self) -> None:
        if not self._begin():
            return
        self._busy = True
        self._plan_worker("expunge-all", self._uidvalidity, [], "every \\Deleted message in the mailbox")

    def action_undo(self) -> None:
        if not self._begin():
            return
        self._busy = True
        self._plan_worker("undo", self._uidvalidity, [], "")

    def _plan_action(self, kind: str) -> None:
        if not self._begin():
            return
        uids, note = self._targets()
        if not uids:
            self.status("nothing selected: mark rows with space (or a for all matching), or put the cursor on one")
            return
        self._busy = True
        self.status(f"planning {kind} for {note}…")
        self._plan_worker(kind, self._uidvalidity, uids, note)

    @work(thread=True, exit_on_error=False, group="action", description="_plan_worker")
    def _plan_worker(self, kind: str, uidvalidity: int | None, uids: builtins.list[int], note: str) -> None:
        svc = self.service
        info: dict[str, Any] = {"note": note, "requested": len(uids)}
        with self._io_lock:
            if kind in ("mark-seen", "mark-unseen"):
                plan = svc.plan_flags(kind, uidvalidity, uids)
            elif kind == "expunge":
                plan = svc.plan_expunge(uidvalidity, uids)
            elif kind == "expunge-all":
                plan = svc.plan_expunge(uidvalidity, None, all_deleted=True)
            elif kind == "undo":
                plan, record = svc.plan_undo()
                info["record"] = record
            else:  # pragma: no cover
                raise ValueError(kind)
        self.post_message(M.PlanReady(kind, plan, info))

    def _sample(self, uids: builtins.list[int], n: int = 5) -> builtins.list[str]:
        now = self.clock()
        out = []
        for u in uids[:n]:
            m = self.model.messages.get(u)
            if m is None:
                out.append(f"UID {u}")
                continue
            out.append(f"UID {u:>7}  {human_age(m.age_seconds(now), True):>4}  "
                       f"{(m.from_addr or m.from_name)[:28]:<28}  {m.subject[:60]}")
        return out

    @_while_running
    def on_plan_ready(self, msg: M.PlanReady) -> None:
        plan, info, kind = msg.plan, msg.info, msg.kind
        n = plan.count
        if n == 0:
            self._busy = False
            why = {"mark-seen": "they are already seen or gone",
                   "mark-unseen": "they are not seen-stuck (already unseen, \\Deleted or gone)",
                   "expunge": "only \\Deleted messages can be expunged (deleted view)",
                   "expunge-all": "there is no \\Deleted message",
                   "undo": "every message of that change has moved on since"}[kind]
            if kind == "undo":
                why = "; ".join(left_alone_lines(plan.left_alone)) or why
            self.status(f"nothing to do: {why}; nothing was changed", "warn")
            self.request_sync("nothing-to-do", force=True)
            return
        lines: list[str] = []
        typed = None
        danger = False
        if kind == "mark-seen":
            title = f"Mark {n:,} message{'s' if n != 1 else ''} \\Seen?"
            lines.append("mail_room will skip them; they stay in the mailbox and can be un-seen later "
                         "(u undoes this change).")
            label = f"Mark {n:,} seen"
        elif kind == "mark-unseen":
            title = f"Remove \\Seen from {n:,} message{'s' if n != 1 else ''}?"
            lines.append(plan.warning or "")
            label = f"Mark {n:,} unseen"
        elif kind in ("expunge", "expunge-all"):
            title = f"Expunge {n:,} message{'s' if n != 1 else ''}?"
            lines.append("They are removed from the server for good. This cannot be undone.")
            if plan.all_deleted:
                lines.append(f"Plain EXPUNGE: removes every \\Deleted message in the mailbox, including "
                             f"{plan.others_deleted:,} outside your selection.")
            typed, danger, label = str(n), True, f"Expunge {n:,}"
        else:  # undo
            rec = info.get("record") or {}
            verb = "marked unseen" if plan.action == "mark-unseen" else "marked seen"
            title = f"Undo {rec.get('action', 'the last change')} of {rec.get('time', '?')}?"
            lines.append(f"{n:,} message{'s' if n != 1 else ''} will be {verb} again (journal op {plan.undoes}).")
            if plan.warning:
                lines.append(plan.warning)
            lines.extend(plan.notes)
            lines.extend(left_alone_lines(plan.left_alone, future=True))
            label = f"Undo ({n:,})"
        if info.get("note") and kind != "undo":
            lines.append(f"Selection: {info['note']}.")
        if plan.skipped and kind != "undo":
            lines.append(f"{plan.skipped:,} of the {plan.requested:,} selected need no change (already done or gone).")
        lines.append(f"UIDVALIDITY {plan.uidvalidity} · {plan.commands} IMAP command(s) · audit-journaled")
        shown = 5 if self.size.height >= 30 else 3
        request = ConfirmRequest(title=title, lines=lines, sample=self._sample(plan.uids, shown),
                                 more=max(0, n - shown),
                                 typed=typed, confirm_label=label, danger=danger)

        def done(ok: bool | None) -> None:
            if ok:
                self.status(f"{plan.action}: working on {n:,} message(s)…")
                self._execute_worker(plan)
            else:
                self._busy = False
                self.status("cancelled: nothing was changed")

        how = f"type {typed} and Enter" if typed is not None else "y confirms"
        self.status(f"{kind}: waiting for your confirmation ({how}, esc cancels)")
        self.push_screen(ConfirmScreen(request), done)

    @work(thread=True, exit_on_error=False, group="action", description="_execute_worker")
    def _execute_worker(self, plan: Any) -> None:
        action = "undo" if plan.undoes else plan.action

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if done >= total or now - self._last_progress >= PROGRESS_EVERY:
                self._last_progress = now
                self.post_message(M.ActionProgress(action, done, total))

        result = self.service.execute(plan, progress=progress)
        self.post_message(M.ActionDone(result))

    @_while_running
    def on_action_progress(self, msg: M.ActionProgress) -> None:
        self.pulse_state.progress = f"{msg.action} {msg.done:,}/{msg.total:,}"
        self._pulse()

    @_while_running
    def on_action_done(self, msg: M.ActionDone) -> None:
        r = msg.result
        self._busy = False
        self.pulse_state.progress = ""
        changed = set(r.changed)
        self._own_changed |= changed
        self.model.marks -= changed
        text = f"{r.action}: {len(r.changed):,} changed"
        if r.skipped_concurrent:
            text += f", {len(r.skipped_concurrent):,} skipped (changed concurrently by someone else)"
        if r.vanished_or_done:
            text += f", {r.vanished_or_done:,} no longer needed"
        text += f" · journal op {r.op_id}"
        if r.failed:
            failed = sum(len(u) for u, _ in r.failed)
            text += f" · {failed:,} FAILED: {r.failed[0][1]}"
        if r.action == "undo":
            text = " · ".join([f"undo: {len(r.changed):,} of {r.requested:,} restored · journal op {r.op_id}",
                               *left_alone_lines(r.left_alone)])
        self.status(text, "ok" if r.ok else "error")
        # The list shows what the server says now, not what we assume.
        self.request_sync("after-action", force=True)
        self._pulse()

    # -- help ------------------------------------------------------------------------------------

    def _key_for(self, binding: Binding) -> str:
        keys = self.keymap.get(binding.id or "", binding.key)
        shown = []
        for k in keys.split(","):
            k = k.strip()
            shown.append(self.get_key_display(Binding(k, binding.action)))
        return "/".join(shown)

    def help_sections(self) -> builtins.list[tuple[str, builtins.list[tuple[str, str, str]]]]:
        """(section, [(keys, what it does, binding id)]) from the live bindings and keymap."""
        bindings = list(MessageList.BINDINGS) + list(self.BINDINGS)
        out: list[tuple[str, list[tuple[str, str, str]]]] = []
        for prefix, title in HELP_SECTIONS:
            rows = []
            for b in bindings:
                if isinstance(b, Binding) and b.id and b.id.startswith(prefix):
                    if b.id.startswith("demo.") and self.demo_consumer is None:
                        continue
                    desc = HELP_TEXT.get(b.id, b.description)
                    action = b.action.split("(")[0]
                    if action in MUTATING and self.check_action(action, ()) is not True:
                        desc += f"  (disabled: {self._disabled_reason(action)})"
                    rows.append((self._key_for(b), desc, b.id))
            if prefix == "open":
                rows += [(self._key_for(b), HELP_TEXT.get(b.id or "", b.description), b.id or "")
                         for b in PreviewScreen.BINDINGS if isinstance(b, Binding) and b.show is not False
                         and b.id in ("preview.close", "preview.copy_uid", "preview.copy_msgid", "preview.pager")]
            if rows:
                out.append((title, rows))
        return out

    def action_help(self) -> None:
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
        if self.read_only:
            notes.insert(0, "READ-ONLY review mode: mark seen/unseen, expunge and undo are disabled and the "
                            "service refuses them too; re-ingest (I) shows the plan and can only watch keys "
                            "expire. Restart without --read-only to act.")
        preface: list[str] = []
        if self.demo:
            story = (self.demo_story or "").strip()
            # the story is hard-wrapped for a terminal of its own: re-flow its paragraphs here
            paragraphs = [" ".join(p.split()) for p in story.split("\n\n") if p.strip()]
            preface = ["DEMO: an embedded mailbox and Redis; nothing real is touched.", ""]
            for para in paragraphs:
                preface += [para, ""]
            preface.append("The incident in keys: P (the plan), A (apply), then y or the count each step asks for.")
            preface.append("The runbook in keys: / filter (e.g. bot), a mark all matching, S mark seen; 2 seen-stuck, "
                           "/ !bot, a, I (mark unseen + release); 1, a, I release the rest and watch mail_room "
                           "pick them up (M starts or stops it); 3, a, X expunge the \\Deleted leftovers.")
        self.push_screen(HelpScreen(self.help_sections(), notes, FILTER_HELP, preface))

    # -- exit ------------------------------------------------------------------------------------

    async def action_quit(self) -> None:
        self.exit(0)

    def exit(self, result: int | None = None, return_code: int = 0, message: Any = None) -> None:
        """Stop background threads as soon as exiting is decided: the event loop's shutdown
        waits for worker threads, and an IDLE loop only looks at its stop flag."""
        self._stop_background()
        super().exit(result, return_code, message)

    def _stop_background(self) -> None:
        self._gen += 1  # a running listing stops at its next batch
        cancel = getattr(self.service, "cancel", None)
        if cancel is not None:  # a running bulk change sends nothing more and journals "interrupted"
            with contextlib.suppress(Exception):
                cancel()
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                self._watcher.stop()

    def on_unmount(self) -> None:
        self.shutdown_services()

    def shutdown_services(self, timeout: float = 2.0) -> None:
        """Stop the watcher and log out of IMAP (and Redis) without hanging on a busy connection:
        a listing in progress holds the session lock, so the logout runs in a helper thread and,
        if it does not finish in time, the socket is shut under it."""
        if self._services_closed:
            return
        self._services_closed = True
        self._stop_background()
        if not self.close_on_exit:
            return

        def close() -> None:
            for svc in (self.lock_service, self.service):
                if svc is not None:
                    with contextlib.suppress(Exception):
                        svc.close()

        t = threading.Thread(target=close, name="triage-logout", daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            abort = getattr(self.service, "abort", None)
            if abort is not None:
                with contextlib.suppress(Exception):
                    abort()
            t.join(0.5)
