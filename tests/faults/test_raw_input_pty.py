"""Terminal input the app cannot read, through a real pty, against the real Dovecot.

Textual decodes the terminal's bytes as strict UTF-8 and parses escape sequences with int(); an
error there ended the app (exit code 0, a traceback on the screen). An operator whose terminal
is not set to UTF-8 typing "é" in the filter, or a malformed sequence (line noise, a terminal's
colon sub-parameters), was enough. Now that read is dropped, the status line says so, the next
keys work, and q still logs out and exits cleanly."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from tests.conftest import Mailbox
from tests.faults.conftest import wait_until
from tests.faults.test_process import _ended_cleanly, _start
from tests.mailgen import backlog

UNREADABLE = [b"/\xe9t\xe9", b"\x1b[5:1~", b"\x1b[::201~", b"\xff\xfe", b"\x1b[<9999999999999999999999M"]


def _garbage(seed: int, n: int) -> bytes:
    rng = random.Random(seed)
    pieces = [b"\x1b", b"[", b"<", b"M", b";", b"0", b"35", b"200~", b"201~", b"O", b"\x1b[", b"\x1b[<", b"u", b"~",
              b"\x1b[1;5", b":", b"\x9b", b"\xc3", b"\x80", b"\xe9", b"\x00", b"9" * 30]
    return b"".join(rng.choice(pieces) for _ in range(n))


def test_unreadable_input_is_dropped_and_the_next_keys_work(mailbox: Mailbox, tmp_path: Path) -> None:
    mailbox.seed(backlog(5, now=time.time()))
    app = _start(mailbox, tmp_path / "pty-state")
    try:
        for i, data in enumerate([*UNREADABLE, _garbage(1, 400), _garbage(2, 400)]):
            os.write(app.master, data)
            time.sleep(0.3)
            assert app.proc.poll() is None, (i, data, app.text()[-3000:])
            os.write(app.master, b"\x1b")  # whatever box that opened: closed again
            time.sleep(0.3)
        wait_until(lambda: "dropped unreadable terminal input" in app.text(), timeout=5, what="the notice")
        assert "Traceback" not in app.text()
        time.sleep(1.0)  # nothing typed before counts: a clean filter box
        app.send("\x1b")
        time.sleep(0.3)
        app.send("/subject:zqx")
        wait_until(lambda: "subject:zqx" in app.text(), timeout=10, what="the keys after it, in the filter box")
        app.send("\x1b")
        time.sleep(0.3)
        assert mailbox.search("SEEN") == []  # the garbage marked nothing
        app.send("q")
        _ended_cleanly(app, mailbox, 0)
    finally:
        app.kill()


def test_a_storm_of_unreadable_input_ends_the_app_non_zero(mailbox: Mailbox, tmp_path: Path) -> None:
    """More than 50 unreadable reads in a second is not a typing accident (a terminal stuck in a
    non-UTF-8 mode, a binary file cat'ed into it): the app ends with one line, exit code 1, and
    its sessions logged out (Textual's own end for it was a traceback and exit code 0)."""
    mailbox.seed(backlog(5, now=time.time()))
    app = _start(mailbox, tmp_path / "pty-state")
    try:
        for _ in range(200):
            if app.proc.poll() is not None:
                break
            os.write(app.master, b"\xff")
            time.sleep(0.004)
        _ended_cleanly(app, mailbox, 1, limit=10.0)
        assert "the terminal sent more than 50 unreadable inputs in a second" in app.text()
    finally:
        app.kill()
