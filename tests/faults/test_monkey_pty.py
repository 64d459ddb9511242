"""The key monkey (tests/tui/test_monkey.py) through a real pty against the real Dovecot, in
read-only mode: whatever is typed, in bursts as an SSH link delivers them, while the listing
loads and refreshes, the server's flags are the same afterwards, the app is alive, no traceback
is on the screen, and q logs out and exits 0."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.conftest import Mailbox
from tests.faults.test_process import _ended_cleanly, _start
from tests.mailgen import backlog
from tests.tui.test_monkey import ALPHABET

#: what a key name is on the wire (xterm)
_WIRE = {"enter": "\r", "escape": "\x1b", "tab": "\t", "space": " ", "backspace": "\x7f", "up": "\x1b[A",
         "down": "\x1b[B", "pageup": "\x1b[5~", "pagedown": "\x1b[6~", "home": "\x1b[H", "end": "\x1b[F",
         "f1": "\x1bOP", "f5": "\x1b[15~", "slash": "/", "colon": ":", "question_mark": "?", "asterisk": "*",
         "shift+tab": "\x1b[Z"}


#: not ':' here: the command palette offers "Quit", which a monkey finds (the pilot monkey stubs it)
KEYS = [k for k in ALPHABET if k not in ("colon", ":")]


def _wire(key: str) -> str:
    return _WIRE.get(key, key if len(key) == 1 else "")


def test_read_only_monkey_changes_nothing_on_the_server(mailbox: Mailbox, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGER", "true")  # the preview's p opens $PAGER: the keys would go to less
    mailbox.seed(backlog(60, now=time.time(), seen_every=7, deleted_every=11))
    before = mailbox.flags()
    app = _start(mailbox, tmp_path / "pty-state", "--read-only")
    rng = random.Random(7)
    typed: list[str] = []
    try:
        for _ in range(120):
            keys = "".join(_wire(rng.choice(KEYS)) for _ in range(rng.randint(1, 8)))
            typed.append(keys)
            app.send(keys)
            time.sleep(rng.choice((0.0, 0.02, 0.1)))
            assert app.proc.poll() is None, (typed[-5:], app.text()[-3000:])
        time.sleep(1.0)
        assert app.proc.poll() is None and "Traceback" not in app.text(), app.text()[-3000:]
        for _ in range(6):  # back to the list (a dialog, the palette, the filter box): then quit
            app.send("\x1b")
            time.sleep(0.2)
        app.send("q")
        try:
            _ended_cleanly(app, mailbox, 0, limit=10.0)
        except BaseException:
            print(app.text()[-6000:])
            raise
    finally:
        app.kill()
    assert mailbox.flags() == before, "read-only mode changed a flag"
