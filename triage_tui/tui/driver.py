"""The terminal driver: Textual's, except that a vanished terminal cannot hang the app.

Textual's ``LinuxDriver`` writes through a ``WriterThread`` fed by a queue of at most 30 writes.
When the terminal goes away (an SSH session torn down: the pty hangs up and every write fails
with EIO), the first failing ``write`` raises inside that thread and ends it. Nothing drains the
queue any more: the app's next 30 repaints fill it, and the next write, or the driver's own
``stop()`` at exit, blocks for ever on ``Queue.put``. The app then outlives its SSH session with
its IMAP sessions open (measured under load: ``tests/faults/test_process.py``'s vanished-terminal
test, a py-spy dump showed the main thread in ``WriterThread.stop -> Queue.put`` and no writer
thread).

:class:`HangupSafeDriver` hands the writer thread a file whose ``write`` and ``flush`` drop the
output once the terminal has failed, so the thread keeps draining its queue, the SIGHUP handler's
exit runs to the end and IMAP is logged out. Nothing is lost: there is no terminal to show it on.

Its input thread also survives input it cannot read. Textual decodes the terminal's bytes as
strict UTF-8 and parses escape sequences with ``int()``: one Latin-1 byte (a terminal not set to
UTF-8, an "é" typed in the filter) or one malformed sequence (``ESC [ 5:1 ~``; line noise on a
link) raised in that thread, and Textual's answer to any error there is to end the app. Here the
read that held it is dropped, the operator is told on the status line, and the next key works
(``tests/faults/test_raw_input_pty.py``).
"""

from __future__ import annotations

import time
from typing import Any

from textual.driver import Driver

#: What Textual's input parsing raises on bytes it cannot read (UnicodeDecodeError is a
#: ValueError). Anything else (an OSError when the terminal is gone) still ends the app.
UNREADABLE_INPUT = (ValueError, KeyError, IndexError)
#: More dropped reads than this within a second is not a typing accident (a terminal stuck in a
#: non-UTF-8 mode, a binary file sent to it): the app ends, with this line and exit code 1.
MAX_DROPS_PER_SECOND = 50
STORM = (f"triage-tui: error: the terminal sent more than {MAX_DROPS_PER_SECOND} unreadable inputs in a second "
         "(not UTF-8, or unknown key codes): set it to UTF-8 and start again")


class HungUpFile:
    """A terminal file whose writes stop, quietly, at the first failure (``gone`` says so)."""

    def __init__(self, file: Any) -> None:
        self._file = file
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return int(self._file.write(text) or 0)
            except (OSError, ValueError):  # EIO/EPIPE after a hangup; ValueError: closed file
                self.gone = True
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._file.flush()
            except (OSError, ValueError):
                self.gone = True

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding... of the real file
        return getattr(self._file, name)


def hangup_safe(driver_class: type[Driver]) -> type[Driver]:
    """``driver_class``, or its hang-up-safe subclass when it is Textual's Linux driver."""
    try:
        from textual.drivers.linux_driver import LinuxDriver
    except ImportError:  # pragma: no cover - not on a POSIX system
        return driver_class
    if not issubclass(driver_class, LinuxDriver):
        return driver_class

    class HangupSafeDriver(driver_class):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._file = HungUpFile(self._file)

        def run_input_thread(self) -> None:
            drops: list[float] = []
            while True:
                try:
                    super().run_input_thread()
                    return
                except UNREADABLE_INPUT:
                    if self.exit_event.is_set():
                        return
                    now = time.monotonic()
                    drops = [t for t in drops if now - t < 1.0] + [now]
                    if len(drops) > MAX_DROPS_PER_SECOND:
                        self._app.call_later(self._app.exit, None, 1, STORM)
                        return
                    self._app.call_later(self._app.status, "dropped unreadable terminal input (is the terminal "
                                         "set to UTF-8?)", "warn")

    HangupSafeDriver.__name__ = HangupSafeDriver.__qualname__ = f"HangupSafe{driver_class.__name__}"
    return HangupSafeDriver
