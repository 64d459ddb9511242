"""The hostile corpus (tests/corpus/nasty) through Dovecot and every reader the operator uses:
``list --json``, ``list``, ``peek --json``, ``peek``, and the TUI (the list renders every row;
the preview opens for every message). No exception, bounded time, nothing interpreted: the
terminal never receives an ESC or C1 byte that came from mail, and markup arrives as text."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Mailbox
from tests.corpus.nasty import ADDRESS, GENERATORS, MARKUP, seed_items
from tests.servers import Dovecot
from tests.tui.conftest import loaded, wait_for
from triage_tui.domain.analysis import AnalysisConfig
from triage_tui.services.journal import AuditJournal
from triage_tui.services.triage import TriageService
from triage_tui.tui.app import TriageApp
from triage_tui.tui.screens.preview import PreviewScreen

N = len(GENERATORS)
#: Generous for a shared 2-core machine: the point is "seconds, not minutes or forever".
LIST_BUDGET = 30.0
PEEK_BUDGET = 10.0
#: What a terminal would act on: C0 controls but tab and newline, DEL, C1.
_LIVE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@pytest.fixture(scope="module")
def nasty(dovecot: Dovecot) -> Iterator[Mailbox]:
    mb = Mailbox(dovecot, dovecot.new_user("nasty"))
    mb.seed(seed_items())
    yield mb


def _env(mb: Mailbox) -> dict[str, str]:
    return {**mb.env(), "TRIAGE_ADDRESS": ADDRESS}


def test_list_json_and_text(nasty: Mailbox, cli) -> None:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    r = cli(["list", "--json"], env=_env(nasty))
    took = time.monotonic() - t0
    assert r.code == 0, r.err
    rows = [json.loads(line) for line in r.lines]
    assert sorted(row["uid"] for row in rows) == list(range(1, N + 1))
    assert took < LIST_BUDGET, f"list --json took {took:.1f} s"
    assert "Traceback" not in r.err
    by_uid = {row["uid"]: row for row in rows}
    names = [name for name, _, _ in GENERATORS]
    assert MARKUP in by_uid[names.index("markup_and_escapes") + 1]["subject"]  # data, kept as data
    assert len(by_uid[names.index("hundred_kb_subject") + 1]["subject"]) > 50_000
    t0 = time.monotonic()
    r = cli(["list"], env=_env(nasty))
    assert r.code == 0, r.err
    assert time.monotonic() - t0 < LIST_BUDGET
    assert not _LIVE.search(r.out), "a control character from mail reached the terminal"
    assert MARKUP in r.out
    assert nasty.search("SEEN") == []


@pytest.mark.parametrize("uid", range(1, N + 1), ids=[name for name, _, _ in GENERATORS])
def test_peek(nasty: Mailbox, cli, uid: int) -> None:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    r = cli(["peek", str(uid), "--json"], env=_env(nasty))
    took = time.monotonic() - t0
    assert r.code == 0, r.err[-2000:]
    out = json.loads(r.out)
    assert out["uid"] == uid and out["header"]
    assert took < PEEK_BUDGET, f"peek --json took {took:.1f} s"
    t0 = time.monotonic()
    r = cli(["peek", str(uid)], env=_env(nasty))
    assert r.code == 0, r.err[-2000:]
    assert time.monotonic() - t0 < PEEK_BUDGET
    assert not _LIVE.search(r.out), "a control character from mail reached the terminal"
    assert "\\Seen" not in out["flags"]


def test_tui_lists_and_previews_every_nasty_message(nasty: Mailbox) -> None:
    svc = TriageService(nasty.settings(), read_only=True, journal=AuditJournal(),
                        analysis=AnalysisConfig(address=ADDRESS))
    app = TriageApp(svc, watcher_factory=None)
    timings: dict[str, float] = {}
    names = [name for name, _, _ in GENERATORS]

    def screen_rows() -> list[str]:
        lst = app.list
        out = []
        for y in range(lst.size.height):
            strip = lst.render_line(y)
            for seg in strip:
                assert not _LIVE.search(seg.text), repr(seg.text[:200])
            out.append(strip.text)
        return out

    async def go() -> None:
        async with app.run_test(size=(160, N + 8)) as pilot:
            t0 = time.monotonic()
            await loaded(pilot)
            timings["list"] = time.monotonic() - t0
            assert len(app.model.messages) == N
            await pilot.press("s", "s", "s", "s", "s", "s", "s", "s")  # sort by UID
            shown = "\n".join(screen_rows())
            assert MARKUP in shown
            for i in range(N):
                app.list.move_cursor(i)
                await pilot.pause(0)
                uid = app.list.current
                assert isinstance(uid, int)
                t0 = time.monotonic()
                await pilot.press("enter")
                await wait_for(pilot, lambda: isinstance(app.screen, PreviewScreen), what="the preview")
                screen = app.screen
                await wait_for(pilot, lambda: bool(screen.header_text), timeout=PEEK_BUDGET * 2,  # noqa: B023
                               what=f"the header of {names[uid - 1]}")
                await pilot.pause(0.05)
                for wid in ("#preview-title", "#preview-header", "#preview-analysis"):
                    text = str(screen.query_one(wid).render())
                    assert not _LIVE.search(text), (names[uid - 1], wid)
                if names[uid - 1] in ("huge_header_lines", "many_continuations"):
                    # laid out in part (a 10 MB Static froze the UI for 15 s); the rest via $PAGER
                    assert "p opens the whole header" in str(screen.query_one("#preview-header").render())
                    assert len(screen.header_text) > 200_000
                timings[names[uid - 1]] = time.monotonic() - t0
                await pilot.press("escape")
                await wait_for(pilot, lambda: not isinstance(app.screen, PreviewScreen))

    asyncio.run(go())
    assert timings["list"] < LIST_BUDGET, timings
    slow = {k: round(v, 1) for k, v in timings.items() if v > PEEK_BUDGET}
    assert not slow, f"previews slower than {PEEK_BUDGET} s: {slow}"
    assert nasty.search("SEEN") == []
