"""Messages thread workers post back to the app (``post_message`` is thread-safe).

Each carries the list generation it belongs to where that matters, so a late answer for a
view the operator already left is dropped instead of mixed into the new one.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message as TMessage

from triage_tui.domain.model import Message


class Connected(TMessage):
    def __init__(self, tls_label: str, tls_ok: bool | None, capabilities: frozenset[str],
                 tls_version: str | None = None) -> None:
        self.tls_label = tls_label
        self.tls_ok = tls_ok
        self.capabilities = capabilities
        self.tls_version = tls_version
        super().__init__()


class ListStarted(TMessage):
    def __init__(self, gen: int, uidvalidity: int, total: int) -> None:
        self.gen, self.uidvalidity, self.total = gen, uidvalidity, total
        super().__init__()


class ListBatch(TMessage):
    def __init__(self, gen: int, batch: list[Message], done: int, seen: list[int] | None = None) -> None:
        self.gen, self.batch, self.done = gen, batch, done
        self.seen = seen  # a re-list: every UID of the chunk (``batch`` holds the new or changed ones)
        super().__init__()


class ListDone(TMessage):
    def __init__(self, gen: int, count: int, seconds: float) -> None:
        self.gen, self.count, self.seconds = gen, count, seconds
        super().__init__()


class CountsReady(TMessage):
    def __init__(self, counts: Any) -> None:
        self.counts = counts
        super().__init__()


class SyncDone(TMessage):
    def __init__(self, gen: int, uidvalidity: int, gone: set[int], new: list[Message], counts: Any,
                 uidvalidity_changed: bool = False) -> None:
        self.gen, self.uidvalidity, self.gone, self.new = gen, uidvalidity, gone, new
        self.counts = counts
        self.uidvalidity_changed = uidvalidity_changed
        super().__init__()


class LocksDone(TMessage):
    def __init__(self, gen: int, error: str | None) -> None:
        self.gen, self.error = gen, error
        super().__init__()


class PlanReady(TMessage):
    def __init__(self, kind: str, plan: Any, info: dict[str, Any]) -> None:
        self.kind, self.plan, self.info = kind, plan, info
        super().__init__()


class ActionProgress(TMessage):
    def __init__(self, action: str, done: int, total: int) -> None:
        self.action, self.done, self.total = action, done, total
        super().__init__()


class ActionDone(TMessage):
    def __init__(self, result: Any) -> None:
        self.result = result
        super().__init__()


class PeekReady(TMessage):
    def __init__(self, uid: int, lines: list[str], header: str, message_id: str | None) -> None:
        self.uid, self.lines, self.header, self.message_id = uid, lines, header, message_id
        super().__init__()


class WatchChanged(TMessage):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__()


class WatchState(TMessage):
    def __init__(self, mode: str, detail: str) -> None:
        self.mode, self.detail = mode, detail
        super().__init__()


class ReingestPlanned(TMessage):
    """A re-ingest dry run for the screen that asked (``token``: a newer request supersedes it)."""

    def __init__(self, token: int, plan: Any, error: str | None = None) -> None:
        self.token, self.plan, self.error = token, plan, error
        super().__init__()


class ReingestReleased(TMessage):
    """The release ran (``result`` None: nothing was written, the watch just starts)."""

    def __init__(self, plan: Any, result: Any, watcher: Any) -> None:
        self.plan, self.result, self.watcher = plan, result, watcher
        super().__init__()


class ReingestStatus(TMessage):
    def __init__(self, watch_id: int, status: Any) -> None:
        self.watch_id, self.status = watch_id, status
        super().__init__()


class DemoConsumerChanged(TMessage):
    def __init__(self, running: bool, note: str) -> None:
        self.running, self.note = running, note
        super().__init__()
