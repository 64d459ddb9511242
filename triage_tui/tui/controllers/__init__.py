"""The app's behaviour, one concern per module; the app (tui/app.py) composes them.

Each controller is a plain class holding the app as its ``host``, typed by the
:class:`~triage_tui.tui.controllers.host.Host` protocol: no controller imports the app, so the
app stays the only module that composes (an import-linter contract). Textual finds message
handlers, actions and bindings on the App class, so the App keeps thin ``on_*``/``action_*``
methods that delegate here. Thread workers are started with :func:`run_thread` on the host,
with the same ``name``/``group``/``description`` the App's ``@work`` methods had.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from textual.worker import Worker


def run_thread(host: Any, body: Callable[..., Any], *args: Any, name: str, group: str,
               exclusive: bool = False) -> Worker[Any]:
    """What ``@work(thread=True, exit_on_error=False, group=group, description=name)`` did on the
    App: a thread worker on the app (so ``on_worker_state_changed`` sees its errors) with a fixed
    description (Textual's default is the ``repr`` of every argument: 1.4 s for 100k messages)."""
    return host.run_worker(partial(body, *args), name=name, group=group, description=name,
                           exclusive=exclusive, exit_on_error=False, thread=True)
