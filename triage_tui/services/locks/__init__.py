"""mail_room's Redis arbitration locks: seeing them, joining them with the mailbox, releasing them.

mail_room claims each UNSEEN UID with ``SET <prefix>delivered:<uid> 1 NX EX 600`` (0.10+) or
``INCR`` + ``EXPIRE 600`` (older, "won" when INCR returned 1). A key held by an instance that never
fetched the message keeps that message UNSEEN and skipped by everyone until the key expires; with
the INCR scheme every poll refreshes the TTL, so it never expires while any instance runs. The
runbook's answer is "stop mail_room everywhere for > 10 minutes"; this module makes the same
thing targeted: shorten the TTL of exactly the keys whose message is still UNSEEN.

Rules this module keeps, and why:

- Reads take one round trip per 5000 keys (a read-only script returning TIME, the PTTLs and the
  few values that are not "1"; a TIME + MGET + PTTL pipeline where scripting is refused), so
  100k keys are read in a fraction of a second instead of 100k round trips.
- Listing uses ``SCAN MATCH`` with a large COUNT, never ``KEYS`` (which blocks a production Redis).
- Every write passes the :class:`~triage_tui.services.guard.MutationGuard` (read-only refusal,
  journal begin/progress/end with each key's name, old TTL and new TTL), only ever names keys
  built from the configured prefix, only targets messages that the server says are UNSEEN right
  before acting, and uses a Lua script that refuses to touch a key that was re-claimed since the
  plan (its expiry moved later, or a counter restarted at 1). Each script call is atomic, and
  redis-py's automatic retries are off, so after a failure the journal names the keys changed,
  the keys of the one batch whose reply was lost ("in doubt"), and the untouched rest.
- The password in a Redis URL is masked in every message, ``repr`` and journal record.

Connection failures surface as :class:`LockUnavailable` (exit code 3) whose text is
``Redis unavailable: <reason>``; the IMAP side never depends on Redis.

The code lives in the submodules, by job: :mod:`.connection` (settings, the connection, reading
keys), :mod:`.report` (the join with the mailbox), :mod:`.release` (plan and result),
:mod:`.service` (warnings, planning, the only writer) and :mod:`.watch` (the pickup after a
release). This module re-exports their public names, the ones callers import.
"""

from triage_tui.domain.redact import mask_url
from triage_tui.services.locks.connection import (
    ACTION,
    DEFAULT_KEY_PREFIX,
    DEFAULT_POLL_CYCLE,
    DELIVERED,
    MAIL_ROOM_TTL,
    READ_CHUNK,
    RECLAIM_SLACK_MS,
    SCAN_COUNT,
    STATE_FILE,
    WRITE_CHUNK,
    KeyState,
    LockReader,
    LockUnavailable,
    RedisSettings,
    ttl_seconds,
)
from triage_tui.services.locks.release import KeyChange, ReleasePlan, ReleaseResult, ReleaseTarget
from triage_tui.services.locks.report import (
    COUNTER_NOTE,
    STATES,
    LockEntry,
    LockReport,
    MailboxSnapshot,
    join,
    ttl_distribution,
)
from triage_tui.services.locks.service import LockService, ReleaseStopped, annotate_safely
from triage_tui.services.locks.watch import (
    NO_RECLAIM,
    REASON_NO_RECLAIM,
    REASON_TIMEOUT,
    REASON_UIDVALIDITY,
    ReleaseWatcher,
    WatchStatus,
    diagnose_no_reclaim,
    diagnose_timeout,
)

__all__ = [
    "ACTION", "COUNTER_NOTE", "DEFAULT_KEY_PREFIX", "DEFAULT_POLL_CYCLE", "DELIVERED", "MAIL_ROOM_TTL",
    "NO_RECLAIM", "READ_CHUNK", "REASON_NO_RECLAIM", "REASON_TIMEOUT", "REASON_UIDVALIDITY",
    "RECLAIM_SLACK_MS", "SCAN_COUNT", "STATES", "STATE_FILE", "WRITE_CHUNK", "KeyChange", "KeyState",
    "LockEntry", "LockReader", "LockReport", "LockService", "LockUnavailable", "MailboxSnapshot",
    "RedisSettings", "ReleasePlan", "ReleaseResult", "ReleaseStopped", "ReleaseTarget", "ReleaseWatcher",
    "WatchStatus", "annotate_safely", "diagnose_no_reclaim", "diagnose_timeout", "join", "mask_url",
    "ttl_distribution", "ttl_seconds",
]
