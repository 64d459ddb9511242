"""Process start-up cost of the CLI (issue 13): wall time of short subcommands run as a
subprocess, interleaved, median of N runs; and which heavy packages each one imports.

    python bench/bench_startup.py [-n 20] [--modules] [--against OTHER_CHECKOUT]

Wall time on a shared machine swings with the load; the child's CPU time (user+sys) is the
steadier figure, and ``--against`` runs another checkout (e.g. ``git archive`` of the base
commit) interleaved with this one, so both see the same load.

The connection commands point at 127.0.0.1:1 (refused at once), so they measure everything a
real run does before the first byte to the server: start-up, imports, settings, credentials.
No timing assertions anywhere: tests/unit/test_lazy_imports.py guards the imports instead.
"""

from __future__ import annotations

import argparse
import os
import resource
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


def _env(root: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TRIAGE_CONFIG", None)
    env.update(TRIAGE_IMAP_PASSWORD="x", XDG_CONFIG_HOME="/nonexistent-triage",
               XDG_STATE_HOME="/tmp/triage-bench-startup-state", XDG_CACHE_HOME="/tmp/triage-bench-startup-cache")
    env["PYTHONPATH"] = root
    return env


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--modules", action="store_true", help="list the heavy packages each case imports")
    ap.add_argument("--against", metavar="DIR", help="another checkout, run interleaved (its figures first)")
    ns = ap.parse_args()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = {"this": here} if not ns.against else {"other": os.path.abspath(ns.against), "this": here}
    env = _env(here)
    if ns.modules:
        for name, argv in CASES.items():
            r = subprocess.run([sys.executable, "-c", _PROBE, *argv], env=env, cwd=here, capture_output=True,
                               text=True)
            line = next((ln for ln in r.stderr.splitlines() if ln.startswith("MODULES ")), "MODULES ? ")
            _, count, *tops = line.split()
            heavy = [t for t in tops if t in HEAVY]
            print(f"{name:24} rc={r.returncode} modules={count:>4} heavy: {' '.join(heavy) or '-'}")
        return 0
    envs = {t: _env(root) for t, root in trees.items()}
    wall: dict[tuple[str, str], list[float]] = {(t, k): [] for k in CASES for t in trees}
    cpu: dict[tuple[str, str], list[float]] = {(t, k): [] for k in CASES for t in trees}
    for _ in range(ns.n):  # interleaved: load drifts hit every case and tree alike
        for name, argv in CASES.items():
            for tree in trees:
                c0, t0 = _cpu(), time.perf_counter()
                # cwd: `python -m` puts the working directory first on sys.path
                subprocess.run([sys.executable, "-m", "triage_tui.cli", *argv], env=envs[tree], cwd=trees[tree],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                wall[tree, name].append(time.perf_counter() - t0)
                cpu[tree, name].append(_cpu() - c0)
    print(f"n={ns.n} runs each, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end; seconds")
    print(f"{'case':24} {'tree':5} {'wall min':>8} {'median':>7} {'max':>7} {'cpu min':>8} {'median':>7}")
    for name in CASES:
        for tree in trees:
            w, c = wall[tree, name], cpu[tree, name]
            print(f"{name:24} {tree:5} {min(w):8.3f} {statistics.median(w):7.3f} {max(w):7.3f} "
                  f"{min(c):8.3f} {statistics.median(c):7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
