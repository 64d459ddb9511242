"""Guarantee 1 of issue 11 in the TUI, on a real Dovecot: hostile messages among normal ones are
listed (none missing), their rows carry the ``~`` glyph and fit the list exactly, sorting and
grouping keep them, and the preview of each says what could not be read."""

from __future__ import annotations

import asyncio

from tests.integration.test_hostile_rows import NOW, _hostile
from tests.tui.conftest import loaded, wait_for
from triage_tui.tui import columns as C
from triage_tui.tui.app import TriageApp
from triage_tui.tui.listmodel import GROUPS
from triage_tui.tui.screens.preview import PreviewScreen


def test_degraded_rows_in_the_list_and_the_preview(mailbox, make_service):  # type: ignore[no-untyped-def]
    msgs = _hostile()
    mailbox.seed([(raw, NOW - 3600 + i, "") for i, (_, raw) in enumerate(msgs)])
    app = TriageApp(make_service(mailbox), watcher_factory=None)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            model, lst = app.model, app.list
            assert sorted(model.messages) == list(range(1, len(msgs) + 1))
            degraded = {u for u, m in model.messages.items() if m.problems}
            assert degraded == {2, 6, 7}
            assert model.messages[4].suspicious and not model.messages[4].bot
            app.action_sort("uid")
            verdict_at = sum(w + 1 for c, w in zip(lst._cols, lst._widths, strict=True) if c.key in ("mark", "age"))
            for y, uid in enumerate(model.rows):
                strip = lst.render_line(y)
                assert strip.cell_length == lst.row_width
                glyphs = strip.text[verdict_at:verdict_at + len(C.VERDICTS)]
                assert (glyphs[-2] == "~") == (uid in degraded), (uid, strip.text)  # then GitLab's verdict
            assert "attacker@evil.ex" in lst.render_line(model.rows.index(4)).text  # the real address, cut
            for group in GROUPS:
                model.set_group(group)
                assert sum(len(g.uids) for g in model.groups) == len(msgs)
            model.set_group(None)
            app.action_sort("uid")
            lst.rows_changed()
            for uid, expect in ((2, "Problems: unparseable Date: Mon, 9 Mar 2026 10:00:00 +2400"),
                                (3, "Warning: hop 2: unparseable date Mon, 9 Mar 2026 10:00:05 +9999"),
                                (4, "suspicious: display name impersonates noreply@github.com")):
                lst.cursor = model.rows.index(uid)
                await pilot.press("enter")
                await wait_for(pilot, lambda: isinstance(app.screen, PreviewScreen))
                screen = app.screen
                await wait_for(pilot, lambda s=screen: bool(s.header_text), what="the header")
                text = str(screen.query_one("#preview-analysis").render())
                assert expect in " ".join(text.split()), text
                await pilot.press("escape")
                await wait_for(pilot, lambda: not isinstance(app.screen, PreviewScreen))

    asyncio.run(go())
    assert mailbox.search("SEEN") == []
