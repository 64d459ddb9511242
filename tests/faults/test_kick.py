"""Connection loss injected by Dovecot itself (``doveadm kick``), mid-listing, mid-bulk-STORE,
mid-UID-EXPUNGE and under the TUI's IDLE refresh, on a ~20k-message mailbox.

A loopback proxy sits in front only to *record* what the client sent (it never cuts here): the
recording proves which UIDs were sent twice, and the journal proves which were confirmed when.
After every run the server's state is read through a separate connection."""

from __future__ import annotations

import asyncio
import json
import time

from tests.conftest import Mailbox
from tests.faults.conftest import (
    FAST_RETRY,
    Kicker,
    all_flags,
    check_journal,
    kick,
    op_records,
    sends_per_uid,
)
from tests.mailgen import ADDRESS, backlog, message
from tests.proxy import LatencyProxy
from tests.tui.conftest import loaded, wait_for
from triage_tui.domain import uidset
from triage_tui.domain.analysis import AnalysisConfig
from triage_tui.domain.model import TRIAGE_KEYWORD, View
from triage_tui.services.imap import Limits
from triage_tui.services.journal import AuditJournal
from triage_tui.services.triage import TriageService
from triage_tui.tui.app import TriageApp


def _service(mb: Mailbox, proxy: LatencyProxy, limits: Limits) -> tuple[TriageService, list[str]]:
    notes: list[str] = []
    svc = TriageService(mb.settings(port=proxy.port, security="none"), read_only=False, journal=AuditJournal(),
                        limits=limits, retry=FAST_RETRY, analysis=AnalysisConfig(address=ADDRESS),
                        on_reconnect=lambda msg, attempt: notes.append(msg))
    svc.connect()
    return svc, notes


def test_kicked_twice_during_a_20k_listing(big_mailbox: Mailbox) -> None:
    mb = big_mailbox
    unseen_before = mb.search("UNSEEN")
    with LatencyProxy(mb.server.imap_port) as proxy:
        svc, notes = _service(mb, proxy, Limits(max_count=250, window=4))
        uv, unseen = svc.search(View.UNSEEN)
        got: list[int] = []
        kicks = 0
        for batch in svc.iter_messages(uv, unseen):
            got.extend(m.uid for m in batch)
            if (kicks == 0 and len(got) >= 2_000) or (kicks == 1 and len(got) >= 9_000):
                assert kick(mb.server, mb.user)
                kicks += 1
        svc.close()
    assert kicks == 2 and len(notes) >= 2, notes
    assert len(got) == len(set(got)), "a message was listed twice"
    assert sorted(got) == unseen == unseen_before, "a message was missed"
    fetched = sends_per_uid(proxy.commands(), "FETCH")
    refetched = [u for u, n in fetched.items() if n > 1]
    # only what was in flight when a kick hit is asked again (read-only, so harmless, but bounded)
    assert len(refetched) <= 2 * 4 * 250, len(refetched)
    assert mb.search("UNSEEN") == unseen_before, "listing changed a flag"


def test_kicked_twice_during_a_bulk_mark_seen(big_mailbox: Mailbox) -> None:
    mb = big_mailbox
    seen_before = set(mb.search("SEEN"))
    with LatencyProxy(mb.server.imap_port) as proxy:
        svc, notes = _service(mb, proxy, Limits(max_count=40, window=2))
        uv, unseen = svc.search(View.UNSEEN)
        assert len(unseen) > 15_000
        plan = svc.plan_flags("mark-seen", uv, unseen)
        kicker = Kicker(mb.server, mb.user, [40, 200], "mark-seen")
        kicker.start()
        result = svc.execute(plan)
        kicker.stop()
        undo, _rec = svc.plan_undo()  # the reader was kicked too: planning reconnects by itself
        svc.close()
    assert len(kicker.kicked_at) == 2, f"the operation ended before both kicks: {kicker.kicked_at}"
    assert result.ok and result.changed == unseen, result.to_json()
    assert len(result.in_flight) <= 2 * 2 * 40  # at most a window of chunks per kick
    # the server: every message \Seen, nothing else touched
    flags = all_flags(mb)
    want = {u: {"\\Seen", TRIAGE_KEYWORD} if u in set(unseen) else {"\\Seen"} for u in flags}
    assert flags == want, {u: f for u, f in flags.items() if f != want[u]}
    assert set(flags) == seen_before | set(unseen)
    # the journal: begin, chunks that add up exactly, two reconnects, end ok
    recs = check_journal(result.op_id, unseen, result.in_flight)
    assert sum(1 for r in recs if r.get("event") == "reconnect") == 2
    # the wire: a chunk confirmed before a kick, or changed by a command whose answer was lost,
    # is never sent again; only commands the kicked process had not run yet are re-sent
    stores = sends_per_uid(proxy.commands(), "STORE")
    assert set(stores) == set(unseen)
    first_reconnect = next(i for i, r in enumerate(recs) if r.get("event") == "reconnect")
    confirmed_before = {u for r in recs[:first_reconnect] if "done" in r for u in uidset.parse(r["done"])}
    assert all(stores[u] == 1 for u in confirmed_before)
    assert all(stores[u] == 1 for u in result.in_flight), "an in-flight chunk was sent again"
    assert sum(1 for n in stores.values() if n > 1) <= 2 * 2 * 40
    assert max(stores.values()) <= 2
    # undo after the faults would revert exactly the change, in-flight chunks included
    assert undo.uids == unseen


def test_kicked_during_uid_expunge(big_mailbox: Mailbox) -> None:
    mb = big_mailbox
    c = mb.client()
    c.select_folder("INBOX")
    every = [u for u in mb.search("ALL") if u % 3 == 0]
    for text, _ in uidset.split(every, max_bytes=4000):
        c.add_flags(text, [b"\\Deleted"], silent=True)
    c.logout()
    before = set(mb.search("ALL"))
    chosen = every[: len(every) * 2 // 3]  # the rest stays \Deleted: not ours to remove
    with LatencyProxy(mb.server.imap_port) as proxy:
        svc, notes = _service(mb, proxy, Limits(max_count=25, window=2))
        uv, _ = svc.search(View.DELETED)
        plan = svc.plan_expunge(uv, chosen)
        kicker = Kicker(mb.server, mb.user, [30], "expunge")
        kicker.start()
        result = svc.execute(plan)
        kicker.stop()
        svc.close()
    assert kicker.kicked_at, "the expunge ended before the kick"
    assert result.ok and result.changed == chosen
    assert set(mb.search("ALL")) == before - set(chosen)
    assert set(mb.search("DELETED")) == set(every) - set(chosen)
    check_journal(result.op_id, chosen, result.in_flight)
    assert any(r.get("event") == "reconnect" for r in op_records(result.op_id))
    expunges = sends_per_uid(proxy.commands(), "EXPUNGE")
    assert set(expunges) == set(chosen) and max(expunges.values()) <= 2


def test_tui_shows_the_idle_reconnect_and_never_freezes(mailbox: Mailbox) -> None:
    """Kick every session (the watcher's IDLE and the reader) while the UI is live: the pulse
    and the status line say "reconnecting", keys keep working meanwhile, IDLE comes back and
    a new message then shows up in the list."""
    now = time.time()
    mailbox.seed(backlog(40, now=now))
    svc = TriageService(mailbox.settings(), read_only=False, journal=AuditJournal(), retry=FAST_RETRY,
                        analysis=AnalysisConfig(address=ADDRESS))
    app = TriageApp(svc, watcher_factory="auto")
    seen_states: list[str] = []
    key_latency: list[float] = []

    async def go() -> None:
        async with app.run_test(size=(120, 30)) as pilot:
            await loaded(pilot)
            await wait_for(pilot, lambda: app.pulse_state.live == "idle", what="IDLE")
            assert kick(mailbox.server, mailbox.user)
            deadline = time.monotonic() + 15
            while app.pulse_state.live != "reconnecting":
                assert time.monotonic() < deadline, f"no reconnecting state: {app.pulse_state.live}"
                await pilot.pause(0.01)
            seen_states.append(app.pulse_state.live)
            assert "reconnecting" in app.status_line.text
            # the UI answers keys while the watcher backs off (it never blocks the event loop)
            for _ in range(5):
                before = app.list.cursor
                t0 = time.monotonic()
                await pilot.press("j")
                key_latency.append(time.monotonic() - t0)
                assert app.list.cursor == min(before + 1, len(app.model.rows) - 1)
            await wait_for(pilot, lambda: app.pulse_state.live == "idle", timeout=20, what="IDLE again")
            c = mailbox.client()
            c.append("INBOX", message(subject="after the kick"))
            c.logout()
            await wait_for(pilot, lambda: any(m.subject == "after the kick" for m in app.model.messages.values()),
                           timeout=20, what="the new message")
            assert len(app.model.messages) == 41

    asyncio.run(go())
    assert seen_states == ["reconnecting"]
    assert max(key_latency) < 2.0, key_latency
    assert mailbox.search("SEEN") == []


def test_tui_says_so_when_an_action_reconnects(mailbox: Mailbox) -> None:
    """Kick the sessions mid mark-seen started from the TUI: the status line says the
    connection was lost and that it resumes; the action ends with every message \\Seen once."""
    mailbox.seed(backlog(3000, now=time.time()))
    svc = TriageService(mailbox.settings(), read_only=False, journal=AuditJournal(), retry=FAST_RETRY,
                        limits=Limits(max_count=20, window=1), analysis=AnalysisConfig(address=ADDRESS))
    app = TriageApp(svc, watcher_factory=None)
    said: list[tuple[str, str]] = []
    shown = app.status

    def status(text: str, kind: str = "info") -> None:
        said.append((text, kind))
        shown(text, kind)

    app.status = status  # type: ignore[method-assign]
    kicker = Kicker(mailbox.server, mailbox.user, [10], "mark-seen")

    async def go() -> None:
        async with app.run_test(size=(120, 30)) as pilot:
            await loaded(pilot)
            await pilot.press("a", "S")
            await wait_for(pilot, lambda: "Mark 3,000" in str(app.screen.query_one("#confirm-title").render()),
                           what="the confirmation")
            kicker.start()
            await pilot.press("y")
            await wait_for(pilot, lambda: not app._busy and "3,000 changed" in app.status_line.text, timeout=30,
                           what="the action to finish")

    asyncio.run(go())
    kicker.stop()
    assert kicker.kicked_at, "the action ended before the kick"
    notices = [t for t, k in said if k == "warn" and "connection lost" in t]
    assert notices and "reconnecting" in notices[0] and "resumes" in notices[0], said
    assert mailbox.search("UNSEEN") == []


def test_cli_says_so_when_it_reconnects(mailbox: Mailbox, cli) -> None:  # type: ignore[no-untyped-def]
    """``list --json`` whose connection is cut mid-stream: stderr says it reconnects, stdout has
    every message once (clean JSON)."""
    mailbox.seed(backlog(400, now=time.time()))
    with LatencyProxy(mailbox.server.imap_port, cut_pattern=b" UID FETCH ", cut_after=3) as proxy:
        env = {**mailbox.env(), "TRIAGE_IMAP_PORT": str(proxy.port), "TRIAGE_IMAP_SECURITY": "none"}
        r = cli(["--chunk", "25", "--pipeline", "2", "list", "--json"], env=env)
    assert proxy.cuts == 1
    assert r.code == 0, r.err
    assert "connection lost" in r.err and "reconnecting" in r.err
    uids = [json.loads(line)["uid"] for line in r.lines]
    assert sorted(uids) == list(range(1, 401))
