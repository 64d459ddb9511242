"""``triage-tui demo --graph``'s mail_room (the Graph inbox stand-in): handed to the UI down, as in
the story; ``--keep-running-consumer`` starts it and it ingests what no key holds; ``--print-env``
offers it (SIGUSR1) instead of saying there is none."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.demo.test_command import DemoProcess, _clean_env, _cli, _run
from triage_tui.demo.backlog import build_backlog


class GraphProbe:
    """Stands in for ``tui.run``: takes the demo's consumer as the TUI does, and lets it work."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def __call__(self, args: Any, ctx: Any) -> int:
        s = self.seen
        c = s["consumer"] = args.demo_consumer
        s["running"] = c.running
        svc = ctx.service()
        # between two polls, with what was delivered so far: the consumer is already running,
        # and on a loaded machine its first poll can come before this count (CI: 126, not 127)
        inner = c._consumer
        with inner._lock if inner is not None else contextlib.nullcontext():
            s["delivered_before"] = c.delivered
            s["unseen_before"] = svc.counts().unseen
        if c.running:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and c.delivered == 0:
                time.sleep(0.1)
            time.sleep(c.poll_interval * 2)  # a whole poll delivered
        s["status"] = c.status
        # read the delivered count and the mailbox between two polls (a poll holds the
        # consumer's lock): a demo key that expires meanwhile would let one more through
        inner = c._consumer
        with inner._lock if inner is not None else contextlib.nullcontext():
            s["delivered"] = c.delivered
            s["blocked"] = c.blocked
            s["unseen_after"] = svc.counts().unseen
        return 0


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> GraphProbe:
    import sys

    from triage_tui.commands import tui

    p = GraphProbe()
    monkeypatch.setattr(tui, "run", p)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setenv("TRIAGE_DEMO", "0")
    monkeypatch.setenv("TRIAGE_DEMO_GRAPH_SECRET", "x")
    return p


def test_the_graph_demo_hands_its_mail_room_down(probe: GraphProbe) -> None:
    assert _run("demo", "--graph", "--size", "150") == 0
    s = probe.seen
    assert s["consumer"] is not None and s["running"] is False
    assert s["delivered"] == 0 and s["unseen_after"] == s["unseen_before"]
    assert s["status"] == "mail_room: down"


def test_keep_running_consumer_over_graph_ingests_what_no_key_holds(probe: GraphProbe) -> None:
    assert _run("demo", "--graph", "--size", "150", "--keep-running-consumer") == 0
    s = probe.seen
    assert s["running"] is True
    expected = build_backlog(150).view_counts()
    assert s["unseen_before"] + s["delivered_before"] == expected["unseen"]
    assert s["delivered"] > 0 and s["blocked"] > 0  # the demo's held keys stop some
    assert s["unseen_after"] == s["unseen_before"] - (s["delivered"] - s["delivered_before"])
    assert s["status"].startswith("mail_room: running, ") and "error" not in s["status"]
    assert not s["consumer"].running  # stopped with the demo


def test_print_env_graph_offers_the_consumer(tmp_path: Path) -> None:
    d = DemoProcess(_clean_env(tmp_path / "state"), "--graph", "--size", "150")
    try:
        exports = d.read_until_ready()
        assert any(ln.startswith("# mail_room (the demo consumer) is down") for ln in d.header)
        env = _clean_env(tmp_path / "state", **exports)

        def unseen() -> list[dict[str, Any]]:
            r = _cli(env, "list", "--json")
            assert r.returncode == 0, r.stderr
            return [json.loads(x) for x in r.stdout.splitlines()]

        before = unseen()
        locked = {row["uid"] for row in before if row.get("lock")}
        assert locked and len(before) > len(locked)
        d.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 30
        after = before
        while time.monotonic() < deadline and len(after) > len(locked):
            time.sleep(0.5)
            after = unseen()
        assert {row["uid"] for row in after} == locked  # all but the held ones ingested
    finally:
        rc, err = d.stop()
    assert rc == 0, err
    assert "mail_room: running" in err
