"""Soak of the header mutation fuzzer (issue 11, guarantee 1): one bad message never costs more
than its own row.

    .venv/bin/python bench/fuzz_soak.py [--cases 100000] [--seed 11] [--batch 200] [--no-decode]

Runs ``--cases`` deterministic cases of ``tests/mutations.py`` (real header blocks × absurd
values: date offsets, years, day/month, 1 MB values, every charset, 8-bit/NUL, unbalanced
comments and quotes, control/bidi/invisible characters, impersonating display names) through
every path a row takes: building and classifying the row, its JSON, filter evaluation, the plain
``list`` row, the TUI cells, the header analysis of ``peek``/the preview and its text, and
``decode --message``; every ``--batch`` rows go through the list model's sorts and groups.

Counts exceptions and findings (a guard that had to catch something, text not encodable as
UTF-8, a verdict cell of the wrong width), by type, with the first case of each; records the
slowest case's time and which mutation it was, and the time per case. Exits 1 on any finding.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import mutations as M  # noqa: E402

_KINDS = ("received date", "date", "encoded word", "1 MB", "charset name", "8-bit", "unbalanced", "control",
          "bidi", "address", "empty", "continuation", "numbers")


def _kind(what: str) -> str:
    return next((k for k in _KINDS if k in what), what)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--batch", type=int, default=200, help="rows per list-model check")
    p.add_argument("--no-decode", action="store_true", help="skip decode --message (faster)")
    p.add_argument("--progress", type=int, default=10_000, help="print a line every N cases")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    pool = M.seeds()
    print(f"{len(pool)} seed header blocks, {len(M.charsets())} charset names; seed {args.seed}", flush=True)
    findings: collections.Counter[tuple[str, str]] = collections.Counter()
    first: dict[tuple[str, str], str] = {}
    kinds: collections.Counter[str] = collections.Counter()
    slowest: list[tuple[float, int, str, str, int]] = []  # (seconds, index, mutation, seed, bytes)
    batch = []
    total_check = 0.0
    for case in M.cases(args.seed, args.cases):
        for part in case.what.split(" + "):
            kinds[_kind(part.split(": ", 1)[-1])] += 1
        t = time.perf_counter()
        try:
            batch.append(M.check(case, decode=not args.no_decode))
        except Exception as exc:  # noqa: BLE001 - counted and reported
            key = (type(exc).__name__, str(exc)[:160])
            findings[key] += 1
            if key not in first:
                first[key] = (f"case {case.index} ({case.seed_name}; {case.what[:200]}):\n"
                              + traceback.format_exc(limit=6)[-2000:])
        dt = time.perf_counter() - t
        total_check += dt
        slowest.append((dt, case.index, case.what[:160], case.seed_name, len(case.raw)))
        if len(slowest) > 50:
            slowest.sort(reverse=True)
            del slowest[5:]
        if len(batch) >= args.batch:
            try:
                M.check_model(batch)
            except Exception as exc:  # noqa: BLE001
                key = (type(exc).__name__, "list model: " + str(exc)[:140])
                findings[key] += 1
                first.setdefault(key, traceback.format_exc(limit=6)[-2000:])
            batch = []
        done = case.index + 1
        if args.progress and done % args.progress == 0:
            print(f"  {done:>7,} cases  {time.perf_counter() - t0:7.1f} s  findings {sum(findings.values())}",
                  flush=True)
    if batch:
        M.check_model(batch)
    wall = time.perf_counter() - t0
    slowest.sort(reverse=True)
    n = args.cases
    print(f"\n{n:,} cases in {wall:.1f} s ({total_check / max(n, 1) * 1e3:.2f} ms per case through every path)")
    print(f"exceptions and findings: {sum(findings.values())}")
    for key, count in findings.most_common():
        print(f"  {count:>6}  {key[0]}: {key[1]}\n{first[key]}")
    print("slowest cases:")
    for dt, idx, what, seed, size in slowest[:5]:
        print(f"  {dt * 1e3:8.1f} ms  case {idx}  {size:>9,} bytes  {seed}: {what}")
    print("mutations applied (by kind): " + ", ".join(f"{k} {v:,}" for k, v in kinds.most_common(14)))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
