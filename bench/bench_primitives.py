"""The CPython floor of a listing: what ANY pure-Python client must spend per message (issue 13).

    PYTHONPATH=. .venv/bin/python bench/bench_primitives.py [-n 20000] [--repeat 7]

Goal 1 of issue 13 asks for about 15 µs of client CPU per message, all in. This times, on the
same realistic corpus as ``bench_build.py`` (tests/realistic_headers.py), the steps no listing can
skip, each with the cheapest CPython primitive we know for it, and nothing of ours around it:

* **wire**: one compiled regex over the FETCH stream per record (UID, FLAGS, INTERNALDATE, SIZE,
  the literal's length) and a slice of the header literal: no validation, no quoting rules;
* **text**: the header bytes as text (UTF-8, Latin-1 when that fails);
* **fields**: one ``findall`` of the header fields (name, raw value with its continuation lines)
  over the header block, nothing unfolded or lower-cased (a loop over ``str.split`` lines is
  slower: measured 14.9 against 10.7 µs);
* **RFC 2047**: decoding the encoded words of two fields only, Subject and From;
* **row**: one slots object from a ready tuple of its values;
* **JSON**: the row's values as one JSON array (no keys, the C encoder).

Their sum is a lower bound on a listing's CPU per message in CPython before the GitLab key, the
verdicts, GitLab's predicted outcome, the duplicate check or the header cache; ``ours`` lines
give what our code spends on the same steps. Process time, min of the repeats (the machine is
shared).
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_build as B  # noqa: E402

from tests import realistic_headers as realistic  # noqa: E402
from triage_tui.domain.headers import _FIELD, bytes_to_text, decode_words  # noqa: E402
from triage_tui.domain.jsonline import message_json  # noqa: E402
from triage_tui.domain.model import Message  # noqa: E402

_HEAD = re.compile(rb'\* \d+ FETCH \(UID (\d+) FLAGS \(([^)]*)\) INTERNALDATE "([^"]*)" RFC822.SIZE (\d+) '
                   rb"[^{]*\{(\d+)\}\r\n")
_ENCODE = json.JSONEncoder(ensure_ascii=True, check_circular=False).encode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--seed", type=int, default=13)
    a = ap.parse_args()

    blocks = realistic.blocks(a.n, seed=a.seed, now=B.NOW)
    stream = B.wire_stream(blocks)
    records = B.stage_wire(stream)
    msgs = B.stage_build(records)
    raws = [r.body for r in records]
    texts = [bytes_to_text(r) for r in raws]
    heads = [t.replace("\r\n", "\n") for t in texts]
    heads = [t[:e] if (e := t.find("\n\n")) >= 0 else t for t in heads]
    fields = [_FIELD.findall(t) for t in heads]
    values = [tuple(getattr(m, k) for k in Message.__slots__) for m in msgs]
    plain = [[v.isoformat() if hasattr(v, "isoformat") else v for v in t
              if not hasattr(v, "verdict") and not isinstance(v, dict)] for t in values]

    def wire() -> Any:
        out, pos, match = [], 0, _HEAD.match
        while (h := match(stream, pos)) is not None:
            s = h.end()
            n = int(h.group(5))
            out.append((int(h.group(1)), h.group(2), h.group(3), int(h.group(4)), stream[s:s + n]))
            pos = s + n + 3
        return out

    def text() -> Any:
        return [bytes_to_text(r) for r in raws]

    def split() -> Any:
        findall = _FIELD.findall
        return [findall(t) for t in heads]

    def rfc2047() -> Any:
        out = []
        for f in fields:
            d = dict(f)
            out.append((decode_words(d.get("Subject") or ""), decode_words(d.get("From") or "")))
        return out

    def row() -> Any:
        return [Message(*v) for v in values]

    def to_json() -> Any:
        return [_ENCODE(p) for p in plain]

    def ours_wire() -> Any:
        return B.stage_wire(stream)

    def ours_build() -> Any:
        return B.stage_build(records)

    def ours_json() -> Any:
        return [message_json(m, B.NOW) for m in msgs]

    floor: list[tuple[str, Callable[[], Any]]] = [
        ("wire: one regex and a slice", wire), ("text: bytes to str", text), ("fields: one findall", split),
        ("RFC 2047: Subject and From", rfc2047), ("row: a slots object", row), ("JSON: values, no keys", to_json)]
    ours: list[tuple[str, Callable[[], Any]]] = [
        ("ours: wire (read_response, parse_fetch)", ours_wire), ("ours: build_message", ours_build),
        ("ours: message_json", ours_json)]

    def best(fn: Callable[[], Any]) -> float:
        was = gc.isenabled()
        gc.disable()
        try:
            ts = []
            for _ in range(a.repeat):
                t0 = time.process_time()
                fn()
                ts.append(time.process_time() - t0)
            return min(ts) / a.n * 1e6
        finally:
            if was:
                gc.enable()

    print(f"{a.n} realistic messages, CPU µs per message, min of {a.repeat}\n")
    print("| step | µs/msg |\n|---|---:|")
    total = 0.0
    for name, fn in floor:
        us = best(fn)
        total += us
        print(f"| {name} | {us:.2f} |")
    print(f"| **CPython floor, sum** | **{total:.2f}** |")
    for name, fn in ours:
        print(f"| {name} | {best(fn):.2f} |")


if __name__ == "__main__":
    main()
