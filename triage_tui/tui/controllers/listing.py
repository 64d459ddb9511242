"""Listing and keeping the list current: the load and sync workers, their messages, the counts,
the IDLE (or polling) watcher, the Redis locks column, pause and reload."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import gc
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from textual.worker import get_current_worker

from triage_tui.domain.classify import mark_duplicates
from triage_tui.domain.model import Message, View
from triage_tui.services.triage import NO_KEYWORDS_SHORT
from triage_tui.tui import messages as M
from triage_tui.tui.controllers import run_thread
from triage_tui.tui.controllers.host import Host

SYNC_SETTLE = 0.5  # seconds between a sync and the next one a change asked for meanwhile
#: How long a thread may hold the GIL before it is asked to hand it over (Python's default: 5 ms).
#: The listing worker is CPU-bound; the event loop gives the GIL up at every select() and write,
#: and waited up to 5 ms for it each time: 100-170 ms loop stalls at 100k rows, and the load
#: itself twice as long (bench/bench_tui.py --part load). 1 ms keeps the loop's share.
SWITCH_INTERVAL = 0.001
#: Messages added between two gc.freeze(): each costs one GC pass over what was made since the
#: last one (rows, and the frames rendered meanwhile), ~10 ms per 2,000 rows of a cold listing
#: where 10,000 made 25-80 ms stalls at 100k. At least FREEZE_GAP seconds apart, unless
#: FREEZE_ALWAYS rows wait: a warm start's burst of cached rows (frozen by the service already)
#: then costs a few passes, not one per batch.
FREEZE_EVERY = 2_000
FREEZE_GAP = 0.25
FREEZE_ALWAYS = 20_000
#: Seconds of list batches folded into the model before the event loop gets a turn. A warm start
#: posts its ~90 batches of 100k cached rows at once, and Textual handles a queue of messages
#: without yielding: 200+ ms of frozen loop (keys, frames) with one handler call per batch.
FOLD_SLICE = 0.004
FOLD_ROWS = 1_000  # a larger batch is folded in parts of this many (~1 ms each)
#: a fresh listing posts its rows to the UI at most this often (its first batch at once)
POST_EVERY = 0.5
#: A refresh (sync) reads the locks of the rows it adds with them; every row's lock is read
#: again at most this often after refreshes (seconds). Read after every refresh, 100k locks
#: (~0.2 s of CPU in a thread) fought the event loop for the GIL once a second while mail
#: arrived: 50-140 ms loop lags at 100k rows (bench/soak.py), none over 50 ms without.
LOCKS_EVERY = 10.0
#: With no refresh at all (a quiet mailbox), every row's lock is read again after this long per
#: 100k rows, at least LOCKS_EVERY: locks expire and TTLs run down while nothing arrives, and
#: the column and the pulse bar's count went stale until the next mail. After a failed read
#: (Redis down, or slower than its timeout), the next one comes after LOCKS_RETRY.
LOCKS_QUIET_PER_100K = 30.0
LOCKS_RETRY = 15.0


class ListingController:
    def __init__(self, host: Host, watcher_factory: Callable[..., Any] | str | None) -> None:
        self.host = host
        self.watcher_factory = watcher_factory
        self.load_started = 0.0
        self.first_rows_at: float | None = None
        self.rebuild_timer: Any = None
        self.carry_marks: set[int] = set()
        self.watch_started = False
        # an incremental re-list (R): the rows stay, each chunk is diffed by UID against them
        self.relist_uv: int | None = None  # UIDVALIDITY of the rows kept; None: a fresh listing
        self.relist_seen: set[int] = set()  # UIDs the re-list found so far
        self.unfrozen = 0  # messages added since the last gc.freeze()
        self.frozen_at = 0.0  # when that was (time.perf_counter())
        # list batches received and not yet in the model (folded in a slice at a time), and the
        # end of the listing when it arrived before them
        self.inbox: deque[tuple[int, builtins.list[Message], int, builtins.list[int] | None]] = deque()
        self.fold_scheduled = False
        self.done_waiting: M.ListDone | None = None
        self.cache_noted = False  # the header cache's one line shown (once a session)
        self.locks_read_at: float | None = None  # when every row's lock was last asked (monotonic)
        self.locks_timer: Any = None  # the next read of every row's lock (see _schedule_locks)
        self.locks_due_at = 0.0  # when it is due (monotonic)

    # -- loading ------------------------------------------------------------------------------

    def load(self, *, first: bool = False, keep_marks: bool = False) -> None:
        h = self.host
        h._gen += 1
        self.carry_marks = set()
        self.relist_seen = set()
        uv = h._uidvalidity if h._uidvalidity is not None else self.relist_uv  # R during an R
        if keep_marks and uv is not None and h.model.messages:
            # Re-list in place: rows, Message objects, marks and the cursor stay; the worker
            # sends only new or changed messages, and what the re-list did not find goes at the
            # end (two listings never coexist in full; bench/bench_tui.py --part load).
            self.relist_uv = uv
        else:
            self.carry_marks = set(h.model.marks) if keep_marks else set()
            self.relist_uv = None
            h.model.clear()
        if first:
            # Textual's own long-lived objects: out of every later GC pass (listings freeze
            # their messages as they arrive, see _freeze). Unfrozen first: what an earlier app
            # in this process froze and left as cyclic garbage goes now (tests, benchmarks).
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
        h._uidvalidity = None
        h._loading = True
        self.inbox.clear()  # an earlier listing's batches (their generation is over)
        self.done_waiting = None
        self.load_started = time.perf_counter()
        self.first_rows_at = None
        h.pulse_state.vanished = h.pulse_state.arrived = 0
        h.pulse_state.loading = (0, 0)
        h.list.empty_text = f"listing the {h.view.value} view…"
        h._refresh_list(h.list.current if self.relist_uv is not None else None)
        known = h.model.messages if self.relist_uv is not None else None
        run_thread(h, self._load_worker, h.view, h._gen, first, known, name="_load_worker", group="list")

    def _freeze(self, added: int) -> None:
        """Keep long-lived messages out of the cyclic GC (100k of them made every full pass a
        100+ ms pause mid-keypress), a slice at a time: collect the young generations (what
        is garbage among the objects made since the last automatic old-generation pass), then
        freeze the rest. Not a full collection: over the ~15k objects made since the last freeze
        (rows, rendered strips and their caches) it cost 8-25 ms of the UI thread's CPU each
        time, the largest part of the cold listing's loop stalls at 100k; the young pass costs
        1-3 ms. What it leaves is what survived two collections (alive, nearly all of it); a
        cycle that died since is frozen with the rest, a few kB per listing."""
        self.unfrozen += added
        if self.unfrozen >= FREEZE_EVERY:
            now = time.perf_counter()
            if self.unfrozen >= FREEZE_ALWAYS or now - self.frozen_at >= FREEZE_GAP:
                self.unfrozen = 0
                self.frozen_at = now
                gc.collect(1)
                gc.freeze()

    @staticmethod
    def _diff(batch: builtins.list[Message], known: dict[int, Message]) -> builtins.list[Message]:
        """The messages of a re-listed chunk that are new or changed (the others are the rows
        already shown: they stay, and the copies just built are dropped). The lock columns
        come from Redis, not IMAP: kept from the row until the locks are read again."""
        out = []
        for m in batch:
            old = known.get(m.uid)
            if old is not None and old.uidvalidity == m.uidvalidity:
                m.lock, m.lock_ttl = old.lock, old.lock_ttl
                if m == old:
                    continue
            out.append(m)
        return out

    def _load_worker(self, view: View, gen: int, first: bool, known: dict[int, Message] | None = None) -> None:
        h = self.host
        svc = h.service
        worker = get_current_worker()
        with h._io_lock:
            if gen != h._gen or worker.is_cancelled:
                return
            if h._needs_reconnect:
                svc.reconnect()
                h._needs_reconnect = False
            else:
                svc.connect()
            if first:
                tls = svc.tls
                version = getattr(tls, "version", None)
                h.post_message(M.Connected(getattr(tls, "label", "?"),
                                           bool(getattr(tls, "verified", False)) if version else False,
                                           frozenset(getattr(svc, "capabilities", ()) or ()), version))
            started = time.perf_counter()
            uidvalidity, uids = svc.search(view, warm=True)
            h.post_message(M.ListStarted(gen, uidvalidity, len(uids)))
            done = 0
            stream = svc.iter_messages(uidvalidity, uids, headers=True, now=h.clock())
            # A fresh listing's first batch goes to the UI at once, the others at most every
            # POST_EVERY: a warm start hands out 90k cached rows in half a second, and the UI
            # folding them meanwhile (each fold, re-sort and frame a turn of the event loop
            # taken from this thread's GIL) made the whole list later, not sooner.
            pending: builtins.list[Message] = []
            posted_at: float | None = None
            try:
                for batch in stream:
                    if gen != h._gen or worker.is_cancelled:
                        # Stopping mid-stream leaves answers on the wire: start a fresh connection.
                        with contextlib.suppress(Exception):
                            stream.close()  # type: ignore[attr-defined]
                        svc.reconnect()
                        return
                    done += len(batch)
                    if known is None:
                        pending += batch
                        now = time.perf_counter()
                        if posted_at is None or now - posted_at >= POST_EVERY:
                            h.post_message(M.ListBatch(gen, pending, done))
                            pending, posted_at = [], now
                    else:
                        seen = [m.uid for m in batch]
                        h.post_message(M.ListBatch(gen, self._diff(batch, known), done, seen))
            finally:
                with contextlib.suppress(Exception):
                    stream.close()  # type: ignore[attr-defined]
            if pending:
                h.post_message(M.ListBatch(gen, pending, done))
            h.post_message(M.ListDone(gen, done, time.perf_counter() - started))
            counts = svc.counts()
        h.post_message(M.CountsReady(counts))

    def connected(self, msg: M.Connected) -> None:
        h = self.host
        s = h.pulse_state
        s.connected = True
        s.tls_label, s.tls_ok, s.tls_version = msg.tls_label, msg.tls_ok, msg.tls_version
        h._pulse()

    def list_started(self, msg: M.ListStarted) -> None:
        h = self.host
        if msg.gen != h._gen:
            return
        if self.relist_uv is not None and msg.uidvalidity != self.relist_uv:
            # the mailbox was reset meanwhile: every UID names another message now
            self.relist_uv = None
            h.model.clear()
            h._refresh_list()
        h._uidvalidity = msg.uidvalidity
        h.pulse_state.loading = (0, msg.total)
        if msg.total == 0:
            h.list.empty_text = f"the {h.view.value} view is empty"
        h._pulse()

    def list_batch(self, msg: M.ListBatch) -> None:
        """Queue the batch; it is folded into the model in the event loop's next turn, after
        the app's other queued messages (Textual handles its whole queue in one turn: folded
        here, a burst of batches would hold the loop until the last one)."""
        if msg.gen != self.host._gen:
            return
        batch, n = msg.batch, len(msg.batch)
        if n <= FOLD_ROWS:
            self.inbox.append((msg.gen, batch, msg.done, msg.seen))
        else:  # (gen, rows, how many the listing has sent with these, a re-list's UIDs)
            rest: builtins.list[int] | None = [] if msg.seen is not None else None
            for i in range(0, n, FOLD_ROWS):
                self.inbox.append((msg.gen, batch[i:i + FOLD_ROWS], msg.done - n + min(n, i + FOLD_ROWS),
                                   msg.seen if i == 0 else rest))
        if not self.fold_scheduled:
            self.fold_scheduled = True
            asyncio.get_running_loop().call_soon(self._fold_later)

    def fold(self) -> None:
        """Add queued batches for up to :data:`FOLD_SLICE` seconds (at least one), then give the
        loop a turn if some remain; the listing's end, if it came meanwhile, once none remain."""
        h = self.host
        self.fold_scheduled = False
        if not h.is_running:
            self.inbox.clear()
            return
        inbox = self.inbox
        stop = time.perf_counter() + FOLD_SLICE
        while inbox:
            gen, batch, done, seen = inbox.popleft()
            if gen == h._gen:
                self._add_batch(batch, done, seen)
            if time.perf_counter() >= stop:
                break
        if inbox:
            self.fold_scheduled = True
            asyncio.get_running_loop().call_soon(self._fold_later)
        elif self.done_waiting is not None:
            done, self.done_waiting = self.done_waiting, None
            self.list_done(done)

    def _fold_later(self) -> None:
        try:
            self.fold()
        except Exception as e:  # noqa: BLE001 - as in a message handler: Textual's error path
            self.host._handle_exception(e)

    def _add_batch(self, batch: builtins.list[Message], done: int, seen: builtins.list[int] | None) -> None:
        h = self.host
        if seen is not None and self.relist_uv is not None:
            self.relist_seen.update(seen)
            h.model.forget_matches(seen)  # as a fresh listing would, a chunk at a time
            added = h.model.update(batch)
        else:
            # a fresh listing; or a re-list that found the mailbox reset (list_started cleared
            # the rows): its chunks are whole, every message differs in its UIDVALIDITY
            added = h.model.add(batch)
        self._freeze(added)
        total = h.pulse_state.loading[1] if h.pulse_state.loading else done
        h.pulse_state.loading = (done, total)
        if self.first_rows_at is None and self.relist_uv is None:
            # The first screen appears at once; later batches are folded in a few times a second.
            self.first_rows_at = time.perf_counter()
            h.stats["first_batch_s"] = self.first_rows_at - self.load_started
            self.rebuild()
        elif self.rebuild_timer is None:
            self.rebuild_timer = h.set_timer(0.2, self.rebuild)

    def rebuild(self) -> None:
        h = self.host
        self.rebuild_timer = None
        keep = h.list.current
        h.model.rebuild()
        h._refresh_list(keep)

    def list_done(self, msg: M.ListDone) -> None:
        h = self.host
        if msg.gen != h._gen:
            return
        if self.inbox:  # batches still to fold in: this listing ends after them
            self.done_waiting = msg
            return
        if self.rebuild_timer is not None:
            self.rebuild_timer.stop()
        h._loading = False
        h.pulse_state.loading = None
        if self.relist_uv is not None:
            # what the re-list did not find is gone (its marks with it)
            h.model.remove(set(h.model.messages) - self.relist_seen)
            h.model.forget_sort_keys("lock")  # TTLs are read again (locks_all below)
            self.relist_uv = None
            self.relist_seen = set()
        if self.carry_marks:
            h.model.marks = self.carry_marks & set(h.model.messages)
            self.carry_marks = set()
        self.rebuild()
        h.stats["list_s"] = time.perf_counter() - self.load_started
        h.pulse_state.refreshed = h.clock()
        if not h.model.messages:
            h.list.empty_text = f"the {h.view.value} view is empty"
        h._pulse()
        self.note_cache()
        h._locks_all()
        if not self.watch_started:
            self.watch_started = True
            self.start_watcher()
        if h._sync_pending:
            h.request_sync("pending")

    def note_cache(self) -> None:
        """Say once why listings are cold: the header cache was given up (a locked, full,
        read-only or damaged file; the CLI prints the same line on stderr)."""
        problem = getattr(getattr(self.host.service, "cache", None), "problem", None)
        if isinstance(problem, str) and problem and not self.cache_noted:
            self.cache_noted = True
            self.host.notify(problem, severity="warning", timeout=10)

    def counts_ready(self, msg: M.CountsReady) -> None:
        h = self.host
        c = msg.counts
        s = h.pulse_state
        s.unseen, s.seen_stuck, s.deleted = c.unseen, c.seen_stuck, c.deleted
        s.keyword_note = NO_KEYWORDS_SHORT if getattr(c, "keyword_note", None) else ""
        s.oldest_unseen_age = ((h.clock() - c.oldest_unseen).total_seconds()
                               if c.oldest_unseen is not None else None)
        h._pulse()

    # -- Redis locks (optional) --------------------------------------------------------------------

    def locks_all(self) -> None:
        h = self.host
        if self.locks_timer is not None:
            self.locks_timer.stop()
            self.locks_timer = None
        if h.lock_service is not None and h.model.messages:
            self.locks_read_at = time.monotonic()
            # handed over in a box the worker empties: a finished Worker can linger (a cycle,
            # or frozen by gc.freeze) and must not keep 100k messages alive with it
            run_thread(h, self._locks_worker, h._gen, [list(h.model.messages.values())],
                       name="_locks_worker", group="locks", exclusive=True)

    def locks_after_sync(self) -> None:
        """Every row's lock read again after a refresh, at most once every LOCKS_EVERY seconds
        (a refresh within that time defers it to the end of it, once)."""
        h = self.host
        if h.lock_service is None:
            return
        wait = 0.0 if self.locks_read_at is None else self.locks_read_at + LOCKS_EVERY - time.monotonic()
        if wait <= 0:
            self.locks_all()
        else:
            self._schedule_locks(wait)

    def _schedule_locks(self, wait: float) -> None:
        """The next read of every row's lock in ``wait`` seconds, unless one is due sooner."""
        due = time.monotonic() + wait
        if self.locks_timer is not None:
            if self.locks_due_at <= due:
                return
            self.locks_timer.stop()
        self.locks_due_at = due
        self.locks_timer = self.host.set_timer(wait, self._locks_due)

    def _locks_due(self) -> None:
        self.locks_timer = None
        self.locks_all()

    def _locks_worker(self, gen: int, box: builtins.list[builtins.list[Message]]) -> None:
        h = self.host
        messages = box.pop()
        error = None
        try:
            h.lock_service.annotate(messages)
        except Exception as e:  # noqa: BLE001 - LockUnavailable and friends: IMAP keeps working
            error = str(e) or type(e).__name__
        h.post_message(M.LocksDone(gen, error))

    def locks_done(self, msg: M.LocksDone) -> None:
        h = self.host
        s = h.pulse_state
        was = s.locks_error
        s.locks_error = msg.error
        s.locks_held = None if msg.error else sum(1 for m in h.model.messages.values() if m.lock is not None)
        if msg.error and msg.error != was:
            # Once per outage (the pulse bar keeps showing it): said again on every refresh, it
            # overwrote the result of the operator's last action (tests/faults/test_redis.py).
            text = msg.error if msg.error.startswith("Redis unavailable") else f"Redis unavailable: {msg.error}"
            h.status(f"{text} (IMAP keeps working; lock column shows ·)", "warn")
        h.list.set_locks(True)
        h.list.refresh()
        h._pulse()
        if h.lock_service is not None and h.model.messages:
            self._schedule_locks(LOCKS_RETRY if msg.error else
                                 max(LOCKS_EVERY, LOCKS_QUIET_PER_100K * len(h.model.messages) / 100_000))

    # -- live refresh ----------------------------------------------------------------------------

    def start_watcher(self) -> None:
        h = self.host
        factory = self.watcher_factory
        if factory is None:
            h.pulse_state.live = "off"
            return
        if factory == "auto":
            settings = getattr(h.service, "settings", None)
            if settings is None:
                h.pulse_state.live = "off"
                return
            from triage_tui.services.watch import MailboxWatcher

            def make(on_change: Callable[[str], None], on_state: Callable[[str, str], None]) -> Any:
                # the service's own way of opening a session (IMAP, or Graph, which is polled)
                opener = getattr(h.service, "_factory", None)
                return MailboxWatcher(settings, getattr(h.service, "limits", None),
                                      on_change=on_change, on_state=on_state,
                                      **({"session_factory": opener} if callable(opener) else {}))

            factory = make
        assert callable(factory)
        def changed(reason: str) -> None:
            h.post_message(M.WatchChanged(reason))

        def state(mode: str, detail: str) -> None:
            h.post_message(M.WatchState(mode, detail))

        h._watcher = factory(changed, state)
        run_thread(h, self._watch_worker, h._watcher, name="_watch_worker", group="watch")

    @staticmethod
    def _watch_worker(watcher: Any) -> None:
        watcher.run()

    def watch_state(self, msg: M.WatchState) -> None:
        h = self.host
        mode = msg.mode
        if mode == "poll":
            mode = f"poll {msg.detail}"
        elif mode == "reconnecting":
            h.status(f"live refresh: reconnecting ({msg.detail})", "warn")
        h.pulse_state.live = mode
        h._pulse()

    def request_sync(self, reason: str, *, force: bool = False) -> None:
        h = self.host
        if h._loading or h._sync_running or (h._paused and not force) or h._uidvalidity is None:
            h._sync_pending = True
            return
        h._sync_pending = False
        h._sync_running = True
        # the UIDs in a box the worker empties (see locks_all)
        run_thread(h, self._sync_worker, h._gen, h.view, [set(h.model.messages)], h._uidvalidity,
                   name="_sync_worker", group="sync")

    def _sync_worker(self, gen: int, view: View, box: builtins.list[set[int]], uidvalidity: int) -> None:
        h = self.host
        known = box.pop()
        svc = h.service
        with h._io_lock:
            if h._needs_reconnect:
                svc.reconnect()
                h._needs_reconnect = False
            uv, found = svc.search(view)
            if uv != uidvalidity:
                h.post_message(M.SyncDone(gen, uv, set(), [], svc.counts(), uidvalidity_changed=True))
                return
            present = set(found)
            gone = known - present
            new_uids = [u for u in found if u not in known]
            new: list[Message] = []
            if new_uids:
                for batch in svc.iter_messages(uv, new_uids, headers=True, now=h.clock()):
                    new.extend(batch)
            counts = svc.counts()
        ls = h.lock_service
        # not within LOCKS_RETRY of a failed read: a hung Redis made every refresh wait its timeout
        if ls is not None and new and not ls.failed_within(LOCKS_RETRY):
            with contextlib.suppress(Exception):
                ls.annotate(new)
        h.post_message(M.SyncDone(gen, uv, gone, new, counts))

    def sync_done(self, msg: M.SyncDone) -> None:
        h = self.host
        h._sync_running = False
        if msg.gen == h._gen:
            self.counts_ready(M.CountsReady(msg.counts))
            if msg.uidvalidity_changed:
                h.status(f"UIDVALIDITY changed to {msg.uidvalidity}: the mailbox was reset, so every UID "
                         "names another message now; marks cleared, list reloaded", "error")
                self.load()
                return
            keep = h.list.current
            picked = msg.gone - h._own_changed
            h._own_changed -= msg.gone
            msgs = h.model.messages
            # duplicate Message-IDs are judged in the whole view: the new rows came judged among
            # themselves only, and a copy whose original is gone is no longer a duplicate
            gone_rows = [m for u in msg.gone if (m := msgs.get(u)) is not None]
            mids = {m.message_id for m in gone_rows}
            mids.update(m.message_id for m in msg.new)
            s = h.pulse_state
            if s.locks_held is not None:  # exact again at the next read of every lock
                s.locks_held += sum(m.lock is not None for m in msg.new) - sum(m.lock is not None for m in gone_rows)
            h.model.remove(msg.gone)
            self._freeze(h.model.add(msg.new))
            mids.discard("")
            if mids:
                group = [m for m in msgs.values() if m.message_id in mids]
                before = [m.suspicious_reason for m in group]
                mark_duplicates(group)
                # changed in place: their sort keys and filter matches are computed again
                h.model.add([m for m, was in zip(group, before, strict=True) if m.suspicious_reason != was])
            h.model.rebuild()
            s.vanished, s.arrived = len(picked), len(msg.new)
            s.refreshed = h.clock()
            if not h.model.messages:
                h.list.empty_text = f"the {h.view.value} view is empty"
            h._refresh_list(keep)
            if msg.gone or msg.new:
                self.locks_after_sync()
        if h._sync_pending and not h._paused:
            h.set_timer(SYNC_SETTLE, lambda: h.request_sync("pending"))

    # -- pause and reload -------------------------------------------------------------------------

    def pause(self) -> None:
        h = self.host
        h._paused = not h._paused
        if h._watcher is not None:
            h._watcher.pause(h._paused)
        if h._paused:
            h.status("live refresh paused: the list stays as it is (p resumes, R re-lists)", "warn")
        else:
            h.status("live refresh resumed")
            if h._sync_pending:
                h.request_sync("resume")
        h._pulse()

    def reload(self) -> None:
        h = self.host
        self.load(keep_marks=True)
        h.status(f"re-listing the {h.view.value} view (marks kept for messages still there)")
