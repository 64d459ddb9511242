"""``triage-tui demo``: end to end from a subprocess (``--print-env``, then the CLI against it), and
the UI path in-process with ``tui.run`` replaced by a probe that uses what it is given exactly as
the TUI does: the production Context, its services, the demo flags."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imapclient
import pytest

from triage_tui import cli
from triage_tui.demo.backlog import ADDRESS_TEMPLATE, build_backlog
from triage_tui.errors import ReadOnlyRefused

SIZE = 300


def _clean_env(state: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env["TRIAGE_STATE_DIR"] = str(state)
    env.pop("NO_COLOR", None)
    env.update(extra)
    return env


def _cli(env: dict[str, str], *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "triage_tui", *argv], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


class DemoProcess:
    """``triage-tui demo --print-env`` in a subprocess, its lines read as they come."""

    def __init__(self, env: dict[str, str], *argv: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "triage_tui", "demo", "--print-env", *argv], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.header: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def read_until_ready(self, timeout: float = 60) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        exports: dict[str, str] = {}
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise AssertionError(f"demo exited {self.proc.returncode}: {self.proc.stderr.read()}") from None  # type: ignore[union-attr]
                continue
            self.header.append(line)
            if line.startswith("export "):
                name, _, value = shlex.split(line)[1].partition("=")
                exports[name] = value
            elif line.startswith("# mail_room"):
                return exports
        raise AssertionError(f"demo not ready within {timeout} s: {self.header}")

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        return self.proc.returncode, self.proc.stderr.read() if self.proc.stderr else ""  # type: ignore[union-attr]


@pytest.fixture
def demo_process(tmp_path: Path) -> Iterator[DemoProcess]:
    d = DemoProcess(_clean_env(tmp_path / "state"), "--size", str(SIZE))
    yield d
    d.stop()


def _unseen(exports: dict[str, str]) -> list[int]:
    c = imapclient.IMAPClient(exports["TRIAGE_IMAP_HOST"], port=int(exports["TRIAGE_IMAP_PORT"]), ssl=False)
    try:
        c.login(exports["TRIAGE_IMAP_USER"], exports["TRIAGE_IMAP_PASSWORD"])
        c.select_folder(exports["TRIAGE_IMAP_MAILBOX"], readonly=True)
        return sorted(c.search(["UNSEEN"]))
    finally:
        c.logout()


def test_print_env_then_the_cli_against_the_demo(demo_process: DemoProcess, tmp_path: Path) -> None:
    t0 = time.monotonic()
    exports = demo_process.read_until_ready()
    assert time.monotonic() - t0 < 30
    assert exports["TRIAGE_IMAP_SECURITY"] == "none" and exports["TRIAGE_ADDRESS"] == ADDRESS_TEMPLATE
    assert exports["TRIAGE_REDIS_URL"].startswith("redis://127.0.0.1:")
    env_file = next(Path(line.split(": . ", 1)[1].split()[0]) for line in demo_process.header
                    if line.startswith("# in another shell"))
    assert env_file.is_file() and "export TRIAGE_IMAP_PORT=" in env_file.read_text()

    expected = build_backlog(SIZE).view_counts()  # view counts depend on size and seed only
    env = _clean_env(tmp_path / "state", **exports)
    r = _cli(env, "list", "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == expected["unseen"]
    assert {row["kind"] for row in rows} >= {"reply", "new_issue", "service_desk", "unknown"}
    locked = [row["uid"] for row in rows if row.get("lock")]
    assert locked, "list shows mail_room's keys from the demo Redis"
    r = _cli(env, "list", "--view", "deleted", "--json")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == expected["deleted"]

    # the CLI changes the demo mailbox like a real one
    victims = [row["uid"] for row in rows if "Error fetching data from FOO" in row["subject"]]
    assert victims
    r = _cli(env, "mark-seen", "--uids", ",".join(map(str, victims)), "--yes")
    assert r.returncode == 0, r.stderr
    assert set(victims).isdisjoint(_unseen(exports))

    # SIGUSR1 starts the consumer: everything not held by a key is ingested
    before = _unseen(exports)
    demo_process.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(_unseen(exports)) > len(locked):
        time.sleep(0.5)
    after = _unseen(exports)
    assert set(after) <= set(locked) and len(after) < len(before)

    rc, err = demo_process.stop()
    assert rc == 0, err
    assert "stopped" in err
    assert not env_file.parent.exists()  # the temporary directory is gone
    with pytest.raises(OSError):
        _unseen(exports)


def test_the_ui_needs_a_terminal(tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = _cli(_clean_env(tmp_path / "state"), "demo", "--size", "150")
    assert r.returncode == 2
    assert "--print-env" in r.stderr and "building" not in r.stderr  # refused before starting anything
    assert time.monotonic() - t0 < 20


def test_size_is_checked(tmp_path: Path) -> None:
    r = _cli(_clean_env(tmp_path / "state"), "demo", "--print-env", "--size", "5")
    assert r.returncode == 2 and "--size" in r.stderr and "must be between 150 and" in r.stderr


# -- the UI path, in-process --------------------------------------------------------------------


class Probe:
    """Stands in for ``triage_tui.commands.tui.run``: records what the TUI would be given and uses
    it the way the TUI does (service and lock service from the Context)."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def __call__(self, args: Any, ctx: Any) -> int:
        s = self.seen
        s["demo"] = getattr(args, "demo", None)
        s["env_demo"] = os.environ.get("TRIAGE_DEMO")
        s["consumer"] = consumer = args.demo_consumer
        s["consumer_running"] = consumer.running
        s["settings"] = ctx.connection_settings()
        s["analysis"] = ctx.analysis()
        s["read_only"] = ctx.read_only
        svc = ctx.service()
        s["counts"] = svc.counts()
        locks = ctx.lock_service()
        s["lock_state_path"] = locks.state_path
        states = locks.states_for_uids(range(101, 101 + s["counts"].exists))
        s["held"] = sum(1 for st in states.values() if st.present)
        uidvalidity, unseen = svc.search("unseen")
        try:
            svc.execute(svc.plan_flags("mark-seen", uidvalidity, unseen[:1]))
            s["write"] = "ok"
        except ReadOnlyRefused:
            s["write"] = "refused"
        return 0


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Probe:
    from triage_tui.commands import tui

    p = Probe()
    monkeypatch.setattr(tui, "run", p)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    # what the demo sets for itself must not leak into other tests
    monkeypatch.setenv("TRIAGE_DEMO", "0")
    monkeypatch.setenv("TRIAGE_DEMO_IMAP_PASSWORD", "x")
    return p


def _run(*argv: str) -> int:
    with contextlib.redirect_stderr(open(os.devnull, "w")):  # noqa: SIM115 - closed with the process
        return cli.main(list(argv))


def test_demo_opens_the_tui_through_the_production_path(probe: Probe, monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    # a real mailbox in the caller's environment must not be what the demo reaches
    monkeypatch.setenv("TRIAGE_IMAP_HOST", "imap.real.example.com")
    monkeypatch.setenv("TRIAGE_IMAP_PASSWORD_FILE", str(tmp_path / "nope"))
    monkeypatch.setenv("TRIAGE_REDIS_URL", "redis://redis.real.example.com:6379/0")
    assert _run("demo", "--size", "150") == 0
    s = probe.seen
    assert s["demo"] is True and s["env_demo"] == "1"
    cs = s["settings"]
    assert cs.host == "127.0.0.1" and cs.security == "none" and cs.password.reveal()
    assert s["analysis"].address == ADDRESS_TEMPLATE
    expected = build_backlog(150).view_counts()
    c = s["counts"]
    assert (c.unseen, c.seen_stuck, c.deleted) == (expected["unseen"], expected["seen-stuck"], expected["deleted"])
    assert s["held"] > 0
    assert s["read_only"] is False and s["write"] == "ok"
    assert s["consumer_running"] is False
    consumer = s["consumer"]
    assert not consumer.running and consumer.delivered == 0  # stopped with the demo
    assert not s["lock_state_path"].parent.exists()  # lock state lived in the removed temp dir
    assert "TRIAGE_IMAP_HOST" not in os.environ  # the caller's real settings were dropped


@pytest.mark.parametrize("argv", [("demo", "--read-only"), ("--read-only", "demo")])
def test_read_only_demo(probe: Probe, argv: tuple[str, ...]) -> None:
    assert _run(*argv, "--size", "150") == 0
    assert probe.seen["read_only"] is True and probe.seen["write"] == "refused"


def test_keep_running_consumer(probe: Probe) -> None:
    assert _run("demo", "--size", "150", "--keep-running-consumer") == 0
    assert probe.seen["consumer_running"] is True
