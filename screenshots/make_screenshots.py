"""Write the SVG screenshots of the main screens, from the same app the tests drive.

The data is the tests' deterministic in-memory backlog with a fixed clock, so re-running this
only changes the SVGs when the UI changed. Run: ``.venv/bin/python screenshots/make_screenshots.py``
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.pop("NO_COLOR", None)  # would change every colour

from tests.tui.fakes import (  # noqa: E402
    FakeConsumer,
    FakeLocks,
    FakeService,
    fixed_clock,
    lock_ttls,
    sample_messages,
)
from triage_tui.domain.model import View  # noqa: E402
from triage_tui.services.locks import WatchStatus  # noqa: E402
from triage_tui.tui.app import TriageApp  # noqa: E402

OUT = Path(__file__).resolve().parent

#: (file name, terminal size, keys, app options). Pseudo-keys: ``TYPED`` types the re-ingest
#: screen's key count, ``PLAN`` and ``WATCH`` wait for its plan and for two looks of its watch.
SHOTS: list[tuple[str, tuple[int, int], list[str], dict[str, Any]]] = [
    ("list-120x36", (120, 36), ["space", "space", "down", "space"], {}),
    ("list-80x24", (80, 24), ["space", "space", "down"], {}),
    ("grouped-by-sender-domain", (120, 36), ["z", "z", "z", "enter"], {}),
    ("filter-bots-older-than-1d", (120, 36), ["slash", *"bot age>1d", "enter", "a"], {}),
    ("confirm-mark-seen", (120, 36), ["b", "S"], {}),
    ("confirm-expunge-typed", (100, 30), ["a", "X", "1"], {"view": View.DELETED}),
    ("preview-header-analysis", (120, 36), ["down", "enter"], {}),
    ("help", (100, 36), ["question_mark"], {}),
    ("read-only-80x24", (80, 24), ["space", "S"], {"read_only": True}),
    ("ansi-dark-80x24", (80, 24), ["space", "space"], {"theme": "ansi-dark"}),
    ("reingest-plan", (100, 30), ["o", "I", "PLAN"], {"demo": True}),
    ("reingest-watch", (100, 30), ["o", "I", "PLAN", "TYPED", "enter", "WATCH"], {"demo": True}),
    ("demo-pulse-80x24", (80, 24), ["o", "I", "PLAN", "TYPED", "enter", "WATCH", "escape"], {"demo": True}),
    ("tls-unverified-80x24", (80, 24), ["space"], {"insecure": True}),
    ("incident-plan-80x24", (80, 24), ["P", "PLAN", "down", "down", "k"], {"demo": True}),
]

#: A scripted watch for the re-ingest shots: keys expiring, then half of them picked up.
WATCH = [WatchStatus(3.0, 20, 20, 0, 0, 4, 0, 27.0, None, None),
         WatchStatus(41.0, 20, 8, 12, 0, 0, 12, 0.0, 0.8, 10.0)]


def make_app(read_only: bool = False, view: View = View.UNSEEN, theme: str | None = None, demo: bool = False,
             insecure: bool = False) -> TriageApp:
    msgs = sample_messages(60)
    if view == View.DELETED:
        for m in msgs[::4]:
            m.flags = ("\\Seen", "\\Deleted")
    svc = FakeService(msgs, read_only=read_only, tls_verified=not insecure)
    svc.settings.insecure_skip_verify = insecure
    if not demo:
        return TriageApp(svc, clock=fixed_clock, watcher_factory=None, view=view, theme=theme)
    return TriageApp(svc, clock=fixed_clock, watcher_factory=None, view=view, theme=theme,
                     lock_service=FakeLocks(lock_ttls(msgs), read_only=read_only, statuses=WATCH),
                     demo_consumer=FakeConsumer(), demo_story="A demo incident.", reingest_interval=0.05)


async def _until(pilot: Any, cond: Any) -> None:
    for _ in range(250):
        if cond():
            return
        await pilot.pause(0.02)
    raise RuntimeError("the screen did not get there")


async def shoot(name: str, size: tuple[int, int], keys: list[str], opts: dict[str, Any]) -> Path:
    app = make_app(**opts)
    async with app.run_test(size=size) as pilot:
        while app._loading or app._uidvalidity is None:
            await pilot.pause(0.02)
        for key in keys:
            if key == "PLAN":
                await _until(pilot, lambda: getattr(app.screen, "plan", None) is not None)
            elif key == "TYPED":
                await pilot.press(*app.screen.typed_target())
            elif key == "WATCH":
                await _until(pilot, lambda: app.reingest_watch is not None and app.reingest_watch.watcher.polls >= 2)
            else:
                await pilot.press(key)
        await pilot.pause(0.2)
        await pilot.wait_for_scheduled_animations()
        app.title = f"triage-tui · {name}"
        path = OUT / f"{name}.svg"
        app.save_screenshot(filename=path.name, path=str(OUT))
    return path


def main() -> int:
    for name, size, keys, opts in SHOTS:
        path = asyncio.run(shoot(name, size, keys, opts))
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
