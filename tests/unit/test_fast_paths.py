"""The list path's fast paths (issue 13) against the straightforward code they replaced, on
random and hostile inputs: every result must be identical."""

from __future__ import annotations

import base64
import binascii
import random
import re

from triage_tui.domain import headers as H

_FOLD = re.compile(r"[ \t]*\n[ \t]*")
_Q_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")
_BETWEEN = re.compile(r"(\?=)[ \t\r\n]+(=\?)")


def _ref_decode_word(m: re.Match[str]) -> str:
    charset, enc, payload = m.group(1), m.group(2).lower(), m.group(3)
    try:
        if enc == "b":
            payload_b = payload.encode("ascii", errors="ignore")
            payload_b += b"=" * (-len(payload_b) % 4)
            data = base64.b64decode(payload_b, validate=False)
        else:
            data = _Q_HEX.sub(lambda h: bytes([int(h.group(1), 16)]),
                              payload.replace("_", " ").encode("latin-1", errors="replace"))
    except (binascii.Error, ValueError):
        return m.group(0)
    return H._charset_decode(data, charset)


def ref_decode_words(value: str) -> str:
    if "=?" not in value:
        return value
    value = _BETWEEN.sub(r"\1\2", value)
    return H._ENCODED_WORD.sub(_ref_decode_word, value)


_ALPHABET = ["=", "=?", "?=", "?", "_", " ", "\t", "\n", "\r", "==", "=3D", "=e9", "=E9", "=C3=A9", "=ZZ", "=4",
             "QUJD", "w6k", "é", "\u200b", "\x00", "\x85", "\xa0", "a", "Z", "/", "+", "utf-8", "?b?", "?Q?", "?q?",
             "?B?", "iso-8859-1", "koi8-r", "*en", "x", "\udcff", "😀", "=?utf-8?q?", "=?utf-8?B?", "=?x?Q?=?"]


def _random_text(rng: random.Random) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 30)))


def test_decode_words_is_as_before_on_random_input() -> None:
    rng = random.Random(2047)
    for _ in range(30_000):
        text = _random_text(rng)
        assert H.decode_words(text) == ref_decode_words(text), repr(text)


def test_decode_words_is_as_before_on_well_formed_words() -> None:
    rng = random.Random(2048)
    for _ in range(5_000):
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 20)))
        cs = rng.choice(["utf-8", "latin-1", "koi8-r", "shift_jis", "x-unknown", "utf-7", "UTF-8*en"])
        q = "".join(chr(b) if 0x21 <= b < 0x7F and chr(b) not in "?" and rng.random() < 0.7 else f"={b:02{rng.choice('Xx')}}"
                    for b in raw)
        for word in (f"=?{cs}?Q?{q}?=", f"=?{cs}?b?{base64.b64encode(raw).decode().rstrip('=')}?=",
                     f"=?{cs}?q?{q}?= \t =?{cs}?Q?{q}=?="):
            assert H.decode_words(word) == ref_decode_words(word), repr(word)


def test_unfold_is_the_regex() -> None:
    rng = random.Random(822)
    bits = [" ", "\t", "\n ", "\n\t", " \n ", "\t\n\t", "\n  ", "a", "b c", "\x0b", "\x0c", "\xa0", "\u2028", "é", "\x1c"]
    for _ in range(30_000):
        v = "".join(rng.choice(bits) for _ in range(rng.randint(0, 12)))
        assert H._unfold(v) == _FOLD.sub(" ", v).strip(), repr(v)


def test_outcome_from_the_classifiers_grouping_is_as_from_the_fields() -> None:
    from tests import mutations  # noqa: PLC0415
    from tests import realistic_headers as realistic  # noqa: PLC0415
    from triage_tui.domain import classify, outcome  # noqa: PLC0415
    from triage_tui.domain.keys import find_key  # noqa: PLC0415

    raws = [b for b, _t, _s in realistic.blocks(600, seed=5)]
    raws += [c.raw for c in mutations.cases(77, 600) if len(c.raw) < 100_000]
    raws += [b"Auto-Submitted: no\r\nAuto-Submitted: x\r\nX-Autoreply: yes\r\nX-Autoreply: yes\r\nFrom:  \r\n\r\n",
             b"From: \r\nFrom: a@b\r\nX-Autoreply: yes\r\n\r\n", b"", b"\r\n"]
    for cfg in mutations.CONFIGS:
        for raw in raws:
            h = H.Headers.parse(raw)
            info = find_key(h, cfg.address, cfg.mailbox_kind, cfg.gitlab_host)
            for size in (0, len(raw)):
                assert outcome.predict(h, info, size, cfg, grouped=classify._group(h)[0]) == \
                    outcome.predict(h, info, size, cfg), raw[:200]


def test_listing_fetch_fast_path_equals_the_general_paths(monkeypatch) -> None:  # noqa: ANN001
    """The one-regex listing shape gives what the older regex path (or the tokenizer) gave."""
    from triage_tui.services import imapwire as W  # noqa: PLC0415

    rng = random.Random(3501)
    flag_sets = [b"", b"\\Recent", b"\\Seen $TriageIgnored", b"\\Deleted \\Seen", b"$Junk caf\xc3\xa9", b"\\Seen\t\\Flagged",
                 b'"q"', b"\\Seen  \\Answered"]
    dates = [b"21-Nov-2026 20:29:37 +0000", b" 1-Nov-2026 20:29:37 -0700", b"31-Feb-2026 20:29:37 +0000",
             b"21-Xyz-2026 20:29:37 +0000", b"", b"garbage", b"21-Nov-2026 20:29:37 +9999"]
    fields = [b"FROM TO SUBJECT", b"FROM MODSEQ", b"", b"X-\"Q\""]
    cases = []
    for i in range(4000):
        head = b'* %d FETCH (UID %d FLAGS (%s) INTERNALDATE "%s" RFC822.SIZE %d BODY[HEADER.FIELDS (%s)] {%d}\r\n'
        lit = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        first = head % (i + 1, rng.randint(1, 2**32), rng.choice(flag_sets), rng.choice(dates), rng.randint(0, 10**9),
                        rng.choice(fields), len(lit))
        if rng.random() < 0.2:
            first = first.replace(b"UID", rng.choice([b"uid", b"UID 3 MODSEQ (77)", b"UID"]), 1)
        tail = rng.choice([b")\r\n", b")\r\n", b" MODSEQ (5))\r\n", b")\n"])
        cases.append(W.Response([first, tail], [lit]))
    fast = [W.parse_fetch(r) for r in cases]
    assert sum(bool(W._F_LISTING.fullmatch(r.segments[0])) and r.segments[1] == b")\r\n" for r in cases) > 800
    monkeypatch.setattr(W, "_F_LISTING", re.compile(rb"(?!)"))
    slow = [W.parse_fetch(r) for r in cases]
    for r, a, b in zip(cases, fast, slow, strict=True):
        assert a == b, r.segments


def test_the_literal_precheck_never_hides_a_literal() -> None:
    """read_response skips the {n} search on lines without '}' in their last 4 bytes: every line
    the search would match has one there."""
    from triage_tui.services import imapwire as W  # noqa: PLC0415

    rng = random.Random(9)
    bits = [b"{5}", b"{5+}", b"}", b"{", b"\r", b"\n", b" ", b"x", b"12", b"+"]
    for _ in range(50_000):
        line = b"".join(rng.choice(bits) for _ in range(rng.randint(0, 8)))
        if W._LITERAL_AT_END.search(line):
            assert b"}" in line[-4:], line


def test_hostile_flag_lists_are_not_kept() -> None:
    from triage_tui.services import imapwire as W  # noqa: PLC0415

    huge = b"\\Seen " + b"$k " * 100_000
    assert W._flags(huge)[0] == "\\Seen"
    assert huge not in W._FLAGS


def test_hostile_field_names_are_not_kept() -> None:
    """The name cache is bounded in entries and in size: a megabyte-long or ever-new field name
    is lower-cased every time, never stored."""
    long_name = "X" * 1_000_000
    h = H.Headers.parse(f"{long_name}: v\r\nFrom: a@b\r\n\r\n".encode())
    assert h.fields[0] == (long_name.lower(), "v")
    assert long_name not in H._LOWER
    for i in range(5000):
        H.Headers.parse(f"X-New-{i}: v\r\n\r\n".encode())
    assert len(H._LOWER) <= 4096
    assert H.Headers.parse(b"X-New-4999: v\r\n\r\n").get("x-new-4999") == "v"


def _row(m) -> tuple:  # noqa: ANN001
    return (m.to_json(_NOW), m.outcome)


_NOW = __import__("datetime").datetime(2026, 3, 10, 12, 0, tzinfo=__import__("datetime").UTC)


def test_value_caches_give_what_a_cold_computation_gives() -> None:
    """Rows built with every per-value cache emptied before each message equal rows built with
    warm caches, in another order (hits come from other messages), with configurations mixed."""
    from tests import mutations  # noqa: PLC0415
    from tests import realistic_headers as realistic  # noqa: PLC0415
    from triage_tui.domain import analysis  # noqa: PLC0415

    cases = [(b, t, s) for b, t, s in realistic.blocks(500, seed=31, now=_NOW)]
    cases += [(c.raw, c.internaldate, len(c.raw)) for c in mutations.cases(4242, 500) if len(c.raw) < 100_000]
    cfgs = mutations.CONFIGS
    cold = []
    for i, (raw, t, size) in enumerate(cases):
        analysis.clear_value_caches()
        cold.append(_row(analysis.build_message(i + 1, 1, (), t, size, raw, cfgs[i % len(cfgs)], _NOW)))
    order = list(range(len(cases)))
    random.Random(5).shuffle(order)
    warm: dict[int, tuple] = {}
    for _ in range(2):
        for i in order:
            raw, t, size = cases[i]
            warm[i] = _row(analysis.build_message(i + 1, 1, (), t, size, raw, cfgs[i % len(cfgs)], _NOW))
    for i, row in enumerate(cold):
        assert warm[i] == row, cases[i][0][:300]


def test_value_caches_are_bounded_against_hostile_mail() -> None:
    """Ever-new senders, recipients and subjects cannot grow the caches past their size, and a
    huge value is never kept (it is computed every time, with the same result)."""
    from triage_tui.domain import analysis, classify, keys, outcome  # noqa: PLC0415
    from triage_tui.domain.settings import AnalysisConfig  # noqa: PLC0415

    cfg = AnalysisConfig(address="incoming+%{key}@gitlab.example.com", gitlab_host="gitlab.example.com")
    analysis.clear_value_caches()
    caches = (analysis._first_address.cache, analysis._decode_words.cache, classify._sender_traits_once.cache,
              classify._impersonated_once.cache, keys._key_in_value.cache, keys._classified.cache,
              outcome._form_once.cache)
    for i in range(5000):
        raw = (f"From: \"x{i}@evil.example\" <bot{i}@a.example>\r\nTo: incoming+k{i}-issue@gitlab.example.com, "
               f"u+verify{i}@b.example\r\nSubject: =?utf-8?q?s{i}?=\r\n\r\n").encode()
        analysis.build_message(i + 1, 1, (), _NOW, 10, raw, cfg, _NOW)
        assert all(len(c) <= 2048 for c in caches)
    analysis.clear_value_caches()
    huge = "n" * 100_000
    raw = (f"From: \"{huge}@x\" <noreply@{huge}>\r\nTo: incoming+{huge}@gitlab.example.com, a+verify@{huge}\r\n"
           f"Cc: {huge}\r\nSubject: =?utf-8?q?{huge}?=\r\n\r\n").encode()
    rows = [_row(analysis.build_message(1, 1, (), _NOW, 10, raw, cfg, _NOW)) for _ in range(2)]
    assert rows[0] == rows[1]
    assert rows[0][0]["key"] == huge and rows[0][0]["subject"] == huge
    for c in caches:
        assert all(len(repr(k)) < 2000 for k in c), "a huge value was kept"


_OLD_FAST = re.compile(r"^\s*(?:[A-Za-z]{3},\s*)?(\d{1,2}) ([A-Za-z]{3}) (\d{4}) (\d\d):(\d\d)(?::(\d\d))? "
                       r"([+-])(\d\d)(\d\d)\s*(?:\([^()]*\))?\s*$")


def _old_date(value: str):  # noqa: ANN202 - parse_date before the GMT/two-digit-year fast path
    import email.utils  # noqa: PLC0415
    from datetime import UTC, datetime, timedelta, timezone  # noqa: PLC0415

    m = _OLD_FAST.match(value)
    if m:
        day, mon, year, hh, mi, ss, sign, oh, om = m.groups()
        month = H._MONTHS.get(mon.lower())
        if not month or oh >= "24" or om >= "60":
            return None
        off = timedelta(hours=int(oh), minutes=int(om))
        try:
            return datetime(int(year), month, int(day), int(hh), int(mi), int(ss or 0),
                            tzinfo=timezone(off if sign == "+" else -off))
        except ValueError:
            return None
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except Exception:  # noqa: BLE001
        return None
    if dt is None:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def test_date_fast_path_is_the_old_parser() -> None:
    """Every Date the fast path reads (numeric zones, GMT/UT/UTC/Z in any case, two-digit years,
    absurd fields) is what the code before it read (the old fast path, else email.utils), offset
    included."""
    rng = random.Random(5322)
    days = ["", "Fri, ", "fri,", "Xyz, ", "Fri,  "]
    dds = ["1", "01", "31", "0", "32", "99", "7"]
    mons = ["Jan", "feb", "MAR", "Xyz", "Dec", "sep"]
    years = ["2026", "26", "68", "69", "99", "00", "0000", "0026", "0069", "0099", "0100", "9999", "1969", "10000", "1", "123"]
    times = ["20:37:26", "20:37", "24:00:00", "23:59:60", "00:00:00", "9:00:00"]
    zones = ["+0000", "-0000", "+0100", "-0700", "+2359", "+2400", "-9999", "+0060", "GMT", "gmt", "UT", "UTC", "utc",
             "Z", "z", "EST", "PDT", "+01:00", "Gmt"]
    tails = ["", " ", " (UTC)", "  (Coordinated Universal Time) ", "\t"]
    n_fast = 0
    for _ in range(20_000):
        v = (rng.choice(days) + rng.choice(dds) + " " + rng.choice(mons) + " " + rng.choice(years) + " "
             + rng.choice(times) + " " + rng.choice(zones) + rng.choice(tails))
        n_fast += bool(H._DATE_FAST.match(v))
        got, want = H.parse_date(v), _old_date(v)
        assert got == want, v
        if got is not None:
            assert got.utcoffset() == want.utcoffset() and got.isoformat() == want.isoformat(), v
    assert n_fast > 5_000
