"""The one gate every mutation passes: read-only refusal and the audit journal.

Both the IMAP triage service and the Redis lock service open their writes through
:meth:`MutationGuard.operation`; nothing else in the code base changes server state.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from triage_tui.errors import ReadOnlyRefused
from triage_tui.services.journal import AuditJournal, JournalWriteFailed


@dataclass
class Operation:
    id: str
    action: str
    outcome: dict[str, Any] = field(default_factory=dict)
    result: str = "ok"  # ok | partial | failed | nothing | interrupted | stopped (journal failed)


class MutationGuard:
    #: operations open in this process (every guard's): a signal may end the process at once
    #: only while this is 0, i.e. before a begin record or after the end record (see cli.py)
    in_flight = 0
    _count_lock = threading.Lock()  # the TUI opens operations from worker threads

    @classmethod
    def _count(cls, step: int) -> None:
        with cls._count_lock:
            cls.in_flight += step

    def __init__(self, *, read_only: bool, journal: AuditJournal, context: dict[str, Any] | None = None) -> None:
        self.read_only = read_only
        self.journal = journal
        self.context = dict(context or {})

    def refuse_if_read_only(self, action: str) -> None:
        if self.read_only:
            raise ReadOnlyRefused(f"read-only mode: {action} refused, nothing was changed "
                                  "(start without --read-only to act)")

    @contextlib.contextmanager
    def operation(self, action: str, **fields: Any) -> Iterator[Operation]:
        """Refuse in read-only mode; journal ``begin`` before and ``end`` after (also on error).

        Write-ahead: if ``begin`` can not be written, :class:`JournalWriteFailed` is raised and
        the body never runs. If the body fails and the ``end`` record can not be written either,
        the body's error is the one raised (the journal then shows the op without an end)."""
        self.refuse_if_read_only(action)
        op = Operation(self.journal.new_op_id(), action)
        MutationGuard._count(1)  # before the begin record: from here a signal only cancels
        try:
            self.journal.append({"phase": "begin", "op": op.id, "action": action, **self.context, **fields})
            try:
                yield op
            except BaseException as e:
                with contextlib.suppress(JournalWriteFailed):
                    self.journal.append({"phase": "end", "op": op.id, "action": action, **self.context, **fields,
                                         **op.outcome, "result": op.result if op.result == "stopped" else "error",
                                         "error": str(e) or type(e).__name__})
                raise
            self.journal.append({"phase": "end", "op": op.id, "action": action, **self.context, **fields,
                                 **op.outcome, "result": op.result})
        finally:
            MutationGuard._count(-1)

    def intent(self, op: Operation, **fields: Any) -> None:
        """Write-ahead: what the next batch is about to change, journaled before it is sent."""
        self.journal.append({"phase": "intent", "op": op.id, "action": op.action, **self.context, **fields})

    def progress(self, op: Operation, *, durable: bool = True, **fields: Any) -> None:
        """``durable=False``: fsynced by the next durable record (see :meth:`AuditJournal.append`)."""
        self.journal.append({"phase": "progress", "op": op.id, "action": op.action, **self.context, **fields},
                            durable=durable)
