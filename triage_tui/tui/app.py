"""The triage UI: one screen with the pulse bar, the virtual message list and the bars below.

How it is put together (harlequin / dolphie / posting / k9s, see docs/style.md):

- This module composes: the widgets, the bindings, ``check_action`` / ``_disabled_reason``, the
  routing of messages and actions, and the lifecycle (mount, exit, logout). The behaviour is in
  plain controllers holding the app as a ``Host`` protocol (tui/controllers/host.py; none of
  them imports this module): ``controllers/listing.py`` (load, sync, the IDLE watcher, locks,
  pause/reload), ``controllers/view.py`` (marks, view/sort/group, the filter bar),
  ``controllers/actions.py`` (targets, mark seen/unseen, expunge, undo: plan, confirm,
  execute), ``controllers/reingest.py`` (plan, release, watch), ``controllers/demo.py`` (the
  demo's mail_room), ``controllers/preview.py`` (the header preview, $PAGER) and
  ``tui/status.py`` (status line, pulse bar, the worker-error handler, signals, help). Textual
  dispatches on the App class, so ``on_*`` and ``action_*`` stay here as one-line delegates;
  the session state the controllers share (``_uidvalidity``, ``_busy``, ``_loading`` ...) stays
  on the app.
- Services come in through the constructor (a :class:`~triage_tui.services.triage.TriageService`
  or anything shaped like it, and optionally the Redis lock service), so tests hand in a
  service on a test mailbox or an in-memory fake.
- Every blocking call runs in a thread worker (``controllers.run_thread``: what
  ``@work(thread=True, exit_on_error=False)`` did) that posts a message back (each with a
  fixed ``description``: by default Textual builds one from ``repr`` of the arguments, 1.4 s
  on the event loop for 100k messages);
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

import builtins
import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from textual import events, on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import CommandListItem, SimpleProvider
from textual.theme import ThemeProvider
from textual.widget import AwaitMount
from textual.widgets import Footer
from textual.worker import Worker

from triage_tui.domain.model import View
from triage_tui.domain.text import clipboard_refusal, inert
from triage_tui.tui import messages as M
from triage_tui.tui.controllers.actions import ActionsController
from triage_tui.tui.controllers.demo import DemoController
from triage_tui.tui.controllers.incident import IncidentCall, IncidentController
from triage_tui.tui.controllers.listing import ListingController
from triage_tui.tui.controllers.preview import PreviewController
from triage_tui.tui.controllers.reingest import ReingestController
from triage_tui.tui.controllers.view import ViewController
from triage_tui.tui.driver import hangup_safe
from triage_tui.tui.keyorder import KeyOrder
from triage_tui.tui.listmodel import Group, ListModel
from triage_tui.tui.palette import TriageCommands
from triage_tui.tui.screens.once import OncePalette
from triage_tui.tui.screens.reingest import ReingestRequest, ReingestScreen, ReingestWatch
from triage_tui.tui.status import MUTATING, StatusController
from triage_tui.tui.widgets.bars import FilterBar, FilterInput, StatusLine
from triage_tui.tui.widgets.message_list import MessageList
from triage_tui.tui.widgets.pulse import ColumnHeader, PulseBar, PulseState

log = logging.getLogger("triage_tui.tui")

#: Which views each flag action belongs to (elsewhere it would be a no-op, so it is dimmed):
#: un-seeing restores an ignore decision as well as a crash-trapped message.
ACTION_VIEW = {"mark_seen": (View.UNSEEN,), "mark_unseen": (View.SEEN_STUCK, View.IGNORED),
               "expunge": (View.DELETED,)}
VIEW_KEYS = {View.UNSEEN: "1", View.SEEN_STUCK: "2", View.DELETED: "3", View.IGNORED: "4"}

#: mail_room's longest gap between polls (its idle_timeout): no re-claim within two of them after
#: the keys are free means nothing is consuming (the lock service's default)
POLL_CYCLE = 60.0
WATCH_INTERVAL = 2.0  # seconds between the end of one re-ingest watch look and the next


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

    def panic(self, *renderables: Any) -> None:
        """Textual's ``panic`` (an error in its input thread) ends the app without a return code:
        the shell saw 0 after a crash. A crash is never a success."""
        if not self._return_code:
            self._return_code = 1
        super().panic(*renderables)

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
        self._sync_running = False
        self._sync_pending = False
        self._paused = False
        self._busy = False
        self._needs_reconnect = False
        self._own_changed: set[int] = set()
        self._range_anchor: tuple[str, int | str] | None = None
        self._watcher: Any = None
        self._services_closed = False
        self._ppid = os.getppid()
        self._last_progress = 0.0
        self.stats: dict[str, float] = {}  # timings for the benchmark and the debug log
        self.listing = ListingController(self, watcher_factory)
        self.viewer = ViewController(self)
        self.actions = ActionsController(self)
        self.previewer = PreviewController(self)
        self.demo_runner = DemoController(self)
        self.reingester = ReingestController(self, self.actions, self.demo_runner)
        self.reporter = StatusController(self)

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
            self.service.on_reconnect = self.reporter.service_reconnecting
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
            self.demo_runner.tick()
            self.set_interval(1.0, self.demo_runner.tick)
        if not self.is_headless:
            self.reporter.install_signal_handlers()
            if self.exit_when_orphaned:
                self.set_interval(2.0, self.reporter.check_terminal)
        self._load(first=True)

    # -- status, pulse, errors (tui/status.py) -------------------------------------------------------

    def status(self, text: str, kind: str = "info") -> None:
        """The one line where results and errors appear."""
        self.reporter.show(text, kind)

    def _pulse(self) -> None:
        self.reporter.pulse()

    @_while_running
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one error handler: a failed worker becomes one visible line, never a crash."""
        self.reporter.worker_state_changed(event)

    # -- the app's own ways out: every notification, title and clipboard write passes here ---------

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every toast (``Widget.notify`` lands here too): inert, and never parsed as markup, so
        a mailbox name, a server reply or a subject in a message shows as itself."""
        super().notify(inert(message, multiline=True, limit=2000), title=inert(title, limit=200),
                       severity=severity, timeout=timeout, markup=False)

    def get_driver_class(self) -> Any:
        """Textual's driver, made safe against a vanished terminal (tui/driver.py says why)."""
        return hangup_safe(super().get_driver_class())

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

    def _refresh_list(self, keep: Any = None) -> None:
        self.list.rows_changed(keep)
        self.query_one("#colhead", ColumnHeader).refresh()
        self._pulse()

    # -- listing: load, sync, watch, locks (controllers/listing.py) --------------------------------

    @_while_running
    def on_connected(self, msg: M.Connected) -> None:
        self.listing.connected(msg)

    @_while_running
    def on_list_started(self, msg: M.ListStarted) -> None:
        self.listing.list_started(msg)

    @_while_running
    def on_list_batch(self, msg: M.ListBatch) -> None:
        self.listing.list_batch(msg)

    @_while_running
    def on_list_done(self, msg: M.ListDone) -> None:
        self.listing.list_done(msg)

    @_while_running
    def on_counts_ready(self, msg: M.CountsReady) -> None:
        self.listing.counts_ready(msg)

    def _load(self, *, first: bool = False, keep_marks: bool = False) -> None:
        self.listing.load(first=first, keep_marks=keep_marks)

    def _locks_all(self) -> None:
        self.listing.locks_all()

    @_while_running
    def on_locks_done(self, msg: M.LocksDone) -> None:
        self.listing.locks_done(msg)

    @_while_running
    def on_watch_changed(self, msg: M.WatchChanged) -> None:
        self.request_sync(msg.reason)

    @_while_running
    def on_watch_state(self, msg: M.WatchState) -> None:
        self.listing.watch_state(msg)

    def request_sync(self, reason: str, *, force: bool = False) -> None:
        """Re-sync the view with the server. One at a time: a request during a sync (or while
        paused, or during a listing) is remembered and served when that finishes."""
        self.listing.request_sync(reason, force=force)

    @_while_running
    def on_sync_done(self, msg: M.SyncDone) -> None:
        self.listing.sync_done(msg)

    def action_pause(self) -> None:
        self.listing.pause()

    def action_reload(self) -> None:
        self.listing.reload()

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
        if not self.screen_stack:  # a key typed after q, arriving as the app closes its screens
            return
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

    # -- marks, view, sort, group, filter (controllers/view.py) ------------------------------------

    def action_toggle_mark(self) -> None:
        self.viewer.toggle_mark()

    def action_mark_range(self) -> None:
        self.viewer.mark_range()

    def action_invert_marks(self) -> None:
        self.viewer.invert_marks()

    def action_clear_marks(self) -> None:
        self.viewer.clear_marks()

    def action_mark_all(self) -> None:
        self.viewer.mark_all()

    def action_mark_stale(self) -> None:
        self.viewer.mark_stale()

    def action_mark_bots(self) -> None:
        self.viewer.mark_bots()

    def command_mark_older(self, age_text: str, then_mark_seen: bool) -> None:
        """Palette: "mark seen older than 2d" / "older than 36h"."""
        self.viewer.mark_older(age_text, then_mark_seen)

    def action_view(self, name: str) -> None:
        self.viewer.set_view(name)

    def action_sort(self, key: str) -> None:
        self.viewer.sort(key)

    def action_sort_next(self) -> None:
        self.viewer.sort_next()

    def action_sort_reverse(self) -> None:
        self.viewer.sort_reverse()

    def action_group(self, key: str) -> None:
        self.viewer.group(key)

    def action_group_next(self) -> None:
        self.viewer.group_next()

    def action_toggle_all_groups(self) -> None:
        self.viewer.toggle_all_groups()

    def action_command_palette(self) -> None:
        """Textual's palette, dismissed once (two enters of one burst ended the app)."""
        if self.use_command_palette and not OncePalette.is_open(self):
            self.push_screen(OncePalette(id="--command-palette"))

    def search_themes(self) -> None:
        """The palette's "Theme" command: the same palette, dismissed once, over the themes."""
        self.push_screen(OncePalette(providers=[ThemeProvider], placeholder="Search for themes…"))

    def search_commands(self, commands: Sequence[CommandListItem],
                        placeholder: str = "Search for commands…") -> AwaitMount:
        return self.push_screen(OncePalette(providers=[SimpleProvider(self.screen, commands)],
                                            placeholder=placeholder))

    def action_filter(self) -> None:
        if not isinstance(self.focused, FilterInput):
            # the keys typed after "/" are for the box: they wait until it has the focus (Focus
            # comes from a call_later; CI once saw the key after "/" reach the list first)
            self.hold_keys()
        self.viewer.open_filter()

    @on(events.DescendantFocus)
    def _focus_moved(self, event: events.DescendantFocus) -> None:
        if isinstance(event.widget, FilterInput):
            self.release_keys()

    #: Keys that make the filter box close (or may): the keys typed after one of them wait until
    #: the box has closed (or stayed open), then go where the operator expects, in order.
    FILTER_CLOSING_KEYS: ClassVar = frozenset({"enter", "escape"})

    def hold_keys_after(self, target: Any, event: events.Key | events.Paste) -> bool:
        return isinstance(event, events.Key) and event.key in self.FILTER_CLOSING_KEYS \
            and isinstance(target, FilterInput)

    @on(FilterInput.Closed)
    def _filter_closed(self) -> None:
        self.viewer.close_filter_bar()
        self.release_keys()

    @on(FilterInput.Submitted, "#filter-input")
    def _filter_submitted(self, event: FilterInput.Submitted) -> None:
        try:
            self.viewer.filter_submitted(event.value)
        finally:
            self.release_keys()

    def apply_filter_text(self, text: str) -> bool:
        """Parse and apply a filter; on a syntax error say where, and keep the input open."""
        return self.viewer.apply_filter_text(text)

    def action_clear_filter(self) -> None:
        self.apply_filter_text("")

    def action_back(self) -> None:  # type: ignore[override]  # Textual runs sync and async actions alike
        """esc backs out one level: filter box, then the filter, then the range anchor, then
        the message line."""
        self.viewer.back()

    # -- preview (controllers/preview.py) ------------------------------------------------------------

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
        self.previewer.open(uid)

    @_while_running
    def on_peek_ready(self, msg: M.PeekReady) -> None:
        self.previewer.peek_ready(msg)

    def open_in_pager(self, text: str) -> None:
        self.previewer.open_in_pager(text)

    # -- actions on marks (controllers/actions.py) ------------------------------------------------

    def action_mark_seen(self) -> None:
        self.actions.plan_action("mark-seen")

    def action_mark_unseen(self) -> None:
        self.actions.plan_action("mark-unseen")

    def action_expunge(self) -> None:
        self.actions.plan_action("expunge")

    def action_expunge_all(self) -> None:
        self.actions.expunge_all()

    def action_undo(self) -> None:
        self.actions.undo()

    def _targets(self) -> tuple[builtins.list[int], str]:
        return self.actions.targets()

    def _begin(self) -> bool:
        return self.actions.begin()

    def _sample(self, uids: builtins.list[int], n: int = 5) -> builtins.list[str]:
        return self.actions.sample(uids, n)

    def _execute_worker(self, plan: Any) -> Worker[None]:
        return self.actions.execute_worker(plan)

    @_while_running
    def on_plan_ready(self, msg: M.PlanReady) -> None:
        self.actions.plan_ready(msg)

    @_while_running
    def on_action_progress(self, msg: M.ActionProgress) -> None:
        self.actions.action_progress(msg)

    @_while_running
    def on_action_done(self, msg: M.ActionDone) -> None:
        self.actions.action_done(msg)

    # -- re-ingest: plan, release, watch (controllers/reingest.py, screens/reingest.py) -------------

    @property
    def reingest_watch(self) -> ReingestWatch | None:
        return self.reingester.watch

    @property
    def _reingest_screen(self) -> ReingestScreen | None:
        return self.reingester.screen

    def action_reingest(self) -> None:
        self.reingester.open()

    def reingest_plan(self, token: int, request: ReingestRequest, mode: str, ttl: int, waves: int,
                      interval: float) -> None:
        """Called by the screen: a dry run in a worker; the answer goes back to the screen."""
        self.reingester.plan(token, request, mode, ttl, waves, interval)

    @_while_running
    def on_reingest_planned(self, msg: M.ReingestPlanned) -> None:
        self.reingester.planned(msg)

    def reingest_execute(self, plan: Any) -> None:
        """Called by the screen after the typed confirmation (or, for a plain wait, at once)."""
        self.reingester.execute(plan)

    @_while_running
    def on_reingest_released(self, msg: M.ReingestReleased) -> None:
        self.reingester.released(msg)

    @_while_running
    def on_reingest_status(self, msg: M.ReingestStatus) -> None:
        self.reingester.status(msg)

    def reingest_stop_watch(self) -> None:
        self.reingester.stop_watch()

    def action_incident_plan(self) -> None:
        self.incident.open()

    @_while_running
    def on_incident_call(self, msg: IncidentCall) -> None:
        msg.fn()

    # -- the demo's mail_room (controllers/demo.py) --------------------------------------------------

    def action_demo_consumer(self) -> None:
        self.demo_runner.toggle()

    @_while_running
    def on_demo_consumer_changed(self, msg: M.DemoConsumerChanged) -> None:
        self.demo_runner.changed(msg)
        self.reingester.show_running_watch()

    # -- help (tui/status.py) ----------------------------------------------------------------------

    def help_sections(self) -> builtins.list[tuple[str, builtins.list[tuple[str, str, str]]]]:
        """(section, [(keys, what it does, binding id)]) from the live bindings and keymap."""
        return self.reporter.help_sections()

    def action_help(self) -> None:
        self.reporter.help(self.help_sections())

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
