"""Pure UI behaviour on the in-memory service (no server decides anything here)."""

from __future__ import annotations

import asyncio

from textual.widgets import Input

from tests.tui.fakes import FakeService, fixed_clock, sample_messages
from triage_tui.domain.model import View
from triage_tui.tui.app import TriageApp
from triage_tui.tui.listmodel import Group
from triage_tui.tui.screens.confirm import ConfirmScreen
from triage_tui.tui.screens.help import HelpScreen
from triage_tui.tui.widgets.pulse import PulseState, fit_pieces, pulse_lines


def make(**kw):  # type: ignore[no-untyped-def]
    svc = FakeService(sample_messages(40), read_only=kw.pop("read_only", False))
    return TriageApp(svc, clock=fixed_clock, watcher_factory=None, **kw), svc


async def ready(pilot) -> None:  # type: ignore[no-untyped-def]
    while pilot.app._loading or pilot.app._uidvalidity is None:
        await pilot.pause(0.02)


def test_palette_mark_seen_older_than() -> None:
    app, svc = make()

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await ready(pilot)
            await pilot.press("colon", *"mark")  # typing goes through the palette's input…
            app.screen.query_one(Input).value = "mark seen older than 2d"  # …the rest set at once (faster)
            await pilot.pause(0.3)
            await pilot.press("enter")
            for _ in range(100):
                if isinstance(app.screen, ConfirmScreen):
                    break
                await pilot.pause(0.02)
            assert isinstance(app.screen, ConfirmScreen)
            old = {u for u, m in svc.messages.items() if (m.age_seconds(fixed_clock()) or 0) > 2 * 86400}
            assert app.model.marks == old
            await pilot.press("y")
            for _ in range(100):
                if not app._busy and not app._sync_running:
                    break
                await pilot.pause(0.02)
            assert svc.executed and set(svc.executed[0].uids) == old

    asyncio.run(go())


def test_dimmed_keys_explain_themselves() -> None:
    app, _ = make()

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot)
            await pilot.press("X")  # expunge belongs to the deleted view
            assert "deleted view" in app.status_line.text and "press 3" in app.status_line.text
            assert not isinstance(app.screen, ConfirmScreen)

    asyncio.run(go())


def test_read_only_help_says_why() -> None:
    app, _ = make(read_only=True)

    async def go() -> None:
        async with app.run_test(size=(100, 40)) as pilot:
            await ready(pilot)
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            body = str(app.screen.query_one("#help-body").render())
            assert "READ-ONLY" in body and "mark.toggle" in body and "age>2d" in body

    asyncio.run(go())


def test_space_on_a_group_marks_the_group_and_enter_folds() -> None:
    app, _ = make()

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await ready(pilot)
            await pilot.press("z")  # group by project
            first = app.list.current
            assert isinstance(first, Group)
            await pilot.press("enter")
            assert app.model.rows[1] == first.uids[0]
            await pilot.press("k", "space")
            assert app.model.marks == set(first.uids)
            await pilot.press("z", "z", "z", "z", "z")  # handler, domain, age, GitLab verdict, then the flat list
            assert app.model.group_by is None and all(isinstance(r, int) for r in app.model.rows)

    asyncio.run(go())


def test_view_switch_and_range_mark() -> None:
    app, svc = make()
    for m in list(svc.messages.values())[:5]:
        m.flags = ("\\Seen",)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot)
            await pilot.press("v", "down", "down", "v")
            assert len(app.model.marks) == 3
            await pilot.press("2")
            await ready(pilot)
            assert app.view == View.SEEN_STUCK and len(app.model) == 5 and not app.model.marks
            assert app.check_action("mark_unseen", ()) is True and app.check_action("mark_seen", ()) is None

    asyncio.run(go())


def test_a_range_is_drawn_between_rows_not_positions() -> None:
    """The first ``v`` remembers the row, not where it was on screen: a sort (or a filter, or a
    refresh adding rows) between the two presses moves rows, and the old position-based range
    then covered mail the operator never drew (found by an adversary: 31 marked instead of 11)."""
    app, _ = make()

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot)
            await pilot.press("down", "down", "down")
            anchor = app.list.current
            await pilot.press("v")
            await pilot.press("s")  # another sort: every row moves
            await pilot.pause(0.05)
            at = app.model.index_of(anchor)
            assert at is not None and at != 3, "the sort moved the anchor's row"
            app.list.cursor = min(at + 2, len(app.model.rows) - 1)
            await pilot.press("v")
            lo, hi = sorted((at, app.list.cursor))
            assert app.model.marks == set(app.model.rows[lo:hi + 1])
            # an anchor filtered out before the second press: nothing is marked
            await pilot.press("escape")
            app.model.clear_marks()
            app.list.cursor = app.model.index_of(anchor)
            await pilot.press("v")
            mine = app.model.messages[anchor].subject
            other = next(m.subject for m in app.model.messages.values() if m.subject not in mine and mine not in m.subject)
            assert app.apply_filter_text(f'subject:"{other}"')
            await pilot.pause(0.05)
            assert app.model.rows and app.model.index_of(anchor) is None
            app.list.cursor = 0
            await pilot.press("v")
            assert not app.model.marks
            assert "no longer listed" in str(app.status_line.render())

    asyncio.run(go())


def test_the_ui_needs_a_terminal(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli(["--host", "127.0.0.1", "--user", "u"], env={"TRIAGE_IMAP_PASSWORD": "x"})
    assert r.code == 2 and "needs a terminal" in r.err


def test_a_typed_count_of_two_digits_reaches_the_box_whole() -> None:
    """The first digit moves focus to the box; the second must not replace it (select-on-focus)."""
    msgs = sample_messages(40)
    for m in msgs[:12]:
        m.flags = ("\\Seen", "\\Deleted")
    svc = FakeService(msgs)
    app = TriageApp(svc, clock=fixed_clock, watcher_factory=None, view=View.DELETED)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await ready(pilot)
            await pilot.press("a", "X", "1", "2", "enter")
            for _ in range(100):
                if svc.executed:
                    break
                await pilot.pause(0.02)
            assert svc.executed and len(svc.executed[0].uids) == 12

    asyncio.run(go())


def test_pulse_says_demo_and_the_tls_state_in_words() -> None:
    def line(width: int = 200, **kw: object) -> str:
        one, _ = pulse_lines(PulseState(connected=True, unseen=12_345, seen_stuck=40, deleted=300, **kw))  # type: ignore[arg-type]
        return " ".join(t for _, t, _ in fit_pieces(one, width))

    assert "DEMO" in line(demo=True)
    assert "TLSv1.3 ✓ verified" in line(tls_version="TLSv1.3", tls_ok=True)
    assert "TLS UNVERIFIED" in line(insecure=True)  # the policy is known before the handshake
    assert "TLS UNVERIFIED" in line(tls_version="TLSv1.3", tls_ok=False)
    assert "NO TLS" in line(tls_version=None) and "NO TLS" not in line(loopback=True)
    assert "plaintext (loopback)" in line(loopback=True)
    # the loud badges have the RW badge's priority: they survive 80 columns
    narrow = line(80, demo=True, insecure=True, locks_configured=True, locks_held=1234)
    assert "DEMO" in narrow and "TLS UNVERIFIED" in narrow and "UNSEEN 12.3k" in narrow
    assert "locks 1.23k" in narrow and "\\Del 300" in narrow  # abbreviated, never left out


def test_the_tui_command_gives_mutations_the_insecure_tls_note(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from triage_tui.cli import build_parser
    from triage_tui.commands import tui
    from triage_tui.context import Context

    monkeypatch.setenv("TRIAGE_IMAP_PASSWORD", "x")
    args = build_parser().parse_args(["--host", "imap.example.com", "--user", "u", "--insecure-skip-verify",
                                      "tui", "--keymap", '{"mark.toggle": "x"}', "--theme", "ansi-dark"])
    ctx = Context(args)
    svc = tui.build_service(ctx)
    assert svc.guard.context["tls_verify"].startswith("SKIPPED")
    assert ctx.keymap() == {"mark.toggle": "x"} and ctx.theme == "ansi-dark"
    assert tui.demo_options(args)["demo"] is False
