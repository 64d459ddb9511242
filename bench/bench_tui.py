"""Benchmark of the TUI with 100k messages (not a test: prints figures).

Part "dovecot", real Dovecot with realistic mail (bench/realistic.py): a cold start (empty
header cache) then a warm one (the cache the cold start wrote): time from app start to the
first frame that shows rows and to the whole list, event-loop lag (max / p99), RSS and its peak.

Part "load", an in-memory service that builds new Message objects on every listing (as the
real one does): cold load, then three full re-lists (R) with marks and the cursor set; event-loop
lag during each phase (a task asking to wake every 5 ms, how late it woke), RSS steady / peak
(sampled), marks and cursor kept, key-to-frame latency.

Part "keys", an in-memory service feeding the same app, so the key figures measure the UI and
nothing else:

- keypress latency for down, page down and space (toggle mark), measured from the moment the
  key event is posted to the moment the frame reflecting it is handed to the driver
  (``App._display``, after the compositor has rendered the changed lines). Pilot's ``press``
  is not used for timing: it waits for idle (>= 40 ms) by design.
- mark-all-matching (``a``) on 100k, re-sort (``s``), as the time inside the action and as
  key-to-frame.

Targets (issue 13 goal 3): whole list of 100k on screen within 2 s cold and 0.5 s warm; a
re-list is incremental: event-loop lag < 50 ms, RSS < 250 MiB steady and 300 MiB peak; keys
< 16 ms median. (Issue 4: first rows < 1 s, key p95 < 50 ms, mark-all < 100 ms, re-sort < 300 ms.)

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_tui.py [--n 100000] [--skip-dovecot] [--part load]``
(development runs: ``--n 20000``; the machine has 2 shared cores, so lag figures carry that noise).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual import events  # noqa: E402

from tests.tui.fakes import FakeService, big_messages  # noqa: E402
from triage_tui.tui.app import TriageApp  # noqa: E402

FRAMES: list[float] = []


class BenchApp(TriageApp):
    """The real app; only records when a frame is handed to the driver."""

    frame_hook: Any = None
    connected_at: float | None = None

    def on_connected(self, msg: Any) -> None:
        # Textual calls the handler of every class in the MRO: TriageApp's runs too.
        if self.connected_at is None:
            self.connected_at = time.perf_counter()

    def _display(self, screen: Any, renderable: Any) -> None:
        if renderable is not None:
            FRAMES.append(time.perf_counter())
            if self.frame_hook is not None:
                self.frame_hook()
        super()._display(screen, renderable)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


async def key_to_frame(app: TriageApp, key: str, char: str | None) -> float:
    before = len(FRAMES)
    t0 = time.perf_counter()
    app.post_message(events.Key(key, char))
    deadline = t0 + 5
    while len(FRAMES) == before:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"no frame after {key}")
        await asyncio.sleep(0)
    return FRAMES[before] - t0


async def settle(pilot: Any) -> None:
    await pilot.pause(0.03)


def fmt_ms(s: float) -> str:
    return f"{s * 1000:.1f} ms"


# -- part 1: real Dovecot ----------------------------------------------------------------------


def bench_dovecot(n: int) -> dict[str, dict[str, float]]:
    """Cold (empty header cache) then warm (the cache the cold run wrote) app starts on a
    realistic mailbox (bench/realistic.py): first rows, whole list, event-loop lag, RSS."""
    import tempfile

    sys.path.insert(0, str(ROOT / "bench"))
    from realistic import seed  # type: ignore[import-not-found]

    from tests.servers import PASSWORD, start_dovecot
    from triage_tui.domain.analysis import AnalysisConfig
    from triage_tui.services.cache import HeaderCache
    from triage_tui.services.imap import ConnectionSettings, Secret
    from triage_tui.services.journal import AuditJournal
    from triage_tui.services.triage import TriageService

    server = start_dovecot()
    try:
        user = seed(server, n)
        settings = ConnectionSettings(host="127.0.0.1", port=server.imaps_port, user=user,
                                      password=Secret(PASSWORD), ca_file=str(server.ca_file))
        analysis = AnalysisConfig(address="incoming+%{key}@incoming.gitlab.example.com")
        cache_file = Path(tempfile.mkdtemp(prefix="bench-tui-cache-")) / "cache.sqlite"
        # Warm Dovecot's own index with one listing, in another process (its memory does not
        # count in the app's RSS), without our cache.
        warm = (
            "import sys, time; sys.path.insert(0, sys.argv[1])\n"
            "from triage_tui.services.imap import ConnectionSettings, Secret\n"
            "from triage_tui.services.triage import TriageService\n"
            "s = TriageService(ConnectionSettings(host='127.0.0.1', port=int(sys.argv[2]), user=sys.argv[3], "
            "password=Secret(sys.argv[4]), ca_file=sys.argv[5]), read_only=True)\n"
            "n = sum(len(b) for b in s.iter_list()); s.close()\n"
        )
        subprocess.run([sys.executable, "-c", warm, str(ROOT), str(server.imaps_port), user, PASSWORD,
                        str(server.ca_file)], check=True)
        out: dict[str, dict[str, float]] = {}
        for label in ("cold", "warm"):
            # as in a fresh process: what the previous app left (its rows, frozen out of the
            # collector by the listing) is collected now, not in the next app's first load
            gc.unfreeze()
            gc.collect()
            svc = TriageService(settings, read_only=True, journal=AuditJournal(Path("/tmp/bench-journal.jsonl")),
                                analysis=analysis, cache=HeaderCache(cache_file, analysis))
            out[label] = measure_start(BenchApp(svc, watcher_factory=None))
            svc.close()
        return out
    finally:
        server.stop()


def measure_start(app: BenchApp) -> dict[str, float]:
    """Run ``app`` headless at 120x36 until its listing is done: seconds from app start to the
    first frame with rows and to the whole list, event-loop lag (max, p99), RSS and its peak
    (MiB), rows. (bench_tui_fresh.py measures each start in a fresh process with this.)"""
    marks: dict[str, float] = {}

    def on_frame() -> None:
        if "first_rows" not in marks and app.model.rows:
            marks["first_rows"] = time.perf_counter()
        if "whole" not in marks and not app._loading and app._uidvalidity is not None:
            marks["whole"] = time.perf_counter()

    app.frame_hook = on_frame
    mon = LagMonitor()

    async def run() -> None:
        marks["start"] = time.perf_counter()
        async with app.run_test(size=(120, 36)) as pilot:
            mon.start()
            await wait_listed(app, pilot)
            await pilot.pause(0.2)
            marks.update(mon.stop())
            marks["rss"] = rss_mb()
            marks["rows"] = len(app.model)

    asyncio.run(run())
    return {"first_rows": marks["first_rows"] - marks["start"], "whole": marks["whole"] - marks["start"],
            "lag_max": marks["lag_max"], "lag_p99": marks["lag_p99"], "rss": marks["rss"],
            "rss_peak": marks["rss_peak"], "rows": marks["rows"]}


# -- part 2: keys on 100k (in-memory service) --------------------------------------------------


def bench_keys(n: int, presses: int) -> dict[str, Any]:
    msgs = big_messages(n)
    app = BenchApp(FakeService(msgs, chunk=1000), watcher_factory=None)
    res: dict[str, Any] = {}

    async def run() -> None:
        t_start = time.perf_counter()
        async with app.run_test(size=(120, 36)) as pilot:
            while app._loading or app._uidvalidity is None:
                await pilot.pause(0.01)
            res["fake_listed"] = time.perf_counter() - t_start
            await pilot.pause(0.3)
            for name, key, char in (("down", "down", None), ("page down", "pagedown", None),
                                    ("toggle mark", "space", " ")):
                lat = []
                for _ in range(presses):
                    lat.append(await key_to_frame(app, key, char))
                    await settle(pilot)
                res[name] = lat
            # mark all matching on the full 100k, then with a filter
            app.action_clear_marks()
            await settle(pilot)
            t0 = time.perf_counter()
            app.action_mark_all()
            res["mark_all_action"] = time.perf_counter() - t0
            app.action_clear_marks()
            await settle(pilot)
            res["mark_all_frame"] = await key_to_frame(app, "a", "a")
            assert len(app.model.marks) == n
            await settle(pilot)
            # keys with 100k marks held
            lat = []
            for _ in range(presses // 2):
                lat.append(await key_to_frame(app, "space", " "))
                await settle(pilot)
            res["toggle mark (100k marked)"] = lat
            # re-sort
            sorts = []
            frames = []
            for _ in range(6):
                t0 = time.perf_counter()
                app.action_sort_next()
                sorts.append(time.perf_counter() - t0)
                await settle(pilot)
                frames.append(await key_to_frame(app, "s", "s"))
                await settle(pilot)
            res["resort_action"] = sorts
            res["resort_frame"] = frames
            t0 = time.perf_counter()
            app.apply_filter_text("bot age>1d")
            res["filter_100k"] = time.perf_counter() - t0
            res["filter_matched"] = len(app.model.filtered)
            t0 = time.perf_counter()
            app.action_mark_all()
            res["mark_all_filtered_action"] = time.perf_counter() - t0
            await settle(pilot)
            res["rss_mb"] = rss_mb()

    asyncio.run(run())
    return res


# -- part 3: load, re-list (R), event-loop lag and RSS (in-memory service) ----------------------


class CopyingService(FakeService):
    """FakeService that builds new Message objects on every listing, as the real service does
    (the plain fake hands out the same objects, which would hide two listings coexisting).
    ``delay``: seconds per batch, the worker's share of a real listing (0: a warm cache)."""

    delay = 0.0

    def iter_messages(self, uidvalidity: int, uids: list[int], **kw: Any) -> Any:
        for batch in super().iter_messages(uidvalidity, uids, **kw):
            if self.delay:
                time.sleep(self.delay)
            yield [copy.copy(m) for m in batch]


class LagMonitor:
    """Event-loop lag: a task that asks to wake every 5 ms and records how late it woke. Also
    samples RSS (VmRSS) for the peak of a phase."""

    TICK = 0.005

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.rss_peak = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        n = 0
        while True:
            t = time.perf_counter()
            await asyncio.sleep(self.TICK)
            self.lags.append(max(0.0, time.perf_counter() - t - self.TICK))
            n += 1
            if n % 4 == 0:
                self.rss_peak = max(self.rss_peak, rss_mb())

    def start(self) -> None:
        self.lags, self.rss_peak = [], rss_mb()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> dict[str, float]:
        assert self._task is not None
        self._task.cancel()
        self.rss_peak = max(self.rss_peak, rss_mb())
        lags = self.lags or [0.0]
        return {"lag_max": max(lags), "lag_p99": pct(lags, 99), "rss_peak": self.rss_peak}


async def wait_listed(app: TriageApp, pilot: Any) -> None:
    # asyncio.sleep, not pilot.pause: a pause posts a callback to every widget and forces a
    # screen update, every 5 ms here, which a real terminal does not do (it skewed lag, frames)
    while app._loading or app._uidvalidity is None:
        await asyncio.sleep(0.005)


def bench_load(n: int, presses: int, delay: float) -> dict[str, Any]:
    svc = CopyingService(big_messages(n), chunk=1000)
    svc.delay = delay
    app = BenchApp(svc, watcher_factory=None)
    res: dict[str, Any] = {}
    marks: dict[str, float] = {}

    def on_frame() -> None:
        if "first_rows" not in marks and app.model.rows:
            marks["first_rows"] = time.perf_counter()
        if "whole" not in marks and not app._loading and len(app.model.rows) >= n:
            marks["whole"] = time.perf_counter()

    app.frame_hook = on_frame
    mon = LagMonitor()

    async def run() -> None:
        gc.collect()
        marks["start"] = time.perf_counter()
        async with app.run_test(size=(120, 36)) as pilot:
            mon.start()
            await wait_listed(app, pilot)
            await pilot.pause(0.1)
            res["cold_first_rows"] = marks["first_rows"] - marks["start"]
            res["cold_whole"] = marks.get("whole", float("nan")) - marks["start"]
            res["load"] = mon.stop()
            await pilot.pause(0.3)
            res["rss_steady"] = rss_mb()
            # marks and the cursor, to check they survive the re-list
            app.list.move_cursor(n // 2)
            cursor_uid = app.list.current
            for u in list(app.model.rows[:50:3]):
                app.model.marks.add(u)  # type: ignore[arg-type]
            marked = set(app.model.marks)
            relists = []
            mon.start()
            for _ in range(3):
                t0 = time.perf_counter()
                await pilot.press("R")
                await wait_listed(app, pilot)
                relists.append(time.perf_counter() - t0)
                await pilot.pause(0.1)
            res["relist"] = mon.stop()
            res["relist_s"] = relists
            res["relist_kept"] = (app.model.marks == marked, app.list.current == cursor_uid)
            await pilot.pause(0.3)
            gc.collect()
            res["rss_after_relist"] = rss_mb()
            lat = []
            for key in ("down", "pagedown", "space") * max(1, presses // 3):
                lat.append(await key_to_frame(app, key, " " if key == "space" else None))
                await settle(pilot)
            res["keys"] = lat

    asyncio.run(run())
    return res


def print_load(n: int, r: dict[str, Any], label: str) -> None:
    print(f"\n{label}, {n:,} messages, 120x36 (in-memory service building new objects per listing):")
    rows = [
        ("first rows (cold)", fmt_ms(r["cold_first_rows"])),
        ("whole list on screen (cold)", fmt_ms(r["cold_whole"])),
        ("event-loop lag during load, max / p99", f"{fmt_ms(r['load']['lag_max'])} / {fmt_ms(r['load']['lag_p99'])}"),
        ("re-list (R) x3, each", " ".join(fmt_ms(x) for x in r["relist_s"])),
        ("event-loop lag during re-lists, max / p99",
         f"{fmt_ms(r['relist']['lag_max'])} / {fmt_ms(r['relist']['lag_p99'])}"),
        ("marks kept / cursor kept across R", f"{r['relist_kept'][0]} / {r['relist_kept'][1]}"),
        ("RSS steady (after load)", f"{r['rss_steady']:.0f} MiB"),
        ("RSS peak during load / re-lists", f"{r['load']['rss_peak']:.0f} / {r['relist']['rss_peak']:.0f} MiB"),
        ("RSS after re-lists", f"{r['rss_after_relist']:.0f} MiB"),
        ("key median / p95 (down, pgdn, space)",
         f"{fmt_ms(statistics.median(r['keys']))} / {fmt_ms(pct(r['keys'], 95))}"),
    ]
    w = max(len(a) for a, _ in rows)
    print(f"  | {'measure':<{w}} | value |")
    print(f"  |{'-' * (w + 2)}|-------|")
    for a, b in rows:
        print(f"  | {a:<{w}} | {b} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--presses", type=int, default=60)
    ap.add_argument("--skip-dovecot", action="store_true")
    ap.add_argument("--delay", type=float, default=0.0,
                    help="load part: seconds per 1000-message batch in the worker (0: a warm cache)")
    ap.add_argument("--part", choices=("all", "keys", "load", "dovecot"), default="all",
                    help="each part runs in its own process, so RSS figures do not mix")
    args = ap.parse_args()
    if args.part == "all":
        base = [sys.executable, __file__, "--n", str(args.n), "--presses", str(args.presses)]
        print(f"triage-tui TUI benchmark, {args.n:,} messages")
        subprocess.run([*base, "--part", "load"], check=True)
        subprocess.run([*base, "--part", "keys"], check=True)
        if not args.skip_dovecot:
            subprocess.run([*base, "--part", "dovecot"], check=True)
        return 0

    if args.part == "dovecot":
        print(f"\nReal Dovecot, {args.n:,} realistic messages (loopback TLS, Dovecot index warm), 120x36, "
              "from app start:")
        d = bench_dovecot(args.n)
        print("  | start | first rows | whole list | loop lag max / p99 | RSS / peak |")
        print("  |---|---|---|---|---|")
        for label, r in d.items():
            print(f"  | {label} ({int(r['rows']):,} rows) | {fmt_ms(r['first_rows'])} | {fmt_ms(r['whole'])} | "
                  f"{fmt_ms(r['lag_max'])} / {fmt_ms(r['lag_p99'])} | {r['rss']:.0f} / {r['rss_peak']:.0f} MiB |")
        return 0
    if args.part == "load":
        print_load(args.n, bench_load(args.n, args.presses, args.delay), "Load and re-list")
        return 0
    keys = bench_keys(args.n, args.presses)
    print("\nUI with an in-memory service (120x36):")
    print(f"  all {args.n:,} messages listed {fmt_ms(keys['fake_listed'])} after app start")
    for name in ("down", "page down", "toggle mark", "toggle mark (100k marked)"):
        lat = keys[name]
        print(f"  key {name:<26} median {fmt_ms(statistics.median(lat)):>9}  p95 {fmt_ms(pct(lat, 95)):>9}  "
              f"max {fmt_ms(max(lat)):>9}  (n={len(lat)}, key posted -> frame rendered)")
    print(f"  mark all matching (100k): action {fmt_ms(keys['mark_all_action'])}, "
          f"key-to-frame {fmt_ms(keys['mark_all_frame'])}")
    print(f"  re-sort (100k): action median {fmt_ms(statistics.median(keys['resort_action']))} "
          f"max {fmt_ms(max(keys['resort_action']))}; key-to-frame median "
          f"{fmt_ms(statistics.median(keys['resort_frame']))} max {fmt_ms(max(keys['resort_frame']))}")
    print(f"  filter 'bot age>1d' over 100k: {fmt_ms(keys['filter_100k'])} ({keys['filter_matched']:,} match); "
          f"mark all matching then: {fmt_ms(keys['mark_all_filtered_action'])}")
    print(f"  RSS: {keys['rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
