"""The re-list (R) is incremental: the rows, their Message objects, the marks and the cursor stay
for UIDs still in the view; only new or changed messages are replaced, the vanished ones go.
What the server decides (flags changed by another client, new mail, UIDs gone from the view) is
checked against the real Dovecot; the UIDVALIDITY reset and fast typing use the in-memory fake."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import replace
from datetime import timedelta

from tests.mailgen import backlog, message
from tests.tui.conftest import loaded, wait_for
from tests.tui.fakes import NOW as FAKE_NOW
from tests.tui.fakes import FakeService, big_messages, fixed_clock, sample_messages
from triage_tui.tui.app import TriageApp
from triage_tui.tui.listmodel import SORTS, ListModel

NOW = time.time()


def app_for(svc, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("watcher_factory", None)
    return TriageApp(svc, **kw)


def test_relist_keeps_rows_marks_cursor_and_shows_what_another_client_changed(mailbox, make_service):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(30, now=NOW))
    app = app_for(make_service(mailbox))

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            uids = sorted(app.model.messages)
            assert len(uids) == 30
            before = dict(app.model.messages)  # UID -> the Message object shown
            app.model.mark_many([uids[2], uids[5], uids[9]])
            app.list.move_cursor(app.model.rows.index(uids[20]))
            await pilot.pause(0.05)
            # another client: two leave the UNSEEN view (one of them marked), one gets a
            # keyword, one new message arrives
            c = mailbox.client()
            c.select_folder("INBOX")
            c.add_flags([uids[5], uids[7]], [b"\\Seen"], silent=True)
            c.add_flags([uids[11]], [b"$Escalated"], silent=True)
            c.append("INBOX", message(subject="arrived during the incident", date=NOW))
            c.logout()
            flags_before = mailbox.flags()
            await pilot.press("R")
            await loaded(pilot)
            assert sorted(app.model.messages) == mailbox.search("UNSEEN")
            assert app.model.marks == {uids[2], uids[9]}  # the marked one that left the view lost its mark
            assert app.list.current == uids[20]  # the cursor stays on its message
            for u in uids:
                if u in (uids[5], uids[7]):
                    assert u not in app.model.messages
                else:
                    # kept, not rebuilt; flags (\\Recent went, a keyword came) updated in place
                    assert app.model.messages[u] is before[u]
                    assert set(app.model.messages[u].flags) == flags_before[u]
            assert "$Escalated" in app.model.messages[uids[11]].flags
            new = set(app.model.messages) - set(uids)
            assert len(new) == 1
            assert app.model.messages[new.pop()].subject == "arrived during the incident"
            # rows in the same order a fresh listing sorts them in
            keyfn = SORTS[app.model.sort_key][1]
            assert app.model.rows == sorted(app.model.messages, key=lambda u: keyfn(app.model.messages[u]))
            assert mailbox.flags() == flags_before  # a re-list changes nothing on the server

    asyncio.run(go())


def test_relist_after_a_uidvalidity_reset_drops_rows_and_marks() -> None:
    msgs = sample_messages(20)
    svc = FakeService(msgs)
    app = app_for(svc, clock=fixed_clock)

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            app.model.mark_many(list(app.model.messages)[:5])
            old = dict(app.model.messages)
            # the mailbox was re-created: same UIDs, other messages
            svc.uidvalidity += 1
            svc.messages = {m.uid: replace(m, uidvalidity=svc.uidvalidity, subject=f"other {m.uid}")
                            for m in msgs}
            await pilot.press("R")
            await loaded(pilot)
            assert app._uidvalidity == svc.uidvalidity
            assert not app.model.marks
            assert sorted(app.model.messages) == sorted(svc.messages)
            assert all(m is not old[u] and m.subject == f"other {u}" for u, m in app.model.messages.items())

    asyncio.run(go())


def test_fast_repeated_relists_end_consistent() -> None:
    msgs = big_messages(3000)
    svc = FakeService(msgs, chunk=200)
    app = app_for(svc, clock=fixed_clock)

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            marked = set(list(app.model.messages)[::97])
            app.model.mark_many(marked)
            app.list.move_cursor(1234)
            cur = app.list.current
            gone = set(list(svc.messages)[::10])
            for u in gone:
                del svc.messages[u]
            for _ in range(4):  # R while the previous R is still running
                await pilot.press("R")
            await loaded(pilot)
            await wait_for(pilot, lambda: len(app.model.messages) == len(svc.messages), what="the re-list")
            assert set(app.model.messages) == set(svc.messages)
            assert app.model.marks == marked - gone
            if cur not in gone:
                assert app.list.current == cur
            assert sorted(app.model.rows) == sorted(svc.messages)  # type: ignore[type-var]

    asyncio.run(go())


def test_incremental_sort_matches_a_full_sort() -> None:
    """Batches in any order, replacements, removals, every column, both directions: the
    incrementally merged order is the one a fresh full sort gives."""
    rng = random.Random(13)
    pool = big_messages(600)
    for key in SORTS:
        for reverse in (False, True):
            m = ListModel(clock=fixed_clock)
            m.set_sort(key, reverse)
            picked = pool[:]
            rng.shuffle(picked)
            for i in range(0, len(picked), 50):
                m.add(picked[i:i + 50])
                if rng.random() < 0.3:
                    m.remove(rng.sample(sorted(m.messages), 5))
                if rng.random() < 0.3:
                    u = rng.choice(sorted(m.messages))
                    m.add([replace(m.messages[u], size=rng.randint(0, 10**6), subject=str(rng.random()))])
                m.rebuild()
                fn = SORTS[key][1]
                assert m.order == sorted(m.messages, key=lambda u: fn(m.messages[u]), reverse=reverse), key


def _reference_groups(m: ListModel) -> list[tuple[str, list[int], float | None, int, int, int]]:
    """The grouping written the plain way (one pass per message), to hold the fast one to."""
    now = m.clock()
    keyfn = m._group_key_fn(now)
    by: dict[str, list] = {}
    for u in m.filtered:
        msg = m.messages[u]
        g = by.setdefault(keyfn(msg), [[], None, 0, 0, 0])
        g[0].append(u)
        age = msg.age_seconds(now)
        if age is not None and (g[1] is None or age > g[1]):
            g[1] = age
        g[2] += u in m.marks
        g[3] += msg.bot
        g[4] += msg.stale
    return sorted((k, *v) for k, v in by.items())


def test_grouping_matches_the_plain_computation_across_changes() -> None:
    rng = random.Random(7)
    pool = big_messages(900) + sample_messages(40)
    pool = [replace(p, uid=i + 1) for i, p in enumerate(pool)]
    pool[5] = replace(pool[5], internaldate=None)
    pool[6] = replace(pool[6], internaldate=FAKE_NOW - timedelta(hours=1))  # exactly on a bucket limit
    pool[7] = replace(pool[7], internaldate=FAKE_NOW + timedelta(days=3))  # from the future
    m = ListModel(clock=fixed_clock)
    m.add(pool[:500])
    m.rebuild()
    for group in ("project", "kind", "domain", "age", "outcome"):
        m.set_group(group)
        m.mark_many(rng.sample(sorted(m.messages), 40))
        m.add(pool[500 + rng.randint(0, 300):][:60])
        u = rng.choice(sorted(m.messages))
        m.add([replace(m.messages[u], from_addr=f"x{rng.random()}@elsewhere.example", bot=not m.messages[u].bot)])
        m.remove(rng.sample(sorted(m.messages), 7))
        m.rebuild()
        got = sorted((g.key, g.uids, g.oldest, g.marked, g.bots, g.stale) for g in m.groups)
        assert got == _reference_groups(m), group


def test_relist_evaluates_a_clock_dependent_filter_again() -> None:
    """A kept row is not a stale filter answer: ``age>`` style filters see the new clock."""
    msgs = sample_messages(20)
    now = [FAKE_NOW]
    svc = FakeService(msgs)
    app = app_for(svc, clock=lambda: now[0])
    cutoff = FAKE_NOW - timedelta(hours=2)

    class Older:
        def matches(self, m, at):  # type: ignore[no-untyped-def]
            return m.internaldate is not None and m.internaldate < at - (FAKE_NOW - cutoff)

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await loaded(pilot)
            app.model.set_filter(Older(), "older")
            before = set(app.model.filtered)
            now[0] = FAKE_NOW + timedelta(days=30)  # a month later every message is older
            await pilot.press("R")
            await loaded(pilot)
            assert app.model.filter_text == "older"
            assert set(app.model.filtered) == {u for u, m in app.model.messages.items() if m.internaldate}
            assert set(app.model.filtered) > before or before == set(app.model.filtered) == set(app.model.messages)

    asyncio.run(go())
