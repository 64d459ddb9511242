"""redis-py, imported on first use.

``import redis`` costs ~0.1 s (its asyncio client comes with it), which the TUI paid at every
start, Redis configured or not: the lock and Sidekiq modules are part of its screens. Those
modules use ``redis`` only inside functions (clients, exception classes), so they take this
stand-in, which imports the real module the first time one of its names is asked for."""

from __future__ import annotations

import importlib
from typing import Any


class _Redis:
    """Attribute access goes to the real ``redis`` module, imported then."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module("redis"), name)


redis: Any = _Redis()
