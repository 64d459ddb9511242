"""Actions on the selection: what they target, mark seen / unseen, expunge, expunge all and
undo; each is planned in a worker, confirmed in a dialog, then executed in a worker."""

from __future__ import annotations

import builtins
import time
from typing import Any

from triage_tui.domain.text import inert
from triage_tui.services.triage import left_alone_lines
from triage_tui.tui import messages as M
from triage_tui.tui.columns import human_age
from triage_tui.tui.controllers import run_thread
from triage_tui.tui.controllers.host import Host
from triage_tui.tui.listmodel import Group
from triage_tui.tui.screens.confirm import ConfirmRequest, ConfirmScreen

PROGRESS_EVERY = 0.1


class ActionsController:
    def __init__(self, host: Host) -> None:
        self.host = host

    def targets(self) -> tuple[builtins.list[int], str]:
        h = self.host
        m = h.model
        if m.marks:
            hidden = m.hidden_marks
            note = f"{len(m.marks):,} marked" + (f", {hidden:,} of them hidden by the filter" if hidden else "")
            return sorted(m.marks), note
        row = h.list.current
        if row is None:
            return [], ""
        if isinstance(row, Group):
            return list(row.uids), f"the {len(row.uids):,} messages of group {inert(row.label)}"
        return [row], "the cursor row (nothing is marked)"

    def begin(self) -> bool:
        h = self.host
        if h._busy:
            h.status("an action is still running: wait for it to finish", "warn")
            return False
        if h._uidvalidity is None:
            h.status("the list is not loaded yet", "warn")
            return False
        return True

    def sample(self, uids: builtins.list[int], n: int = 5) -> builtins.list[str]:
        h = self.host
        now = h.clock()
        out = []
        for u in uids[:n]:
            m = h.model.messages.get(u)
            if m is None:
                out.append(f"UID {u}")
                continue
            out.append(f"UID {u:>7}  {human_age(m.age_seconds(now), True):>4}  "
                       f"{(m.from_addr or m.from_name)[:28]:<28}  {m.subject[:60]}")
        return out

    def expunge_all(self) -> None:
        h = self.host
        if not self.begin():
            return
        h._busy = True
        self.plan_worker("expunge-all", h._uidvalidity, [], "every \\Deleted message in the mailbox")

    def undo(self) -> None:
        h = self.host
        if not self.begin():
            return
        h._busy = True
        self.plan_worker("undo", h._uidvalidity, [], "")

    def plan_action(self, kind: str) -> None:
        h = self.host
        if not self.begin():
            return
        uids, note = self.targets()
        if not uids:
            h.status("nothing selected: mark rows with space (or a for all matching), or put the cursor on one")
            return
        h._busy = True
        h.status(f"planning {kind} for {note}…")
        self.plan_worker(kind, h._uidvalidity, uids, note)

    def plan_worker(self, kind: str, uidvalidity: int | None, uids: builtins.list[int], note: str) -> Any:
        return run_thread(self.host, self._plan_worker, kind, uidvalidity, uids, note,
                          name="_plan_worker", group="action")

    def _plan_worker(self, kind: str, uidvalidity: int | None, uids: builtins.list[int], note: str) -> None:
        h = self.host
        svc = h.service
        info: dict[str, Any] = {"note": note, "requested": len(uids)}
        with h._io_lock:
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
        h.post_message(M.PlanReady(kind, plan, info))

    def plan_ready(self, msg: M.PlanReady) -> None:
        h = self.host
        plan, info, kind = msg.plan, msg.info, msg.kind
        n = plan.count
        if n == 0:
            h._busy = False
            why = {"mark-seen": "they are already seen or gone",
                   "mark-unseen": "they are not seen-stuck (already unseen, \\Deleted or gone)",
                   "expunge": "only \\Deleted messages can be expunged (deleted view)",
                   "expunge-all": "there is no \\Deleted message",
                   "undo": "every message of that change has moved on since"}[kind]
            if kind == "undo":
                why = "; ".join(left_alone_lines(plan.left_alone)) or why
            h.status(f"nothing to do: {why}; nothing was changed", "warn")
            h.request_sync("nothing-to-do", force=True)
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
        short = getattr(plan, "budget_short", None)  # a Graph mailbox: its budget on a line of its own (80x24)
        if short:
            lines.append(f"UIDVALIDITY {plan.uidvalidity} · audit-journaled")
            lines.append(short)
        else:
            lines.append(f"UIDVALIDITY {plan.uidvalidity} · {plan.cost_text} · audit-journaled")
        shown = 5 if h.size.height >= 30 else 3
        request = ConfirmRequest(title=title, lines=lines, sample=self.sample(plan.uids, shown),
                                 more=max(0, n - shown),
                                 typed=typed, confirm_label=label, danger=danger)

        def done(ok: bool | None) -> None:
            if ok:
                h.status(f"{plan.action}: working on {n:,} message(s)…")
                h._execute_worker(plan)
            else:
                h._busy = False
                h.status("cancelled: nothing was changed")

        how = f"type {typed} and Enter" if typed is not None else "y confirms"
        h.status(f"{kind}: waiting for your confirmation ({how}, esc cancels)")
        h.push_screen(ConfirmScreen(request), done)

    def execute_worker(self, plan: Any) -> Any:
        return run_thread(self.host, self._execute_worker, plan, name="_execute_worker", group="action")

    def _execute_worker(self, plan: Any) -> None:
        h = self.host
        action = "undo" if plan.undoes else plan.action

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if done >= total or now - h._last_progress >= PROGRESS_EVERY:
                h._last_progress = now
                h.post_message(M.ActionProgress(action, done, total))

        result = h.service.execute(plan, progress=progress)
        h.post_message(M.ActionDone(result))

    def action_progress(self, msg: M.ActionProgress) -> None:
        h = self.host
        h.pulse_state.progress = f"{msg.action} {msg.done:,}/{msg.total:,}"
        h._pulse()

    def action_done(self, msg: M.ActionDone) -> None:
        h = self.host
        r = msg.result
        h._busy = False
        h.pulse_state.progress = ""
        changed = set(r.changed)
        h._own_changed |= changed
        h.model.marks -= changed
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
        h.status(text, "ok" if r.ok else "error")
        # The list shows what the server says now, not what we assume.
        h.request_sync("after-action", force=True)
        h._pulse()
