"""The UI's warm start as an operator gets it: each start in a fresh process (not after a cold
run in the same one, as ``bench_tui.py --part dovecot`` does), against a real Dovecot with
realistic mail, optionally alternating with another checkout.

    PYTHONPATH=. .venv/bin/python bench/bench_tui_fresh.py [--n 100000] [--runs 4] [--against DIR] [--cold]

The mailbox is seeded once (bench/realistic.py, plaintext loopback). Each checkout gets its own
header cache (the cache's fingerprint hashes the code: two checkouts would reset each other's),
filled by one untimed start. Then ``--runs`` warm starts per checkout, alternating. A start is
``python this_file --child``: the checkout's app, built as ``bench_tui.py`` builds it (no
preconnect), 120x36, from app start: first frame with rows, whole list, event-loop lag (max,
p99; a task asking to wake every 5 ms), RSS and its peak. ``--against DIR``: e.g. ``git worktree
add /tmp/old <rev>``; both run with this venv. ``--cold``: every start with an empty cache instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def child(root: str, port: int, user: str, cache: str) -> None:
    """One app start in this (fresh) process, with ``root``'s code (the measuring harness is this
    checkout's ``bench_tui``, found beside this file); prints one JSON line."""
    sys.path.insert(0, root)
    # root's packages first: bench_tui puts this checkout in front of sys.path as it is imported
    import tests.tui.fakes  # noqa: F401
    import triage_tui
    import triage_tui.tui.app  # noqa: F401
    from tests.servers import PASSWORD
    from triage_tui.domain.analysis import AnalysisConfig
    from triage_tui.services.cache import HeaderCache
    from triage_tui.services.imap import ConnectionSettings, Secret
    from triage_tui.services.journal import AuditJournal
    from triage_tui.services.triage import TriageService

    harness = importlib.import_module("bench_tui")  # after them (an import sorter would move a plain import)
    assert Path(triage_tui.__file__).resolve().is_relative_to(Path(root).resolve()), triage_tui.__file__

    settings = ConnectionSettings(host="127.0.0.1", port=port, user=user, password=Secret(PASSWORD),
                                  security="none")
    analysis = AnalysisConfig(address="incoming+%{key}@incoming.gitlab.example.com")
    svc = TriageService(settings, read_only=True, journal=AuditJournal(Path(cache).with_suffix(".journal")),
                        analysis=analysis, cache=HeaderCache(Path(cache), analysis))
    try:
        print(json.dumps(harness.measure_start(harness.BenchApp(svc, watcher_factory=None))))
    finally:
        svc.close()


def start(root: str, port: int, user: str, cache: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # bytecode, as installed
    env["PYTHONPATH"] = root
    out = subprocess.run([sys.executable, __file__, "--child", root, str(port), user, str(cache)],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"a start with {root} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--against", metavar="DIR", help="another checkout, alternated with this one")
    ap.add_argument("--cold", action="store_true", help="every start with an empty header cache")
    a = ap.parse_args()
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    from realistic import seed  # type: ignore[import-not-found]

    from tests.servers import start_dovecot

    roots = [str(ROOT)] + ([str(Path(a.against).resolve())] if a.against else [])
    for r in roots:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(r) / "triage_tui")], check=False,
                       env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})
    server = start_dovecot(tls=False)
    work = Path(tempfile.mkdtemp(prefix="bench-tui-fresh-"))
    try:
        user = seed(server, a.n)
        caches = {r: work / f"cache-{i}.sqlite3" for i, r in enumerate(roots)}
        for r in roots:
            start(r, server.imap_port, user, caches[r])  # cold: fills its cache, warms Dovecot's (untimed)
        res: dict[str, list[dict[str, Any]]] = {r: [] for r in roots}
        for i in range(a.runs):
            for j, r in enumerate(roots):
                cache = work / f"cold-{i}-{j}.sqlite3" if a.cold else caches[r]
                x = start(r, server.imap_port, user, cache)
                res[r].append(x)
                print(f"  run {i + 1}/{a.runs} {r}: first {x['first_rows']:.2f} s, whole {x['whole']:.2f} s, "
                      f"lag max {x['lag_max'] * 1000:.0f} ms", file=sys.stderr)
        print(f"\n{'Cold' if a.cold else 'Warm'} UI starts, each in a fresh process, {a.n:,} realistic messages "
              f"({res[roots[0]][0]['rows']:,} rows), loopback Dovecot, 120x36, from app start; "
              f"{a.runs} alternating runs, min / median / max:\n")
        print("| checkout | first rows | whole list | loop lag max | lag p99 | RSS / peak |")
        print("|---|---|---|---|---|---|")

        def mmm(xs: list[float], scale: float = 1.0, unit: str = "s", fmt: str = "{:.2f}") -> str:
            return " / ".join(fmt.format(v * scale) for v in (min(xs), statistics.median(xs), max(xs))) + f" {unit}"

        for r in roots:
            xs = res[r]
            print(f"| {r} | {mmm([x['first_rows'] for x in xs])} | {mmm([x['whole'] for x in xs])} | "
                  f"{mmm([x['lag_max'] for x in xs], 1000, 'ms', '{:.0f}')} | "
                  f"{mmm([x['lag_p99'] for x in xs], 1000, 'ms', '{:.0f}')} | "
                  f"{statistics.median(x['rss'] for x in xs):.0f} / {statistics.median(x['rss_peak'] for x in xs):.0f} MiB |")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
