"""GitLab's verdict in the TUI against the real Dovecot and Redis: the G glyph, grouping by verdict,
the outcome: filter, and the re-ingest screen leaving stale rejected/dropped mail out by default
(J brings it in). What changed is read from Redis directly."""

from __future__ import annotations

import asyncio

from tests.integration.test_outcome_cli import seed_mix
from tests.tui.conftest import loaded, wait_for
from tests.tui.test_reingest import KEY, make_app, open_plan
from triage_tui.services.consumer import ConsumerOptions, MailRoomConsumer
from triage_tui.tui import columns as C


def test_glyph_group_filter_and_reingest_leaves_stale_junk_out(mailbox, make_service, redis_server,  # type: ignore[no-untyped-def]
                                                                redis_client):
    seed_mix(mailbox)
    MailRoomConsumer(mailbox.settings(), redis_client, ConsumerOptions(name="dead")).hold(range(1, 8))
    svc = make_service(mailbox)
    app = make_app(svc, redis_server)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await loaded(pilot)
            model, lst = app.model, app.list
            assert {u: m.outcome.verdict for u, m in model.messages.items()} == {
                1: "dropped", 2: "rejected", 3: "handled", 4: "handled", 5: "rejected", 6: "dropped", 7: "handled"}
            verdict_at = sum(w + 1 for c, w in zip(lst._cols, lst._widths, strict=True) if c.key in ("mark", "age"))
            for y, uid in enumerate(model.rows):
                strip = lst.render_line(y)
                assert strip.cell_length == lst.row_width == 80
                g = strip.text[verdict_at + len(C.VERDICTS) - 1]
                assert g == {"dropped": "∅", "rejected": "↩", "handled": "✓"}[model.messages[uid].outcome.verdict]
            # group by GitLab's verdict: z five times (project, handler, domain, age, verdict)
            await pilot.press("z", "z", "z", "z", "z")
            assert model.group_by == "outcome"
            assert [(g.key, len(g.uids)) for g in model.groups] == [("rejected", 2), ("dropped", 2), ("handled", 3)]
            assert "GitLab rejects" in lst.render_line(0).text
            await pilot.press("z")  # flat again
            # the filter language
            await pilot.press("slash", *"outcome:rejected", "enter")
            await wait_for(pilot, lambda: model.filtered == [2, 5] or model.filtered == [5, 2], what="the filter")
            await pilot.press("slash", "ctrl+u", "enter")  # clear it
            await wait_for(pilot, lambda: len(model.filtered) == 7, what="the filter cleared")

            # re-ingest everything: the stale rejected (5) and dropped (6) are left out by default
            screen = await open_plan(pilot, "a")
            text = str(screen.query_one("#ri-plan").render())
            assert "left out: 2 stale message(s) GitLab would reject or drop" in text and "J brings them in" in text
            assert "J add 2 junk" in str(screen.query_one("#ri-keys").render())
            assert screen.typed_target() == "5"
            await pilot.press("J")  # the switch: all seven
            await wait_for(pilot, lambda: not screen.planning and screen.plan is not None
                           and screen.typed_target() == "7", what="the plan with the junk")
            assert "included on request: 2" in str(screen.query_one("#ri-plan").render())
            await pilot.press("J")  # and out again
            await wait_for(pilot, lambda: not screen.planning and screen.plan is not None
                           and screen.typed_target() == "5", what="the plan without the junk")
            await pilot.press("5", "enter")
            await wait_for(pilot, lambda: app.reingest_watch is not None, what="the release")

    asyncio.run(go())
    assert {u: redis_client.exists(KEY.format(u)) for u in range(1, 8)} == {
        1: 0, 2: 0, 3: 0, 4: 0, 5: 1, 6: 1, 7: 0}
