"""Executing a plan: the only writers. A write connection (SELECT, refused if UIDVALIDITY
moved), STORE or UID EXPUNGE in chunks journaled ahead, resumed after a lost connection, stopped
with an exact account when the journal can not be written, interrupted by :meth:`cancel`.

:class:`Execution` is mixed into :class:`~triage_tui.services.triage.TriageService`; it uses
the service's ``settings``, ``limits``, ``retry``, ``read_only``, ``guard``, ``_factory``,
``_lock``, ``_reader``, ``_one_connection``, ``_cancel``, ``_stops``, ``_narrow``, ``_notify``,
``_retrying`` and ``_check_uidvalidity``."""

from __future__ import annotations

import builtins
import re
import threading
import time
from typing import Any

from triage_tui.domain import uidset
from triage_tui.domain.model import TRIAGE_KEYWORD
from triage_tui.errors import ConnectionLost, Refused
from triage_tui.services.imap import ImapSession, StoreResult
from triage_tui.services.imapwire import Response
from triage_tui.services.journal import JournalWriteFailed
from triage_tui.services.plan_types import (
    _NEEDS,
    LEFT_CHANGED,
    OperationStopped,
    OpResult,
    Plan,
    Progress,
    _cut,
    left_alone_json,
    merge_left_alone,
)

_PAST = {"mark-seen": "marked \\Seen", "mark-unseen": "marked unseen (\\Seen removed)", "expunge": "expunged"}
_FETCH_MODSEQ = re.compile(rb"^\* \d+ FETCH \((.*)\)\s*$", re.IGNORECASE | re.DOTALL)
_UID_ITEM = re.compile(rb"\bUID (\d+)", re.IGNORECASE)
_MODSEQ_ITEM = re.compile(rb"\bMODSEQ \((\d+)\)", re.IGNORECASE)
_FLAGS_ITEM = re.compile(rb"\bFLAGS \(", re.IGNORECASE)
#: the answer to each message of a CONDSTORE STORE as Dovecot (and most servers) word it: a
#: 90k-message mark-seen reads 90k of these, so runs of them are taken in bulk (Wire.skim) and
#: only the pairs are read out; any other wording goes the general way (on_untagged)
_UID_MODSEQ_RUN = re.compile(rb"(?:\* \d+ FETCH \(UID \d+ MODSEQ \(\d+\)\)\r\n)+")
_UID_MODSEQ_PAIR = re.compile(rb"UID (\d+) MODSEQ \((\d+)\)")


class Execution:
    """The writes of :class:`~triage_tui.services.triage.TriageService`."""

    def _open_writer(self, uidvalidity: int, reconnecting: bool = False) -> ImapSession:
        """A fresh SELECT connection, refused if UIDVALIDITY moved. Retries connection losses."""
        def attempt() -> ImapSession:
            w = self._factory(self.settings, self.limits)
            try:
                info = w.select()
                self._check_uidvalidity(uidvalidity, info.uidvalidity)
            except BaseException:
                w.close()
                raise
            return w

        return self._retrying("open a write connection", attempt, reconnecting=reconnecting)

    def cancel(self) -> None:
        """Interrupt a running bulk change from any thread (SIGTERM, SIGHUP, the UI quitting):
        nothing more is sent, what is in flight completes, the journal records the operation as
        ``interrupted`` with exactly what changed and what was never sent."""
        self._cancel.set()
        for stop in list(self._stops):
            stop.set()

    def execute(self, plan: Plan, progress: Progress | None = None) -> OpResult:
        """Carry out a plan. Read-only mode refuses before anything is opened for writing."""
        action = "undo" if plan.undoes else plan.action
        self.guard.refuse_if_read_only(action)
        if self._cancel.is_set():
            raise Refused(f"{action} not started: the session is shutting down")
        w = self._take_selected_reader(plan.uidvalidity) or self._open_writer(plan.uidvalidity)
        try:
            if plan.action == "expunge" and plan.all_deleted:
                return self._execute_expunge_all(w, plan, progress)
            return self._execute_resumable(w, plan, progress)
        finally:
            self._close_quietly(w)

    def _take_selected_reader(self, uidvalidity: int) -> ImapSession | None:
        """With :meth:`use_one_connection`: the open SELECT connection, handed over to the write
        (it is closed after it, and the next read opens a new one), refused if UIDVALIDITY moved.
        Else None (the write opens its own connection)."""
        with self._lock:
            r = self._reader
            if (not self._one_connection or self.read_only or r is None or r.client is None
                    or r.mailbox is None or r.mailbox.readonly):
                return None
            self._reader = None
            self._one_connection = False
        try:
            self._check_uidvalidity(uidvalidity, r.mailbox.uidvalidity)
        except BaseException:
            self._close_quietly(r)
            raise
        return r

    @staticmethod
    def _close_quietly(w: ImapSession) -> None:
        try:
            w.close()
        except Exception:  # noqa: BLE001 - logging out of a broken connection
            w._drop()

    def _execute_resumable(self, w: ImapSession, plan: Plan, progress: Progress | None) -> OpResult:
        """STORE or UID EXPUNGE in chunks, journaled ahead; a lost connection is re-opened and
        the rest resumed.

        Write-ahead: before each batch of commands (one pipeline window) an ``intent`` record
        names its UIDs; each answered command gets a ``progress`` record (``done``, and the MODSEQ
        the server gave the change, which undo uses). If the journal can not be written, nothing
        more is sent: what is in flight completes, and :class:`OperationStopped` says exactly what
        changed. After a reconnect the remaining UIDs are narrowed again on the server: those a
        lost in-flight command already changed no longer need it (reported as ``in_flight``), so
        nothing is done twice and nothing is missed.
        """
        undo = bool(plan.undoes)
        if plan.action == "expunge":
            criteria, flag, add = "DELETED", "", True
        else:
            criteria, flag, add = _NEEDS[plan.action]
        # undo restores what is still as our change left it (a \\Deleted message too); the
        # server's UNCHANGEDSINCE then leaves alone what another client changed since
        state = ("SEEN" if plan.action == "mark-unseen" else "UNSEEN") if undo else criteria
        action = "undo" if undo else plan.action
        extra: dict[str, Any] = {"undoes": plan.undoes, "reverse": plan.action} if undo else {}
        assert w.mailbox is not None
        w0 = w
        condstore = plan.action != "expunge" and "CONDSTORE" in w.capabilities
        # Our keyword goes with \\Seen, in the same STORE, where the mailbox allows keywords
        # (PERMANENTFLAGS of this SELECT); mark-unseen and undo take it off with \\Seen.
        keyword = plan.action != "expunge" and bool(w.mailbox.keywords_allowed)
        both = f"{flag} {TRIAGE_KEYWORD}" if keyword else flag
        if plan.action != "expunge":
            extra["keyword"] = TRIAGE_KEYWORD if keyword else None
            if not keyword:
                extra["keyword_refused"] = "PERMANENTFLAGS has no \\*"
        # (uids, criteria, modseq, flags): a given modseq is our change's (undo); None means the
        # mailbox's HIGHESTMODSEQ at the start, renewed after a reconnect
        segments: list[tuple[list[int], str, int | None, str]] = []
        if undo and plan.groups:
            regain = set(plan.restore_keyword) if keyword and plan.action == "mark-seen" else set()
            for g, m in plan.groups:
                crit = state if m is not None else criteria
                found = self._narrow(w, g, crit)
                if plan.action == "mark-seen":
                    # undoing a mark-unseen: the keyword comes back only where it was before
                    with_kw = [u for u in found if u in regain]
                    without = [u for u in found if u not in regain]
                    segments += [(part, crit, m if condstore else None, f)
                                 for part, f in ((with_kw, both), (without, flag)) if part]
                else:
                    segments.append((found, crit, m if condstore else None, both))
        elif (not undo and condstore and plan.searched_in is not None and plan.searched_in is w.mailbox
              and w.mailbox.highestmodseq is not None):
            # searched just now on this very SELECT (mark-seen's one connection): the STORE's
            # UNCHANGEDSINCE, that SELECT's HIGHESTMODSEQ, predates the SEARCH, so the server
            # itself leaves alone (MODIFIED) whatever another client changed since; a second
            # SEARCH of the same UIDs would find nothing more
            segments.append((list(plan.uids), criteria, None, both))
        else:
            segments.append((self._narrow(w, plan.uids, criteria) if plan.uids else [], criteria, None, both))
        targets = [u for seg, _, _, _ in segments for u in seg]
        if plan.action == "mark-unseen" and not undo and keyword and targets:
            # which of them were ignored by decision: an undo gives the keyword back to exactly these
            extra["had_keyword"] = uidset.compress(self._narrow(w, targets, f"KEYWORD {TRIAGE_KEYWORD}"))
        planned_set = set(plan.uids)
        modseqs: dict[int, int] = {}
        stop = threading.Event()
        if self._cancel.is_set():
            stop.set()
        journal_error: list[JournalWriteFailed] = []
        result = OpResult(action=action, op_id="", uidvalidity=w.mailbox.uidvalidity,
                          vanished_or_done=len(plan.uids) - len(targets), requested=plan.requested)
        done: set[int] = set()
        gone_at_start = sorted(planned_set - set(targets))
        writer = [w]  # the current write connection (a reconnect replaces it)
        self._stops.add(stop)
        try:
            with self.guard.operation(action, uidvalidity=w.mailbox.uidvalidity, planned=len(plan.uids),
                                      targets=uidset.compress(targets), count=len(targets),
                                      unchangedsince=w.mailbox.highestmodseq if condstore else None,
                                      **extra) as op:
                result.op_id = op.id

                def on_run(run: bytes) -> None:
                    for u, ms in _UID_MODSEQ_PAIR.findall(run):
                        modseqs[int(u)] = int(ms)

                def on_untagged(resp: Response) -> None:
                    m = _FETCH_MODSEQ.match(resp.first)
                    # our silent STORE's answer is (UID n MODSEQ (m)): a FETCH with FLAGS is a
                    # server's news of another client's change (with a UID under a UID command,
                    # RFC 3501 7.4.2), whose MODSEQ journaled as ours would hide that change from undo
                    if m and not _FLAGS_ITEM.search(m.group(1)):
                        u, ms = _UID_ITEM.search(m.group(1)), _MODSEQ_ITEM.search(m.group(1))
                        if u and ms:
                            modseqs[int(u.group(1))] = int(ms.group(1))

                def chunk_done(uids: list[int]) -> None:
                    done.update(uids)
                    if not journal_error:
                        seqs = [modseqs.pop(u) for u in uids if u in modseqs]
                        try:
                            # fsynced with the next intent (before more is sent) or the end: a
                            # chunk's fsync no longer holds up reading the next chunk's answer
                            self.guard.progress(op, durable=False, done=uidset.compress(uids), count=len(uids),
                                                **({"modseq": max(seqs)} if seqs else {}))
                        except JournalWriteFailed as e:
                            journal_error.append(e)
                            stop.set()  # nothing more goes out; what is in flight completes
                    if progress:
                        progress(len(done), len(targets))

                def announce(batches: list[list[int] | None]) -> bool:
                    """Write-ahead: the intent record of the next window of commands, before
                    the first of them is sent; False (nothing more is sent) if it can not be."""
                    batch = [u for members in batches for u in (members or [])]
                    # a Graph mailbox also names the messages by their Graph ids
                    ids = getattr(writer[0], "journal_fields", None)
                    try:
                        self.guard.journal.append({"phase": "intent", "op": op.id, "action": action,
                                                   **self.guard.context, "uids": uidset.compress(batch),
                                                   "count": len(batch), **(ids(batch) if ids is not None else {})})
                    except JournalWriteFailed as e:
                        journal_error.append(e)
                        stop.set()
                        return False
                    return True

                attempt = 0
                for index, (seg, seg_criteria, fixed_modseq, seg_flags) in enumerate(segments):
                    w = writer[0]
                    modseq = fixed_modseq if fixed_modseq is not None else (
                        w.mailbox.highestmodseq if condstore and w.mailbox is not None else None)
                    pending = seg
                    while pending:
                        try:
                            while pending:
                                if stop.is_set():
                                    result.interrupted.extend(pending)
                                    pending = []
                                    break
                                # one pipeline for the whole rest: each window of commands is
                                # journaled (intent) right before its first command goes, while
                                # the previous window is still answered (no drain between them)
                                if plan.action == "expunge":
                                    r = w._uid_expunge(pending, progress=chunk_done, stop=stop, announce=announce)
                                else:
                                    r = w._store(pending, seg_flags, add, unchangedsince=modseq, progress=chunk_done,
                                                 stop=stop, on_untagged=on_untagged if condstore else None,
                                                 announce=announce,
                                                 skim=(_UID_MODSEQ_RUN, on_run) if condstore else None)
                                result.interrupted.extend(r.unsent)
                                result.skipped_concurrent.extend(r.modified)
                                result.failed.extend(r.failed)
                                result.commands += r.commands
                                pending = []
                        except ConnectionLost as e:
                            if self._cancel.is_set() or journal_error:
                                # shutting down, or the journal failed: no reconnect (the guard ends
                                # this op as an error; a journal failure says what changed below)
                                if journal_error:
                                    partial = e.partial if isinstance(e.partial, StoreResult) else None
                                    unanswered = set(partial.unanswered) if partial else set()
                                    answered: set[int] = set()
                                    if partial is not None:  # answered, but not done: not "never sent"
                                        result.skipped_concurrent.extend(partial.modified)
                                        result.failed.extend(partial.failed)
                                        result.commands += partial.commands
                                        answered = set(partial.modified) | {u for us, _ in partial.failed for u in us}
                                    result.in_flight.extend(u for u in pending if u in unanswered)
                                    result.interrupted.extend(u for u in pending if u not in unanswered
                                                              and u not in done and u not in answered)
                                    pending = []
                                    break
                                raise
                            w, pending, attempt, renewed = self._resume(
                                w, plan, op, action, e, pending, done, result, attempt, seg_criteria, condstore)
                            writer[0] = w
                            if fixed_modseq is None:
                                modseq = renewed
                    if journal_error or stop.is_set():
                        result.interrupted.extend(u for g, _, _, _ in segments[index + 1:] for u in g)
                        break
                result.changed = sorted(done | set(result.in_flight))
                result.skipped_concurrent.sort()
                result.interrupted = sorted(set(result.interrupted))
                if undo:
                    result.left_alone = merge_left_alone(
                        plan.left_alone, [(LEFT_CHANGED, result.skipped_concurrent),
                                          (LEFT_CHANGED + " (or expunged)", gone_at_start)])
                op.outcome = {"changed": uidset.compress(result.changed), "changed_count": len(result.changed),
                              "skipped_concurrent": uidset.compress(result.skipped_concurrent),
                              "in_flight": uidset.compress(result.in_flight), "reconnects": attempt,
                              "failed": uidset.compress(u for us, _ in result.failed for u in us),
                              "commands": result.commands, "interrupted": uidset.compress(result.interrupted)}
                if undo:
                    op.outcome["left_alone"] = left_alone_json(result.left_alone)
                if journal_error:
                    op.outcome["journal_error"] = journal_error[0].reason
                    op.result = "stopped"
                    raise self._stopped(journal_error[0], plan, action, result, targets)
                if result.interrupted:
                    op.result = "interrupted"
                else:
                    op.result = "ok" if not result.failed else ("partial" if result.changed else "failed")
        except JournalWriteFailed as e:
            if isinstance(e, OperationStopped):
                raise
            # the begin or the end record could not be written
            result.changed = sorted(done | set(result.in_flight))
            raise self._stopped(e, plan, action, result, targets, at_end=bool(result.op_id and done)) from e
        finally:
            self._stops.discard(stop)
            if writer[0] is not w0:
                self._close_quietly(writer[0])  # execute() closes the first one
        return result

    def _stopped(self, e: JournalWriteFailed, plan: Plan, action: str, result: OpResult,
                 targets: builtins.list[int], at_end: bool = False) -> OperationStopped:
        """The one line after a journal failure: exactly what changed, and that nothing more was sent."""
        verb = _PAST[plan.action] + (" again (undo)" if plan.undoes else "")
        n, total = len(result.changed), len(targets)
        head = f"stopped: the audit journal could not be written ({e.reason})"
        if at_end and n == total and not result.interrupted:
            text = (f"{head} after the change: all {n:,} message(s) were {verb} (UIDs {_cut(result.changed)}); "
                    "the journal lacks the end record (undo still works from its chunk records)")
        elif n == 0 and not result.in_flight:
            text = f"{head}; nothing was sent, no message was changed"
        else:
            text = f"{head}; {n:,} of {total:,} message(s) were {verb} (UIDs {_cut(result.changed)})"
            if result.in_flight:
                text += f", {len(result.in_flight):,} of them by commands whose answer was lost"
            text += ", nothing else was sent"
        return OperationStopped(e.reason, text, result)

    def _resume(self, w: ImapSession, plan: Plan, op: Any, action: str, e: ConnectionLost,
                pending: builtins.list[int], done: set[int], result: OpResult, attempt: int, criteria: str,
                condstore: bool) -> tuple[ImapSession, builtins.list[int], int, int | None]:
        """After a lost connection: reconnect (backoff), find out on the server which of
        ``pending`` still need the change, and journal what a lost in-flight command did (with
        the MODSEQ at the reconnect, an upper bound of that change's). Returns the new write
        connection, the UIDs still to do, the attempt count and the renewed HIGHESTMODSEQ."""
        partial = e.partial if isinstance(e.partial, StoreResult) else None
        if partial is not None:
            # answered before the loss: a UID another client changed (CONDSTORE MODIFIED) is
            # theirs, and must not come back below as our "in flight"
            result.skipped_concurrent.extend(partial.modified)
            result.failed.extend(partial.failed)
            result.commands += partial.commands
        attempt += 1
        if attempt > self.retry.attempts:
            raise e
        delay = self.retry.delay(attempt)
        self.guard.progress(op, event="reconnect", attempt=attempt, error=str(e), done_so_far=len(done),
                            skipped_concurrent=uidset.compress(partial.modified if partial else []))
        self._notify(f"{action}: connection lost ({e}); reconnecting in {delay:.1f} s", attempt)
        settled = done | set(result.skipped_concurrent) | {u for us, _ in result.failed for u in us}
        rest = [u for u in pending if u not in settled]
        while True:
            w._drop()
            time.sleep(delay)
            w = self._open_writer(plan.uidvalidity, reconnecting=True)  # refuses if UIDVALIDITY moved
            try:
                still = self._narrow(w, rest, criteria)
                break
            except ConnectionLost as again:
                # lost again while finding out where we are (a flapping link): nothing was sent
                # on this connection, so reconnect and ask again
                attempt += 1
                if attempt > self.retry.attempts:
                    raise
                delay = self.retry.delay(attempt)
                self.guard.progress(op, event="reconnect", attempt=attempt, error=str(again),
                                    done_so_far=len(done))
                self._notify(f"{action}: connection lost again ({again}); reconnecting in {delay:.1f} s", attempt)
        stillset: set[int] = set(still)
        in_flight = [u for u in rest if u not in stillset]
        theirs: list[int] = []
        if partial is not None:
            # only a command that went out unanswered can have changed a UID for us; the others
            # were changed by someone else (mail_room) while we reconnected
            sent = set(partial.unanswered)
            theirs = [u for u in in_flight if u not in sent]
            in_flight = [u for u in in_flight if u in sent]
            result.vanished_or_done += len(theirs)
        new_modseq = w.mailbox.highestmodseq if condstore and w.mailbox is not None else None
        if in_flight or theirs:
            result.in_flight.extend(in_flight)
            self.guard.progress(op, event="resumed", in_flight=uidset.compress(in_flight),
                                done_by_others=uidset.compress(theirs), remaining=len(still),
                                **({"modseq": new_modseq} if new_modseq is not None and in_flight else {}))
        return w, still, attempt, new_modseq

    def _execute_expunge_all(self, w: ImapSession, plan: Plan, progress: Progress | None) -> OpResult:
        """Plain EXPUNGE, re-planned right before it goes: if more messages are \\Deleted now
        than the plan (and the count the operator typed) said, refuse, nothing expunged."""
        assert w.mailbox is not None
        deleted_now = w.search("DELETED")
        grew = sorted(set(deleted_now) - set(plan.uids))
        if grew:
            raise Refused(f"refused: {len(grew):,} more message(s) were flagged \\Deleted since the plan "
                          f"(UIDs {_cut(grew)}), so a plain EXPUNGE would remove {len(deleted_now):,}, not the "
                          f"{plan.count:,} you confirmed; nothing was expunged (run expunge again to see the new plan)")
        with self.guard.operation("expunge-all-deleted", uidvalidity=w.mailbox.uidvalidity,
                                  targets=uidset.compress(deleted_now), count=len(deleted_now),
                                  planned=len(plan.uids)) as op:
            removed = w._expunge_all()
            result = OpResult(action="expunge", op_id=op.id, uidvalidity=w.mailbox.uidvalidity,
                              changed=deleted_now, commands=1)
            op.outcome = {"removed_count": removed}
            if progress:
                progress(len(deleted_now), len(deleted_now))
        return result
