"""Bad input typed into the UI (issue 11, guarantee 5): the palette with a bad age shows an error
line and the app keeps running (it used to crash with a traceback and exit status 0); junk
arguments to the other palette commands do the same; the keymap check names ids and keys."""

from __future__ import annotations

import asyncio

import pytest
from textual.widgets import Input

from tests.tui.fakes import FakeService, fixed_clock, sample_messages
from triage_tui.errors import ConfigError
from triage_tui.tui.app import TriageApp
from triage_tui.tui.keymap import binding_ids, check_keymap, valid_key

BAD = [
    ("older than 99999999999w", "more than 100 years"),
    ("older than 2", "2 what? use 2d"),
    ("mark seen older than 2", "2 what? use 2d"),
    ("older than 0d", "is zero"),
    ("older than 1e400d", "invalid age"),
    ("older than nan", "invalid age"),
    ("age>٣d", "invalid age"),
    ("filter age>2", "2 what?"),
    ("filter size>5G", "beyond IMAP's range"),
    ("filter uid:0", "from 1 to 4294967295"),
    ("filter ((((", "filter syntax error"),
    ("filter \x1b[2J", None),
    ("filter " + "(" * 5000, "filter syntax error"),
]


async def _type_in_palette(app: TriageApp, pilot, text: str) -> None:  # type: ignore[no-untyped-def]
    while app._loading or app._uidvalidity is None:
        await pilot.pause(0.02)
    await pilot.press("colon")
    for _ in range(50):
        if app.screen.query(Input):
            break
        await pilot.pause(0.02)
    app.screen.query_one(Input).value = text
    await pilot.pause(0.3)
    await pilot.press("enter")
    await pilot.pause(0.2)


@pytest.mark.parametrize(("query", "phrase"), BAD)
def test_palette_with_bad_input_shows_an_error_and_keeps_running(query, phrase):  # type: ignore[no-untyped-def]
    svc = FakeService(sample_messages(40))
    app = TriageApp(svc, clock=fixed_clock, watcher_factory=None)

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await _type_in_palette(app, pilot, query)
            assert app.is_running
            assert not app.model.marks  # nothing was marked by a refused age
            if phrase is not None:
                line = app.status_line
                assert line.kind == "error", line.text
                assert phrase in line.text, line.text
            await pilot.press("escape")
            await pilot.pause(0.05)
            assert app.is_running
            assert not svc.executed  # nothing reached the server

    asyncio.run(go())
    assert app.return_code in (None, 0)


def test_a_good_age_still_marks():
    svc = FakeService(sample_messages(40))
    app = TriageApp(svc, clock=fixed_clock, watcher_factory=None)

    async def go() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await _type_in_palette(app, pilot, "older than 90m")
            assert app.status_line.kind != "error" and app.model.marks

    asyncio.run(go())


# -- keymap -----------------------------------------------------------------------------------------

def test_every_default_binding_key_is_valid():
    ids = binding_ids()
    assert "mark.toggle" in ids and "preview.copy_msgid" in ids and "list.down" in ids
    for key in ("space", "question_mark", "f1", "slash", "asterisk", "ctrl+f", "G", "R", "escape", "pagedown", "x",
                "ctrl+shift+up", "comma"):
        assert valid_key(key), key


@pytest.mark.parametrize(("keymap", "phrase"), [
    ({"mark.toggel": "x"}, "did you mean 'mark.toggle'"),
    ({"zzzz": "x"}, "press ? in the UI"),
    ({"mark.toggle": "ctl+x"}, "'ctl+x' is not a key"),
    ({"mark.toggle": ""}, "expected a key"),
    ({"mark.toggle": "x,,y"}, "is not a key"),
    ({"mark.toggle": "foo"}, "'foo' is not a key"),
    ({"mark.toggle": "\x1b"}, "is not a key"),
    ({"mark.toggle": "ctrl+ctrl+x"}, "is not a key"),
    ({"mark.toggle": " "}, "expected a key"),
])
def test_bad_keymaps_name_the_id_or_key(keymap, phrase):  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as e:
        check_keymap(keymap, "file c.toml:3 [keymap]")
    assert phrase in str(e.value) and "c.toml:3" in str(e.value)


def test_good_keymap_passes():
    km = {"mark.toggle": "x", "action.seen": "ctrl+s,S", "preview.copy_uid": "C", "filter.open": "slash,f"}
    assert check_keymap(km) == km
