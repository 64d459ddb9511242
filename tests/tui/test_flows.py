"""The real app, driven by Pilot, against the real Dovecot fixture. Every test that changes
something checks the server's state afterwards through a separate connection
(``mailbox.flags()`` / ``mailbox.search()``), never through the app."""

from __future__ import annotations

import asyncio
import time

from tests.mailgen import backlog, message
from tests.tui.conftest import loaded, wait_for
from triage_tui.domain.model import View
from triage_tui.tui.app import TriageApp
from triage_tui.tui.screens.confirm import ConfirmScreen
from triage_tui.tui.screens.preview import PreviewScreen

NOW = time.time()


def app_for(svc, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("watcher_factory", None)
    return TriageApp(svc, **kw)


def screen_text(app) -> str:  # type: ignore[no-untyped-def]
    lst = app.list
    return "\n".join(lst.render_line(y).text for y in range(lst.size.height))


def test_list_shows_the_unseen_view_and_changes_nothing(mailbox, make_service):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(30, now=NOW, seen_every=5, deleted_every=7))
    before = mailbox.flags()
    app = app_for(make_service(mailbox))

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            assert sorted(app.model.messages) == mailbox.search("UNSEEN")
            assert "Message 1" in screen_text(app)
            assert app.pulse_state.unseen == len(mailbox.search("UNSEEN"))
            assert app.pulse_state.tls_ok is True and app.pulse_state.tls_label.startswith("TLS")
            await pilot.press("2")
            await loaded(pilot)
            assert sorted(app.model.messages) == mailbox.search("SEEN UNDELETED")
            await pilot.press("3")
            await loaded(pilot)
            assert sorted(app.model.messages) == mailbox.search("DELETED")

    asyncio.run(go())
    assert mailbox.flags() == before


def test_mark_then_mark_seen_with_confirmation(mailbox, make_service):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(10, now=NOW))
    svc = make_service(mailbox)
    app = app_for(svc)

    async def go() -> list[int]:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            await pilot.press("space", "space", "down", "space")
            marked = sorted(app.model.marks)
            assert len(marked) == 3
            assert app.pulse_state.marks == 3
            await pilot.press("S")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
            assert app.screen.focused is not None and app.screen.focused.id == "cancel", "Cancel has focus"
            body = str(app.screen.query_one("#confirm-title").render())
            assert "3" in body
            await pilot.press("y")
            await wait_for(pilot, lambda: not app._busy and not app._sync_running and not (set(marked) & set(app.model.messages)),
                           what="the action and the re-sync")
            assert "3 changed" in app.status_line.text
            return marked

    marked = asyncio.run(go())
    flags = mailbox.flags()
    assert all("\\Seen" in flags[u] for u in marked)
    assert [u for u, f in flags.items() if "\\Seen" in f] == marked


def test_enter_on_the_confirmation_cancels(mailbox, make_service):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(5, now=NOW))
    app = app_for(make_service(mailbox))

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            await pilot.press("S")  # the cursor row, nothing marked
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("enter")
            await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
            assert "cancelled" in app.status_line.text

    asyncio.run(go())
    assert mailbox.search("SEEN") == []


def test_read_only_refuses_in_the_ui_and_in_the_service(mailbox, make_service):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(6, now=NOW))
    before = mailbox.flags()
    svc = make_service(mailbox, read_only=True)
    app = app_for(svc)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            assert app.check_action("mark_seen", ()) is None  # dimmed, not hidden
            await pilot.press("space", "S")
            await pilot.pause(0.2)
            assert not isinstance(app.screen, ConfirmScreen)
            assert "read-only" in app.status_line.text
            # Past the UI guard, the service still refuses, and the app shows it as one line.
            plan = svc.plan_flags("mark-seen", app._uidvalidity, sorted(app.model.messages))
            app._busy = True
            app._execute_worker(plan)
            await wait_for(pilot, lambda: not app._busy, what="the refused action")
            assert app.status_line.kind == "error" and "read-only" in app.status_line.text

    asyncio.run(go())
    assert mailbox.flags() == before


def test_filter_narrows_and_esc_clears(mailbox, make_service):  # type: ignore[no-untyped-def]
    items = [(message(subject=f"Invoice {i}" if i % 3 == 0 else f"Hello {i}", date=NOW - 600 + i), NOW - 600 + i, "")
             for i in range(12)]
    mailbox.seed(items)
    app = app_for(make_service(mailbox))

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            await pilot.press("slash", *"subject:")  # typed keys reach the box; the rest set directly
            box = app.query_one("#filter-input")
            box.value += "invoice"
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.model.filter is not None)
            subjects = sorted(app.model.messages[u].subject for u in app.model.filtered)
            assert subjects == sorted(f"Invoice {i}" for i in range(0, 12, 3))
            await pilot.press("a")  # all matching, not just the visible rows
            assert len(app.model.marks) == 4
            await pilot.press("slash")
            box.value = "subject:("
            await pilot.press("enter")  # a syntax error keeps the box open
            await pilot.pause(0.05)
            assert app.status_line.kind == "error" and "position" in app.status_line.text
            await pilot.press("escape")  # closes the box
            await pilot.press("escape")  # clears the filter
            assert app.model.filter is None and len(app.model.filtered) == 12

    asyncio.run(go())


def test_preview_reads_the_header_without_setting_seen(mailbox, make_service):  # type: ignore[no-untyped-def]
    mailbox.seed([(message(subject="Preview me", extra={"Received": "from a.example by b.example with ESMTPS; "
                                                                       "Wed, 14 May 2025 10:00:00 +0000"}), NOW - 60, "")])
    app = app_for(make_service(mailbox))

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, PreviewScreen))
            screen = app.screen
            await wait_for(pilot, lambda: "Subject: Preview me" in screen.header_text, what="the header")
            text = str(screen.query_one("#preview-analysis").render())
            assert "GitLab key" in text and "Received hops" in text
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, PreviewScreen))

    asyncio.run(go())
    assert mailbox.search("SEEN") == [], "the preview must not set \\Seen"


def test_expunge_needs_the_typed_count(mailbox, make_service):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(9, now=NOW, deleted_every=3))  # UIDs 1, 4, 7 are \Deleted
    deleted = mailbox.search("DELETED")
    assert len(deleted) == 3
    app = app_for(make_service(mailbox), view=View.DELETED)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            await pilot.press("a", "X")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            body = str(app.screen.query_one("#confirm-body").render())
            assert "cannot be undone" in body
            await pilot.press("y")  # not enough for an expunge
            await pilot.pause(0.1)
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("3", "enter")  # digits typed with Cancel focused go to the box
            await wait_for(pilot, lambda: not app._busy and not app._sync_running and not app.model.messages,
                           what="the expunge and the re-sync")

    asyncio.run(go())
    assert mailbox.search("DELETED") == []
    assert len(mailbox.search("ALL")) == 6


def test_marks_survive_a_refresh_and_pickups_are_counted(mailbox, make_service):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(8, now=NOW))
    app = app_for(make_service(mailbox))

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            uids = sorted(app.model.messages)
            app.model.mark_many(uids[:3])
            # mail_room picks up two messages (one of them marked) behind our back
            c = mailbox.client()
            c.select_folder("INBOX")
            c.add_flags([uids[0], uids[5]], [b"\\Seen"], silent=True)
            c.logout()
            app.request_sync("test")
            await wait_for(pilot, lambda: uids[0] not in app.model.messages and not app._sync_running)
            assert app.model.marks == {uids[1], uids[2]}
            assert app.pulse_state.vanished == 2
            await pilot.press("R")  # a full re-list keeps marks for messages still there
            await loaded(pilot)
            assert app.model.marks == {uids[1], uids[2]}

    asyncio.run(go())


def test_live_refresh_through_idle(mailbox, make_service):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(4, now=NOW))
    app = TriageApp(make_service(mailbox))  # the real watcher: IDLE on its own connection

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            await wait_for(pilot, lambda: app.pulse_state.live == "idle", what="IDLE")
            c = mailbox.client()
            c.append("INBOX", message(subject="Arrived live"))
            c.select_folder("INBOX")
            c.add_flags([1], [b"\\Seen"], silent=True)
            c.logout()
            await wait_for(pilot, lambda: any(m.subject == "Arrived live" for m in app.model.messages.values())
                           and 1 not in app.model.messages, timeout=15, what="the live update")
            assert app.pulse_state.arrived >= 1 or app.pulse_state.vanished >= 1

    asyncio.run(go())


def test_keys_are_remappable_by_id(mailbox, make_service):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(3, now=NOW))
    app = app_for(make_service(mailbox), keymap={"mark.toggle": "x"})

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            await pilot.press("x")
            assert len(app.model.marks) == 1
            await pilot.press("space")
            assert len(app.model.marks) == 1, "the old key is gone"

    asyncio.run(go())


def test_quit_logs_out(mailbox, make_service):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(3, now=NOW))
    svc = make_service(mailbox)
    app = TriageApp(svc)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            await pilot.press("q")
        assert app.return_code == 0

    asyncio.run(go())
    assert svc._reader is None, "the IMAP session was logged out"
    assert app._watcher is not None and app._watcher.stopped
