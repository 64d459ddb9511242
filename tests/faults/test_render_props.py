"""Properties of what the TUI draws from mail: hypothesis feeds hostile messages through the
real list widget's ``render_line`` (message rows and group rows, narrow and wide layouts) and
hostile text through the app's filter path. Nothing raises; no C0/C1 control, DEL or bidi
override reaches a segment; every row is exactly as wide as the list; and text that looks like
Rich markup is drawn as the characters it is (the widget writes segments, never markup)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.cells import cell_len

from tests.tui.conftest import loaded
from tests.tui.fakes import FakeService, fixed_clock, sample_messages
from triage_tui.domain.model import Message
from triage_tui.domain.text import inert
from triage_tui.tui import columns as C
from triage_tui.tui.app import TriageApp
from triage_tui.tui.listmodel import Group

NOW = fixed_clock()
PROPS = settings(max_examples=120, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: What a terminal acts on or reorders: C0 (tab and newline included: a cell must be one line),
#: DEL, C1, bidi embeddings/overrides/isolates, line and paragraph separators.
_LIVE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

_BITS = ["[bold red]", "[/]", "[link=https://evil.example]x[/link]", "[@click=app.quit]q[/]", "\x1b[2J",
         "\x1b]52;c;ZXZpbA==\x07", "\x9b31m", "\x07", "\x00", "\r\n", "\t", "\u202e", "\u2066", "\u2028",
         "\udcff", "漢字", "🧨", "e\u0301", "\u200b", "=?utf-8?B?WA==?=", "\\", "…", " " * 3, "x" * 300]
hostile = st.lists(st.one_of(st.sampled_from(_BITS), st.text(max_size=12)), max_size=8).map("".join)
dates = st.one_of(st.none(), st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                                          timezones=st.just(UTC)))
messages = st.builds(
    Message,
    uid=st.integers(1, 2**32 - 1), uidvalidity=st.just(1),
    flags=st.sampled_from([(), ("\\Seen",), ("\\Deleted",)]),
    internaldate=dates, size=st.integers(0, 10**13),
    from_name=hostile, from_addr=hostile, subject=hostile, to=hostile,
    kind=st.one_of(st.sampled_from(["reply", "new_issue", "note_on_issuable", "service_desk", "unknown"]), hostile),
    project_id=st.one_of(st.none(), st.integers(0, 10**12)),
    project_slug=st.one_of(st.none(), hostile), project_path=st.one_of(st.none(), hostile),
    issue_iid=st.one_of(st.none(), st.integers(0, 10**9)),
    stale=st.booleans(), bot=st.booleans(), suspicious=st.booleans(), no_key=st.booleans(),
    lock=st.one_of(st.none(), hostile), lock_ttl=st.one_of(st.none(), st.integers(-1, 10**7)),
)


def _check_rows(app: TriageApp, msgs: list[Message]) -> None:
    lst, model = app.list, app.model
    model.clear()
    model.add(msgs)
    model.rebuild()
    lst.cursor = 0
    lst.rows_changed()
    width = lst.row_width
    for y in range(min(len(model.rows), lst.size.height)):
        strip = lst.render_line(y)
        for seg in strip:
            assert not _LIVE.search(seg.text), repr(seg.text)
        assert strip.cell_length == width
        row = model.rows[y]
        text = strip.text
        if isinstance(row, Group):
            assert inert(row.label)[:10] in text or cell_len(text) == width
            continue
        m = model.messages[row]
        subj_w = dict(zip([c.key for c in lst._cols], lst._widths, strict=True))["subject"]
        # markup-looking text is drawn as itself: the subject cell is exactly the inert text, fitted
        assert C.fit(C.cell("subject", m, NOW, lst.compact), subj_w) in text


def _run_rows(width: int, group: str | None) -> None:
    app = TriageApp(FakeService(sample_messages(3)), watcher_factory=None, clock=fixed_clock)

    @PROPS
    @given(st.lists(messages, min_size=1, max_size=8, unique_by=lambda m: m.uid))
    def check(msgs: list[Message]) -> None:
        _check_rows(app, msgs)

    async def go() -> None:
        async with app.run_test(size=(width, 14)) as pilot:
            await loaded(pilot)
            if group:
                app.model.set_group(group)
                app.model.expand_all(True)
            check()

    asyncio.run(go())


def test_rows_compact_80() -> None:
    _run_rows(80, None)


def test_rows_wide_160() -> None:
    _run_rows(160, None)


def test_group_rows_by_sender_domain() -> None:
    _run_rows(120, "domain")


def test_group_rows_by_project() -> None:
    _run_rows(120, "project")


filters = st.lists(st.one_of(
    st.sampled_from(["age>2d", "age<", "bot", "!", "!bot", "from:", 'subject:"', '"', "(", ")", "or", "and",
                     "size>1e999", "uid:1:*", "project:#", "[bold]", "\x1b[31m", "\x00", "\u202e", "🧨", "\\",
                     "lock>", "kind:", "-", "*", " ", "age>99999999999999999999d", "((((((((((("]),
    st.text(max_size=10)), max_size=10).map("".join)


def test_filter_path_never_raises_and_says_nothing_live() -> None:
    """The filter box's path (parse, apply, report) on hostile text: either the list narrows or
    the status line says where the syntax is wrong; the line never carries a control character."""
    msgs = sample_messages(30)
    app = TriageApp(FakeService(msgs), watcher_factory=None, clock=fixed_clock)

    @PROPS
    @given(filters)
    def check(text: str) -> None:
        ok = app.apply_filter_text(text)
        line = app.status_line.text
        assert not _LIVE.search(line), repr(line)
        if ok:
            assert set(app.model.filtered) <= set(app.model.messages)
        else:
            assert app.status_line.kind == "error"
        for y in range(app.list.size.height):
            for seg in app.list.render_line(y):
                assert not _LIVE.search(seg.text)

    async def go() -> None:
        async with app.run_test(size=(100, 20)) as pilot:
            await loaded(pilot)
            check()
            assert app.apply_filter_text("")
            assert len(app.model.filtered) == 30

    asyncio.run(go())


def test_extreme_ages_render() -> None:
    """INTERNALDATE in year 1, in 9999, and in the future (a clock ahead) all draw a row."""
    base = sample_messages(1, hostile=False)[0]
    msgs = []
    for i, when in enumerate([datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 30, tzinfo=UTC),
                              NOW + timedelta(days=365 * 80), None]):
        m = Message(uid=i + 1, uidvalidity=1, internaldate=when, subject=f"when {when}", from_addr=base.from_addr)
        msgs.append(m)
    app = TriageApp(FakeService(msgs), watcher_factory=None, clock=fixed_clock)

    async def go() -> None:
        async with app.run_test(size=(160, 12)) as pilot:
            await loaded(pilot)
            for key in ("age", "age"):  # both directions of the age sort
                app.action_sort(key)
                text = "\n".join(app.list.render_line(y).text for y in range(6))
                assert "when 0001-01-02" in text and "when 9999-12-30" in text and "when None" in text

    asyncio.run(go())
