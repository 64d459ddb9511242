"""A vanished terminal cannot hang the app: Textual's writer thread dies on the first failed write
and its bounded queue then blocks the app's next writes and its exit for ever; the driver's file
drops output instead (tui/driver.py). The end-to-end proof is tests/faults/test_process.py's
vanished-terminal test; this one pins the mechanism without a pty."""

from __future__ import annotations

import errno
import threading

import pytest
from textual.drivers._writer_thread import MAX_QUEUED_WRITES, WriterThread
from textual.drivers.headless_driver import HeadlessDriver
from textual.drivers.linux_driver import LinuxDriver

from triage_tui.tui.driver import HungUpFile, hangup_safe


class HungUpTerminal:
    """What a pty's file does after the hangup: every write and flush fails with EIO."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        raise OSError(errno.EIO, "Input/output error")

    def flush(self) -> None:
        raise OSError(errno.EIO, "Input/output error")

    def fileno(self) -> int:
        return 2


def _writes_then_stops(file: object, n: int) -> bool:
    """Whether a WriterThread on ``file`` takes n writes and stops within 5 s."""
    w = WriterThread(file)  # type: ignore[arg-type]
    w.start()
    done = threading.Event()

    def feed() -> None:
        for i in range(n):
            w.write(f"frame {i}")
        w.stop()
        done.set()

    threading.Thread(target=feed, daemon=True).start()
    return done.wait(5)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread dies: the point
def test_textuals_writer_thread_hangs_on_a_hung_up_terminal() -> None:
    """The failure this guards against (if Textual fixes it, this test says so)."""
    assert not _writes_then_stops(HungUpTerminal(), MAX_QUEUED_WRITES * 3)


def test_the_hung_up_file_keeps_the_writer_draining() -> None:
    term = HungUpTerminal()
    f = HungUpFile(term)
    assert _writes_then_stops(f, MAX_QUEUED_WRITES * 3)
    assert f.gone and term.writes == 1  # one failed write, then dropped without trying
    assert f.fileno() == 2


def test_only_the_linux_driver_is_wrapped() -> None:
    safe = hangup_safe(LinuxDriver)
    assert issubclass(safe, LinuxDriver) and safe is not LinuxDriver
    assert hangup_safe(HeadlessDriver) is HeadlessDriver
