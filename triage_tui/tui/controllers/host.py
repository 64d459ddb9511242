"""What the controllers need of the app. The app satisfies it structurally: no controller
imports tui.app, so the app is the only module that composes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from triage_tui.domain.model import View
from triage_tui.tui.listmodel import ListModel
from triage_tui.tui.widgets.bars import StatusLine
from triage_tui.tui.widgets.message_list import MessageList
from triage_tui.tui.widgets.pulse import PulseState


class Host(Protocol):
    """The app as the controllers see it: the services, the session state they share, and the
    few app methods they call (the rest of Textual's App API, e.g. ``run_worker``,
    ``post_message``, ``set_timer``, ``push_screen``, ``query_one``, is used as is)."""

    service: Any
    lock_service: Any
    demo_consumer: Any
    read_only: bool
    clock: Callable[[], datetime]
    view: View
    model: ListModel
    pulse_state: PulseState
    stats: dict[str, float]
    reingest_poll_cycle: float
    reingest_interval: float
    _io_lock: threading.RLock
    _gen: int
    _uidvalidity: int | None
    _loading: bool
    _busy: bool
    _paused: bool
    _needs_reconnect: bool
    _sync_running: bool
    _sync_pending: bool
    _own_changed: set[int]
    _range_anchor: tuple[str, int | str] | None  # ("uid", uid) or ("group", key)
    _watcher: Any
    _last_progress: float

    @property
    def list(self) -> MessageList: ...

    @property
    def is_running(self) -> bool: ...

    @property
    def size(self) -> Any: ...

    @property
    def status_line(self) -> StatusLine: ...

    def status(self, text: str, kind: str = "info") -> None: ...

    def _load(self, *, first: bool = False, keep_marks: bool = False) -> None: ...

    def apply_filter_text(self, text: str) -> bool: ...

    def action_group(self, key: str) -> None: ...

    async def palette_run(self, action: str) -> None: ...

    def _pulse(self) -> None: ...

    def _handle_exception(self, error: Exception) -> None: ...

    def _refresh_list(self, keep: Any = None) -> None: ...

    def request_sync(self, reason: str, *, force: bool = False) -> None: ...

    def _locks_all(self) -> None: ...

    def _execute_worker(self, plan: Any) -> Any: ...

    def run_worker(self, work: Any, name: str | None = "", group: str = "default", description: str = "",
                   exit_on_error: bool = True, start: bool = True, exclusive: bool = False,
                   thread: bool = False) -> Any: ...

    def post_message(self, message: Any) -> bool: ...

    def set_timer(self, delay: float, callback: Any = None, *, name: str | None = None,
                  pause: bool = False) -> Any: ...

    def query_one(self, selector: Any, expect_type: Any = None) -> Any: ...

    def push_screen(self, screen: Any, callback: Any = None, wait_for_dismiss: bool = False) -> Any: ...

    def call_later(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> bool: ...

    def refresh_bindings(self) -> None: ...

    def suspend(self) -> Any: ...

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: float | None = None, markup: bool = True) -> None: ...
