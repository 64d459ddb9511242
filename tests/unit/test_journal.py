"""The audit journal's bytes: whole lines or an error, torn tails fenced, damaged lines skipped
with a count, and undo's view of an operation rebuilt from its write-ahead records."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

from triage_tui.services import journal as jmod
from triage_tui.services.journal import AuditJournal, JournalWriteFailed, write_all


def test_write_all_continues_short_writes(tmp_path: Path) -> None:
    """os.write may write fewer bytes than asked: the rest follows, nothing is lost."""
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    calls: list[int] = []

    def short(fd_: int, data: Any) -> int:
        n = min(len(data), 7)  # at most 7 bytes per call
        calls.append(n)
        return os.write(fd_, bytes(data[:n]))

    try:
        write_all(fd, b"x" * 100 + b"\n", write=short)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"x" * 100 + b"\n"
    assert len(calls) == 15


def test_write_all_no_progress_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="short write: 3 of 10 bytes"):
        fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            answers = iter([3, 0])
            write_all(fd, b"0123456789", write=lambda _fd, _d: next(answers))
        finally:
            os.close(fd)


def _fake_write(monkeypatch: pytest.MonkeyPatch, plan: list[int | OSError]) -> None:
    """The journal's os.write: each call writes at most the next planned count, or raises."""
    real = os.write

    def fake(fd: int, data: Any) -> int:
        step = plan.pop(0) if plan else len(data)
        if isinstance(step, OSError):
            raise step
        return real(fd, bytes(data[:step]))

    monkeypatch.setattr(jmod.os, "write", fake)


def test_short_write_then_disk_full_raises_and_the_next_append_fences(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    j = AuditJournal(tmp_path / "audit.jsonl")
    j.append({"phase": "begin", "op": "a"})
    _fake_write(monkeypatch, [20, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))])
    with pytest.raises(JournalWriteFailed) as info:
        j.append({"phase": "intent", "op": "a", "uids": "1:1000"})
    assert info.value.reason == "No space left on device"
    assert str(info.value) == "the audit journal could not be written (No space left on device)"
    raw = j.path.read_bytes()
    assert not raw.endswith(b"\n")  # torn: 20 bytes of the intent record
    assert [r["phase"] for r in j.records()] == ["begin"] and j.skipped_lines == 1
    monkeypatch.undo()
    j.append({"phase": "end", "op": "a"})
    lines = j.path.read_bytes().split(b"\n")
    assert lines[1].endswith(b"#") and len(lines[1]) == 21  # the torn record, ended so it never parses
    fence = json.loads(lines[2])
    assert fence["phase"] == "fence" and fence["torn_bytes"] == 20
    assert [r["phase"] for r in j.records()] == ["begin", "fence", "end"]
    assert j.skipped_lines == 1
    j.append({"phase": "begin", "op": "b"})  # no second fence
    assert [r["phase"] for r in j.records()] == ["begin", "fence", "end", "begin"]


def test_a_torn_line_that_lacks_only_its_newline_is_fenced_too(tmp_path: Path) -> None:
    """Every byte but the newline written: the record looks whole, but the operation was told it
    failed (and acted on that), so it must not count."""
    j = AuditJournal(tmp_path / "audit.jsonl")
    j.path.write_bytes(b'{"phase": "intent", "op": "x", "uids": "1:5"}')
    assert list(j.records()) == [] and j.skipped_lines == 1
    j.append({"phase": "begin", "op": "y"})
    assert [r["phase"] for r in j.records()] == ["fence", "begin"]


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EFBIG, errno.EIO, errno.EDQUOT])
def test_every_write_error_is_a_journal_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int) -> None:
    j = AuditJournal(tmp_path / "audit.jsonl")
    _fake_write(monkeypatch, [OSError(err, os.strerror(err))])
    with pytest.raises(JournalWriteFailed, match=os.strerror(err)):
        j.append({"phase": "begin"})


def test_fsync_failure_is_a_journal_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    j = AuditJournal(tmp_path / "audit.jsonl")

    def eio(_fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(jmod.os, "fsync", eio)
    with pytest.raises(JournalWriteFailed, match="Input/output error"):
        j.append({"phase": "begin"})


def test_a_non_durable_record_is_written_now_and_fsynced_by_the_next_durable_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk's ``progress`` is written whole at once (it survives the process being killed) and
    fsynced with the next ``intent`` or the ``end``: fsync is per file, so that one covers it."""
    j = AuditJournal(tmp_path / "audit.jsonl")
    j.append({"phase": "begin"})  # creates the file: fsyncs it and its directory
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(jmod.os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    j.append({"phase": "progress", "done": "1:10"}, durable=False)
    j.append({"phase": "progress", "done": "11:20"}, durable=False)
    assert synced == []
    assert [r.get("done") for r in j.records()] == [None, "1:10", "11:20"]  # already in the file
    j.append({"phase": "intent", "uids": "21:30"})
    assert len(synced) == 1


def test_a_non_durable_write_error_is_still_a_journal_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    j = AuditJournal(tmp_path / "audit.jsonl")
    _fake_write(monkeypatch, [OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))])
    with pytest.raises(JournalWriteFailed, match=os.strerror(errno.ENOSPC)):
        j.append({"phase": "progress", "done": "1:10"}, durable=False)


def test_an_unwritable_directory_is_a_journal_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    j = AuditJournal(blocker / "sub" / "audit.jsonl")  # a file where the directory should be
    with pytest.raises(JournalWriteFailed):
        j.append({"phase": "begin"})


def test_damaged_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    j = AuditJournal(tmp_path / "audit.jsonl")
    j.path.write_bytes(b'{"time": "t", "phase": "begin"}\n[1, 2]\nnot json\n\xff\xfe\n{"phase": "x"}\n'
                       b'{"time": "t", "phase": "end"}\n\n')
    assert [r["phase"] for r in j.records()] == ["begin", "end"]  # lines from before the CRC
    assert j.skipped_lines == 4


def test_every_line_carries_the_crc_of_its_record(tmp_path: Path) -> None:
    j = AuditJournal(tmp_path / "audit.jsonl")
    j.append({"phase": "begin", "op": "aa", "changed": "1:5"})
    (line,) = j.path.read_bytes().splitlines()
    assert line.startswith(b'{"crc": "') and json.loads(line)["changed"] == "1:5"  # still JSON (jq)
    assert [r.get("crc") for r in j.records()] == [None]  # a record is what was written


def test_a_record_changed_on_disk_is_skipped_never_read_as_another(tmp_path: Path) -> None:
    """One flipped bit anywhere in a record: ``"changed": "1:5"`` read as ``"1:7"`` would make
    undo un-see two messages mail_room took since."""
    j = AuditJournal(tmp_path / "audit.jsonl")
    j.append({"phase": "end", "op": "aa", "changed": "1:5", "modseq": 4})
    pristine = j.path.read_bytes()
    for i in range(len(pristine) - 1):  # not the newline: that is a torn line, counted as well
        for bit in range(8):
            data = bytearray(pristine)
            data[i] ^= 1 << bit
            j.path.write_bytes(bytes(data))
            got = list(j.records())
            assert got == [] and j.skipped_lines >= 1, (i, bit, got)


# -- undo's view of an operation --------------------------------------------------------------------

CTX = {"server": "imap.example:993", "user": "incoming", "mailbox": "INBOX"}


def _op(j: AuditJournal, op: str, *recs: dict[str, Any], action: str = "mark-seen") -> None:
    for r in recs:
        j.append({"op": op, "action": action, **CTX, **r})


def test_an_operation_without_end_is_undoable_from_its_done_records(tmp_path: Path) -> None:
    j = AuditJournal(tmp_path / "audit.jsonl")
    _op(j, "aa", {"phase": "begin", "uidvalidity": 7}, {"phase": "intent", "uids": "1:20"},
        {"phase": "progress", "done": "1:10", "count": 10, "modseq": 5},
        {"phase": "intent", "uids": "21:40"})  # the journal (or the process) stopped here
    rec = j.last_undoable(**CTX)
    assert rec is not None
    assert rec["op"] == "aa" and rec["changed"] == "1:10" and rec["chunks"] == [("1:10", 5)]
    assert rec["unconfirmed"] == "1:20,21:40" and rec["ended"] is False and rec["uidvalidity"] == 7


def test_an_ended_operation_uses_its_end_record(tmp_path: Path) -> None:
    j = AuditJournal(tmp_path / "audit.jsonl")
    _op(j, "aa", {"phase": "begin", "uidvalidity": 7}, {"phase": "progress", "done": "1:10", "modseq": 5},
        {"phase": "progress", "event": "resumed", "in_flight": "11:12", "modseq": 9},
        {"phase": "end", "uidvalidity": 7, "changed": "1:12", "result": "ok"})
    rec = j.last_undoable(**CTX)
    assert rec is not None and rec["changed"] == "1:12" and rec["chunks"] == [("1:10", 5), ("11:12", 9)]
    assert rec["ended"] is True and rec["unconfirmed"] == ""


def test_finished_undo_hides_the_op_unfinished_undo_counts_what_it_did(tmp_path: Path) -> None:
    j = AuditJournal(tmp_path / "audit.jsonl")
    _op(j, "old", {"phase": "end", "uidvalidity": 7, "changed": "1:3", "result": "ok"})
    _op(j, "new", {"phase": "end", "uidvalidity": 7, "changed": "4:9", "result": "ok"})
    _op(j, "u1", {"phase": "begin", "undoes": "new"}, {"phase": "progress", "done": "4:5", "undoes": "new"},
        action="undo")
    rec = j.last_undoable(**CTX)
    assert rec is not None and rec["op"] == "new" and rec["undone"] == "4:5"
    _op(j, "u2", {"phase": "end", "undoes": "new", "result": "ok", "changed": "6:9"}, action="undo")
    rec = j.last_undoable(**CTX)
    assert rec is not None and rec["op"] == "old"


def test_records_of_other_mailboxes_servers_and_users_never_match(tmp_path: Path) -> None:
    j = AuditJournal(tmp_path / "audit.jsonl")
    for other in ({"mailbox": "Archive"}, {"server": "other:993"}, {"user": "x"}, {"mailbox": None}):
        j.append({"op": "zz", "action": "mark-seen", **CTX, **other, "phase": "end", "changed": "1", "uidvalidity": 1})
    assert j.last_undoable(**CTX) is None


def test_many_small_chunks_are_merged_into_bounded_groups() -> None:
    from triage_tui.services.triage import _merged

    chunks: list[tuple[list[int], int | None]] = [([i], 10 + i) for i in range(1, 1001)]
    groups = _merged(chunks, 256)
    assert len(groups) <= 256
    assert [u for g, _ in groups for u in g] == list(range(1, 1001))
    assert groups[0] == ([1, 2, 3, 4], 14)  # the newest MODSEQ of the group
    chunks[1] = ([2], None)
    assert _merged(chunks, 256)[0][1] is None  # a chunk without MODSEQ: the whole group has none
    assert _merged(chunks[:5], 256) == chunks[:5]


def test_no_registered_secret_reaches_the_journal(tmp_path: Path) -> None:
    """An error text that quotes a secret (a library echoing its connection arguments, a server
    echoing a login) is journaled without it, in every spelling the scrubber knows."""
    from triage_tui.domain.redact import register

    secret = "Sw0rdfish-\u00e4-journal"
    register(secret)
    j = AuditJournal(tmp_path / "audit.jsonl")
    j.append({"phase": "end", "op": "x", "error": f"AUTH failed for 'user' with {secret!r}",
              "nested": {"why": [f"password={secret}", secret.upper()]}})
    raw = (tmp_path / "audit.jsonl").read_bytes()
    assert b"Sw0rdfish" not in raw and b"SW0RDFISH" not in raw
    rec = json.loads(raw)
    assert "***" in rec["error"] and rec["op"] == "x"
