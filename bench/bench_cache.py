"""Header cache benchmark against a real Dovecot: cold list, warm list, warm list after another
client changed flags, and the raw-socket floor (the same header FETCH read to the tagged OK,
unparsed), interleaved, min/median/max.

    PYTHONPATH=. .venv/bin/python bench/bench_cache.py --sizes 20000 [--runs 5]

(Development runs stay at <= 20k messages on the shared 2-core machine; the 100k figure is the
lead's.) Each size gets a fresh mailbox of realistic messages (bench_engine's generator) and its
own XDG_CACHE_HOME. Measured:

* ``list --json`` as a subprocess: ``--no-cache``, cold (cache cleared first, then written) and
  warm (the cache from the previous run);
* in process, ``TriageService.list`` warm: total, and after 1% of the messages had their flags
  changed by another client (the CHANGEDSINCE path);
* the floor: one raw ``UID FETCH 1:* (<the list items>)`` read to the tagged OK without parsing.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import imapclient  # noqa: E402
from bench_engine import run_cli, seed  # noqa: E402

from tests.servers import PASSWORD, Dovecot, start_dovecot  # noqa: E402
from triage_tui.domain.analysis import AnalysisConfig  # noqa: E402
from triage_tui.domain.model import View  # noqa: E402
from triage_tui.services.cache import HeaderCache, cache_path  # noqa: E402
from triage_tui.services.imap import ConnectionSettings, Secret  # noqa: E402
from triage_tui.services.journal import AuditJournal  # noqa: E402
from triage_tui.services.triage import LIST_ITEMS, TriageService  # noqa: E402

ADDRESS = "incoming+%{key}@incoming.gitlab.example.com"


def raw_floor(port: int, user: str) -> float:
    """The same FETCH the list sends, read to the tagged OK, nothing parsed."""
    t = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    f.readline()

    def cmd(tag: bytes, line: bytes) -> None:
        s.sendall(tag + b" " + line + b"\r\n")
        while True:
            got = f.readline()
            if not got or got.startswith(tag + b" "):
                return

    cmd(b"a1", f"LOGIN {user} {PASSWORD}".encode())
    cmd(b"a2", b"EXAMINE INBOX")
    cmd(b"a3", b"UID SEARCH UNSEEN")
    cmd(b"a4", f"UID FETCH 1:* ({LIST_ITEMS})".encode())
    s.close()
    return time.perf_counter() - t


def service(port: int, user: str, cache: HeaderCache | None) -> TriageService:
    cs = ConnectionSettings(host="127.0.0.1", port=port, security="none", user=user, password=Secret(PASSWORD))
    return TriageService(cs, read_only=True, journal=AuditJournal(), analysis=AnalysisConfig(address=ADDRESS),
                         cache=cache)


def in_process(port: int, user: str, path: Path) -> float:
    svc = service(port, user, HeaderCache(path, AnalysisConfig(address=ADDRESS)))
    t = time.perf_counter()
    rows = svc.list(View.UNSEEN)
    elapsed = time.perf_counter() - t
    svc.close()
    assert rows
    return elapsed


def change_flags(port: int, user: str, fraction: float, round_: int) -> None:
    c = imapclient.IMAPClient("127.0.0.1", port=port, ssl=False)
    c.login(user, PASSWORD)
    c.select_folder("INBOX")
    uids = c.search("ALL")
    step = max(1, int(1 / fraction))
    picked = uids[round_ % step::step]
    c.add_flags(picked, [b"$Bench"], silent=True)
    c.logout()


def stats(name: str, xs: list[float], floor: float | None = None) -> None:
    ratio = f"  {statistics.median(xs) / floor:5.2f}x floor" if floor else ""
    print(f"  {name:<34} min {min(xs):7.3f}  median {statistics.median(xs):7.3f}  max {max(xs):7.3f} s{ratio}")


def bench_size(server: Dovecot, n: int, runs: int) -> None:
    user = seed(server, n)
    port = server.imap_port
    cache_home = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    env = {**os.environ, "TRIAGE_IMAP_HOST": "127.0.0.1", "TRIAGE_IMAP_PORT": str(port),
           "TRIAGE_IMAP_SECURITY": "none", "TRIAGE_IMAP_USER": user, "TRIAGE_IMAP_PASSWORD": PASSWORD,
           "TRIAGE_STATE_DIR": str(server.base / "state-bench"), "TRIAGE_ADDRESS": ADDRESS,
           "XDG_CACHE_HOME": str(cache_home), "PYTHONPATH": str(ROOT)}
    path = cache_path("127.0.0.1", port, user, "INBOX", cache_home / "triage-tui")
    raw_floor(port, user)  # Dovecot's own cache warm
    run_cli(["list", "--json"], env)
    times: dict[str, list[float]] = {k: [] for k in ("floor", "nocache", "cold", "warm", "warm_ip", "changed_ip")}
    for r in range(runs):
        times["floor"].append(raw_floor(port, user))
        times["nocache"].append(run_cli(["--no-cache", "list", "--json"], env)[0])
        run_cli(["cache", "clear"], env)
        times["cold"].append(run_cli(["list", "--json"], env)[0])
        times["warm"].append(run_cli(["list", "--json"], env)[0])
        times["warm_ip"].append(in_process(port, user, path))
        change_flags(port, user, 0.01, r)
        times["changed_ip"].append(in_process(port, user, path))
    size = sum(p.stat().st_size for p in path.parent.iterdir())
    print(f"N={n}: cache {size / 2**20:.1f} MiB on disk ({size / n:.0f} B/message)")
    floor = statistics.median(times["floor"])
    stats("raw floor (FETCH read, unparsed)", times["floor"])
    stats("list --json --no-cache", times["nocache"], floor)
    stats("list --json cold (writes cache)", times["cold"], floor)
    stats("list --json warm", times["warm"], floor)
    stats("TriageService.list warm", times["warm_ip"], floor)
    stats("  ... after 1% flags changed", times["changed_ip"], floor)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    server = start_dovecot(tls=False)
    try:
        for n in args.sizes:
            bench_size(server, n, args.runs)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
