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

from tests.tui.fakes import FakeService, fixed_clock, sample_messages  # noqa: E402
from triage_tui.domain.model import View  # noqa: E402
from triage_tui.tui.app import TriageApp  # noqa: E402

OUT = Path(__file__).resolve().parent

#: (file name, terminal size, keys, app options)
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
]


def make_app(read_only: bool = False, view: View = View.UNSEEN, theme: str | None = None) -> TriageApp:
    msgs = sample_messages(60)
    if view == View.DELETED:
        for m in msgs[::4]:
            m.flags = ("\\Seen", "\\Deleted")
    return TriageApp(FakeService(msgs, read_only=read_only), clock=fixed_clock, watcher_factory=None,
                     view=view, theme=theme)


async def shoot(name: str, size: tuple[int, int], keys: list[str], opts: dict[str, Any]) -> Path:
    app = make_app(**opts)
    async with app.run_test(size=size) as pilot:
        while app._loading or app._uidvalidity is None:
            await pilot.pause(0.02)
        for key in keys:
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
