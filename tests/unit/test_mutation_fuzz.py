"""The header mutation fuzzer (``tests/mutations.py``) in the normal suite: a bounded, seeded run
through every path a row takes, plus the value families swept exhaustively where that is cheap
(every date offset, every charset Python knows). ``bench/fuzz_soak.py`` runs the same cases by
the hundred thousand."""

from __future__ import annotations

import pytest

from tests import mutations as M
from triage_tui.domain.headers import decode_words, parse_date

CASES = 900  # ~4 s here; the soak runs 100k


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mutated_real_headers_never_cost_more_than_their_row(seed: int) -> None:
    batch = []
    for case in M.cases(seed, CASES // 3):
        try:
            batch.append(M.check(case, decode=case.index % 4 == 0))
        except Exception as exc:
            raise AssertionError(f"case {case.index} of seed {seed} ({case.seed_name}: {case.what}): "
                                 f"{type(exc).__name__}: {exc}") from exc
        if len(batch) == 100:
            M.check_model(batch)
            batch = []
    M.check_model(batch)


def test_the_generator_is_deterministic_and_covers_every_family() -> None:
    a = [(c.seed_name, c.what, c.raw) for c in M.cases(5, 300)]
    assert a == [(c.seed_name, c.what, c.raw) for c in M.cases(5, 300)]
    whats = " ".join(w for _, w, _ in a)
    for family in ("date", "encoded word", "8-bit", "unbalanced", "control", "bidi", "address", "empty",
                   "continuation", "charset name"):
        assert family in whats, family
    assert len({s for s, _, _ in a}) > 30  # corpus, hostile corpus and demo seeds all drawn


def test_every_offset_and_every_charset() -> None:
    for n in range(10000):
        for sign in "+-":
            parse_date(f"Tue, 10 Mar 2026 10:00:00 {sign}{n:04d}")
    for cs in M.charsets():
        for word in (f"=?{cs}?B?/+7/AA==?=", f"=?{cs}?Q?=FF=FE=00=D8x?=", f"=?{cs}?Q?+2D0-?=", f"=?{cs}?B?eJwLSQ==?="):
            decode_words(word).encode("utf-8")


def test_one_megabyte_values_in_every_listed_field() -> None:
    for field in ("From", "To", "Cc", "Subject", "Date", "Received", "References", "Message-Id", "Content-Type"):
        for unit in ("(", "=?utf-8?B?QQ==?= ") if field != "To" else ("a@b.c, ", "; "):
            value = (unit * (1_000_000 // len(unit) + 1))[:1_000_000]
            block = dict(M.seeds())["new_issue_postfix.eml"]
            raw = block.replace(b"\r\n\r\n", f"\r\n{field}: {value}\r\n\r\n".encode())
            M.check(M.Case(0, "new_issue_postfix.eml", f"{field}: 1 MB of {unit!r}", raw, M.CONFIGS[0], M.NOW),
                    decode=False)
