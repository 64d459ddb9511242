"""In-process microbenchmark of the list path's client CPU per message (issue 13, goal 1). No server.

    PYTHONPATH=. .venv/bin/python bench/bench_build.py [-n 20000] [--repeat 5] [--profile wire|build|json]

Stages, each timed alone over the same N realistic messages (tests/realistic_headers.py: RFC 2047 words
in many scripts and charsets, folded and malformed fields, raw 8-bit, multipart, every GitLab key
kind, bots, bounces):

* ``wire``: a recorded ``UID FETCH`` response stream (as Dovecot sends it, with the header block
  as a literal) read with :class:`Wire.read_response` from memory and decoded by ``parse_fetch``;
* ``build``: ``build_message`` per record (header parsing, decoding, key, verdicts, outcome), with
  the young-generation GC off as the listing does, each run starting with the per-value caches
  (senders, recipients, subjects, keys) empty, as a listing's process does;
* ``json``: what ``list --json`` does per row: duplicate Message-ID bookkeeping, ``message_json`` and
  the JSON Lines write.

Prints CPU µs per message per stage (process time: the machine is shared) (min and median of the repeats) and the total; ``--profile``
prints cProfile's top functions of one stage.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import realistic_headers as realistic  # noqa: E402
from triage_tui.commands import list_  # noqa: E402
from triage_tui.context import _JSON, Context  # noqa: E402
from triage_tui.domain.analysis import AnalysisConfig, build_message, clear_value_caches  # noqa: E402
from triage_tui.domain.jsonline import message_json  # noqa: E402
from triage_tui.domain.model import LIST_HEADER_FIELDS, Message  # noqa: E402
from triage_tui.services.imapwire import Response, Wire, parse_fetch  # noqa: E402

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
CONFIG = AnalysisConfig(address=realistic.TEMPLATE, gitlab_host="gitlab.example.com")
_FIELDS = " ".join(LIST_HEADER_FIELDS).encode()


def wire_stream(blocks: list[tuple[bytes, datetime, int]]) -> bytes:
    """The bytes Dovecot sends for the listing's UID FETCH, then the tagged OK."""
    out = bytearray()
    for i, (raw, t, size) in enumerate(blocks, 1):
        flags = b"\\Recent" if i % 3 else b""
        date = t.strftime("%d-%b-%Y %H:%M:%S +0000").encode()
        out += (b"* %d FETCH (UID %d FLAGS (%s) INTERNALDATE \"%s\" RFC822.SIZE %d BODY[HEADER.FIELDS (%s)] {%d}\r\n"
                % (i, i + 1000, flags, date, size, _FIELDS, len(raw)))
        out += raw + b")\r\n"
    out += b"A001 OK Fetch completed.\r\n"
    return bytes(out)


class _Mem:
    """What Wire reads from: imaplib's ``file.readline`` and ``read``, over bytes in memory."""

    def __init__(self, data: bytes) -> None:
        self.file = io.BytesIO(data)
        self.read = self.file.read


def stage_wire(stream: bytes) -> list[Any]:
    wire = Wire(_Mem(stream))  # type: ignore[arg-type]
    out = []
    while True:
        resp: Response = wire.read_response()
        if not resp.first.startswith(b"* "):
            return out
        out.append(parse_fetch(resp))


def stage_build(records: list[Any]) -> list[Message]:
    clear_value_caches()  # each run starts cold, as a listing's process does
    was = gc.isenabled()
    gc.disable()
    try:
        return [build_message(r.uid, 1, r.flags or (), r.internaldate, r.size or 0, r.body, CONFIG, NOW)
                for r in records]
    finally:
        if was:
            gc.enable()


def stage_json(msgs: list[Message]) -> int:
    """list --json's per-row work (the duplicate bookkeeping, message_json, one line written)."""
    out = io.StringIO()
    write = out.write
    first_uid: dict[str, int] = {}
    for m in msgs:
        mid = m.message_id.strip()
        if mid:
            first_uid.setdefault(mid, m.uid)
        write(message_json(m, NOW) + "\n")
    return out.tell()


def emit_path(msgs: list[Message]) -> int:
    """Through list_.run's own loop, with a fake service and context (checks the real path)."""
    class Svc:
        analysis = CONFIG
        settings = type("S", (), {"mailbox": "INBOX"})()

        def iter_list(self, view: Any, now: Any = None, narrow: Any = None) -> Any:
            yield msgs

        def keyword_note(self) -> None:
            return None

    class Ctx:
        def __init__(self) -> None:
            self.out = io.StringIO()

        def service(self) -> Svc:
            return Svc()

        def lock_service(self) -> None:
            return None

        def emit_json(self, obj: Any) -> None:
            self.out.write(_JSON.encode(obj) + "\n")

        def emit_json_lines(self, lines: list[Any]) -> None:
            Context.emit_json_lines(self, lines)  # type: ignore[arg-type]

        def say(self, text: str = "") -> None:
            self.out.write(text + "\n")

        def note(self, text: str) -> None:
            pass

    ctx = Ctx()
    ns = argparse.Namespace(filter=None, view="unseen", json=True, no_pushdown=False, limit=None)
    list_.run(ns, ctx)
    return ctx.out.tell()


def timed(fn: Any, arg: Any) -> tuple[float, Any]:
    t0 = time.process_time()
    res = fn(arg)
    return time.process_time() - t0, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--profile", choices=("wire", "build", "json"))
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--stage", choices=("none", "wire", "build", "json"),
                    help="set up, then run this stage once and exit (for instruction counts: run under "
                    "valgrind --tool=callgrind with this stage and with 'none', and subtract)")
    a = ap.parse_args()
    blocks = realistic.blocks(a.n, seed=a.seed, now=NOW)
    stream = wire_stream(blocks)
    records = stage_wire(stream)
    msgs = stage_build(records)
    emit_path(msgs)  # the real list loop runs (and is warm)
    if a.stage:
        if a.stage != "none":
            {"wire": stage_wire, "build": stage_build, "json": stage_json}[a.stage](
                {"wire": stream, "build": records, "json": msgs}[a.stage])
        return
    if a.profile:
        fn, arg = {"wire": (stage_wire, stream), "build": (stage_build, records), "json": (stage_json, msgs)}[a.profile]
        prof = cProfile.Profile()
        prof.runcall(fn, arg)
        pstats.Stats(prof).sort_stats("tottime").print_stats(a.top)
        return
    times: dict[str, list[float]] = {"wire": [], "build": [], "json": []}
    for _ in range(a.repeat):  # interleaved
        times["wire"].append(timed(stage_wire, stream)[0])
        times["build"].append(timed(stage_build, records)[0])
        times["json"].append(timed(stage_json, msgs)[0])
    n = len(records)
    print(f"{n} messages, {len(stream) / n:.0f} bytes of FETCH response each, {a.repeat} interleaved runs")
    total_min = total_med = 0.0
    for name, ts in times.items():
        lo, med = min(ts) / n * 1e6, statistics.median(ts) / n * 1e6
        total_min += lo
        total_med += med
        print(f"  {name:6} {lo:7.2f} us/msg min   {med:7.2f} median   {max(ts) / n * 1e6:7.2f} max")
    print(f"  {'total':6} {total_min:7.2f} us/msg min   {total_med:7.2f} median")


if __name__ == "__main__":
    main()
