"""An in-memory stand-in for TriageService, for pure UI tests, snapshots, screenshots and the
key-latency benchmark. Anything the server decides is tested against real Dovecot instead
(test_flows.py); this fake only has to be deterministic and fast.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from triage_tui.domain import outcome as O
from triage_tui.domain import uidset
from triage_tui.domain.analysis import AnalysisConfig
from triage_tui.domain.model import Message, View
from triage_tui.errors import ReadOnlyRefused, Refused
from triage_tui.services.imap import ConnectionSettings, TlsInfo
from triage_tui.services.journal import AuditJournal
from triage_tui.services.locks import (
    KeyChange,
    LockService,
    RedisSettings,
    ReleasePlan,
    ReleaseResult,
    WatchStatus,
)
from triage_tui.services.triage import Counts, OpResult, Peek, Plan

NOW = datetime(2025, 5, 14, 13, 2, 11, tzinfo=UTC)


def fixed_clock() -> datetime:
    return NOW


def _in_view(m: Message, view: View) -> bool:
    seen, deleted = "\\Seen" in m.flags, "\\Deleted" in m.flags
    if view == View.UNSEEN:
        return not seen
    if view == View.SEEN_STUCK:
        return seen and not deleted
    if view == View.DELETED:
        return deleted
    return True


class FakeService:
    def __init__(self, messages: list[Message], *, read_only: bool = False, uidvalidity: int = 1715690000,
                 chunk: int = 1000, tls_verified: bool = True) -> None:
        self.settings = ConnectionSettings(host="imap.example.net", port=993, user="incoming@example.net",
                                           mailbox="INBOX")
        self.read_only = read_only
        self.guard = SimpleNamespace(read_only=read_only)
        self.analysis = AnalysisConfig(address="incoming+%{key}@incoming.gitlab.example.com")
        self.tls = TlsInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", tls_verified)
        self.capabilities = frozenset({"IMAP4REV1", "IDLE", "UIDPLUS", "CONDSTORE", "ESEARCH"})
        self.uidvalidity = uidvalidity
        self.messages: dict[int, Message] = {m.uid: m for m in messages}
        self.chunk = chunk
        self.closed = False
        self.executed: list[Plan] = []
        self.peeked: list[int] = []

    # connection
    def connect(self) -> Any:
        return None

    def reconnect(self) -> Any:
        return None

    def close(self, *, wait: bool = True) -> None:  # noqa: ARG002
        self.closed = True

    # reading
    def search(self, view: View | str, *, warm: bool = False) -> tuple[int, list[int]]:  # noqa: ARG002
        v = View(view)
        return self.uidvalidity, sorted(u for u, m in self.messages.items() if _in_view(m, v))

    def iter_messages(self, uidvalidity: int, uids: list[int], *, headers: bool = True,
                      now: datetime | None = None) -> Iterator[list[Message]]:
        for i in range(0, len(uids), self.chunk):
            yield [self.messages[u] for u in uids[i: i + self.chunk] if u in self.messages]

    def iter_list(self, view: View = View.UNSEEN, **kw: Any) -> Iterator[list[Message]]:
        uv, uids = self.search(view)
        yield from self.iter_messages(uv, uids)

    def counts(self) -> Counts:
        ms = list(self.messages.values())
        unseen = sorted((m for m in ms if "\\Seen" not in m.flags), key=lambda m: m.internaldate or NOW)
        return Counts(unseen=len(unseen), seen_stuck=sum(_in_view(m, View.SEEN_STUCK) for m in ms),
                      deleted=sum(_in_view(m, View.DELETED) for m in ms), exists=len(ms),
                      oldest_unseen=unseen[0].internaldate if unseen else None, uidvalidity=self.uidvalidity)

    def peek(self, uid: int) -> Peek:
        self.peeked.append(uid)
        m = self.messages[uid]
        when = m.internaldate or NOW
        header = (
            f"Return-Path: <{m.from_addr}>\r\n"
            f"Received: from mx.example.org (mx.example.org [192.0.2.10]) by imap.example.net with ESMTPS "
            f"(version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384) id 4Xyz for <incoming@example.net>; "
            f"{(when - timedelta(seconds=2)).strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\n"
            f"Received: from [198.51.100.7] (helo=sender.example.org) by mx.example.org with ESMTPSA id 1abc; "
            f"{(when - timedelta(seconds=9)).strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\n"
            f"Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=example.org; dkim=pass; dmarc=pass\r\n"
            f"From: {m.sender}\r\nTo: {m.to}\r\nSubject: {m.subject}\r\n"
            f"Date: {(when - timedelta(seconds=12)).strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\n"
            f"Message-ID: {m.message_id or f'<{uid}@example.org>'}\r\n"
        ).encode("utf-8", "surrogateescape")
        return Peek(uid=uid, uidvalidity=self.uidvalidity, flags=m.flags, internaldate=m.internaldate,
                    size=m.size, header=header)

    # planning and executing (in memory)
    def plan_flags(self, action: str, uidvalidity: int, uids: list[int]) -> Plan:
        want_seen = action == "mark-seen"
        needs = sorted(u for u in set(uids) if u in self.messages
                       and (("\\Seen" in self.messages[u].flags) != want_seen)
                       and (want_seen or "\\Deleted" not in self.messages[u].flags))
        return Plan(action=action, uidvalidity=uidvalidity, uids=needs, requested=len(set(uids)),
                    skipped=len(set(uids)) - len(needs))

    def plan_expunge(self, uidvalidity: int, uids: list[int] | None, *, all_deleted: bool = False) -> Plan:
        deleted = sorted(u for u, m in self.messages.items() if "\\Deleted" in m.flags)
        requested = deleted if uids is None else sorted(set(uids))
        targets = [u for u in requested if u in set(deleted)]
        plan = Plan(action="expunge", uidvalidity=uidvalidity, uids=deleted if all_deleted else targets,
                    requested=len(requested), skipped=len(requested) - len(targets), all_deleted=all_deleted)
        if all_deleted:
            plan.others_deleted = len(set(deleted) - set(targets))
        return plan

    def plan_undo(self) -> tuple[Plan, dict[str, Any]]:
        raise Refused("nothing to undo: the journal has no flag change that is not undone yet")

    def execute(self, plan: Plan, progress: Any = None) -> OpResult:
        if self.read_only:
            raise ReadOnlyRefused(f"read-only mode: {plan.action} refused, nothing was changed")
        self.executed.append(plan)
        for u in plan.uids:
            m = self.messages.get(u)
            if m is None:
                continue
            if plan.action == "expunge":
                del self.messages[u]
            elif plan.action == "mark-seen":
                self.messages[u] = replace(m, flags=tuple(sorted(set(m.flags) | {"\\Seen"})))
            else:
                self.messages[u] = replace(m, flags=tuple(f for f in m.flags if f != "\\Seen"))
        if progress:
            progress(len(plan.uids), len(plan.uids))
        return OpResult(action=plan.action, op_id="op-test", uidvalidity=plan.uidvalidity, changed=list(plan.uids),
                        commands=1)


# -- data sets ------------------------------------------------------------------------------------

PROJECTS = [
    (278964, "gitlab-org-gitlab"), (13083, "gitlab-com-www-gitlab-com"), (7764, "gitlab-org-gitaly"),
    (250833, "gitlab-com-gl-infra-production"), (42, "acme-widgets"),
]
HUMANS = [("Alice Example", "alice@example.org"), ("Bob Ops", "bob@ops.example.net"),
          ("Chen Wei", "chen@example.cn"), ("Dana Müller", "dana@example.de")]
BOTS = [("Mail Delivery Subsystem", "mailer-daemon@googlemail.com"), ("", "noreply@ci.example.com"),
        ("Jira", "jira@tickets.example.com")]
SUBJECTS = ["Re: Pipeline failed for main", "Re: [gitlab-org/gitlab] Flaky spec in merge train (#4711)",
            "Question about the release", "Re: Incident review notes", "Undeliverable: Re: backport request",
            "Error fetching data from FOO", "Automatic reply: out of office", "Re: Draft: add IDLE support"]


def _outcome(m: Message) -> O.Outcome:
    """GitLab's verdict as domain.outcome would give it for these headers (no randomness)."""
    if m.bot:
        return O.Outcome(O.DROPPED, None, "Auto-Submitted: auto-replied: GitLab ignores auto-generated mail",
                         False, "auto_submitted")
    if m.no_key:
        return O.NO_KEY
    return O._handled(m.kind, "To", False, False)


def sample_messages(n: int = 40, *, seed: int = 7, now: datetime = NOW, hostile: bool = True) -> list[Message]:
    """A deterministic backlog that looks like an incident: humans and bots, several projects,
    ages from minutes to weeks, a few verdicts; optionally two hostile subjects."""
    rnd = random.Random(seed)
    out: list[Message] = []
    for i in range(n):
        uid = 1000 + i
        bot = rnd.random() < 0.3
        name, addr = rnd.choice(BOTS if bot else HUMANS)
        pid, slug = rnd.choice(PROJECTS)
        age = timedelta(minutes=int(rnd.expovariate(1 / 2500)) + 3)
        kind = rnd.choice(["note_on_issuable", "new_issue", "reply", "service_desk", "note_on_issuable"])
        subject = rnd.choice(SUBJECTS)
        m = Message(uid=uid, uidvalidity=1715690000, flags=(), internaldate=now - age, size=rnd.randint(2_000, 90_000),
                    from_name=name, from_addr=addr, to=f"incoming+{slug}-{pid}-glimt-tok{i}-issue@incoming.gitlab.example.com",
                    subject=subject, message_id=f"<{uid}.{seed}@example.org>", kind=kind)
        if kind != "reply":
            m.project_id, m.project_slug = pid, slug
        if kind == "note_on_issuable":
            m.issue_iid = rnd.randint(1, 5000)
        m.stale = age > timedelta(days=2)
        m.bot = bot
        m.bot_reason = "Auto-Submitted: auto-replied" if bot else None
        if i % 13 == 5:
            m.suspicious, m.suspicious_reason = True, "sign-up confirmation from a third-party service"
        if i % 17 == 3:
            m.kind, m.no_key, m.project_id, m.project_slug, m.issue_iid = "unknown", True, None, None, None
        m.outcome = _outcome(m)
        out.append(m)
    if hostile and n >= 4:
        out[1].subject = "[bold red]x[/] markup must stay literal"
        out[2].subject = "osc52 \x1b]52;c;ZXZpbA==\x07 and csi \x1b[2J done"
        out[2].from_name = "Evil \x1b[31mRed\x1b[0m"
    return out


def big_messages(n: int, *, now: datetime = NOW) -> list[Message]:
    """``n`` cheap messages for the 100k benchmark (no randomness beyond arithmetic)."""
    out = []
    for i in range(n):
        pid, slug = PROJECTS[i % len(PROJECTS)]
        name, addr = (BOTS + HUMANS)[i % 7]
        out.append(Message(uid=i + 1, uidvalidity=1, internaldate=now - timedelta(seconds=(n - i) * 30),
                           size=1000 + i % 5000, from_name=name, from_addr=addr, subject=f"{SUBJECTS[i % 8]} {i}",
                           kind="note_on_issuable", project_id=pid, project_slug=slug, issue_iid=i % 997,
                           stale=(n - i) * 30 > 172800, bot=i % 7 < 3))
    return out


def uids_text(uids: list[int]) -> str:
    return uidset.compress(uids)


# -- Redis locks, in memory (snapshots and screenshots of the lock column and the re-ingest screen) --


class FakeLocks(LockService):
    """The real :class:`LockService` (so ``plan_release`` and ``describe()`` are the production
    code) over an in-memory key table at a fixed server time. ``release`` changes the table;
    ``watcher`` replays ``statuses``. What real Redis decides is tested against redis-server."""

    def __init__(self, ttls: dict[int, int], *, read_only: bool = False,
                 statuses: list[WatchStatus] | None = None) -> None:
        super().__init__(RedisSettings(url="redis://redis.example.net:6379/0"), read_only=read_only,
                         journal=AuditJournal(Path("/nonexistent/triage-fake/audit.jsonl")))
        self.now_ms = int(NOW.timestamp() * 1000)
        self.keys: dict[str, tuple[str, int]] = {self.key_for(u): ("1", ttl * 1000) for u, ttl in ttls.items()}
        self.statuses = list(statuses or [])
        self.released: list[ReleasePlan] = []

    def _read_raw(self, keys: Any) -> Iterator[tuple[int, list[str], list[int], list[str | None]]]:
        chunk = list(keys)
        got = [self.keys.get(k) for k in chunk]
        yield (self.now_ms, chunk, [g[1] if g else -2 for g in got], [g[0] if g else None for g in got])

    def server_time_ms(self) -> int:
        return self.now_ms

    def release(self, plan: ReleasePlan, mailbox: Any, progress: Any = None) -> ReleaseResult:
        self.guard.refuse_if_read_only("release-locks")
        self.released.append(plan)
        result = ReleaseResult(op_id="op-test", uidvalidity=plan.uidvalidity, released_at_ms=self.now_ms)
        for t in plan.to_change:
            old = self.keys.get(t.key, ("1", -2))[1]
            if t.new_ttl_ms:
                self.keys[t.key] = ("1", t.new_ttl_ms)
            else:
                self.keys.pop(t.key, None)
            result.changed.append(KeyChange(t.uid, t.key, old, t.new_ttl_ms or 0))
        if progress:
            progress(len(result.changed), len(result.changed))
        self._fill_free_at(result, plan)
        return result

    def watcher(self, mailbox: Any, plan: ReleasePlan, result: ReleaseResult | None = None, *,
                poll_cycle: float = 60.0, timeout: float | None = None) -> Any:
        return ScriptedWatcher(self.statuses, targets={t.uid: None for t in plan.targets} | dict.fromkeys(plan.unlocked))

    def close(self, *, wait: bool = True) -> None:  # noqa: ARG002
        pass


class ScriptedWatcher:
    """Answers each ``poll()`` with the next scripted status (the last one repeats)."""

    def __init__(self, statuses: list[WatchStatus], targets: dict[int, Any]) -> None:
        self.statuses = statuses
        self.targets = targets
        self.polls = 0

    def poll(self) -> WatchStatus:
        st = self.statuses[min(self.polls, len(self.statuses) - 1)]
        self.polls += 1
        return st


class FakeConsumer:
    """The demo's mail_room controller, without a mailbox: start/stop flip a flag."""

    poll_interval = 2.0

    def __init__(self, delivered: int = 0) -> None:
        self.running = False
        self.delivered = delivered

    @property
    def status(self) -> str:
        if not self.running:
            return f"mail_room: down{f', {self.delivered} delivered' if self.delivered else ''}"
        return f"mail_room: running, {self.delivered} delivered"

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False


def lock_ttls(messages: list[Message], every: int = 3) -> dict[int, int]:
    """Held keys for every ``every``-th message, with TTLs spread over mail_room's 600 s."""
    return {m.uid: 30 + (i * 97) % 570 for i, m in enumerate(messages) if i % every == 0}
