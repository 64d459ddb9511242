"""The guided incident (``P``): the app side of the plan screen.

Computes the plan from the mailbox in a thread worker (:func:`services.incident.compute_incident`,
the same code as ``triage-tui plan``), and applies it step by step: each step is prepared through
its service in a worker (``plan_flags`` / ``plan_expunge`` / ``plan_release``: UIDVALIDITY and the
flags are checked again), confirmed in a dialog (``y``; the count typed for an expunge and for a
release that changes keys), then run through the service (journaled, read-only refused there too).
A step that fails or is cancelled stops the run; the next steps never run. After the last release
step the re-ingest watch starts (the app's own, so "picked up" shows in the pulse bar and on the
watch screen, and the demo's mail_room starts by itself).

Workers report back with :class:`IncidentCall` messages posted to the host (thread-safe, never
blocking a worker on an app that is shutting down); the host runs them on its event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from textual.message import Message as TMessage

from triage_tui.domain import plan as P
from triage_tui.domain.age import format_age
from triage_tui.domain.model import TRIAGE_KEYWORD
from triage_tui.domain.text import inert
from triage_tui.errors import TriageError
from triage_tui.services.incident import RELEASING, PreparedStep, compute_incident, execute_step, prepare_step
from triage_tui.services.locks import ttl_distribution
from triage_tui.tui import messages as M
from triage_tui.tui.screens.confirm import ConfirmRequest, ConfirmScreen
from triage_tui.tui.screens.plan import PlanScreen
from triage_tui.tui.screens.reingest import watch_summary


class IncidentCall(TMessage):
    """Run ``fn`` on the app's event loop (posted by the controller's workers)."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        super().__init__()


class IncidentHost(Protocol):
    """What the controller needs of the app (the app satisfies it structurally)."""

    service: Any
    lock_service: Any
    read_only: bool
    _busy: bool

    def status(self, text: str, kind: str = "info") -> None: ...

    def push_screen(self, screen: Any, callback: Any = None) -> Any: ...

    def run_worker(self, work: Any, *args: Any, **kwargs: Any) -> Any: ...

    def post_message(self, message: Any) -> bool: ...

    def request_sync(self, reason: str, *, force: bool = False) -> None: ...

    def clock(self) -> Any: ...

    def action_reingest(self) -> None: ...


def _sample(msgs: dict[int, Any], uids: list[int], n: int, now: Any) -> list[str]:
    out = []
    for u in uids[:n]:
        m = msgs.get(u)
        if m is None:
            out.append(f"UID {u}")
            continue
        try:
            age = format_age(m.age_seconds(now))
        except Exception:  # noqa: BLE001 - a broken date is an unknown age
            age = "?"
        out.append(f"UID {u:>7}  {age:>4}  {inert(m.from_addr or m.from_name, limit=28):<28}  "
                   f"{inert(m.subject, limit=60)}")
    return out


class IncidentController:
    """One incident plan at a time: its screen, its computation, its run."""

    def __init__(self, host: IncidentHost, io_lock: threading.RLock | None = None) -> None:
        self.host = host
        self.io_lock = io_lock or threading.RLock()
        self.screen: PlanScreen | None = None
        self.messages: dict[int, Any] = {}
        self.plan: P.IncidentPlan | None = None
        self.index = 0  # the step running (1-based; 0: none)
        self.done: list[str] = []  # "step 1 ignore: 1,148 marked \\Seen (journal op ...)"
        self.done_steps: list[int] = []
        self.stopping = False
        self.running = False
        self.releases: list[tuple[Any, Any]] = []  # (ReleasePlan, ReleaseResult) of this run
        self.computing = 0  # token of the computation the screen waits for

    # -- the screen -------------------------------------------------------------------------------

    def open(self) -> None:
        if self.screen is not None:
            return
        if self.running:
            self.host.status("the incident plan is still running its current step: wait for it", "warn")
            return
        self.done, self.done_steps = [], []
        self.screen = PlanScreen(self, read_only=self.host.read_only)
        self.host.push_screen(self.screen, self._closed)

    def watch_text(self) -> str:
        """The app's re-ingest watch in one line (empty when none runs or lingers)."""
        w = self._our_watch()
        return watch_summary(w)[0] if w is not None else ""

    def _our_watch(self) -> Any:
        w = getattr(self.host, "reingest_watch", None)
        return w if w is not None and self._watcher is not None and w.watcher is self._watcher else None

    def show_watch(self) -> None:
        w = self._our_watch()
        if w is None or w.finished:
            if self.screen is not None:
                self.screen.show_status("no watch running: it starts after the plan's release step" if w is None
                                        else f"the watch is over: {watch_summary(w)[0]}", "warn")
            return
        self.host.action_reingest()  # a running watch: the re-ingest screen shows it (over this one)

    def _closed(self, _: Any) -> None:
        self.screen = None
        if not self.running and not self.done_steps:
            self.host.status("incident plan closed: nothing was changed")

    def _call(self, fn: Callable[[], None]) -> None:
        self.host.post_message(IncidentCall(fn))

    # -- computing --------------------------------------------------------------------------------

    def compute(self) -> None:
        self.computing += 1
        token = self.computing
        self.host.run_worker(lambda: self._compute_worker(token), thread=True, exit_on_error=False,
                             group="incident", description="incident-plan")

    def _compute_worker(self, token: int) -> None:
        svc, locks = self.host.service, self.host.lock_service
        msgs: dict[int, Any] = {}
        try:
            with self.io_lock:
                plan, note = compute_incident(svc, locks, now=self.host.clock(), messages=msgs)
        except Exception as e:  # noqa: BLE001 - one line on the screen, never a crash
            text = str(e) if isinstance(e, TriageError) else f"internal error: {type(e).__name__}: {e}"
            self._call(partial(self._computed, token, None, {}, text))
            return
        if locks is None:
            note = note or "no Redis configured (--redis-url): the locks are not read, and release steps need it"
        self._call(lambda: self._computed(token, plan, msgs, note))

    def _computed(self, token: int, plan: P.IncidentPlan | None, msgs: dict[int, Any], note: str | None) -> None:
        screen = self.screen
        if screen is None or token != self.computing:
            return
        if plan is None:
            screen.show_error(note or "the plan could not be computed")
            return
        self.messages = msgs
        screen.show_plan(plan, msgs, note, now=self.host.clock())

    # -- applying ---------------------------------------------------------------------------------

    def apply(self, plan: P.IncidentPlan) -> None:
        screen = self.screen
        if self.host.read_only:
            if screen is not None:
                screen.run_finished(False, "read-only mode: applying the plan is disabled (restart without "
                                    "--read-only to act)", ran=False)
            return
        if any(s.action in RELEASING for s in plan.steps) and self.host.lock_service is None:
            if screen is not None:
                screen.run_finished(False, "the plan releases mail_room's locks: restart with --redis-url "
                                    "(or k/i the release buckets to ignore them)", ran=False)
            return
        if self.host._busy:
            if screen is not None:
                screen.run_finished(False, "an action is still running: wait for it to finish, then A again", ran=False)
            return
        self.plan, self.index, self.done, self.done_steps, self.releases = plan, 0, [], [], []
        self.stopping, self.running, self._watching = False, True, False
        self.host._busy = True
        self._next()

    def stop(self) -> None:
        """esc mid-apply: the step that is being sent finishes (a write is never cut), nothing after it runs."""
        if self.running:
            self.stopping = True

    def _next(self) -> None:
        assert self.plan is not None
        if self.stopping:
            self._finish(False, f"stopped by you before step {self.index + 1}")
            return
        if self.index >= len(self.plan.steps):
            self._finish(True, "")
            return
        self.index += 1
        step = self.plan.steps[self.index - 1]
        self._state("run", "checking with the server…")
        i, uv = self.index, self.plan.uidvalidity
        self.host.run_worker(lambda: self._prepare_worker(i, step, uv), thread=True, exit_on_error=False,
                             group="incident", description="incident-prepare")

    def _state(self, state: str, text: str) -> None:
        if self.screen is not None:
            self.screen.step_state(self.index, state, text)

    def _prepare_worker(self, i: int, step: P.Step, uv: int) -> None:
        try:
            with self.io_lock:
                prepared = prepare_step(self.host.service, self.host.lock_service, step, uv)
        except Exception as e:  # noqa: BLE001 - UIDVALIDITY changed, Redis gone: one line, the run stops
            self._call(partial(self._failed, i, e, sent=False))
            return
        self._call(lambda: self._prepared(i, prepared))

    def _prepared(self, i: int, prepared: PreparedStep) -> None:
        step = prepared.step
        if prepared.nothing_to_do:
            why = ("no key needed a change (free already: mail_room takes them on its next poll)"
                   if prepared.release is not None else "already done or gone")
            self.done.append(f"step {i} {step.action}: nothing to do")
            self.done_steps.append(i)
            self._state("skip", f"nothing to do: {why}")
            self._next()
            return
        if self.stopping or self.screen is None:
            self._finish(False, f"stopped by you before step {i}")
            return
        request = self._request(i, prepared)
        self._state("ask", "waiting for your confirmation")

        def answered(ok: bool | None) -> None:
            if not ok:
                self._finish(False, f"step {i} ({step.action}) cancelled: nothing of it was sent")
                return
            self._state("run", "working…")
            self.host.run_worker(lambda: self._execute_worker(i, prepared), thread=True, exit_on_error=False,
                                 group="incident", description="incident-execute")

        self.host.push_screen(ConfirmScreen(request), answered)

    def _request(self, i: int, prepared: PreparedStep) -> ConfirmRequest:
        step, n_steps = prepared.step, len(self.plan.steps) if self.plan else 0
        now = self.host.clock()
        head = f"Step {i} of {n_steps}: "
        shown = 3 if getattr(self.host, "size", None) is None or self.host.size.height >= 30 else 2
        if prepared.release is not None:
            rp = prepared.release
            n = rp.count
            # a few lines, so the typed box and the keys fit at 80x24 (the CLI prints describe() in full)
            lines = []
            if rp.mark_unseen is not None:
                lines.append(f"remove \\Seen from {rp.mark_unseen.count:,} message(s): mail_room searches them again")
                if getattr(rp.mark_unseen, "budget_short", None):  # a Graph mailbox: what un-seeing spends
                    lines.append(rp.mark_unseen.budget_short)
            dist = ", ".join(f"{k} {v}" for k, v in ttl_distribution(t.pttl_ms for t in rp.targets).items())
            lines.append(f"{len(rp.targets):,} hold a mail_room key" + (f" (TTL {dist})" if dist else "")
                         + f"; {len(rp.unlocked):,} are free already")
            if rp.not_unseen:
                lines.append(f"{len(rp.not_unseen):,} are no longer UNSEEN: their keys stay untouched")
            if n:
                title = head + (f"un-see {rp.mark_unseen_count:,}, release {n:,} lock key(s)?"
                                if rp.mark_unseen_count else f"release {n:,} lock key(s) now?")
                lines.append(f"delete {n:,} key(s) now (TTL 0) on {rp.redis}: a released key is not restored")
            else:
                title = head + f"remove \\Seen from {rp.mark_unseen_count:,} message(s)?"
            lines += [f"warning: {w}" for w in rp.warnings]
            uids = sorted({t.uid for t in rp.targets} | set(rp.unlocked))
            label = f"Release {n:,}" if n else f"Mark {rp.mark_unseen_count:,} unseen"
            return ConfirmRequest(title=title, lines=lines, sample=_sample(self.messages, uids, shown, now),
                                  more=max(0, len(uids) - shown), typed=prepared.typed, confirm_label=label,
                                  danger=bool(n))
        fp = prepared.flags
        n = fp.count
        if step.action == P.EXPUNGE:
            title = head + f"expunge {n:,} \\Deleted message(s)?"
            lines = ["They are removed from the server for good. This cannot be undone."]
            label = f"Expunge {n:,}"
        else:
            title = head + f"ignore {n:,} message(s): mark them \\Seen?"
            lines = [f"mark \\Seen with {TRIAGE_KEYWORD}: mail_room skips them, they stay in the mailbox "
                     "(u in the list undoes it)", f"from: {', '.join(step.buckets)}"]
            label = f"Mark {n:,} seen"
        if fp.skipped:
            lines.append(f"{fp.skipped:,} of the {fp.requested:,} need no change (already done or gone).")
        short = getattr(fp, "budget_short", None)  # a Graph mailbox: its budget on a line of its own (80x24)
        if short:
            lines.append(f"UIDVALIDITY {fp.uidvalidity} · audit-journaled")
            lines.append(short)
        else:
            lines.append(f"UIDVALIDITY {fp.uidvalidity} · {getattr(fp, 'cost_text', f'{fp.commands} IMAP command(s)')} "
                         "· audit-journaled")
        return ConfirmRequest(title=title, lines=lines, sample=_sample(self.messages, list(fp.uids), shown, now),
                              more=max(0, n - shown), typed=prepared.typed, confirm_label=label,
                              danger=step.action == P.EXPUNGE)

    def _execute_worker(self, i: int, prepared: PreparedStep) -> None:
        try:
            with self.io_lock:
                result = execute_step(self.host.service, self.host.lock_service, prepared)
        except Exception as e:  # noqa: BLE001 - journal write failed, read-only, lost link: the run stops
            self._call(partial(self._failed, i, e, sent=True))
            return
        self._call(lambda: self._executed(i, prepared, result))

    def _executed(self, i: int, prepared: PreparedStep, r: Any) -> None:
        step = prepared.step
        if prepared.release is not None:
            self.releases.append((prepared.release, r))
            un = f"{len(r.mark_unseen.changed):,} un-seen, " if r.mark_unseen is not None else ""
            text = f"{un}{len(r.changed):,} key(s) released (journal op {r.op_id or '-'})"
            if r.error:
                text += f" · ERROR: {r.error}"
        else:
            what = "expunged" if step.action == P.EXPUNGE else "marked \\Seen"
            text = f"{len(r.changed):,} {what} (journal op {r.op_id})"
            if r.failed:
                text += f" · {sum(len(u) for u, _ in r.failed):,} FAILED: {r.failed[0][1]}"
        self.done.append(f"step {i} {step.action}: {text}")
        if not r.ok:
            self._state("fail", text)
            self._finish(False, f"STOPPED: step {i} ({step.action}) did not finish: {text}")
            return
        self._state("done", text)
        self.done_steps.append(i)
        if prepared.release is not None and not any(s.action in RELEASING for s in self.plan.steps[i:]):
            self._watch()  # the last release: the pickup is watched while any later step is asked
        self._next()

    def _failed(self, i: int, e: BaseException, *, sent: bool) -> None:
        text = str(e) if isinstance(e, TriageError) else f"internal error: {type(e).__name__}: {e}"
        self._state("fail", inert(text, limit=200))
        where = "at" if sent else "before"
        self._finish(False, f"STOPPED {where} step {i}: {inert(text, limit=300)}")

    def _finish(self, ok: bool, why: str) -> None:
        self.running = False
        self.host._busy = False
        # short: the step lines above it say what each did (and the journal op)
        steps = ", ".join(str(i) for i in self.done_steps)
        watch = " · watching the pickup (I shows it)" if self.releases else ""
        if ok:
            line = f"done: step(s) {steps}{watch}" if self.done_steps else "nothing to do"
        else:
            line = f"{why}; done before it: {'step(s) ' + steps if steps else 'nothing'}{watch}"
        if self.releases and not self._watching:
            self._watch()
        if self.screen is not None:
            self.screen.run_finished(ok, line)
        self.host.status(line, "ok" if ok else "error")
        self.host.request_sync("after-plan", force=True)

    _watching = False
    _watcher: Any = None  # the watcher this controller handed to the app's watch

    def _watch(self) -> None:
        """Start the app's re-ingest watch over every release of this run (one watcher, all targets)."""
        if not self.releases or self._watching:
            return
        self._watching = True
        releases = list(self.releases)
        ls, svc = self.host.lock_service, self.host.service
        cycle = getattr(self.host, "reingest_poll_cycle", 60.0)

        def work() -> None:
            try:
                watchers = [ls.watcher(svc, rp, r, poll_cycle=cycle) for rp, r in releases]
                w = watchers[0]
                for other in watchers[1:]:  # one watch over every release of the run
                    w.targets.update(other.targets)
                    w.counters |= other.counters
            except Exception as e:  # noqa: BLE001 - the release happened: say the watch could not start
                self._call(partial(self.host.status, f"the release is done; its watch could not start: {e}", "warn"))
                return
            plan, result = releases[-1]
            self._watcher = w
            self.host.post_message(M.ReingestReleased(plan, result, w))

        self.host.run_worker(work, thread=True, exit_on_error=False, group="incident", description="incident-watch")
