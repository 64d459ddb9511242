"""The IMAP connection opened while the command gets ready (services/preconnect.py), against the
real Dovecot: one session, taken by the service; the same one-line errors; a session opened for a
command that ended before it connected is logged out; nothing is run or asked early (password
command, prompt) and a Graph inbox is left alone."""

from __future__ import annotations

import argparse
import json
import time

from tests.integration.test_consumer import wait_until
from tests.mailgen import backlog
from tests.servers import PASSWORD
from triage_tui.cli import build_parser
from triage_tui.context import Context


def _sessions(mailbox) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    log = mailbox.server.log()
    return (log.count(f"Login: user=<{mailbox.user}>"),
            sum(1 for ln in log.splitlines() if f"imap({mailbox.user})" in ln and "Disconnected: Logged out" in ln))


def _ctx(argv: list[str]) -> Context:
    args: argparse.Namespace = build_parser().parse_args(argv)
    ctx = Context(args)
    _ = ctx.settings
    return ctx


def test_the_service_takes_the_session_opened_ahead(mailbox, monkeypatch):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(4))
    for k, v in mailbox.env().items():
        monkeypatch.setenv(k, v)
    ctx = _ctx(["list", "--json"])
    ctx.preconnect()
    pre = ctx._preconnect
    assert pre is not None
    svc = ctx.service()
    try:
        assert svc.reader is pre._session  # the one opened ahead, not a second
        assert svc.search("UNSEEN")[1]
    finally:
        ctx.close()
    assert wait_until(lambda: _sessions(mailbox) == (1, 1)), _sessions(mailbox)


def test_a_list_opens_one_session_and_its_errors_are_the_same_lines(mailbox, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(3))
    r = cli(["list", "--json"], env=mailbox.env())
    assert r.code == 0 and [json.loads(ln)["uid"] for ln in r.lines] == [1, 2, 3], r.err
    assert wait_until(lambda: _sessions(mailbox) == (1, 1)), _sessions(mailbox)
    bad = cli(["list", "--json"], env={**mailbox.env(), "TRIAGE_IMAP_PASSWORD": "wrong-" + PASSWORD})
    gone = cli(["list"], env={**mailbox.env(), "TRIAGE_IMAP_PORT": "1"})
    for r in (bad, gone):
        lines = r.err.strip().splitlines()
        assert r.code != 0 and len(lines) == 1 and lines[0].startswith("triage-tui: error:"), r.err
        assert "Traceback" not in r.err and PASSWORD not in r.err
    assert "login" in bad.err.lower() or "authentication" in bad.err.lower(), bad.err
    assert "127.0.0.1" in gone.err, gone.err


def test_a_command_that_ends_before_connecting_logs_its_session_out(mailbox, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(2))
    r = cli(["mark-seen"], env=mailbox.env())  # nothing selected: refused before any connection is asked
    assert r.code == 2 and "Traceback" not in r.err, r.err
    logins, outs = _sessions(mailbox)
    assert logins <= 1 and wait_until(lambda: _sessions(mailbox)[1] == _sessions(mailbox)[0]), _sessions(mailbox)


def test_nothing_is_run_or_asked_early(mailbox, monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    """A password command (a vault that may ask for MFA) runs where the service asks for the
    connection, in the command's own thread, as before; so does a prompt. A Graph inbox is not
    IMAP: nothing is opened ahead."""
    marker = tmp_path / "ran"
    env = {k: v for k, v in mailbox.env().items() if k != "TRIAGE_IMAP_PASSWORD"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("TRIAGE_IMAP_PASSWORD", raising=False)
    monkeypatch.setenv("TRIAGE_IMAP_PASSWORD_COMMAND", f"sh -c 'touch {marker}; echo {PASSWORD}'")
    ctx = _ctx(["list"])
    ctx.preconnect()
    assert ctx._preconnect is None and not marker.exists()
    ctx.close()
    monkeypatch.delenv("TRIAGE_IMAP_PASSWORD_COMMAND")
    ctx = _ctx(["list"])  # no password at all: a prompt on a terminal, an error otherwise: later
    ctx.preconnect()
    assert ctx._preconnect is None
    ctx.close()
    ctx = _ctx(["--inbox", "graph", "list"])
    ctx.preconnect()
    assert ctx._preconnect is None
    ctx.close()


def test_a_reading_command_gets_its_mailbox_examined_once_ahead(mailbox, monkeypatch, cli):  # type: ignore[no-untyped-def]
    """``list`` opens the mailbox in the thread too: the service uses that EXAMINE (one in all),
    and a missing mailbox is the usual one line, with the session opened for it logged out."""
    import triage_tui.services.imap as imap_mod  # noqa: PLC0415
    from tests.proxy import LatencyProxy  # noqa: PLC0415

    monkeypatch.setattr(imap_mod, "FRESH_EXAMINE", 60.0)  # however slow this machine: that EXAMINE is fresh
    mailbox.seed(backlog(3))
    with LatencyProxy(mailbox.server.imap_port, rtt=0.05) as proxy:
        env = {**mailbox.env(), "TRIAGE_IMAP_PORT": str(proxy.port), "TRIAGE_IMAP_SECURITY": "none"}
        r = cli(["list", "--json"], env=env)
        verbs = [c.split(b" ")[1].upper() for c in proxy.commands()]
        assert r.code == 0 and len(r.lines) == 3, r.err
        assert verbs[:3] == [b"LOGIN", b"ENABLE", b"EXAMINE"] and verbs.count(b"EXAMINE") == 1, verbs
        missing = cli(["list"], env={**env, "TRIAGE_IMAP_MAILBOX": "Nope"})
        time.sleep(0.3)  # its LOGOUT through the delayed pump
    lines = missing.err.strip().splitlines()
    assert missing.code != 0 and len(lines) == 1 and "'Nope' does not exist" in lines[0], missing.err
    assert wait_until(lambda: _sessions(mailbox)[0] == _sessions(mailbox)[1] == 2), _sessions(mailbox)


def test_the_tui_service_takes_the_examined_session(mailbox, monkeypatch):  # type: ignore[no-untyped-def]
    """The TUI (no subcommand) opens the connection and the mailbox while Textual is imported:
    its service's first connect uses them (one LOGIN, one EXAMINE, sent by the thread)."""
    from tests.proxy import LatencyProxy  # noqa: PLC0415
    from triage_tui.commands.tui import build_service  # noqa: PLC0415

    mailbox.seed(backlog(2))
    with LatencyProxy(mailbox.server.imap_port, rtt=0.05) as proxy:
        for k, v in {**mailbox.env(), "TRIAGE_IMAP_PORT": str(proxy.port), "TRIAGE_IMAP_SECURITY": "none"}.items():
            monkeypatch.setenv(k, v)
        args = build_parser().parse_args([])
        assert getattr(args, "_run", None) is None and not hasattr(args, "_preconnect")  # cli: "examine"
        ctx = Context(args)
        _ = ctx.settings
        ctx.preconnect(examine=True)
        svc = build_service(ctx)
        try:
            info = svc.connect()
            assert info.readonly and svc.reader is ctx._preconnect._session
            at_connect = [c.split(b" ")[1].upper() for c in proxy.commands()]
            uv, found = svc.search("UNSEEN")  # (an EXAMINE older than 0.5 s is sent again: fresh)
            assert uv == info.uidvalidity and len(found) == 2
        finally:
            svc.close()
            ctx.close()
    assert at_connect == [b"LOGIN", b"ENABLE", b"EXAMINE"], at_connect  # the service sent nothing of its own


def test_the_link_cut_after_the_session_opened_ahead_reconnects(mailbox, cli):  # type: ignore[no-untyped-def]
    """The session opened ahead dies at the first command the command itself sends: the listing
    reconnects (a new session, not the dead one) and lists the same rows."""
    from tests.proxy import LatencyProxy  # noqa: PLC0415

    mailbox.seed(backlog(5))
    direct = cli(["--no-cache", "list", "--json"], env=mailbox.env())
    with LatencyProxy(mailbox.server.imap_port, cut_pattern=b" UID SEARCH ", cut_after=1) as proxy:
        env = {**mailbox.env(), "TRIAGE_IMAP_PORT": str(proxy.port), "TRIAGE_IMAP_SECURITY": "none"}
        r = cli(["--no-cache", "list", "--json"], env=env)
        assert proxy.cuts == 1 and proxy.connections == 2
    assert r.code == 0 and "Traceback" not in r.err and "reconnecting" in r.err, r.err

    def rows(out: str) -> list[tuple[int, str]]:
        return [(d["uid"], d["subject"]) for d in map(json.loads, out.splitlines())]

    assert rows(r.out) == rows(direct.out) and len(rows(r.out)) == 5
