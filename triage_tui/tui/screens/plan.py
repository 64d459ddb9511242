"""The incident plan screen (``P``): the runbook as one plan, moved with a key, applied with one.

The mailbox sorted into the plan's buckets (:mod:`triage_tui.domain.plan`), each with its count,
its action, a sample (inert text) and why. The messages of the review buckets (problems,
suspicious) are listed under them, one row each. On a bucket or a message: ``k`` keeps it (give it
to GitLab), ``i`` ignores it, ``d`` drops the move. The steps the moves result in are shown below,
in the order they run. ``A`` applies them: one confirmation per step (``y``, or the count typed
where the existing tools type it), each through the service layer; a step that fails or is
cancelled stops the run, and the status line says what was done before it.

The screen does no IO: a :class:`PlanRunner` (the app's incident controller) computes the plan
and runs the steps, and calls back ``show_plan``, ``show_error``, ``step_state``, ``show_status``
and ``run_finished``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Static

from triage_tui.domain import plan as P
from triage_tui.domain.age import format_age
from triage_tui.domain.text import inert
from triage_tui.domain.width import fit
from triage_tui.tui.screens.once import OnceModal

#: the message rows shown under a review bucket (more: move the whole bucket)
REVIEW_ROWS = 200
REVIEW_BUCKETS = (P.PROBLEMS, P.SUSPICIOUS)
#: the key sequence of the whole incident (README, the footer): P, A, then one answer per step
SEQUENCE = "P plan · A apply · per step: y, or its count + Enter"
KEYS = "↑↓ move · k keep · i ignore · d default · X +expunge · A apply · esc close"
#: the steps in a few words (one line at 80 columns; the CLI's plan has the long text)
STEP_SHORT = {
    P.IGNORE: "mark \\Seen + keyword: mail_room skips them",
    P.UNSEE_RELEASE: "remove \\Seen, release their locks",
    P.RELEASE: "release their locks now",
    P.EXPUNGE: "expunge the \\Deleted (permanent)",
}
_CHOICE_WORD = {P.KEEP: "keep", P.IGNORE: "ignore", P.REVIEW: "review"}
_GLYPH = {"ask": "?", "run": "▶", "done": "✓", "skip": "·", "fail": "✗", "stop": "■"}


class PlanRunner(Protocol):
    """What the screen needs of the app side (the incident controller)."""

    def compute(self) -> None: ...

    def apply(self, plan: P.IncidentPlan) -> None: ...

    def stop(self) -> None: ...

    def watch_text(self) -> str: ...

    def show_watch(self) -> None: ...


@dataclass(frozen=True)
class Row:
    bucket: str
    uid: int | None = None  # None: the bucket's own row


def _sender(m: Any) -> str:
    return str(getattr(m, "from_addr", "") or getattr(m, "from_name", "") or getattr(m, "sender", "") or "")


class BucketList(Widget):
    """The buckets and the review messages, one line each, with a cursor (windowed: only the
    visible lines are built)."""

    can_focus = True

    def __init__(self, screen: PlanScreen, **kw: Any) -> None:
        super().__init__(**kw)
        self.owner = screen
        self.top = 0

    def render(self) -> Content:
        s = self.owner
        rows = s.rows
        if not rows:
            return Content(s.empty_text)
        height = max(1, self.size.height)
        if s.cursor < self.top:
            self.top = s.cursor
        elif s.cursor >= self.top + height:
            self.top = s.cursor - height + 1
        self.top = max(0, min(self.top, max(0, len(rows) - height)))
        lines = []
        for i in range(self.top, min(len(rows), self.top + height)):
            c = Content(fit(inert(s.row_text(rows[i], self.size.width), limit=400), self.size.width, pad=False))
            if i == s.cursor:
                c = c.stylize("reverse" if self.has_focus else "bold")
            elif rows[i].uid is None:
                c = c.stylize("bold")
            lines.append(c)
        return Content("\n").join(lines)


class PlanScreen(OnceModal[None]):
    DEFAULT_CSS = """
    PlanScreen { align: center middle; background: $background 60%; }
    #plan-box { width: 100%; height: 100%; background: $surface; border: round $primary; }
    #plan-title { height: 1; padding: 0 1; background: $boost; text-style: bold; color: $text-primary; }
    #plan-list { height: 1fr; min-height: 3; padding: 0 1; }
    #plan-detail { height: auto; max-height: 5; padding: 0 1; color: $text-muted; }
    #plan-steps { height: auto; max-height: 6; padding: 0 1; border-top: solid $primary 50%; }
    #plan-status { height: auto; max-height: 2; padding: 0 1; }
    #plan-status.-error { color: $text-error; text-style: bold; }
    #plan-status.-ok { color: $text-success; }
    #plan-status.-warn { color: $text-warning; }
    #plan-keys { height: 2; padding: 0 1; background: $boost; color: $text-muted; }
    """

    BINDINGS = [
        Binding("escape", "close", "Close", id="plan.close", tooltip="close (while applying: stop after this step)"),
        Binding("A", "apply", "Apply", id="plan.apply", tooltip="run the steps in order, one confirmation each"),
        Binding("k", "choose('keep')", "Keep", id="plan.keep", tooltip="give the bucket or message to GitLab"),
        Binding("i", "choose('ignore')", "Ignore", id="plan.ignore", tooltip="mark it ignored (\\Seen + keyword)"),
        Binding("d", "choose('')", "Default", id="plan.default", tooltip="drop your move: the computed action"),
        Binding("X", "toggle_expunge", "Expunge too", id="plan.expunge",
                tooltip="also expunge the \\Deleted leftovers (a last step, typed count)"),
        Binding("R", "recompute", "Recompute", id="plan.recompute", tooltip="list the mailbox again"),
        Binding("I", "show_watch", "Watch", id="plan.watch", tooltip="the re-ingest watch after the release"),
        Binding("j,down", "move(1)", "Down", show=False, id="plan.down"),
        Binding("up", "move(-1)", "Up", show=False, id="plan.up"),
        Binding("pagedown", "move(10)", "Page down", show=False, id="plan.page_down"),
        Binding("pageup", "move(-10)", "Page up", show=False, id="plan.page_up"),
        Binding("home", "move(-1000000)", "Top", show=False, id="plan.top"),
        Binding("end", "move(1000000)", "Bottom", show=False, id="plan.bottom"),
    ]

    def __init__(self, runner: PlanRunner, *, read_only: bool = False, clock: Any = None) -> None:
        super().__init__()
        self.runner = runner
        self.read_only = read_only
        self.clock = clock
        self.base: P.IncidentPlan | None = None
        self.plan: P.IncidentPlan | None = None
        self.overrides = P.Overrides()
        self.messages: dict[int, Any] = {}
        self.rows: list[Row] = []
        self.cursor = 0
        self.computing = False
        self.running = False
        self.finished = False
        self.steps_state: dict[int, tuple[str, str]] = {}  # step index -> (state, text)
        self.empty_text = "listing the mailbox (UNSEEN, seen-stuck, \\Deleted) and the locks…"
        self.now: datetime | None = None
        self.status_text = ""
        self.watch = ""  # the re-ingest watch in one line, once the plan's release has started it

    # -- layout -----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Vertical(id="plan-box"):
            yield Static(Content("Incident plan"), id="plan-title", markup=False)
            yield BucketList(self, id="plan-list")
            yield Static(Content(""), id="plan-detail", markup=False)
            yield Static(Content(""), id="plan-steps", markup=False)
            yield Static(Content(""), id="plan-status", markup=False)
            yield Static(Content(KEYS + "\nThe incident in keys: " + SEQUENCE), id="plan-keys", markup=False)

    def on_mount(self) -> None:
        self.query_one(BucketList).focus()
        if self.read_only:
            self.show_status("read-only review mode: the plan is shown; applying it is disabled", "warn")
        self.set_interval(1.0, self._tick)
        self.action_recompute()

    def _tick(self) -> None:
        text = self.runner.watch_text()
        if text != self.watch:
            self.watch = text
            self._show_steps()

    # -- what the runner calls --------------------------------------------------------------------

    def show_plan(self, plan: P.IncidentPlan, messages: dict[int, Any], note: str | None = None,
                  now: datetime | None = None) -> None:
        self.computing = False
        self.base = plan
        self.messages = messages
        self.now = now
        self.steps_state.clear()
        self.finished = False
        known = {u for b in plan.buckets for u in b.uids}
        self.overrides = P.Overrides({k: v for k, v in self.overrides.buckets.items()},
                                     {u: c for u, c in self.overrides.uids.items() if u in known},
                                     self.overrides.include_expunge)
        self._replan()
        if note:
            self.show_status(note, "warn")
        elif not plan.steps and not any(b.count for b in plan.buckets):
            self.show_status("the mailbox is empty: nothing to do", "ok")
        else:
            total = sum(b.count for b in plan.buckets)
            self.show_status(f"{total:,} messages sorted · k/i moves the row under the cursor · A applies the steps")

    def show_error(self, text: str) -> None:
        self.computing = False
        if self.base is None:
            self.empty_text = f"✗ {text}   (R to try again)"
            self.query_one(BucketList).refresh()
        self.show_status(text, "error")

    def step_state(self, index: int, state: str, text: str) -> None:
        self.steps_state[index] = (state, text)
        self._show_steps()

    def show_status(self, text: str, kind: str = "info") -> None:
        self.status_text = text
        try:
            w = self.query_one("#plan-status", Static)
        except Exception:  # noqa: BLE001 - closing
            return
        w.set_classes(f"-{kind}")
        w.update(Content(inert(text)))

    def run_finished(self, ok: bool, text: str, *, ran: bool = True) -> None:
        """The run ended (``ran``: some step was tried; else it was refused before the first)."""
        self.running = False
        self.finished = ran
        self.show_status(text, "ok" if ok else "error")
        self.refresh_bindings()

    # -- the plan ---------------------------------------------------------------------------------

    def _replan(self) -> None:
        if self.base is None:
            return
        self.plan = P.apply_overrides(self.base, self.overrides)
        rows: list[Row] = []
        for b in self.plan.buckets:
            if not b.count:
                continue
            rows.append(Row(b.name))
            if b.name in REVIEW_BUCKETS:
                rows.extend(Row(b.name, u) for u in b.uids[:REVIEW_ROWS])
        current = self.rows[self.cursor] if self.rows and self.cursor < len(self.rows) else None
        self.rows = rows
        if current in rows:
            self.cursor = rows.index(current)
        self.cursor = max(0, min(self.cursor, len(rows) - 1))
        if not rows:
            self.empty_text = "the mailbox is empty: no bucket, no step"
        self._show_title()
        self.query_one(BucketList).refresh()
        self._show_detail()
        self._show_steps()

    def _show_title(self) -> None:
        p = self.plan
        if p is None:
            return
        locks = "locks read" if p.locks_read else "locks NOT read"
        self.query_one("#plan-title", Static).update(Content(
            f"Incident plan · stale: older than {format_age(p.stale_after_s)} · {locks} · UIDVALIDITY {p.uidvalidity}"))

    def _age(self, uid: int) -> str:
        m = self.messages.get(uid)
        if m is None or self.now is None:
            return "?"
        try:
            return format_age(m.age_seconds(self.now))
        except Exception:  # noqa: BLE001 - a broken date is an unknown age
            return "?"

    def choice_of(self, row: Row) -> str | None:
        if row.uid is not None:
            return self.overrides.uids.get(row.uid)
        return self.overrides.buckets.get(row.bucket)

    def row_text(self, row: Row, width: int) -> str:
        assert self.plan is not None
        b = self.plan.bucket(row.bucket)
        if row.uid is None:
            moved = sum(1 for u in b.uids if u in self.plan.moved)
            extra = " · yours" if row.bucket in self.overrides.buckets else ""
            extra += f" · {moved} moved" if moved else ""
            more = f" (first {REVIEW_ROWS} below)" if row.bucket in REVIEW_BUCKETS and b.count > REVIEW_ROWS else ""
            return f"{b.name:<15}{b.count:>7,}  {b.action:<13}{extra}{more}"
        action = self.plan.action_of(row.uid) or "?"
        mine = "*" if row.uid in self.overrides.uids else " "
        m = self.messages.get(row.uid)
        sender = fit(inert(_sender(m), limit=100), 24) if m is not None else " " * 24
        subject = inert(str(getattr(m, "subject", "") or ""), limit=300) if m is not None else ""
        return f"  {mine}{action:<8} {row.uid:>7} {self._age(row.uid):>4}  {sender}  {subject}"

    def _show_detail(self) -> None:
        w = self.query_one("#plan-detail", Static)
        if self.plan is None or not self.rows:
            w.update(Content(""))
            return
        row = self.rows[self.cursor]
        b = self.plan.bucket(row.bucket)
        lines = [f"why: {b.why}"]
        if row.uid is None:
            for s in b.sample:
                age = format_age(s.age_seconds) if s.age_seconds is not None else "?"
                lines.append(f"  {s.uid:>7} {age:>4}  {fit(inert(s.sender, limit=100), 28)}  "
                             f"{inert(s.subject, limit=300)}")
        else:
            m = self.messages.get(row.uid)
            if m is not None:
                lines.append(f"  UID {row.uid} · from {inert(_sender(m), limit=60)}")
                lines.append(f"  subject: {inert(str(getattr(m, 'subject', '') or ''), limit=200)}")
        width = max(20, w.size.width or 76)
        # the why may take two lines; each sample line one (cut by display width, never wrapped)
        w.update(Content("\n".join([lines[0]] + [fit(x, width, pad=False) for x in lines[1:]])))

    def _show_steps(self) -> None:
        w = self.query_one("#plan-steps", Static)
        p = self.plan
        if p is None:
            w.update(Content(""))
            return
        if not p.steps:
            w.update(Content("Steps: none (review and leave change nothing)"))
            return
        lines = ["Steps, in order (A applies; one confirmation each):"]
        for i, s in enumerate(p.steps, 1):
            state, text = self.steps_state.get(i, ("", ""))
            glyph = _GLYPH.get(state, " ")
            tail = text or STEP_SHORT[s.action]
            lines.append(f"{glyph} {i}. {s.action:<13}{s.count:>7,}  {tail}")
        if self.watch:
            lines.append(f"watch: {self.watch}  (I shows it)")
        width = max(20, w.size.width or 76)
        # one line each (the status line and the journal have the whole text)
        w.update(Content("\n".join(fit(inert(x, limit=400), width, pad=False) for x in lines)))

    # -- keys -------------------------------------------------------------------------------------

    def action_move(self, delta: int) -> None:
        if not self.rows:
            return
        self.cursor = max(0, min(len(self.rows) - 1, self.cursor + delta))
        self.query_one(BucketList).refresh()
        self._show_detail()

    def action_choose(self, choice: str) -> None:
        if self.running:
            self.show_status("the plan is running: moves wait until it is done (esc stops after this step)", "warn")
            return
        if self.plan is None or not self.rows:
            return
        row = self.rows[self.cursor]
        if row.bucket == P.DELETED:
            self.show_status("the \\Deleted leftovers are only ever expunged: X adds or drops that step", "warn")
            return
        buckets, uids = dict(self.overrides.buckets), dict(self.overrides.uids)
        target = uids if row.uid is not None else buckets
        key: Any = row.uid if row.uid is not None else row.bucket
        if choice:
            target[key] = choice
        else:
            target.pop(key, None)
        if row.uid is None and choice:
            # a bucket move is a decision about all of it: earlier single moves inside it go
            for u in self.plan.bucket(row.bucket).uids:
                uids.pop(u, None)
        self.overrides = P.Overrides(buckets, uids, self.overrides.include_expunge)
        self.finished = False
        self.steps_state.clear()
        self._replan()
        what = f"UID {row.uid}" if row.uid is not None else f"bucket {row.bucket}"
        self.show_status(f"{what}: {_CHOICE_WORD.get(choice, 'default')} -> "
                         f"{self.plan.action_of(row.uid) if row.uid is not None else self.plan.bucket(row.bucket).action}")
        if row.uid is not None:
            self.action_move(1)  # one key per message: the next one is under the cursor

    def action_toggle_expunge(self) -> None:
        if self.running or self.base is None:
            return
        o = self.overrides
        self.overrides = P.Overrides(dict(o.buckets), dict(o.uids), not o.include_expunge)
        self.steps_state.clear()
        self._replan()
        n = self.base.bucket(P.DELETED).count
        self.show_status(f"expunge step {'added' if self.overrides.include_expunge else 'dropped'} "
                         f"({n:,} \\Deleted leftover(s))" if n else "there is no \\Deleted leftover to expunge")

    def action_recompute(self) -> None:
        if self.running or self.computing:
            return
        self.computing = True
        self.show_status("listing the mailbox for the plan (read-only)…")
        self.runner.compute()

    def action_apply(self) -> None:
        if self.read_only:
            self.show_status("read-only mode: applying the plan is disabled, nothing on the server can change "
                             "(restart without --read-only to act)", "error")
            return
        if self.running:
            self.show_status("the plan is running: answer its confirmation (esc stops after this step)", "warn")
            return
        if self.plan is None:
            self.show_status("the plan is not computed yet", "warn")
            return
        if self.computing:
            self.show_status("listing the mailbox again: A once the new plan is shown", "warn")
            return
        if not self.plan.steps:
            self.show_status("nothing to do: no step (review and leave change nothing)", "warn")
            return
        if self.finished:
            self.show_status("this plan has run: R lists the mailbox again for a new one", "warn")
            return
        self.running = True
        self.steps_state.clear()
        self.refresh_bindings()
        self.runner.apply(self.plan)

    def action_show_watch(self) -> None:
        self.runner.show_watch()

    def action_close(self) -> None:
        if self.running:
            self.runner.stop()
        self.dismiss(None)
