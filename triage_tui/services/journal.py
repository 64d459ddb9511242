"""The audit journal: one JSON object per line, appended before and after every mutation.

Lives in the platformdirs user state directory (``TRIAGE_STATE_DIR`` overrides it). Each record
says who (OS user, host), where (server, IMAP user, mailbox, UIDVALIDITY), what (action, UID set
compressed into ranges, counts) and how it ended. Records are flushed and fsynced, so a crash
leaves a journal that says exactly how far an operation got. Secrets never go in.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import platformdirs

FLAG_ACTIONS = ("mark-seen", "mark-unseen")


def default_path() -> Path:
    base = os.environ.get("TRIAGE_STATE_DIR")
    root = Path(base) if base else Path(platformdirs.user_state_dir("triage-tui", appauthor=False))
    return root / "audit.jsonl"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return str(os.getuid())


class AuditJournal:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()
        self._lock = threading.Lock()
        self._identity = {"os_user": _os_user(), "host": socket.gethostname(), "pid": os.getpid()}

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        full = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **self._identity, **record}
        line = json.dumps(full, ensure_ascii=True, sort_keys=False, default=str) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
        return full

    @staticmethod
    def new_op_id() -> str:
        return uuid.uuid4().hex[:16]

    def records(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open("r", encoding="ascii", errors="replace") as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    rec = json.loads(line)
                    if isinstance(rec, dict):
                        yield rec

    def last_undoable(self, server: str, user: str, mailbox: str) -> dict[str, Any] | None:
        """The newest finished flag change on this mailbox that has not been undone yet."""
        ends: list[dict[str, Any]] = []
        undone: set[str] = set()
        for rec in self.records():
            if rec.get("phase") != "end" or rec.get("server") != server or rec.get("user") != user \
                    or rec.get("mailbox") != mailbox:
                continue
            if rec.get("action") == "undo" and rec.get("undoes") and rec.get("changed"):
                undone.add(rec["undoes"])
            elif rec.get("action") in FLAG_ACTIONS and rec.get("changed"):
                ends.append(rec)
        for rec in reversed(ends):
            if rec.get("op") not in undone:
                return rec
        return None
