"""The header cache's row encoding: what goes in comes back, to the byte, for values nobody
would write by hand; damaged chunks raise (and are then fetched again, never shown)."""

from __future__ import annotations

import marshal
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from triage_tui.domain.model import Message
from triage_tui.domain.outcome import Outcome
from triage_tui.domain.settings import AnalysisConfig
from triage_tui.services import cache as cache_mod
from triage_tui.services.cache import Rebuilder, decode_chunk, encode_chunk, values

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
ODD = ["", "\udcff\udc80 lone surrogates", "\u202eevil\u2066", "\x00\x1b[31m\x07", "é" * 10_000,
       "😀 emoji", "\r\n\t", "a; b; duplicate: same Message-ID under UIDs 1, 2"]


def _msg(uid: int, text: str, tz: timezone, when: datetime) -> Message:
    m = Message(uid=uid, uidvalidity=7, flags=("\\Seen", "$Odd\udcff"), internaldate=when.astimezone(tz),
                size=2**40, from_name=text, from_addr=text[:50], to=text, cc=text, subject=text,
                date=when.astimezone(tz) if uid % 2 else None, message_id=text, kind="reply", key=text or None,
                project_id=2**62, project_slug=text, project_path=None, issue_iid=-1, reply_key=text,
                namespace_id=0, matched_header="To", bot=True, bot_reason=text or None, suspicious=bool(uid % 3),
                suspicious_reason=text, no_key=False, problems=(text, "x") if text else ())
    m.outcome = Outcome("rejected", None, text, True, "rule")
    return m


@pytest.mark.parametrize("tz", [UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=23, minutes=59)),
                                timezone(timedelta(minutes=30))])
@pytest.mark.parametrize("when", [datetime(1, 1, 1, tzinfo=UTC) + timedelta(days=2),
                                  datetime(9999, 12, 30, tzinfo=UTC), NOW - timedelta(days=2),
                                  NOW - timedelta(days=2, microseconds=1)])
def test_rows_round_trip_exactly(tz: timezone, when: datetime) -> None:
    msgs = [_msg(i + 1, t, tz, when) for i, t in enumerate(ODD)]
    for m in msgs:
        m.stale = m.internaldate is not None and (NOW - m.internaldate) > timedelta(days=2)
    chunk = decode_chunk(encode_chunk([(m.uid, values(m)) for m in msgs]))  # type: ignore[misc]
    rebuild = Rebuilder(7, timedelta(days=2), NOW)
    back = [rebuild(uid, ("\\Seen", "$Odd\udcff"), v) for uid, v in chunk]
    assert [b.to_json(NOW) for b in back] == [m.to_json(NOW) for m in msgs]
    assert [b.internaldate.utcoffset() for b in back] == [m.internaldate.utcoffset() for m in msgs]  # type: ignore[union-attr]


def test_time_dependent_or_unanalysed_rows_are_not_cached() -> None:
    assert values(Message(uid=1, uidvalidity=1)) is None  # no INTERNALDATE: its checks used now
    m = Message(uid=1, uidvalidity=1, internaldate=NOW, problems=("header not analysed (MemoryError): ...",))
    assert values(m) is None


@pytest.mark.parametrize("blob", [b"", b"\xff", marshal.dumps({"a": 1}), marshal.dumps([(1, (2,))]),
                                  marshal.dumps([("1", tuple(range(27)))]), marshal.dumps([1, 2]),
                                  marshal.dumps(list(range(5)))])
def test_damaged_chunks_raise(blob: bytes) -> None:
    with pytest.raises((ValueError, EOFError, TypeError)):
        decode_chunk(blob)


def test_damaged_values_raise() -> None:
    m = _msg(1, "x", UTC, NOW)
    v = list(values(m))  # type: ignore[arg-type]
    rebuild = Rebuilder(7, timedelta(days=2), NOW)
    for bad in ("not a date", "2026-01-01T00:00:00", 12):
        v[0] = bad
        with pytest.raises((ValueError, TypeError)):
            rebuild(1, (), tuple(v))


def test_stored_flags_split_back_exactly() -> None:
    from triage_tui.services.cache import flags_text, split_flags

    flags = ("\\Seen", "$a\x1cb", "$c\u2028d", "$e\xa0f", "\\Recent", "$x\udcff")
    text = flags_text(flags)
    assert split_flags(text) == tuple(f for f in flags if f != "\\Recent")
    assert split_flags("") == ()


def test_a_flag_sqlite_cannot_store_is_not_kept_stale(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A lone surrogate in a flag (a hostile server): that row is dropped, never left with its
    old flags, and nothing raises."""
    from triage_tui.domain.settings import AnalysisConfig
    from triage_tui.services.cache import HeaderCache, split_flags

    problems: list[str] = []
    c = HeaderCache(tmp_path / "c" / "x.sqlite3", AnalysisConfig(), on_problem=problems.append)
    loaded = c.load(7, 10, [])
    assert loaded is not None
    good, bad = _msg(1, "a", UTC, NOW), _msg(2, "b", UTC, NOW)
    good.flags, bad.flags = ("\\Seen",), ("\\Seen", "$\udcff")
    token = c.commit(loaded.token, rows=c.rows_of([good, bad], 7), modseq=10)
    assert token is not None
    loaded = c.load(7, 10, [1, 2])
    assert loaded is not None and set(loaded.rows) == {1}
    token = c.commit(loaded.token, flags={1: ("$\udcff",)}, modseq=10)
    loaded = c.load(7, 10, [1])
    assert loaded is not None and loaded.rows == {} and not problems
    assert split_flags("") == ()



def test_the_fingerprint_covers_the_code_that_shapes_a_row(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A changed classifier, decoder or header list (the domain, the wire parser, the listing)
    re-analyses even when the version number did not move."""
    files = cache_mod._code_files()
    assert {"keys.py", "classify.py", "headers.py", "model.py", "imapwire.py", "triage.py", "cache.py"} \
        <= {p.name for p in files}
    cfg = AnalysisConfig()
    base = cache_mod.fingerprint(cfg)
    for name in ("imapwire.py", "triage.py", "keys.py"):
        orig = next(p for p in files if p.name == name)
        copy = tmp_path / orig.parent.name / name
        copy.parent.mkdir(exist_ok=True)
        copy.write_bytes(orig.read_bytes() + b"\n# changed\n")
        monkeypatch.setattr(cache_mod, "_code_files", lambda o=orig, c=copy: [c if p == o else p for p in files])
        monkeypatch.setattr(cache_mod, "_CODE_HASH", None)
        assert cache_mod.fingerprint(cfg) != base, name
    monkeypatch.setattr(cache_mod, "_code_files", lambda: files)
    monkeypatch.setattr(cache_mod, "_CODE_HASH", None)
    assert cache_mod.fingerprint(cfg) == base  # stable


def test_a_chunk_is_checked_whole() -> None:
    from triage_tui.services.cache import STORED  # noqa: PLC0415

    good = tuple(range(len(STORED)))
    assert decode_chunk(marshal.dumps([(1, good), (2, good)])) == [(1, good), (2, good)]
    assert decode_chunk(marshal.dumps([])) == []
    for bad in ([(1, good), (2, good[:-1])], [(1, good), (True, good)], [(1, good, 3)], [[1, good]],
                [(1, good), (2, list(good))], [(1, good), 5], [(1, good), ("2", good)], [(1, good), (2.0, good)]):
        with pytest.raises(ValueError):
            decode_chunk(marshal.dumps(bad))
