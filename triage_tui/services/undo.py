"""Undo: the journal record it trusts (:class:`_UndoRecord`, refused as :class:`DamagedRecord`
when damaged) and the plan that reverts exactly what is unchanged since our change.

:class:`UndoPlanning` is mixed into :class:`~triage_tui.services.triage.TriageService`; it uses
the service's ``settings``, ``guard``, ``journal``, ``limits``, ``reader``, ``_narrow`` and
``_retrying``."""

from __future__ import annotations

import builtins
import json
import re
from dataclasses import dataclass, field
from typing import Any

from triage_tui.domain.text import inert
from triage_tui.errors import OperationFailed, Refused, UidValidityChanged
from triage_tui.services.plan_types import (
    _UIDSET,
    LEFT_ALREADY,
    LEFT_CHANGED,
    LEFT_GONE,
    LEFT_NO_MODSEQ_DELETED,
    LEFT_UNCONFIRMED,
    LEFT_UNPROVEN,
    MAX_MODSEQ,
    MAX_UID,
    Plan,
    merge_left_alone,
)

_OP_ID = re.compile(r"[0-9a-f]{1,64}\Z")
MAX_UNDO_GROUPS = 256  # SEARCHes an undo plan may send to tell what changed since
MAX_JOURNAL_UIDS = 2_000_000  # an undo of more than this is a damaged record, not an operation


def _lit(value: Any, limit: int = 60) -> str:
    """A journal value as it may be shown in a one-line reason: quoted, made inert, cut short."""
    if isinstance(value, str):  # the one way out: the same escapes as everywhere else
        text = '"' + inert(value, limit=limit + 1) + '"'
    else:
        text = inert(json.dumps(value, ensure_ascii=False, default=str), limit=limit + 1)
    return text if len(text) <= limit else text[:limit] + "..."


def _plain(value: Any, limit: int = 80) -> str:
    """A journal string shown as is when it is short printable ASCII, else as an escaped literal."""
    if isinstance(value, str) and len(value) <= limit and all(" " <= c <= "~" for c in value):
        return value
    return _lit(value)


def _merged(chunks: builtins.list[tuple[builtins.list[int], int | None]],
            limit: int) -> builtins.list[tuple[builtins.list[int], int | None]]:
    """At most ``limit`` groups of consecutive chunks (one SEARCH and one segment of STOREs each):
    a group is restored UNCHANGEDSINCE its newest MODSEQ (None if any chunk has none). Only an
    operation of very many small chunks is merged, and then only a change another client made
    *during* it can go unnoticed."""
    if len(chunks) <= limit:
        return chunks
    size = -(-len(chunks) // limit)
    out: builtins.list[tuple[builtins.list[int], int | None]] = []
    for i in range(0, len(chunks), size):
        part = chunks[i:i + size]
        seqs = [m for _, m in part]
        modseq = None if any(m is None for m in seqs) else max(m for m in seqs if m is not None)
        out.append(([u for g, _ in part for u in g], modseq))
    return out


class DamagedRecord(Refused):
    """A journal record undo can not trust: wrong types, impossible values."""


@dataclass
class _UndoRecord:
    op: str
    action: str
    time: str
    uidvalidity: int
    changed: list[int]
    chunks: list[tuple[list[int], int | None]]
    unconfirmed: list[int]
    undone: list[int]
    ended: bool
    raw: dict[str, Any]
    had_keyword: list[int] = field(default_factory=list)
    sealed: bool = False  # written by a version that journals every chunk (see last_undoable)

    @classmethod
    def check(cls, rec: dict[str, Any]) -> _UndoRecord:
        op = rec.get("op")
        who = f"op {op}" if isinstance(op, str) and _OP_ID.match(op) else f"the record {_lit(op, 30)}"

        def bad(why: str) -> DamagedRecord:
            return DamagedRecord(f"cannot undo {who}: its journal record is damaged ({why}); nothing was changed")

        if not (isinstance(op, str) and _OP_ID.match(op)):
            raise bad(f"op is not an operation id: {_lit(op)}")
        action = rec.get("action")
        if action not in ("mark-seen", "mark-unseen"):
            raise bad(f"action is not mark-seen or mark-unseen: {_lit(action)}")
        uv = rec.get("uidvalidity")
        if not isinstance(uv, int) or isinstance(uv, bool) or not 1 <= uv <= MAX_UID:
            raise bad(f"uidvalidity is not a number from 1 to {MAX_UID}: {_lit(uv)}")
        total = [0]

        def uids(name: str, value: Any) -> list[int]:
            if value is None or value == "":
                return []
            if not isinstance(value, str) or not _UIDSET.match(value):
                raise bad(f"{name} is not a UID set like 1:500,502: {_lit(value)}")
            out: list[int] = []
            for part in value.split(","):
                a, _, b = part.partition(":")
                lo, hi = int(a), int(b or a)
                if lo > hi:
                    lo, hi = hi, lo
                if lo < 1 or hi > MAX_UID:
                    raise bad(f"{name} has a UID outside 1..{MAX_UID}: {_lit(part)}")
                total[0] += hi - lo + 1
                if total[0] > MAX_JOURNAL_UIDS:
                    raise bad(f"{name} names more than {MAX_JOURNAL_UIDS:,} UIDs")
                out.extend(range(lo, hi + 1))
            return sorted(set(out))

        if rec.get("changed") is None:
            raise bad("changed is missing")
        changed = uids("changed", rec.get("changed"))
        chunks_raw = rec.get("chunks", [])
        if not isinstance(chunks_raw, list):
            raise bad(f"chunks is not a list: {_lit(chunks_raw)}")
        chunks: list[tuple[list[int], int | None]] = []
        for item in chunks_raw:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise bad(f"a chunk is not (UIDs, MODSEQ): {_lit(item)}")
            modseq = item[1]
            if modseq is not None and (not isinstance(modseq, int) or isinstance(modseq, bool)
                                       or not 1 <= modseq <= MAX_MODSEQ):
                raise bad(f"a chunk's modseq is not a positive number: {_lit(modseq)}")
            chunks.append((uids("a chunk", item[0]), modseq))
        if not changed:
            raise bad("changed names no UID")
        t = rec.get("time")
        return cls(op=op, action=action, time=_plain(t) if t is not None else "?", uidvalidity=uv,
                   changed=changed, chunks=chunks, unconfirmed=uids("unconfirmed", rec.get("unconfirmed")),
                   undone=uids("undone", rec.get("undone")), ended=bool(rec.get("ended", True)), raw=rec,
                   had_keyword=uids("had_keyword", rec.get("had_keyword")), sealed=rec.get("sealed") is True)

    def shown(self) -> dict[str, Any]:
        """The record's fields for display: validated, or escaped when they are not plain."""
        r = self.raw
        return {"op": self.op, "action": self.action, "time": self.time, "uidvalidity": self.uidvalidity,
                "changed_count": len(self.changed), "os_user": _plain(r.get("os_user", "?")),
                "host": _plain(r.get("host", "?")), "ended": self.ended}


class UndoPlanning:
    """The undo plan of :class:`~triage_tui.services.triage.TriageService`."""

    def plan_undo(self) -> tuple[Plan, dict[str, Any]]:
        """The undo of the newest flag change on this mailbox not undone yet, and its journal
        record (validated: a damaged or wrongly typed record is refused with the reason).

        Undo restores exactly what is unchanged since our change, using the MODSEQ the server
        gave each chunk of it: what another client changed since (mail_room fetching or deleting
        it, a person flagging it) is found by ``SEARCH MODSEQ <ours + 1>`` and left alone, and
        named; what changes after this plan the server itself leaves alone (``UNCHANGEDSINCE``
        the plan's HIGHESTMODSEQ). A message that was \\Deleted before our change is restored
        like any other."""
        return self._retrying("plan", self._plan_undo)

    def _plan_undo(self) -> tuple[Plan, dict[str, Any]]:
        s = self.settings
        server = self.guard.context.get("server", s.server)
        try:
            rec = self.journal.last_undoable(server, s.user, s.mailbox)
        except OSError as e:
            raise OperationFailed(f"cannot undo: the audit journal ({self.journal.path}) can not be read "
                                  f"({e.strerror or type(e).__name__}); nothing was changed") from None
        damaged = self.journal.skipped_lines
        if rec is None:
            skipped = (f" ({damaged} damaged line(s) skipped: torn, or changed on disk; they may be one)"
                       if damaged else "")
            raise Refused(f"nothing to undo: the journal ({self.journal.path}) has no flag change on "
                          f"{s.mailbox} at {server} that is not undone yet{skipped}")
        v = _UndoRecord.check(rec)
        info = self.reader.examine()
        if v.uidvalidity != info.uidvalidity:
            raise UidValidityChanged(
                f"cannot undo {v.action} of {v.time} (op {v.op}): UIDVALIDITY changed from "
                f"{v.uidvalidity} to {info.uidvalidity}, so its UIDs now name other messages")
        reverse = "mark-unseen" if v.action == "mark-seen" else "mark-seen"
        state = "SEEN" if reverse == "mark-unseen" else "UNSEEN"  # as our change left them
        r = self.reader
        already = set(v.undone)
        unconfirmed = [u for u in v.unconfirmed if u not in set(v.changed)]
        remaining = [u for u in v.changed if u not in already]
        present = set(self._narrow(r, remaining, "ALL")) if remaining else set()
        gone = [u for u in remaining if u not in present]
        still = set(self._narrow(r, sorted(present), state)) if present else set()
        moved = [u for u in remaining if u in present and u not in still]
        condstore = "CONDSTORE" in r.capabilities
        groups: list[tuple[list[int], int | None]] = []
        since: list[int] = []
        deleted_unknown: list[int] = []
        covered: set[int] = set()
        for uids, modseq in _merged(v.chunks, MAX_UNDO_GROUPS):
            mine = [u for u in uids if u in still and u not in covered]
            covered.update(mine)
            if not mine:
                continue
            if modseq is not None and condstore:
                changed_since = set(self._narrow(r, mine, f"MODSEQ {modseq + 1}"))
                since.extend(u for u in mine if u in changed_since)
                mine = [u for u in mine if u not in changed_since]
                if mine:
                    groups.append((mine, modseq))
            else:
                groups.append((mine, None))
        rest = sorted(still - covered)
        unproven: list[int] = []
        if rest and (v.chunks or v.sealed):
            # a record that journals its chunks confirms every UID it changed in one of them
            # (in_flight ones included): the others come from a damaged record (a digit of
            # "changed" flipped on disk, a chunk's line skipped for its CRC), and would un-see
            # mail that mail_room took since
            unproven, rest = rest, []
        if rest:  # a record from before chunks were journaled
            groups.append((rest, None))
        if reverse == "mark-unseen":
            # without the MODSEQ of our change, a \\Deleted message cannot be told apart from one
            # mail_room took since: leave those alone (un-seeing it could ingest it twice)
            for i, (uids, modseq) in enumerate(groups):
                if modseq is None:
                    dele = set(self._narrow(r, uids, "DELETED"))
                    if dele:
                        deleted_unknown.extend(u for u in uids if u in dele)
                        groups[i] = ([u for u in uids if u not in dele], None)
            groups = [(u, m) for u, m in groups if u]
        # What changed between our change and now was found above (SEARCH MODSEQ <ours + 1>); what
        # changes from now on the server refuses: one STORE UNCHANGEDSINCE this plan's
        # HIGHESTMODSEQ (read before those SEARCHes) covers every chunk at once, pipelined.
        known = sorted(u for g, m in groups if m is not None for u in g)
        unknown = sorted(u for g, m in groups if m is None for u in g)
        groups = ([(known, info.highestmodseq)] if known and info.highestmodseq is not None else []) + \
                 ([(unknown, None)] if unknown else [])
        if known and info.highestmodseq is None:
            groups.insert(0, (known, None))
        uids = sorted(u for g, _ in groups for u in g)
        left = merge_left_alone([(LEFT_CHANGED, sorted(since + moved)), (LEFT_GONE, gone),
                                 (LEFT_NO_MODSEQ_DELETED, deleted_unknown), (LEFT_UNCONFIRMED, unconfirmed),
                                 (LEFT_UNPROVEN, unproven),
                                 (LEFT_ALREADY, sorted(already & set(v.changed)))])
        notes = []
        if damaged:
            notes.append(f"the journal has {damaged} damaged line(s) (torn, or changed on disk), skipped")
        if not v.ended:
            notes.append(f"op {v.op} has no end record (it was stopped): undoing the chunks its journal "
                         "confirms")
        plan = Plan(action=reverse, uidvalidity=info.uidvalidity, uids=uids, requested=len(v.changed),
                    skipped=len(v.changed) - len(uids), undoes=v.op, limits=self.limits, groups=groups,
                    left_alone=left, notes=notes,
                    restore_keyword=v.had_keyword if reverse == "mark-seen" else [])
        budget = getattr(r, "budget", None)  # a Graph mailbox: what the undo spends of its budget
        if callable(budget):
            plan.budget = budget(plan.count)
        return plan, v.shown()
