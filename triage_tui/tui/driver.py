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
"""

from __future__ import annotations

from typing import Any

from textual.driver import Driver


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

    HangupSafeDriver.__name__ = HangupSafeDriver.__qualname__ = f"HangupSafe{driver_class.__name__}"
    return HangupSafeDriver
