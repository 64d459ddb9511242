"""Keys (and pastes) are handled one at a time, in the order the terminal sent them.

Textual forwards each key to the widget focused *when the app reads it* and moves on to the next
key at once; the key's effect (a binding on the app, a focus change, a screen push) happens later,
when the key has travelled to that widget and bubbled back. So the keys of one terminal read (a
laggy SSH link delivers a whole burst in one read) all go to the old focus: ``/abc`` ran ``a``
(mark all), ``b`` (mark bots) and ``c`` on the list instead of typing "abc" in the filter box.

:class:`KeyOrder` holds every key back while the previous one is still in flight. A key is
forwarded as Textual would, followed by a :class:`KeyDone` marker to the same widget; the marker
bubbles the same way, so when it is back at the app the key has been handled there, and the next
key is forwarded once what that handling queued (a ``focus()``) has run. An app can hold the
keys longer after a given key (:meth:`KeyOrder.hold_keys_after`, e.g. until a filter box has
closed) and lets them go with :meth:`KeyOrder.release_keys`.

A marker can be lost when the key removed its own widget (a dialog closed by a key): a watchdog
lets the next key go as soon as that widget is gone, and after :data:`MAX_HOLD` seconds in any
case, so a key is never stuck.
"""

from __future__ import annotations

import collections
import time
from typing import Any

from textual import events, on
from textual.app import App
from textual.message import Message
from textual.widgets import Input

#: Last resorts, in seconds: a marker that never came back (its key is still being handled, or
#: it was lost), and an app hold nobody released, counted from when its key was handled.
MAX_FLIGHT = 10.0
MAX_HOLD = 1.0
WATCHDOG_EVERY = 0.05


class KeyDone(Message):
    """Sent right behind a key to the widget it went to; back at the app, that key was handled."""

    def __init__(self, seq: int) -> None:
        super().__init__()
        self.seq = seq


class KeyOrder(App[Any]):
    """Mix-in for an :class:`~textual.app.App`: one key in flight at a time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._keys_waiting: collections.deque[events.Key | events.Paste] = collections.deque()
        self._key_seq = 0
        self._key_in_flight: tuple[int, Any, float, bool] | None = None  # (seq, target, since, hold after)
        self._key_hold_since: float | None = None  # an app-requested hold (hold_keys_after)
        self._key_released = 0  # release_keys() came for every key up to this one
        self._key_release_token: object | None = None  # set from release_keys() until its forward
        self._key_watchdog: Any = None
        self._key_forwarding = False  # inside Textual's routing of a key (priority bindings run there)
        self._key_hold_asked = False  # hold_keys() while forwarding: the key's flight holds after it

    # -- for the app ---------------------------------------------------------------------------

    def hold_keys_after(self, target: Any, event: events.Key | events.Paste) -> bool:
        """Return True to hold the keys after ``event`` (about to go to ``target``) until
        :meth:`release_keys`. Default: no such hold."""
        return False

    def hold_keys(self) -> None:
        """Called while a key is handled (by the action it ran): hold the keys after it until
        :meth:`release_keys` (or :data:`MAX_HOLD`), like :meth:`hold_keys_after` but decided by the
        handler, e.g. until the box that key opened has the focus. Outside a key's handling (a
        mouse click ran the action): nothing to hold."""
        flight = self._key_in_flight
        if self._key_forwarding:
            self._key_hold_asked = True
        elif flight is not None:
            self._key_in_flight = (flight[0], flight[1], flight[2], True)

    def release_keys(self) -> None:
        """End a hold asked for by :meth:`hold_keys_after`; the waiting keys go on, in order, after
        whatever the caller has queued (a focus change) has run."""
        self._key_hold_since = None
        self._key_released = self._key_seq  # also when it comes before the key's marker
        # only this call lets the keys go: a forward queued earlier (the watchdog's) would run
        # before the focus change the caller has just queued
        token = self._key_release_token = object()
        self.call_later(self._forward_released, token)

    async def _forward_released(self, token: object) -> None:
        if token is self._key_release_token:
            self._key_release_token = None
        await self._forward_next_key()

    # -- the machinery ---------------------------------------------------------------------------

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, (events.Key, events.Paste)) and not event.is_forwarded:
            self._keys_waiting.append(event)
            await self._forward_next_key()
            return
        await super().on_event(event)

    def _holding(self) -> bool:
        now = time.monotonic()
        if self._key_hold_since is not None and now - self._key_hold_since > MAX_HOLD:
            self._key_hold_since = None
        flight = self._key_in_flight
        if flight is not None:
            _seq, target, since, _hold = flight
            if now - since > MAX_FLIGHT or not getattr(target, "is_attached", False) or target._closing \
                    or target._closed:
                self._key_in_flight = None  # its marker will not come back
        return (self._key_in_flight is not None or self._key_hold_since is not None
                or self._key_release_token is not None)

    async def _forward_next_key(self) -> None:
        while self._keys_waiting and not self._holding():
            if not self.is_running or not self.screen_stack:
                self._keys_waiting.clear()  # shutting down: nothing left to type into
                return
            event = self._keys_waiting.popleft()
            target = self.focused or self.screen
            hold = self.hold_keys_after(target, event)
            self._key_forwarding, self._key_hold_asked = True, False
            try:
                await super().on_event(event)  # Textual's own routing: priority bindings, then the focus
            finally:
                self._key_forwarding = False
            hold = hold or self._key_hold_asked
            if not hold and isinstance(target, Input) and (
                    isinstance(event, events.Paste) or event.is_printable):
                continue  # typed into a text box: no focus change can follow, no need to wait
            self._key_seq += 1
            self._key_in_flight = (self._key_seq, target, time.monotonic(), hold)
            target.post_message(KeyDone(self._key_seq))
        self._arm_watchdog()

    @on(KeyDone)
    def _key_done(self, message: KeyDone) -> None:
        message.stop()
        flight = self._key_in_flight
        if flight is not None and flight[0] == message.seq:
            self._key_in_flight = None
            if flight[3] and self._key_released < flight[0]:
                self._key_hold_since = time.monotonic()  # until release_keys (or MAX_HOLD)
            # after what the key's handling queued on the app (a focus() is a call_later)
            self.call_later(self._forward_next_key)

    def _arm_watchdog(self) -> None:
        if self._keys_waiting and self._key_watchdog is None and self.is_running:
            self._key_watchdog = self.set_timer(WATCHDOG_EVERY, self._watchdog)

    def _watchdog(self) -> None:
        # a timer runs its callback in its own task: go through the app's queue, behind what is
        # already there (a focus change), like every other forward
        self._key_watchdog = None
        self.call_later(self._forward_next_key)
