"""The audit journal: one JSON object per line, written ahead of every mutation.

Lives in the platformdirs user state directory (``TRIAGE_STATE_DIR`` overrides it). Each record
says who (OS user, host), where (server, IMAP user, mailbox, UIDVALIDITY), what (action, UID set
compressed into ranges, counts) and how it ended. Secrets never go in.

Write-ahead: an operation writes ``begin``, then for each chunk an ``intent`` record naming the
UIDs *before* the chunk's commands are sent and a ``progress`` record (``done``) once the server
answered, then ``end``. Every append is one whole line, written in full (a short ``os.write`` is
continued; no progress is an error); ``begin``, ``intent`` and ``end`` are fsynced before the
caller goes on, a chunk's ``progress`` is fsynced with the next of them (fsync is per file), so
a killed process loses none and a machine crash at most the last window's, which then read as
announced but unconfirmed. If a write cannot be done, :class:`JournalWriteFailed` is raised and
the caller sends nothing more. After a crash the journal therefore says what may have happened
(intent without done) and what did (done).

A torn last line (a write cut short by a full disk) is fenced on the next append (``#`` and a
newline end it, so it can never parse, and a ``fence`` record goes first) and skipped, with a
count, when reading.

Every line starts with ``"crc"``, the CRC-32 of the rest of the record as written (the same
JSON without that member): a line changed on disk (a flipped bit that turns ``"changed": "1:5"``
into ``"1:7"``, or a MODSEQ into a higher one) is skipped and counted like a torn one, never
read as another operation, which undo would then revert. Lines written before records carried a
CRC (they start with ``"time"``) are read as they are.
"""

from __future__ import annotations

import errno
import getpass
import json
import os
import re
import socket
import stat
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zlib import crc32

import platformdirs

from triage_tui.domain.redact import scrub_registered
from triage_tui.errors import OperationFailed

FLAG_ACTIONS = ("mark-seen", "mark-unseen")
_TAIL_PROBE = 65536  # bytes read back to measure a torn last line
_SEALED = re.compile(rb'\{"crc": "([0-9a-f]{8})", ')
_UNSEALED = b'{"time": '  # a record written before they carried a CRC


class JournalWriteFailed(OperationFailed):
    """An append could not be written whole and durably. ``reason`` is the OS's word for it."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the audit journal could not be written ({reason})")


def _reason(e: OSError) -> str:
    return e.strerror or (errno.errorcode.get(e.errno or 0) if e.errno else None) or type(e).__name__


def default_path() -> Path:
    base = os.environ.get("TRIAGE_STATE_DIR")
    root = Path(base) if base else Path(platformdirs.user_state_dir("triage-tui", appauthor=False))
    return root / "audit.jsonl"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return str(os.getuid())


def _scrubbed(value: Any) -> Any:
    """Every string of a record without any secret this process used (an error text from a
    server or a library may quote one): the journal is the last place a secret may leak to."""
    if isinstance(value, str):
        return scrub_registered(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrubbed(v) for v in value]
    return value


class AuditJournal:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()
        self._lock = threading.Lock()
        self._identity = {"os_user": _os_user(), "host": socket.gethostname(), "pid": os.getpid()}
        #: lines the last :meth:`records` pass skipped (torn or not a JSON object)
        self.skipped_lines = 0

    def append(self, record: dict[str, Any], *, durable: bool = True) -> dict[str, Any]:
        """Write one record durably, or raise :class:`JournalWriteFailed` (then it may be torn:
        the next append fences it).

        ``durable=False`` (a chunk's ``progress``, written while the next commands are answered):
        the record is written whole, so it survives the process being killed, but not fsynced
        here: the next durable append (the next ``intent``, before anything more is sent, or
        the ``end``) fsyncs the file, and with it this record. Only a machine crash in between can
        lose it, and then the journal shows that chunk as announced but unconfirmed (``intent``
        without ``done``): what may have happened, the conservative reading."""
        full = _scrubbed({"time": _now(), **self._identity, **record})
        line = _sealed(json.dumps(full, ensure_ascii=True, sort_keys=False, default=str))
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                created = not os.path.lexists(self.path)
                fd = _open_journal(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
            except OSError as e:
                raise JournalWriteFailed(_reason(e)) from e
            try:
                torn = _torn_tail(fd)
                if torn:
                    fence = {"time": full["time"], **self._identity, "phase": "fence", "torn_bytes": torn,
                             "note": f"the {torn}-byte record before this one was torn (its write was cut "
                                     "short); it is fenced off and ignored"}
                    # "#" ends the torn line: whatever prefix of a record it was, it can not parse now
                    line = b"#\n" + _sealed(json.dumps(fence, ensure_ascii=True)) + line
                write_all(fd, line)
                if durable:
                    os.fsync(fd)  # the file's every earlier write too (a non-durable one included)
                if created:
                    _fsync_dir(self.path.parent)  # a new file's name must survive a crash too
            except OSError as e:
                raise JournalWriteFailed(_reason(e)) from e
            finally:
                try:
                    os.close(fd)
                except OSError:
                    pass
        return full

    @staticmethod
    def new_op_id() -> str:
        return uuid.uuid4().hex[:16]

    def records(self) -> Iterator[dict[str, Any]]:
        """Every whole record, oldest first. Torn or damaged lines are skipped and counted in
        :attr:`skipped_lines` (read it after the iteration)."""
        return (rec for rec, _crc in self._read())

    def _read(self) -> Iterator[tuple[dict[str, Any], bool]]:
        """(record, whether its line carried a CRC) for :meth:`records`."""
        self.skipped_lines = 0
        try:
            fd = _open_journal(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        with os.fdopen(fd, "rb") as f:
            for raw in f:
                if not raw.strip():
                    continue
                got = _opened(raw) if raw.endswith(b"\n") else None
                if got is not None:
                    yield got
                else:
                    self.skipped_lines += 1

    def last_undoable(self, server: str, user: str, mailbox: str) -> dict[str, Any] | None:
        """The newest flag change on this mailbox that changed something and is not undone yet,
        as one record: its ``end`` record (or, when the operation never wrote one, its ``begin``),
        with ``changed`` and ``chunks`` rebuilt from the write-ahead records.

        ``chunks``: ``[(uid_set, modseq | None), ...]``: what each confirmed chunk changed and the
        MODSEQ the server gave that change (None when the journal does not say). ``unconfirmed``:
        UIDs whose commands were announced (``intent``) but never confirmed (the operation
        stopped without an ``end``). ``undone``: UIDs an earlier, unfinished undo already restored.
        ``sealed``: its begin or end line carried a CRC (written by a version that journals every
        chunk it changed: a change in no confirmed chunk is then a damaged record).
        """
        ops: dict[str, dict[str, Any]] = {}
        order: list[str] = []
        undo_done: dict[str, list[str]] = {}  # target op -> UID sets restored by unfinished undos
        fully_undone: set[str] = set()
        for rec, sealed in self._read():
            if rec.get("server") != server or rec.get("user") != user or rec.get("mailbox") != mailbox:
                continue
            op_id, action, phase = rec.get("op"), rec.get("action"), rec.get("phase")
            if not isinstance(op_id, str):
                # a damaged id: keep the record (undo refuses it with the reason), never merge it
                op_id = "\0" + json.dumps(op_id, default=str)
            if action == "undo":
                target = rec.get("undoes")
                if not isinstance(target, str):
                    continue
                if phase == "end" and rec.get("result") == "ok":
                    fully_undone.add(target)
                elif phase == "progress" and isinstance(rec.get("done"), str):
                    undo_done.setdefault(target, []).append(rec["done"])
                elif phase == "progress" and isinstance(rec.get("in_flight"), str):
                    undo_done.setdefault(target, []).append(rec["in_flight"])
                continue
            if action not in FLAG_ACTIONS:
                continue
            st = ops.get(op_id)
            if st is None:
                st = ops[op_id] = {"begin": None, "end": None, "done": [], "intent": []}
                order.append(op_id)
            if phase in ("begin", "end"):
                st[phase] = rec
                st["sealed"] = st.get("sealed", False) or sealed
            elif phase == "intent" and isinstance(rec.get("uids"), str):
                st["intent"].append(rec["uids"])
            elif phase == "progress" and "done" in rec:
                st["done"].append((rec["done"], rec.get("modseq")))  # validated by the undo planner
            elif phase == "progress" and rec.get("event") == "resumed" and rec.get("in_flight"):
                st["done"].append((rec["in_flight"], rec.get("modseq")))
        for op_id in reversed(order):
            if op_id in fully_undone:
                continue
            st = ops[op_id]
            base = st["end"] or st["begin"]
            if base is None:
                continue
            out = dict(base)
            end = st["end"]
            unconfirmed = ""
            if end is not None and "changed" in end:
                changed = end["changed"]
            elif end is not None and end.get("result") in ("ok", "partial", "interrupted"):
                changed = None  # an end that says it changed something, but not what: damaged
            else:
                # no end record (the journal or the process stopped), or an error ended it before it
                # could say: the confirmed chunks changed, the announced but unconfirmed ones may have
                parts = [u for u, _ in st["done"]]
                bad = [u for u in parts if not isinstance(u, str)]
                changed = bad[0] if bad else ",".join(u for u in parts if u)
                unconfirmed = ",".join(st["intent"])
                if not changed and not bad:
                    continue
            if changed == "":
                continue
            out.update(op=base.get("op"), changed=changed, chunks=st["done"], unconfirmed=unconfirmed,
                       undone=",".join(undo_done.get(op_id, [])), ended=end is not None,
                       sealed=st.get("sealed", False))
            out.setdefault("action", (st["begin"] or {}).get("action"))
            return out
        return None


def _sealed(text: str) -> bytes:
    """One record's line: its JSON text with the CRC-32 of that text as the first member."""
    body = text.encode("ascii")
    return b'{"crc": "%08x", ' % crc32(body) + body[1:] + b"\n"


def _opened(raw: bytes) -> tuple[dict[str, Any], bool] | None:
    """(the record of a whole line, whether it carried a CRC), or None: torn, changed since it
    was written, not an object."""
    line = raw.rstrip(b"\n")
    m = _SEALED.match(line)
    if m is not None:
        body = b"{" + line[m.end():]
        if crc32(body) != int(m.group(1), 16):
            return None
    elif line.startswith(_UNSEALED):
        body = line
    else:
        return None
    try:
        rec = json.loads(body.decode("ascii"))
    except ValueError:
        return None
    return (rec, m is not None) if isinstance(rec, dict) else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def write_all(fd: int, data: bytes, write: Any = None) -> None:
    """Write every byte of ``data`` (``os.write`` may write fewer); no progress at all is an
    error. ``write`` replaces ``os.write`` in tests."""
    write = write or os.write
    view = memoryview(data)
    while view:
        n = write(fd, view)
        if not isinstance(n, int) or n <= 0:
            raise OSError(errno.EIO, f"short write: {len(data) - len(view)} of {len(data)} bytes written")
        view = view[n:]


def _open_journal(path: Path, flags: int) -> int:
    """The journal's descriptor: a regular file, never through a symbolic link (a journal linked
    to another file appended our records to it), and never blocking (a FIFO or a device in its
    place hung every reader, /dev/zero filled the memory). Raises OSError with a reason an
    operator can act on. (It holds no mail and no secret: its mode and owner are the operator's.)"""
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "it is a symbolic link, which the journal refuses") from None
        raise
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise OSError(errno.EISDIR, "Is a directory")
        if not stat.S_ISREG(st.st_mode):
            kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or \
                stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a file"
            raise OSError(errno.EINVAL, f"not a regular file: {kind}")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _fsync_dir(path: Path) -> None:
    try:
        dfd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(dfd)


def _torn_tail(fd: int) -> int:
    """Length of a torn last line (the file does not end with a newline), or 0."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    if os.pread(fd, 1, size - 1) == b"\n":
        return 0
    start = max(0, size - _TAIL_PROBE)
    tail = os.pread(fd, size - start, start)
    nl = tail.rfind(b"\n")
    return size - start - (nl + 1) if nl >= 0 else size - start
