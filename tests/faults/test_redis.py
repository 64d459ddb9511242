"""Redis faults not covered elsewhere: a redis-server really restarted mid-session (with and
without persistence) and a slow Redis (a loopback proxy adding latency). The IMAP side keeps
working in the CLI and the TUI, and the audit journal names exactly the keys that changed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import Mailbox
from tests.mailgen import ADDRESS, backlog, message
from tests.proxy import LatencyProxy
from tests.servers import _base_tmp, _require, _wait_port, free_port
from tests.tui.conftest import loaded, wait_for
from triage_tui.domain.analysis import AnalysisConfig
from triage_tui.domain.model import View
from triage_tui.services.journal import AuditJournal
from triage_tui.services.locks import LockService, RedisSettings
from triage_tui.services.triage import TriageService
from triage_tui.tui.app import TriageApp
from triage_tui.tui.screens.confirm import ConfirmScreen

PREFIX = "mail_room:gitlab:"


def key(uid: int) -> str:
    return f"{PREFIX}delivered:{uid}"


class RestartableRedis:
    """A redis-server on a fixed port that can be stopped and started again on the same data
    directory: with ``persistent`` (AOF, fsync always) the keys survive a restart, as on a
    production Redis; without, a restart empties it (a cache-style Redis, or a failover to an
    empty replica)."""

    def __init__(self, persistent: bool) -> None:
        self.persistent = persistent
        self.port = free_port()
        self.base = _base_tmp("triage-redis-restart-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = self.base / "redis.log"
        log.touch()
        self.proc = subprocess.Popen(
            [_require("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.base),
             "--save", "", "--appendonly", "yes" if self.persistent else "no", "--appendfsync", "always",
             "--logfile", str(log)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _wait_port(self.port, self.proc, log)

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
        self.restarts += 1

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)


@pytest.fixture
def restartable(request: pytest.FixtureRequest) -> Iterator[RestartableRedis]:
    r = RestartableRedis(persistent=getattr(request, "param", True))
    r.start()
    yield r
    r.stop()
    import shutil

    shutil.rmtree(r.base, ignore_errors=True)


def _triage(mb: Mailbox, **kw: object) -> TriageService:
    svc = TriageService(mb.settings(), read_only=False, journal=AuditJournal(),
                        analysis=AnalysisConfig(address=ADDRESS), **kw)  # type: ignore[arg-type]
    svc.connect()
    return svc


def _journal_keys(op_id: str | None) -> list[str]:
    return [k for r in AuditJournal().records() if r.get("op") == op_id and r.get("phase") == "progress"
            for k, _old, _new in r.get("keys", [])]


# -- restart mid-release ---------------------------------------------------------------------------


@pytest.mark.parametrize("restartable", [True, False], indirect=True, ids=["persistent", "not-persistent"])
def test_release_across_a_restart_between_batches(mailbox: Mailbox, restartable: RestartableRedis) -> None:
    """Redis restarts between two release batches. redis-py notices the dead pooled connection
    before sending (it reconnects; our zero-retry policy is about commands, not this), the
    script is loaded again (NOSCRIPT), and the release goes on. With persistence every key is
    released once; without, the keys the restart wiped are journaled as "gone", never as our
    change. Either way the journal names exactly what changed."""
    mailbox.seed(backlog(10, now=time.time()))
    rc = restartable.client()
    for u in range(1, 11):
        rc.set(key(u), "1", ex=600)
    ls = LockService(RedisSettings(url=restartable.url, timeout=2), read_only=False, journal=AuditJournal())
    ls.write_chunk = 3
    svc = _triage(mailbox)
    uv, unseen = svc.search(View.UNSEEN)

    def after_batch(done: int, total: int) -> None:
        if done == 3:
            restartable.restart()

    result = ls.release(ls.plan_release(svc, uv, unseen), svc, progress=after_batch)
    assert restartable.restarts == 1
    assert result.ok and result.error is None and result.in_doubt == [] and result.untouched == []
    changed = [c.uid for c in result.changed]
    rc = restartable.client()
    assert not any(rc.exists(key(u)) for u in range(1, 11))
    if restartable.persistent:
        assert changed == list(range(1, 11))
    else:
        assert changed == [1, 2, 3] and result.skipped == {"gone": list(range(4, 11))}
    assert sorted(_journal_keys(result.op_id)) == sorted(key(u) for u in changed), "journal != what changed"
    svc.close()
    ls.close()


class RestartDuringBatch:
    """Wraps a real client: the ``n``-th release script call finds the connection gone (the
    server restarts, empty, at that moment) and never runs."""

    def __init__(self, real: redis.Redis, server: RestartableRedis, n: int) -> None:
        self.real, self.server, self.n, self.calls = real, server, n, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    def register_script(self, lua: str) -> object:
        script = self.real.register_script(lua)
        if "PEXPIRE" not in lua:
            return script

        def call(*a: object, **k: object) -> object:
            self.calls += 1
            if self.calls == self.n:
                self.server.restart()
                raise redis.exceptions.ConnectionError("Connection reset by peer")
            return script(*a, **k)

        return call


@pytest.mark.parametrize("restartable", [False], indirect=True, ids=["not-persistent"])
def test_keys_wiped_by_a_restart_mid_batch_are_in_doubt_not_ours(mailbox: Mailbox,
                                                                   restartable: RestartableRedis) -> None:
    """A batch fails because Redis restarted under it, empty (no persistence; or a failover to a
    replica that lacks the keys). Read back, its keys are absent, and the rule "nothing but us
    deletes a lock before its expiry" no longer holds on a different server: the journal must
    not claim we changed them. They are "in doubt", the rest untouched, batch 1 changed."""
    mailbox.seed(backlog(9, now=time.time()))
    rc = restartable.client()
    for u in range(1, 10):
        rc.set(key(u), "1", ex=600)
    client = RestartDuringBatch(redis.Redis(host="127.0.0.1", port=restartable.port, decode_responses=True),
                                restartable, 2)
    ls = LockService(RedisSettings(url=restartable.url, timeout=2), read_only=False, journal=AuditJournal(),
                     client=client)
    ls.write_chunk = 3
    svc = _triage(mailbox)
    uv, unseen = svc.search(View.UNSEEN)
    result = ls.release(ls.plan_release(svc, uv, unseen), svc)
    assert restartable.restarts == 1 and restartable.client().dbsize() == 0
    assert [c.uid for c in result.changed] == [1, 2, 3]
    assert sorted(_journal_keys(result.op_id)) == sorted(key(u) for u in (1, 2, 3)), \
        "keys wiped by a restart were journaled as changed by us"
    assert result.in_doubt == [4, 5, 6] and result.untouched == [7, 8, 9]
    end = [r for r in AuditJournal().records() if r.get("op") == result.op_id and r.get("phase") == "end"][0]
    assert end["changed_uids"] == "1:3" and end["in_doubt"] == "4:6" and "restarted" in end.get("error", "")
    svc.close()
    ls.close()


# -- restart and slowness under the TUI -------------------------------------------------------------


def _lock_text(app: TriageApp) -> str:
    return "\n".join(app.list.render_line(y).text for y in range(app.list.size.height))


def test_tui_through_a_redis_restart_and_outage(mailbox: Mailbox, restartable: RestartableRedis) -> None:
    """The lock column survives a Redis restart (the TTLs are read again after the next refresh), an
    outage shows as one warning, and marking seen works all along."""
    mailbox.seed(backlog(8, now=time.time()))
    rc = restartable.client()
    rc.set(key(2), "1", ex=500)
    locks = LockService(RedisSettings(url=restartable.url, timeout=1), read_only=False, journal=AuditJournal())
    svc = TriageService(mailbox.settings(), read_only=False, journal=AuditJournal(),
                        analysis=AnalysisConfig(address=ADDRESS))
    app = TriageApp(svc, lock_service=locks, watcher_factory="auto")
    said: list[tuple[str, str]] = []
    shown = app.status

    def status(text: str, kind: str = "info") -> None:
        said.append((text, kind))
        shown(text, kind)

    app.status = status  # type: ignore[method-assign]

    def append(subject: str) -> None:
        c = mailbox.client()
        c.append("INBOX", message(subject=subject))
        c.logout()

    async def go() -> None:
        async with app.run_test(size=(120, 30)) as pilot:
            await loaded(pilot)
            await wait_for(pilot, lambda: app.pulse_state.locks_held == 1, what="the lock count")
            await wait_for(pilot, lambda: app.pulse_state.live == "idle", what="IDLE")
            restartable.restart()
            rc2 = restartable.client()
            rc2.set(key(3), "1", ex=400)  # mail_room claims another after the restart
            append("after restart")
            await wait_for(pilot, lambda: len(app.model) == 9 and app.pulse_state.locks_held == 2, timeout=20,
                           what="the refresh after the restart")
            # read again within LOCKS_EVERY (10 s) of the refresh, its TTL as it was then
            ttl = app.model.messages[3].lock_ttl
            assert ttl is not None and 385 <= ttl <= 400, ttl
            assert f"{ttl}s" in _lock_text(app)
            # an outage: IMAP goes on, Redis is one warning
            restartable.stop()
            app.action_reload()
            await loaded(pilot)
            await wait_for(pilot, lambda: app.pulse_state.locks_error is not None, timeout=10, what="the warning")
            await pilot.press("space", "S")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
            await pilot.press("y")
            await wait_for(pilot, lambda: not app._busy and "1 changed" in app.status_line.text, timeout=15,
                           what="mark seen with Redis down")
            restartable.start()
            append("after the outage")
            await wait_for(pilot, lambda: app.pulse_state.locks_error is None and app.pulse_state.locks_held == 2,
                           timeout=25, what="the lock column back")

    asyncio.run(go())
    assert len(mailbox.search("SEEN")) == 1
    warnings = [t for t, k in said if "Redis unavailable" in t]
    assert all(k == "warn" for t, k in said if "Redis unavailable" in t)
    assert warnings, "the outage was not shown"


def test_slow_redis_never_slows_imap_or_piles_up_workers(mailbox: Mailbox, redis_server, redis_client) -> None:  # type: ignore[no-untyped-def]
    """Redis behind a 0.7 s round trip: the list, refreshes and mark-seen run at IMAP speed, keys
    answer at once, and refreshes arriving faster than Redis answers do not stack up lock
    readers (each a thread that a cancel cannot stop)."""
    mailbox.seed(backlog(20, now=time.time()))
    redis_client.set(key(5), "1", ex=300)
    with LatencyProxy(redis_server.port, rtt=0.7) as proxy:
        locks = LockService(RedisSettings(url=f"redis://127.0.0.1:{proxy.port}/0", timeout=10), read_only=False,
                            journal=AuditJournal())
        svc = TriageService(mailbox.settings(), read_only=False, journal=AuditJournal(),
                            analysis=AnalysisConfig(address=ADDRESS))
        app = TriageApp(svc, lock_service=locks, watcher_factory="auto")
        peak: dict[str, int] = {"locks": 0}
        lags: list[float] = []

        def running(group: str) -> int:
            from textual.worker import WorkerState

            return sum(1 for w in app.workers if w.group == group and w.state in (WorkerState.PENDING,
                                                                                    WorkerState.RUNNING))

        async def go() -> None:
            async with app.run_test(size=(120, 30)) as pilot:
                t0 = time.monotonic()
                await loaded(pilot)
                assert time.monotonic() - t0 < 5, "the listing waited for Redis"
                await wait_for(pilot, lambda: app.pulse_state.live == "idle", what="IDLE")
                for i in range(5):  # changes every 0.2 s: faster than one Redis read
                    c = mailbox.client()
                    c.append("INBOX", message(subject=f"burst {i}"))
                    c.logout()
                    t1 = time.monotonic()
                    await pilot.press("j")
                    lags.append(time.monotonic() - t1)
                    peak["locks"] = max(peak["locks"], running("locks"))
                    await pilot.pause(0.2)
                await wait_for(pilot, lambda: len(app.model) == 25, timeout=20, what="the burst listed")
                t0 = time.monotonic()
                await pilot.press("a", "S")
                await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
                await pilot.press("y")
                await wait_for(pilot, lambda: not app._busy and "25 changed" in app.status_line.text, timeout=20,
                               what="mark seen")
                assert time.monotonic() - t0 < 5, "mark-seen waited for Redis"
                await wait_for(pilot, lambda: running("locks") == 0, timeout=30, what="the lock readers to end")

        asyncio.run(go())
    assert len(mailbox.search("SEEN")) == 25
    assert max(lags) < 1.0, lags
    assert peak["locks"] <= 2, f"{peak['locks']} lock readers ran at once"


def test_cli_with_a_slow_redis(mailbox: Mailbox, redis_server, redis_client, cli) -> None:  # type: ignore[no-untyped-def]
    """``list --json`` with Redis 0.8 s away: one round trip per 5,000 keys, so the listing costs a
    few round trips, not one per message, and every lock is reported."""
    mailbox.seed(backlog(300, now=time.time()))
    for u in (7, 70, 270):
        redis_client.set(key(u), "1", ex=300)
    with LatencyProxy(redis_server.port, rtt=0.8) as proxy:
        env = {**mailbox.env(), "TRIAGE_REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0"}
        t0 = time.monotonic()
        r = cli(["list", "--json"], env=env)
        took = time.monotonic() - t0
    assert r.code == 0, r.err
    rows = [json.loads(line) for line in r.lines]
    assert len(rows) == 300
    locked = sorted(row["uid"] for row in rows if row.get("lock") is not None)
    assert locked == [7, 70, 270], locked
    assert took < 15, took


def test_cli_list_with_redis_restarted_between_commands(mailbox: Mailbox, restartable: RestartableRedis,
                                                        cli) -> None:  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(5, now=time.time()))
    restartable.client().set(key(1), "1", ex=300)
    env = {**mailbox.env(), "TRIAGE_REDIS_URL": restartable.url}
    assert [json.loads(x).get("lock") for x in cli(["list", "--json"], env=env).lines][0] is not None
    restartable.stop()
    r = cli(["list", "--json"], env=env)
    assert r.code == 0 and len(r.lines) == 5 and r.err.count("Redis unavailable") == 1
    restartable.start()
    r = cli(["list", "--json"], env=env)
    assert r.code == 0 and "Redis unavailable" not in r.err
    assert [json.loads(x).get("lock") for x in r.lines][0] is not None



