"""Record the demo incident at 80x24 in tmux: launch -> remaining mail re-ingested and picked up.

    .venv/bin/python screenshots/record_incident.py [--out screenshots/incident-80x24.txt]

Plays the README's key sequence (``P A y <count> Enter <count> Enter``) on the real demo in a
real terminal (tmux, 80x24), one key at a time, reading each count from the dialog that asks for
it the way an operator does. Every screen is written to the transcript with the time since launch
and the key that led to it; the last lines give the number of keys and the wall time from launch
to "picked up". Nothing outside a temporary directory is written except the transcript (the
demo's journal goes to a temporary TRIAGE_STATE_DIR).

This is a recording, not a test: ``tests/tui/test_incident_keys.py`` is the test (Pilot, the same
keys, the servers checked afterwards).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SESSION = "triage-incident-rec"
COUNT = re.compile(r"Type (\d+) and press Enter")
MORE = re.compile(r"and ([\d,]+) more")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def screen() -> str:
    return tmux("capture-pane", "-p", "-t", SESSION)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "screenshots" / "incident-80x24.txt")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for any one screen")
    args = ap.parse_args()
    if shutil.which("tmux") is None:
        print("record_incident: tmux is not installed", file=sys.stderr)
        return 2

    state = tempfile.mkdtemp(prefix="triage-rec-")
    exe = ROOT / ".venv" / "bin" / "triage-tui"
    env = f"TRIAGE_STATE_DIR={shlex.quote(state)} XDG_CACHE_HOME={shlex.quote(state)}"
    subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
    frames: list[str] = []
    keys: list[str] = []
    t0 = time.monotonic()

    def frame(label: str) -> None:
        frames.append(f"--- {time.monotonic() - t0:6.1f} s · {label}\n{screen().rstrip()}\n")

    def wait(what: str, ok: Callable[[str], bool]) -> str:
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            text = screen()
            if ok(text):
                return text
            time.sleep(0.2)
        frame(f"TIMED OUT waiting for {what}")
        raise SystemExit(f"record_incident: timed out waiting for {what}")

    def press(key: str, label: str | None = None) -> None:
        tmux("send-keys", "-t", SESSION, key)
        keys.append(key)
        time.sleep(0.3)
        frame(f"key {len(keys)}: {label or key}")

    try:
        tmux("new-session", "-d", "-s", SESSION, "-x", "80", "-y", "24", f"env {env} {shlex.quote(str(exe))} demo")
        wait("the list", lambda s: "view unseen" in s and "UNSEEN" in s and "P the incident plan" in s)
        frame("launched: the list")
        press("P", "P (the plan)")
        wait("the plan's steps", lambda s: "Steps, in order" in s and "1. ignore" in s)
        frame("the plan")
        press("A", "A (apply)")
        wait("the ignore dialog", lambda s: "y confirms" in s)
        press("y", "y (step 1: ignore)")
        previous: list[str] = []
        for step in (2, 3):
            # a new dialog: it asks for a count and lists other messages than the last one did
            text = wait(f"the count of step {step}",
                        lambda s, prev=previous: COUNT.search(s) is not None and "Release" in s and MORE.findall(s) != prev)
            previous = MORE.findall(text)
            count = COUNT.search(text).group(1)  # type: ignore[union-attr]
            for digit in count:
                press(digit, f"{digit} (step {step}: typing the count {count})")
            press("Enter", f"Enter (step {step}: release)")
        wait("picked up", lambda s: re.search(r"re-ingest (\d+)/\1 picked up", s) is not None)
        took = time.monotonic() - t0
        frame("remaining mail re-ingested and picked up")
        summary = (f"keys: {len(keys)} ({' '.join(keys)})\n"
                   f"launch -> picked up: {took:.1f} s (80x24, tmux, the default demo)\n")
        tmux("send-keys", "-t", SESSION, "q")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
        shutil.rmtree(state, ignore_errors=True)
    args.out.write_text("".join(frames) + "--- summary\n" + summary, encoding="utf-8")
    print(summary, end="")
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
