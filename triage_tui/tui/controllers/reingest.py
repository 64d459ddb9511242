"""Re-ingest (``I``): open the screen (tui/screens/reingest.py), plan the release in a worker,
release, and watch the pickup. The watch is re-armed when the previous look finishes (never
overlapping) and lives here, not in the screen, so it goes on in the pulse bar after the
screen is closed."""

from __future__ import annotations

import builtins
import time
from typing import Any

from triage_tui.domain.model import View
from triage_tui.domain.provenance import reingest_warning
from triage_tui.errors import TriageError
from triage_tui.tui import messages as M
from triage_tui.tui.controllers import run_thread
from triage_tui.tui.controllers.actions import PROGRESS_EVERY, ActionsController
from triage_tui.tui.controllers.demo import DemoController
from triage_tui.tui.controllers.host import Host
from triage_tui.tui.screens.reingest import ReingestRequest, ReingestScreen, ReingestWatch, watch_summary

WATCH_RETRY = 5.0  # after a failed look (Redis or IMAP hiccup)
WATCH_LINGER = 60.0  # a finished watch stays in the pulse bar this long


class ReingestController:
    def __init__(self, host: Host, actions: ActionsController, demo: DemoController) -> None:
        self.host = host
        self.actions = actions
        self.demo = demo
        self.screen: ReingestScreen | None = None
        self.watch: ReingestWatch | None = None
        self.watch_ids = 0
        self.watch_timer: Any = None

    def open(self) -> None:
        """Open the re-ingest screen for the marks (or the cursor row); while a watch runs, show it."""
        h = self.host
        w = self.watch
        if w is not None and not w.finished:
            self.push(ReingestScreen(None, watch=w))
            return
        if not self.actions.begin():
            return
        uids, note = self.actions.targets()
        if not uids:
            h.status("nothing selected: mark rows with space (or a for all matching), or put the cursor on one")
            return
        shown = 5 if h.size.height >= 30 else 3
        msgs = h.model.messages
        request = ReingestRequest(uids=uids, note=note, view=h.view.value, read_only=h.read_only,
                                  sample=self.actions.sample(uids, shown), demo_note=self.demo.reingest_note(),
                                  poll_cycle=h.reingest_poll_cycle,
                                  messages=[msgs[u] for u in uids if u in msgs], now=h.clock(),
                                  stale_after_s=h.service.analysis.stale_after.total_seconds())
        h.status("re-ingest: planning (a dry run: nothing changes until you type the count)")
        self.push(ReingestScreen(request))

    def push(self, screen: ReingestScreen) -> None:
        h = self.host
        self.screen = screen

        def closed(_: None) -> None:
            self.screen = None
            w = self.watch
            if w is not None and not w.finished:
                h.status("re-ingest: the watch goes on in the pulse bar (I shows it again)")
            elif screen.watching is None and not screen.executing:
                h.status("re-ingest cancelled: nothing was changed")

        h.push_screen(screen, closed)

    def plan(self, token: int, request: ReingestRequest, mode: str, ttl: int, waves: int,
             interval: float) -> None:
        h = self.host
        if h._uidvalidity is None or h.lock_service is None:
            if self.screen is not None:
                self.screen.show_error("the list is not loaded yet" if h.lock_service else
                                       "re-ingest needs mail_room's Redis: start with --redis-url")
            return
        view = View(request.view)
        run_thread(h, self._plan_worker, token, h._uidvalidity, list(request.uids), view, mode, ttl, waves,
                   interval, name="_reingest_plan_worker", group="reingest-plan")

    def _plan_worker(self, token: int, uidvalidity: int, uids: builtins.list[int], view: View, mode: str,
                     ttl: int, waves: int, interval: float) -> None:
        h = self.host
        svc = h.service
        try:
            with h._io_lock:
                mark = svc.plan_flags("mark-unseen", uidvalidity, uids) if view == View.SEEN_STUCK else None
                plan = h.lock_service.plan_release(svc, uidvalidity, uids, ttl=ttl, natural=mode == "natural",
                                                   waves=waves, wave_interval=interval, mark_unseen=mark)
            acted = {t.uid for t in plan.targets} | set(mark.uids if mark is not None else [])
            now, known = h.clock(), h.model.messages
            ages = {u: m.age_seconds(now) for u in acted if (m := known.get(u)) is not None}
            warning = reingest_warning(acted, ages, svc.analysis.stale_after, unsee=mark is not None)
            if warning:
                plan.warnings.append(warning)
        except TriageError as e:  # Redis unavailable, UIDVALIDITY changed: for this request's screen
            h.post_message(M.ReingestPlanned(token, None, str(e)))
            return
        h.post_message(M.ReingestPlanned(token, plan))

    def planned(self, msg: M.ReingestPlanned) -> None:
        screen = self.screen
        if screen is None or msg.token != screen.token:
            return  # an answer to a superseded choice
        if msg.error is not None:
            screen.show_error(msg.error)
        else:
            screen.show_plan(msg.token, msg.plan)

    def execute(self, plan: Any) -> None:
        h = self.host
        if h._busy:
            if self.screen is not None:
                self.screen.show_error("an action is still running: wait for it to finish")
            return
        writes = plan.count > 0 or plan.mark_unseen_count > 0
        if writes:
            h._busy = True
            h.status(f"re-ingest: releasing {plan.count:,} key(s)…" if plan.count else
                     f"re-ingest: marking {plan.mark_unseen_count:,} message(s) unseen…")
        run_thread(h, self._release_worker, plan, writes, name="_reingest_release_worker", group="reingest")

    def _release_worker(self, plan: Any, writes: bool) -> None:
        h = self.host
        ls = h.lock_service
        result = None
        if writes:
            def progress(done: int, total: int) -> None:
                now = time.monotonic()
                if done >= total or now - h._last_progress >= PROGRESS_EVERY:
                    h._last_progress = now
                    h.post_message(M.ActionProgress("release", done, total))

            # release() searches on the shared read connection before and after the writes
            with h._io_lock:
                result = ls.release(plan, h.service, progress=progress)
        watcher = ls.watcher(h.service, plan, result, poll_cycle=h.reingest_poll_cycle)
        h.post_message(M.ReingestReleased(plan, result, watcher))

    def released(self, msg: M.ReingestReleased) -> None:
        h = self.host
        h._busy = False
        h.pulse_state.progress = ""
        plan, r = msg.plan, msg.result
        if self.watch_timer is not None:
            self.watch_timer.stop()
            self.watch_timer = None
        self.watch_ids += 1
        w = ReingestWatch(id=self.watch_ids, plan=plan, result=r, watcher=msg.watcher, started_at=h.clock(),
                          poll_cycle=h.reingest_poll_cycle)
        self.watch = w
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
        h.status(text, kind)
        if h.demo_consumer is not None and not h.demo_consumer.running:
            self.demo.consumer_worker(True, "started by itself after the re-ingest (the runbook's last step)")
        if self.screen is not None:
            self.screen.show_watch(w)
        self.pulse_watch()
        self.look()
        if r is not None:
            h.request_sync("after-release", force=True)
            h._locks_all()

    def look(self) -> None:
        """One look of the watch, in a worker; the next is armed when this one has answered."""
        self.watch_timer = None
        w = self.watch
        if w is None or w.finished:
            return
        run_thread(self.host, self._watch_worker, w.id, w.watcher, name="_reingest_watch_worker",
                   group="reingest-watch")

    def _watch_worker(self, watch_id: int, watcher: Any) -> None:
        h = self.host
        with h._io_lock:
            status = watcher.poll()
        if status.done:
            watcher.settle(status)  # Redis only: outside the IMAP lock
        h.post_message(M.ReingestStatus(watch_id, status))

    def status(self, msg: M.ReingestStatus) -> None:
        h = self.host
        w = self.watch
        if w is None or msg.watch_id != w.id or w.stopped:
            return
        w.status, w.error, w.polled_at = msg.status, None, time.monotonic()
        self.show(w)
        if w.finished:
            w.finished_at = time.monotonic()
            st = w.status
            if st is not None and not st.failed:
                h.status(f"re-ingest done: all {st.targeted:,} targeted message(s) picked up "
                         f"({st.delivered:,} delivered)", "ok")
                h.request_sync("reingest-done", force=True)
            elif st is not None:
                h.status(f"re-ingest: {st.diagnosis}", "error")
            h.set_timer(WATCH_LINGER, self.pulse_watch)
            return
        if msg.status.failed and msg.status.diagnosis:
            h.status(f"re-ingest: {msg.status.diagnosis}", "error")
        self.watch_timer = h.set_timer(h.reingest_interval, self.look)

    def show(self, w: ReingestWatch) -> None:
        self.pulse_watch()
        if self.screen is not None and self.screen.watching is w:
            self.screen.show_watch(w)

    def show_running_watch(self) -> None:
        """The screen's watch again (the demo's mail_room started or stopped)."""
        if self.screen is not None and self.screen.watching is not None:
            self.screen.show_watch(self.screen.watching)

    def pulse_watch(self) -> None:
        h = self.host
        w = self.watch
        s = h.pulse_state
        if w is None or (w.finished_at is not None and time.monotonic() - w.finished_at >= WATCH_LINGER - 0.5):
            s.reingest = ""
        else:
            s.reingest, s.reingest_style = watch_summary(w)
        h._pulse()

    def stop_watch(self) -> None:
        h = self.host
        w = self.watch
        if w is None:
            return
        w.stopped = True
        w.finished_at = time.monotonic()
        if self.watch_timer is not None:
            self.watch_timer.stop()
            self.watch_timer = None
        h.status("re-ingest: watch stopped (nothing on the servers changed by stopping it)")
        self.pulse_watch()

    def worker_failed(self, group: str, text: str) -> bool:
        """A failed re-ingest worker: True when it was reported here (the watch's own line)."""
        h = self.host
        if group in ("reingest-plan", "reingest"):
            if group == "reingest":
                h._busy = False
                h.pulse_state.progress = ""
                if h._uidvalidity is not None:
                    h.request_sync("after-error", force=True)
                    h._locks_all()
            if self.screen is not None:
                self.screen.show_error(text)
            return False
        # reingest-watch
        w = self.watch
        if w is not None and not w.finished:
            # a Redis or IMAP hiccup must not end the watch: say so, look again a bit later
            w.error = text
            self.show(w)
            self.watch_timer = h.set_timer(WATCH_RETRY, self.look)
        h.status(f"re-ingest watch: {text} (looking again in {WATCH_RETRY:.0f} s)", "warn")
        h._pulse()
        return True
