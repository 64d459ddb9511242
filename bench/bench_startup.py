"""Process start-up cost of the CLI (issue 13): wall time of short subcommands run as a
subprocess, interleaved, median of N runs; and which heavy packages each one imports.

    python bench/bench_startup.py [-n 20] [--modules]

The connection commands point at 127.0.0.1:1 (refused at once), so they measure everything a
real run does before the first byte to the server: start-up, imports, settings, credentials.
No timing assertions anywhere: tests/unit/test_lazy_imports.py guards the imports instead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CONN = ["--host", "127.0.0.1", "--port", "1", "--security", "none", "--user", "u"]
CASES: dict[str, list[str]] = {
    "--version": ["--version"],
    "list --help": ["list", "--help"],
    "list --json (refused)": [*CONN, "list", "--json"],
    "mark-seen (refused)": [*CONN, "mark-seen", "--older-than", "1d"],
    "peek (refused)": [*CONN, "peek", "1"],
    "plan (refused)": [*CONN, "plan"],
}
HEAVY = ("textual", "rich", "redis", "mailparser", "humanize", "platformdirs", "imapclient", "asyncio",
         "yaml", "pymap", "fakeredis", "email", "ssl", "uuid", "zipfile", "subprocess", "difflib")

_PROBE = """
import atexit, sys
def _dump():
    names = sorted({m.split('.')[0] for m in sys.modules})
    sys.__stderr__.write('MODULES ' + str(len(sys.modules)) + ' ' + ' '.join(names) + '\\n')
atexit.register(_dump)
from triage_tui.cli import main
sys.argv[0] = 'triage-tui'
raise SystemExit(main(sys.argv[1:]))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TRIAGE_CONFIG", None)
    env.update(TRIAGE_IMAP_PASSWORD="x", XDG_CONFIG_HOME="/nonexistent-triage",
               XDG_STATE_HOME="/tmp/triage-bench-startup-state", XDG_CACHE_HOME="/tmp/triage-bench-startup-cache")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--modules", action="store_true", help="list the heavy packages each case imports")
    ns = ap.parse_args()
    env = _env()
    if ns.modules:
        for name, argv in CASES.items():
            r = subprocess.run([sys.executable, "-c", _PROBE, *argv], env=env, capture_output=True, text=True)
            line = next((ln for ln in r.stderr.splitlines() if ln.startswith("MODULES ")), "MODULES ? ")
            _, count, *tops = line.split()
            heavy = [t for t in tops if t in HEAVY]
            print(f"{name:24} rc={r.returncode} modules={count:>4} heavy: {' '.join(heavy) or '-'}")
        return 0
    times: dict[str, list[float]] = {k: [] for k in CASES}
    for _ in range(ns.n):  # interleaved: load drifts hit every case alike
        for name, argv in CASES.items():
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "triage_tui.cli", *argv], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - t0)
    print(f"{'case':24} {'min':>7} {'median':>7} {'max':>7}  (s, n={ns.n}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f})")
    for name, ts in times.items():
        print(f"{name:24} {min(ts):7.3f} {statistics.median(ts):7.3f} {max(ts):7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
