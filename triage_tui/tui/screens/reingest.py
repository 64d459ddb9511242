"""The re-ingest screen: the runbook's "stop mail_room for more than 10 minutes", planned, typed,
then watched live.

Three stages on one screen, so the operator never loses the context of what was decided:

1. **Plan** (a dry run, allowed in read-only mode): how many keys, their TTL distribution, when
   they would expire by themselves, and the effect of the chosen action, in the lock service's
   own words (``ReleasePlan.describe()``, the same text the ``release`` subcommand prints).
2. **Choose and confirm**: release now / shorten the TTL to N s / staggered waves / wait without
   touching Redis. Anything that writes asks for the key count to be typed; Cancel has focus, so
   a reflexive Enter does nothing. In read-only mode the writing choices are dimmed and the screen
   says why; waiting (which touches nothing) stays possible.
3. **Watch**: a countdown while keys expire, then the pickup (remaining UNSEEN, keys re-claimed,
   delivered) with rate and ETA, and the diagnosis when nothing happens. ``esc`` returns to the
   list; the watch goes on in the pulse bar and ``I`` brings this screen back.

The screen does no IO itself: it asks the app (which owns the connections, the IO lock and the
one worker error handler) for plans and for the release, and the app hands results back. The
watch state lives in the app too, so closing the screen does not stop the watch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Button, Input, RadioButton, RadioSet, Static

from triage_tui.domain.numbers import parse_int
from triage_tui.domain.reingest import ReingestSelection, select_for_reingest
from triage_tui.domain.text import inert
from triage_tui.errors import UsageError
from triage_tui.services.locks import REASON_NO_RECLAIM, REASON_UIDVALIDITY
from triage_tui.tui.columns import human_age
from triage_tui.tui.screens.once import OnceModal
from triage_tui.tui.widgets.bars import InertInput

#: The choices, in display order: (mode, label). The mode names the plan_release arguments.
MODES: tuple[tuple[str, str], ...] = (
    ("now", "release now (TTL 0)"),
    ("ttl", "shorten TTL to N s"),
    ("waves", "staggered waves"),
    ("natural", "wait: touch nothing"),
)
WRITING_MODES = frozenset({"now", "ttl", "waves"})
REPLAN_DELAY = 0.4  # s after the last keystroke in a parameter box before planning again


@dataclass
class ReingestRequest:
    """What the operator selected when pressing ``I``."""

    uids: list[int]
    note: str  # "12 marked", "the cursor row (nothing is marked)"
    view: str  # "unseen" | "seen-stuck"
    read_only: bool
    sample: list[str] = field(default_factory=list)
    demo_note: str | None = None  # the demo's mail_room, and that it starts after the release
    poll_cycle: float = 60.0
    #: the selected messages as listed (GitLab's verdict, age) and the stale limit: with both, stale
    #: mail GitLab would reject or drop is left out of ``uids`` unless ``include_junk``
    messages: list[Any] = field(default_factory=list, repr=False)
    stale_after_s: float | None = None
    include_junk: bool = False
    now: datetime | None = None
    selection: ReingestSelection | None = None
    all_uids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.all_uids = list(self.uids)
        self._split()

    def _split(self) -> None:
        if self.stale_after_s is None:
            return
        sel = select_for_reingest(self.messages, self.stale_after_s, now=self.now, include_junk=self.include_junk)
        listed = {m.uid for m in self.messages}
        keep = set(sel.included)
        self.selection = sel
        self.uids = [u for u in self.all_uids if u in keep or u not in listed]

    def set_include_junk(self, on: bool) -> None:
        """The screen's switch: bring the stale rejected/dropped mail in (or leave it out again)."""
        self.include_junk = on
        self._split()


@dataclass
class ReingestWatch:
    """A release being watched (lives in the app: closing the screen does not stop it)."""

    id: int
    plan: Any
    result: Any | None  # None: nothing was written (waiting for the natural expiry)
    watcher: Any
    started_at: datetime
    poll_cycle: float
    status: Any | None = None  # the last WatchStatus
    polled_at: float | None = None
    error: str | None = None
    stopped: bool = False
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        """Done for good: every message picked up, the mailbox reset, or stopped by the operator.
        A "nothing was re-claimed" diagnosis is not final: starting mail_room changes it."""
        st = self.status
        if self.stopped:
            return True
        return bool(st is not None and st.done and (not st.failed or st.reason == REASON_UIDVALIDITY))


def _bar(done: int, total: int, width: int = 20) -> str:
    if total <= 0:
        return "[" + "·" * width + "]"
    full = round(width * done / total)
    return "[" + "█" * full + "·" * (width - full) + "]"


def _secs(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s:.0f} s ({human_age(s, False)})"


def _last_expiry(st: Any, short: bool = False) -> str:
    if st.countdown_s is None:
        return "some never expire (pre-0.10 counters)" if short else (
            "some never expire by themselves: pre-0.10 counters, refreshed by every poll of an old mail_room "
            "(release them now)")
    return f"the last expires in {_secs(st.countdown_s)}"


def watch_summary(w: ReingestWatch) -> tuple[str, str]:
    """One short piece for the pulse bar (text, style), so a watch behind the list stays visible."""
    st = w.status
    if w.stopped:
        return "", ""
    if st is None:
        return "re-ingest: watching…", "warn"
    head = f"re-ingest {st.picked_up:,}/{st.targeted:,}"
    if st.done and not st.failed:
        return f"✓ {head} picked up", "good"
    if st.failed:
        return f"✗ {head}: nothing re-claimed" if st.reason == REASON_NO_RECLAIM else \
            f"✗ {head}: {st.diagnosis or 'failed'}", "bad"
    if st.held and st.countdown_s is not None:
        return f"{head} · keys free in {st.countdown_s:.0f} s", "warn"
    eta = _eta(st)
    return (f"{head} · ETA {eta}" if eta else head), "warn"


def _eta(st: Any) -> str:
    """The watcher's ETA (never sooner than the last held key expires; none when a key never
    expires by itself)."""
    if st.done or st.eta_s is None:
        return ""
    return f"{st.eta_s:.0f} s"


def watch_lines(w: ReingestWatch, consumer_status: str | None = None) -> list[tuple[str, str]]:
    """The watch pane as (text, style) lines. Pure, so it is testable without a terminal."""
    out: list[tuple[str, str]] = []
    plan, r, st = w.plan, w.result, w.status
    when = w.started_at.strftime("%H:%M:%SZ")
    if r is not None and getattr(r, "mark_unseen", None) is not None:
        m = r.mark_unseen
        out.append((f"step 1: {len(m.changed):,} message(s) marked unseen (journal op {m.op_id})", ""))
    if r is not None and r.op_id is not None:
        verb = "released (TTL 0)" if plan.ttl_s == 0 and plan.waves == 1 else (
            f"shortened to {plan.ttl_s} s" if plan.waves == 1 else
            f"shortened in {plan.waves} waves, {plan.ttl_s} s + {plan.wave_interval_s:.0f} s per wave")
        out.append((f"{len(r.changed):,} key(s) {verb} at {when} · journal op {r.op_id}", "bold"))
        if r.not_unseen:
            out.append((f"{len(r.not_unseen):,} no longer UNSEEN at execution: left alone", ""))
        for reason, uids in r.skipped.items():
            out.append((f"{len(uids):,} skipped ({reason})", ""))
        if r.error:
            out.append((f"✗ Redis error halfway: {r.error} (the journal names every changed key)", "bad"))
    else:
        out.append((f"nothing written in Redis (started {when}): watching the keys expire on their own", "bold"))
    out.append(("", ""))
    if st is None:
        out.append(("first look at the mailbox and the keys…", "dim"))
    else:
        if st.done and not st.failed:
            phase = (f"✓ done: all {st.targeted:,} targeted message(s) picked up ({st.delivered:,} delivered"
                     + (f", {st.seen_only:,} \\Seen but not \\Deleted" if st.seen_only else "") + ")", "good")
        elif st.failed:
            phase = (f"✗ {st.diagnosis or 'failed'}", "bad")
        elif st.held:
            phase = (f"⏳ waiting for {st.held:,} key(s) to expire: {_last_expiry(st)}", "warn")
        elif st.picked_up:
            phase = ("▶ mail_room is picking them up", "warn")
        else:
            phase = ("▶ every key is free: waiting for mail_room's next poll", "warn")
        out.append(phase)
        out.append((f"picked up     {_bar(st.picked_up, st.targeted)} {st.picked_up:,} of {st.targeted:,}", "bold"))
        out.append((f"still UNSEEN  {st.remaining_unseen:,}", ""))
        out.append((f"delivered     {st.delivered:,}  (gone or \\Deleted)", ""))
        out.append((f"re-claimed    {st.reclaimed:,}  (mail_room took the key again)", ""))
        if st.seen_only:
            out.append((f"\\Seen only    {st.seen_only:,}  (fetched, not \\Deleted: delete_after_delivery off, "
                        "or a crash)", "warn"))
        if st.held:
            out.append((f"keys held     {st.held:,}  · {_last_expiry(st, short=True)}", ""))
        rate_s = st.rate_per_s or (st.picked_up / st.elapsed_s if st.done and st.elapsed_s > 0 else None)
        rate = f"{rate_s:.1f}/s" if rate_s else "–"
        eta = _eta(st)
        out.append((f"rate          {rate}{'  · ETA ' + eta if eta else ''}", ""))
        if st.done:
            out.append((f"elapsed       {st.elapsed_s:.0f} s", "dim"))
        else:
            out.append((f"elapsed       {st.elapsed_s:.0f} s · looks every few seconds; no re-claim within two "
                        f"poll cycles ({w.poll_cycle:.0f} s each) after the keys are free means mail_room "
                        "is not consuming", "dim"))
        out.extend(_sidekiq_lines(st))
    if w.error:
        out.append((f"! last look failed: {w.error} (trying again)", "warn"))
    if consumer_status:
        out.append(("", ""))
        out.append((f"demo: {consumer_status}  (M starts/stops it)", "warn"))
    if w.stopped:
        out.append(("watch stopped: nothing more is polled", "dim"))
    return out


def _sidekiq_lines(st: Any) -> list[tuple[str, str]]:
    """GitLab's Sidekiq queues on the locks' Redis: where "re-ingested" ends (jobs waiting there,
    their count since the release, the oldest one's age and class)."""
    sq = getattr(st, "sidekiq", None)
    if sq is None:
        return []
    style = "warn" if sq.error is not None else ("dim" if sq.look is not None and not sq.look.seen else "")
    return [(f"{'GitLab queue' if i == 0 else '':<13} {part}", style) for i, part in enumerate(sq.parts())]


_STYLES = {"good": "$text-success bold", "warn": "$text-warning bold", "bad": "$text-error bold"}


def _content(lines: list[tuple[str, str]]) -> Content:
    parts = []
    for text, style in lines:
        c = Content(inert(text))
        if style == "bold":
            c = c.stylize("bold")
        elif style == "dim":
            c = c.stylize("dim")
        elif style in _STYLES:
            c = c.stylize(_STYLES[style])  # the glyph (✓ ⏳ ▶ ✗ !) carries the state; colour adds to it
        parts.append(c)
    return Content("\n").join(parts)


class Choice(RadioButton):
    """A radio button whose state is a glyph, not only a colour: ● chosen, ○ not, · unavailable."""

    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]  # noqa: N802 - Textual's attribute name
        return "●" if self.value else ("·" if self.disabled else "○")


class ReingestScreen(OnceModal[None]):
    """Plan → choose → typed confirmation → watch. See the module docstring."""

    BINDINGS = [
        Binding("escape", "back", "Back", id="reingest.back",
                tooltip="plan: cancel (nothing changes); watch: back to the list, the watch goes on"),
        Binding("J", "toggle_junk", "Include stale junk", id="reingest.junk",
                tooltip="bring in (or leave out again) stale mail GitLab would reject or drop"),
        Binding("M", "demo_consumer", "mail_room", id="reingest.demo_consumer",
                tooltip="demo: start or stop the mail_room stand-in"),
        Binding("x", "stop_watch", "Stop watching", id="reingest.stop",
                tooltip="stop polling (changes nothing on the servers)"),
        Binding("j,down", "scroll_down", "Down", show=False, id="reingest.down"),
        Binding("k,up", "scroll_up", "Up", show=False, id="reingest.up"),
    ]

    def __init__(self, request: ReingestRequest | None, *, watch: ReingestWatch | None = None) -> None:
        super().__init__()
        self.request = request
        self.watching = watch
        self.mode = "natural" if request is not None and request.read_only else "now"
        self.plan: Any = None
        self.token = 0
        self.planning = False
        self.executing = False
        self.error: str | None = None
        self._replan_timer: Any = None
        self._focus_typed = False

    # -- layout ------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        r = self.request
        title = "Re-ingest" if r is None else f"Re-ingest · {inert(r.note)} · {r.view} view"
        with Vertical(id="reingest-box"):
            yield Static(Content(title), id="ri-title", markup=False)
            # not in the tab order: j/k scroll it from anywhere, and tab goes straight to the choice
            with VerticalScroll(id="ri-scroll", can_focus=False):
                yield Static(Content("planning: reading the keys and the mailbox (a dry run)…"), id="ri-plan",
                             markup=False)
            yield Static(Content(""), id="ri-note", markup=False)
            ro = bool(r is not None and r.read_only)
            with Horizontal(id="ri-choose"):
                with RadioSet(id="ri-mode", compact=True):
                    for mode, label in MODES:
                        yield Choice(label, value=mode == self.mode, id=f"ri-mode-{mode}", compact=True,
                                          disabled=ro and mode in WRITING_MODES)
                with Vertical(id="ri-params"):
                    with Horizontal(classes="ri-param"):
                        yield Static(Content("TTL"), classes="ri-label", markup=False)
                        yield Input("30", id="ri-ttl", type="integer", compact=True, disabled=ro,
                                    select_on_focus=True, max_length=5)
                        yield Static(Content("s (shorten, and the first wave)"), classes="ri-unit", markup=False)
                    with Horizontal(classes="ri-param"):
                        yield Static(Content("waves"), classes="ri-label", markup=False)
                        yield Input("3", id="ri-waves", type="integer", compact=True, disabled=ro,
                                    select_on_focus=True, max_length=3)
                        yield Static(Content("every"), classes="ri-unit-short", markup=False)
                        yield Input("60", id="ri-interval", type="integer", compact=True, disabled=ro,
                                    select_on_focus=True, max_length=5)
                        yield Static(Content("s"), classes="ri-unit", markup=False)
            with Horizontal(id="ri-confirm"):
                yield Static(Content(""), id="ri-typed-help", markup=False)
                yield InertInput(id="ri-typed", compact=True, max_length=12, select_on_focus=False)  # paste: inert
                yield Button("Cancel", id="ri-cancel", compact=True)
                yield Button("Release", id="ri-go", variant="error", compact=True, disabled=True)
            yield Static(Content(""), id="ri-keys", markup=False)

    def on_mount(self) -> None:
        self.query_one("#ri-cancel", Button).focus()
        if self.app.is_headless:
            for box in self.query(Input):
                box.cursor_blink = False
        if self.watching is not None:
            self.show_watch(self.watching)
        else:
            self._keys_line()
            self._request_plan()

    # -- planning ----------------------------------------------------------------------------------

    def _params(self) -> tuple[int, int, float] | str:
        """(ttl, waves, interval) from the boxes, or what is wrong with them."""
        def read(box_id: str, low: int, name: str, high: int) -> int | str:
            raw = self.query_one(f"#{box_id}", Input).value.strip()
            try:
                return parse_int(raw, what=name, minimum=low, maximum=high)
            except UsageError as e:
                return str(e)

        if self.mode in ("now", "natural"):
            return 0, 1, 60.0
        ttl = read("ri-ttl", 0, "TTL", 86400)
        if isinstance(ttl, str):
            return ttl
        if self.mode == "ttl":
            return ttl, 1, 60.0
        waves = read("ri-waves", 1, "waves", 100)
        interval = read("ri-interval", 1, "the wave interval", 3600)
        if isinstance(waves, str):
            return waves
        if isinstance(interval, str):
            return interval
        return ttl, waves, float(interval)

    def _request_plan(self) -> None:
        if self.request is None or self.watching is not None:
            return
        params = self._params()
        self.token += 1
        if isinstance(params, str):
            self.planning = False
            self._show_problem(params)
            return
        self.planning = True
        self._update_confirm()
        ttl, waves, interval = params
        self.app.reingest_plan(self.token, self.request, self.mode, ttl, waves, interval)  # type: ignore[attr-defined]

    def _schedule_replan(self) -> None:
        if self._replan_timer is not None:
            self._replan_timer.stop()
        self.planning = True
        self._update_confirm()
        self._replan_timer = self.set_timer(REPLAN_DELAY, self._replan_now)

    def _replan_now(self) -> None:
        self._replan_timer = None
        self._request_plan()

    def show_plan(self, token: int, plan: Any) -> None:
        """The app's answer to a plan request (stale answers are dropped)."""
        if token != self.token or self.watching is not None:
            return
        self.planning = False
        self.plan = plan
        self.error = None
        r = self.request
        assert r is not None
        # describe() is shared with the CLI: name the screen's choice instead of the CLI flag
        described = [line.replace("use --now to free them", "choose 'release now' to free them")
                     .replace("(release --now)", "('release now')") for line in plan.describe()]
        lines = [(line, "bold" if line.startswith(("action:", "after the action:", "step 1")) else
                  ("warn" if line.startswith("warning") else "")) for line in described]
        if r.selection is not None:
            sel_lines = r.selection.lines(switch="J")
            lines = [(line, "warn" if line.startswith(("left out", "included on request")) else "")
                     for line in sel_lines] + [("", "")] + lines
        if r.sample:
            width = max(20, self.query_one("#ri-scroll").size.width - 2)
            lines.append(("", ""))
            lines.append(("selection (first rows):", "dim"))
            lines += [(inert("  " + s)[:width], "dim") for s in r.sample]
            more = plan.selected - len(r.sample)
            if more > 0:
                lines.append((f"  … and {more:,} more", "dim"))
        lines.append(("", ""))
        if r.demo_note:
            lines.append((r.demo_note, "warn"))
        else:
            lines.append(("mail_room must be running to pick them up: the watch says so if no key is re-claimed "
                          f"within two poll cycles ({r.poll_cycle:.0f} s each) after the keys are free.", "dim"))
        self.query_one("#ri-plan", Static).update(_content(lines))
        self._update_confirm()
        if self._focus_typed:
            self._focus_typed = False
            box = self.query_one("#ri-typed", Input)
            if box.display:
                box.focus()

    def show_error(self, text: str) -> None:
        """A planning or release failure (Redis unreachable, UIDVALIDITY changed…): shown here; the
        operator can change the choice to plan again, or leave."""
        self.planning = False
        self.executing = False
        if self.watching is None:
            self.query_one("#ri-plan", Static).update(Content("✗ " + inert(text)))
        self._show_problem(text)

    def _show_problem(self, text: str) -> None:
        self.error = text
        self.plan = None
        self._update_confirm()

    # -- what confirming would do -------------------------------------------------------------------

    def writes(self) -> bool:
        p = self.plan
        return bool(p is not None and (p.count > 0 or p.mark_unseen_count > 0))

    def typed_target(self) -> str | None:
        """What the operator must type: the number of keys to change (or of messages to mark unseen
        when no key changes); None when confirming writes nothing."""
        p = self.plan
        if p is None or not self.writes():
            return None
        return str(p.count) if p.count else str(p.mark_unseen_count)

    def blocked_reason(self) -> str | None:
        """Why confirming is not possible now, in words (None: it is)."""
        r, p = self.request, self.plan
        if r is None:
            return "no selection"
        if self.executing:
            return "working…"
        if self.planning:
            return "planning…"
        if p is None:
            return self.error or "no plan"
        if r.read_only and self.writes():
            return ("read-only mode: marking unseen is a change, so this combined step is a plan only "
                    "(restart without --read-only to act)") if p.mark_unseen_count else (
                "read-only mode: releasing or shortening keys is disabled (restart without --read-only); "
                "waiting touches nothing and can be watched")
        if not p.targets and not p.unlocked and not p.mark_unseen_count:
            return "nothing to release or watch: no selected message is UNSEEN (and none is seen-stuck)"
        return None

    def _confirm_label(self) -> str:
        p = self.plan
        if p is None:
            return "Release"
        if p.count:
            verb = "Release" if p.ttl_s == 0 and p.waves == 1 else "Shorten"
            return f"{verb} {p.count:,}" + (f" + unseen {p.mark_unseen_count:,}" if p.mark_unseen_count else "")
        if p.mark_unseen_count:
            return f"Mark {p.mark_unseen_count:,} unseen"
        return "Watch"

    def _update_confirm(self) -> None:
        """Label, enabled state and the note under the plan, from the current plan and choice."""
        if self.watching is not None:
            return
        go = self.query_one("#ri-go", Button)
        box = self.query_one("#ri-typed", Input)
        help_ = self.query_one("#ri-typed-help", Static)
        note = self.query_one("#ri-note", Static)
        go.label = self._confirm_label()
        reason = self.blocked_reason()
        target = self.typed_target()
        box.display = target is not None and reason is None
        note.set_class(False, "-error")
        note.set_class(False, "-readonly")
        if reason is not None:
            go.disabled = True
            help_.update(Content(""))
            if self.plan is None and self.error:
                note.set_class(True, "-error")
                note.update(Content("✗ " + inert(self.error)))
            elif reason.startswith("read-only"):
                note.set_class(True, "-readonly")
                note.update(Content("RO " + reason))
            elif reason.startswith("nothing"):
                note.update(Content("✗ " + reason))
            else:
                note.update(Content(reason))
            return
        if target is None:
            help_.update(Content("Nothing is written: confirming starts the watch."))
            if self.request is not None and self.request.read_only:
                note.set_class(True, "-readonly")
                note.update(Content("RO read-only mode: releasing or shortening keys is disabled (dimmed; restart "
                                    "without --read-only to act). Waiting touches nothing and can be watched."))
            else:
                note.update(Content(""))
            go.disabled = False
        else:
            help_.update(Content(f"Type {target} to confirm:"))
            note.update(Content("A released key is not restored: once mail_room re-claims it, the message is "
                                "on its way. Every key touched is audit-journaled."))
            go.disabled = not self._typed_ok()

    def _typed_ok(self) -> bool:
        target = self.typed_target()
        return target is None or self.query_one("#ri-typed", Input).value.strip() == target

    def _keys_line(self) -> None:
        demo = self.request is not None and self.request.demo_note is not None or self.watching is not None
        if self.watching is None:
            text = "esc cancel · tab: choice/TTL/buttons · type the count, enter"
            sel = self.request.selection if self.request is not None else None
            if sel is not None and sel.junk:
                text += (f" · J add {len(sel.junk):,} junk" if not sel.include_junk else  # fits 80 columns
                         f" · J omit {len(sel.junk):,} junk")
        elif self.watching.finished:
            text = "esc back to the list · I there starts a new re-ingest · j/k scroll"
        else:
            text = "esc list (the watch goes on) · x stop watching · j/k scroll"
        if demo and getattr(self.app, "demo_consumer", None) is not None:
            text += " · M mail_room"
        self.query_one("#ri-keys", Static).update(Content(text))

    # -- events ------------------------------------------------------------------------------------

    @on(RadioSet.Changed, "#ri-mode")
    def _mode_changed(self, event: RadioSet.Changed) -> None:
        button_id = event.pressed.id or ""
        mode = button_id.removeprefix("ri-mode-")
        if mode == self.mode:
            return
        self.mode = mode
        self.query_one("#ri-typed", Input).value = ""
        self._request_plan()

    @on(Input.Changed, "#ri-ttl, #ri-waves, #ri-interval")
    def _param_changed(self) -> None:
        if self.mode in ("ttl", "waves"):
            self._schedule_replan()

    @on(Input.Submitted, "#ri-ttl, #ri-waves, #ri-interval")
    def _param_submitted(self) -> None:
        """Enter in a number box: plan now and go to the confirmation box."""
        if self._replan_timer is not None:
            self._replan_timer.stop()
            self._replan_timer = None
        self._focus_typed = True  # once the new plan is in (the box shows only when typing is needed)
        self.query_one("#ri-cancel", Button).focus()
        self._request_plan()

    @on(Input.Changed, "#ri-typed")
    def _typed_changed(self) -> None:
        self._update_confirm()

    @on(Input.Submitted, "#ri-typed")
    def _typed_submitted(self) -> None:
        target = self.typed_target()
        if self.blocked_reason() is None and self._typed_ok():
            self._execute()
        elif target is not None:
            self.query_one("#ri-typed-help", Static).update(Content(f"That is not {target}: type {target}:"))

    @on(Button.Pressed, "#ri-cancel")
    def _cancel(self) -> None:
        self.action_back()

    @on(Button.Pressed, "#ri-go")
    def _go(self) -> None:
        if self.blocked_reason() is None and self._typed_ok():
            self._execute()

    def on_key(self, event: events.Key) -> None:
        """Digits typed while a button or the choice has focus go to the confirmation box (as in
        the expunge confirmation), so the typed path needs no extra Tab."""
        if self.watching is not None or event.character is None or not event.character.isdigit():
            return
        box = self.query_one("#ri-typed", Input)
        if isinstance(self.focused, Input) or not box.display:
            return
        box.focus()
        box.insert_text_at_cursor(event.character)
        event.stop()

    def _execute(self) -> None:
        if self.plan is None:
            return
        self.executing = True
        self._update_confirm()
        self.app.reingest_execute(self.plan)  # type: ignore[attr-defined]

    # -- watching ----------------------------------------------------------------------------------

    def show_watch(self, watch: ReingestWatch) -> None:
        """Switch to (or refresh) the watch pane."""
        first = self.watching is None or not self.has_class("-watching")
        self.watching = watch
        self.executing = False
        if first:
            self.add_class("-watching")
            plan = watch.plan
            n = len(watch.watcher.targets) if watch.watcher is not None else plan.selected
            self.query_one("#ri-title", Static).update(Content(f"Re-ingest · watching {n:,} message(s)"))
            self.query_one("#ri-note", Static).update(Content(""))
            self._keys_line()
            self.set_focus(None)  # the choice and the buttons are gone; the screen's keys remain
        self._keys_line()
        consumer = getattr(self.app, "demo_consumer", None)
        lines = watch_lines(watch, consumer.status if consumer is not None else None)
        plan_box = self.query_one("#ri-plan", Static)
        plan_box.update(_content(lines))
        st = watch.status
        plan_box.set_class(bool(st is not None and st.done and not st.failed), "-done")
        plan_box.set_class(bool(st is not None and st.failed), "-failed")

    # -- actions -----------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "demo_consumer":
            return getattr(self.app, "demo_consumer", None) is not None
        if action == "toggle_junk":
            return bool(self.watching is None and self.request is not None and self.request.selection is not None
                        and self.request.selection.junk)
        if action == "stop_watch":
            return bool(self.watching is not None and not self.watching.finished)
        return True

    def action_back(self) -> None:
        if self._replan_timer is not None:
            self._replan_timer.stop()
        self.dismiss(None)

    def action_toggle_junk(self) -> None:
        r = self.request
        if r is None or r.selection is None or self.watching is not None or self.executing:
            return
        r.set_include_junk(not r.include_junk)
        self.query_one("#ri-typed", Input).value = ""  # the count to type changes
        self._keys_line()
        self._request_plan()

    def action_demo_consumer(self) -> None:
        self.app.action_demo_consumer()  # type: ignore[attr-defined]

    def action_stop_watch(self) -> None:
        if self.watching is not None:
            self.app.reingest_stop_watch()  # type: ignore[attr-defined]
            self.show_watch(self.watching)
            self.refresh_bindings()

    def action_scroll_down(self) -> None:
        self.query_one("#ri-scroll", VerticalScroll).scroll_down(animate=False)

    def action_scroll_up(self) -> None:
        self.query_one("#ri-scroll", VerticalScroll).scroll_up(animate=False)


__all__ = ["MODES", "ReingestRequest", "ReingestScreen", "ReingestWatch", "watch_lines", "watch_summary"]
