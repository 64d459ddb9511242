"""The incident plan against the servers: computed from the mailbox (and the locks), and its steps
prepared and executed through the same services as mark-seen, release and expunge. Shared by
``triage-tui plan`` (commands/plan.py) and the TUI's plan screen (tui/controllers/incident.py):
the CLI confirms on a terminal, the TUI in a dialog, and both send exactly the same commands.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from triage_tui.domain import plan as P
from triage_tui.domain.model import Message, View
from triage_tui.errors import UidValidityChanged


def _list(svc: Any, locks: Any, view: View, now: datetime) -> tuple[int, list[Message], str | None]:
    uv, uids = svc.search(view)
    msgs: list[Message] = []
    err: str | None = None
    for batch in svc.iter_messages(uv, uids, headers=True, now=now):
        if locks is not None:
            from triage_tui.services.locks import annotate_safely  # noqa: PLC0415 - keeps redis off the path

            err = annotate_safely(locks, batch) or err
        msgs.extend(batch)
    return uv, msgs, err


def compute_incident(svc: Any, locks: Any, overrides: P.Overrides | None = None, now: datetime | None = None,
                     messages: dict[int, Message] | None = None) -> tuple[P.IncidentPlan, str | None]:
    """The plan over UNSEEN, seen-stuck and the \\Deleted UIDs (locks annotated when ``locks``);
    the second value is a lock-reading note (None when the locks were read or not asked for).
    ``messages``, when given, receives every listed message by UID (the TUI's per-message review).
    Raises :class:`UidValidityChanged` when the mailbox was reset while it was listed."""
    now = now or datetime.now(UTC)
    uv, unseen, err1 = _list(svc, locks, View.UNSEEN, now)  # duplicates judged as listed
    uv2, stuck, err2 = _list(svc, locks, View.SEEN_STUCK, now)
    uv3, deleted = svc.search(View.DELETED)
    if len({uv, uv2, uv3}) != 1:
        raise UidValidityChanged("UIDVALIDITY changed while the mailbox was listed: run plan again")
    err = err1 or err2
    if messages is not None:
        messages.update((m.uid, m) for m in stuck)
        messages.update((m.uid, m) for m in unseen)  # UNSEEN first, as in the plan
    plan = P.compute_plan(unseen, stuck, uidvalidity=uv, stale_after=svc.analysis.stale_after, deleted=deleted,
                          now=now, locks_read=locks is not None and err is None, overrides=overrides,
                          graph=getattr(svc.settings, "graph", None) is not None)
    return plan, err


RELEASING = (P.RELEASE, P.UNSEE_RELEASE)


@dataclass
class PreparedStep:
    """One step planned through its service (re-checks UIDVALIDITY and the flags), not yet run.

    ``flags``: the triage service's Plan (ignore, expunge); ``release``: the lock service's
    ReleasePlan (release, unsee-release). ``typed``: what the operator types to confirm (the
    count, where the existing tool asks for it: expunge, a release that changes keys), None for a
    plain yes."""

    step: P.Step
    flags: Any = None
    release: Any = None

    @property
    def nothing_to_do(self) -> bool:
        if self.release is not None:
            return self.release.count == 0 and self.release.mark_unseen_count == 0
        return self.flags.count == 0

    @property
    def typed(self) -> str | None:
        if self.step.action == P.EXPUNGE:
            return str(self.flags.count)
        if self.release is not None and self.release.count:
            return str(self.release.count)
        return None


def prepare_step(svc: Any, locks: Any, step: P.Step, uidvalidity: int) -> PreparedStep:
    if step.action == P.IGNORE:
        return PreparedStep(step, flags=svc.plan_flags("mark-seen", uidvalidity, step.uids))
    if step.action == P.EXPUNGE:
        return PreparedStep(step, flags=svc.plan_expunge(uidvalidity, step.uids))
    mark = svc.plan_flags("mark-unseen", uidvalidity, step.uids) if step.action == P.UNSEE_RELEASE else None
    return PreparedStep(step, release=locks.plan_release(svc, uidvalidity, step.uids, ttl=0, mark_unseen=mark))


def execute_step(svc: Any, locks: Any, prepared: PreparedStep,
                 progress: Callable[[int, int], None] | None = None) -> Any:
    """Run a prepared step: the triage service's OpResult or the lock service's ReleaseResult."""
    if prepared.release is not None:
        return locks.release(prepared.release, svc, progress=progress)
    return svc.execute(prepared.flags, progress=progress)


__all__ = ["RELEASING", "PreparedStep", "compute_incident", "execute_step", "prepare_step"]
