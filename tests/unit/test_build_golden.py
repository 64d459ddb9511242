"""Every built row stays byte-identical while the list path is made faster (issue 13, goal 1).

``build_message`` (header parsing, RFC 2047 decoding, key decoding, verdicts, GitLab's outcome)
runs over a large deterministic corpus: realistic header blocks in many scripts
(tests/realistic_headers.py), the mutation fuzzer's cases (tests/mutations.py: absurd dates, 1 MB
values, every charset Python knows, control/bidi/invisible characters...), the hostile corpus
and the demo backlog (every key kind). Each row's ``to_json(now)`` plus its outcome's rule is
hashed and compared with ``tests/data/build_golden.json.gz``, generated from the code before the
optimisation; every 10th case is stored whole, so a difference there shows the fields.

Regenerate (only when a result is meant to change, and say why in the commit):

    PYTHONPATH=. .venv/bin/python -m tests.unit.test_build_golden --write
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from tests import mutations
from tests import realistic_headers as realistic
from tests.corpus.nasty import GENERATORS
from triage_tui.domain.analysis import build_message
from triage_tui.domain.model import Message

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "build_golden.json.gz"
NOW = mutations.NOW
CONFIGS = mutations.CONFIGS
FULL_EVERY = 10


def corpus() -> Iterator[tuple[str, bytes, object, object, int, tuple[str, ...]]]:
    """(name, header bytes, config, INTERNALDATE, size, flags), always the same."""
    rng = random.Random(1313)
    flag_sets = ((), ("\\Recent",), ("\\Seen",), ("\\Seen", "$TriageIgnored"), ("\\Deleted", "\\Seen"))
    for i, (raw, t, size) in enumerate(realistic.blocks(2500, seed=13, now=NOW)):
        cfg = CONFIGS[0] if i % 5 else CONFIGS[1 + (i // 5) % 2]
        yield f"realistic/{i}", raw, cfg, t, size, rng.choice(flag_sets)
    for case in mutations.cases(20261204, 3000):
        yield f"mutation/{case.index}/{case.seed_name}", case.raw, case.config, case.internaldate, len(case.raw), ()
    for name, gen, _why in GENERATORS:
        raw = gen()
        for j, cfg in enumerate(CONFIGS):
            yield f"nasty/{name}/{j}", raw, cfg, NOW - timedelta(days=j), len(raw), ()
    from triage_tui.demo.backlog import build_backlog  # noqa: PLC0415

    backlog = build_backlog(size=600, seed=7, now=NOW)
    for i, dm in enumerate(backlog.messages):
        raw = dm.raw
        end = raw.find(b"\r\n\r\n")
        head = raw[:end + 4] if end >= 0 and i % 2 else raw  # the header block, or the whole message
        yield f"demo/{i}/{dm.kind}", head, CONFIGS[i % 3], NOW - timedelta(hours=i), len(raw), ()
    # header blocks as bytes, as str, empty and None
    for j, raw in enumerate((b"", None, b"\r\n", b"From: a@b\r\n", "From: =?utf-8?B?w6k=?= <a@b>\r\n\r\n")):
        yield f"edge/{j}", raw, CONFIGS[0], NOW, 0, ()


def record(m: Message) -> str:
    d = m.to_json(NOW)
    d["outcome_rule"] = m.outcome.rule if m.outcome is not None else None
    return json.dumps(d, sort_keys=True, ensure_ascii=True, default=repr)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:24]


def compute() -> tuple[list[str], list[str], dict[str, str]]:
    names, hashes, full = [], [], {}
    for i, (name, raw, cfg, t, size, flags) in enumerate(corpus()):
        m = build_message(i + 1, 77, flags, t, size, raw, cfg, NOW)  # type: ignore[arg-type]
        rec = record(m)
        names.append(name)
        hashes.append(digest(rec))
        if i % FULL_EVERY == 0:
            full[str(i)] = rec
    return names, hashes, full


def test_every_row_is_as_before() -> None:
    golden = json.loads(gzip.decompress(GOLDEN.read_bytes()))
    names, hashes, full = compute()
    assert names == golden["names"], "the corpus itself changed: regenerate only if that was meant"
    diff = [i for i, (a, b) in enumerate(zip(hashes, golden["hashes"], strict=True)) if a != b]
    if diff:
        shown = []
        for i in diff[:5]:
            if str(i) in golden["full"]:
                before, after = json.loads(golden["full"][str(i)]), json.loads(full[str(i)])
                fields = {k: (before.get(k), after.get(k)) for k in sorted(set(before) | set(after))
                          if before.get(k) != after.get(k)}
                shown.append(f"{names[i]}: {fields}")
            else:
                shown.append(names[i])
        raise AssertionError(f"{len(diff)} of {len(hashes)} rows changed; first: " + "\n".join(shown))


def test_a_first_pass_build_is_the_build_or_a_stub_that_waits_for_the_second_pass() -> None:
    """``first_pass`` (a listing's first pass, without Received): every row whose key is found
    before Received is exactly the full build's; the others (held back for the second pass) are
    stubs with the same decision, UID, flags and Message-ID, none of the rest."""
    from triage_tui.domain.analysis import held_back  # noqa: PLC0415

    held = 0
    for i, (name, raw, cfg, t, size, flags) in enumerate(corpus()):
        full = build_message(i + 1, 77, flags, t, size, raw, cfg, NOW)  # type: ignore[arg-type]
        first = build_message(i + 1, 77, flags, t, size, raw, cfg, NOW, first_pass=True)  # type: ignore[arg-type]
        assert held_back(first.matched_header) == held_back(full.matched_header), name
        if held_back(full.matched_header):
            held += 1
            assert (first.uid, first.flags, first.message_id, first.matched_header) == \
                (full.uid, full.flags, full.message_id, full.matched_header), name
            assert first.subject == first.from_addr == "" and first.outcome is None, name
        else:
            assert record(first) == record(full), name
    assert held > 500  # the corpus has plenty of both


def test_the_corpus_is_large_and_varied() -> None:
    golden = json.loads(gzip.decompress(GOLDEN.read_bytes()))
    kinds = {n.split("/", 1)[0] for n in golden["names"]}
    assert {"realistic", "mutation", "nasty", "demo", "edge"} <= kinds
    assert len(golden["hashes"]) > 5000
    assert len(set(golden["hashes"])) > 4000  # the rows really differ


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.unit.test_build_golden --write")
    n, h, f = compute()
    GOLDEN.write_bytes(gzip.compress(json.dumps({"names": n, "hashes": h, "full": f}).encode(), 9, mtime=0))
    print(f"wrote {len(h)} rows ({len(set(h))} distinct) to {GOLDEN}")
