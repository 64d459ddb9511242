"""Pure parts of provenance: the views' SEARCH keys, lock evidence, the stale warning, the
journal's stand-in for the keyword (replayed from hostile records too), the pulse note."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from triage_tui.domain.model import TRIAGE_KEYWORD, Message, View
from triage_tui.domain.provenance import evidence, evidence_cell, lock_state, reingest_warning, stale_warning
from triage_tui.services.triage import NO_KEYWORDS_SHORT, journal_ignored
from triage_tui.tui.widgets.pulse import PulseState, pulse_lines

NOW = datetime(2026, 5, 1, tzinfo=UTC)
CTX = {"server": "s", "user": "u", "mailbox": "INBOX"}


def test_views_search_keys() -> None:
    assert View.IGNORED.search == f"SEEN UNDELETED KEYWORD {TRIAGE_KEYWORD}"
    assert View.SEEN_STUCK.search == f"SEEN UNDELETED UNKEYWORD {TRIAGE_KEYWORD}"
    assert View.SEEN.search == "SEEN UNDELETED"
    assert Message(uid=1, uidvalidity=1, flags=("\\Seen", "$triageignored")).ignored  # case-insensitive


def test_lock_evidence() -> None:
    m = Message(uid=1, uidvalidity=1, internaldate=NOW - timedelta(days=3), flags=("\\Seen",))
    assert lock_state(m, locks_read=False) == "unknown" and evidence_cell(m, False) == "?"
    assert lock_state(m, True) == "expired"
    m.lock, m.lock_ttl = "1", 120
    assert evidence_cell(m, True) == "held 2m"
    m.lock_ttl = -1
    assert evidence_cell(m, True) == "no-expiry"
    m.extra["lock_error"] = "Redis unavailable: x"
    assert lock_state(m, True) == "unknown"
    e = evidence(m, NOW, True, timedelta(days=2))
    assert e["older_than_stale_limit"] is True and e["age_seconds"] == 3 * 86400


def test_stale_warning_counts() -> None:
    day = 86400.0
    assert stale_warning([day, 2 * day], timedelta(days=2)) is None  # not older: equal is not
    w = stale_warning([None, 3 * day, 21 * day, day], timedelta(days=2))
    assert w is not None and w.startswith("2 of 4 are older than the stale limit (2d)") and "3w old" in w
    assert reingest_warning([5, 5, 6], {5: 9 * day}, timedelta(days=2), unsee=True).startswith(  # type: ignore[union-attr]
        "1 of 2 are older than the stale limit (2d): un-seeing and releasing them")
    assert stale_warning([], timedelta(days=2)) is None


def rec(op: str, phase: str, **kw: object) -> dict[str, object]:
    return {**CTX, "op": op, "phase": phase, **kw}


def test_journal_stand_in_replays_decisions() -> None:
    records = [
        rec("a", "begin", action="mark-seen", uidvalidity=7, keyword=None, keyword_refused="no \\*"),
        rec("a", "progress", action="mark-seen", done="1:5"),
        rec("k", "begin", action="mark-seen", uidvalidity=7, keyword=TRIAGE_KEYWORD),  # the server says it
        rec("k", "progress", action="mark-seen", done="3"),
        rec("b", "begin", action="mark-unseen", uidvalidity=7, keyword=None, keyword_refused="no \\*"),
        rec("b", "progress", action="mark-unseen", done="4:6"),
        rec("c", "begin", action="undo", undoes="b", reverse="mark-seen", uidvalidity=7, keyword_refused="x"),
        rec("c", "progress", action="undo", done="4:6"),  # 6 was never ignored: stays out
        rec("o", "begin", action="mark-seen", uidvalidity=8, keyword_refused="x"),  # other UIDVALIDITY
        rec("o", "progress", action="mark-seen", done="100"),
        {**rec("x", "begin", action="mark-seen", uidvalidity=7, keyword_refused="x"), "mailbox": "Other"},
        rec("x", "progress", action="mark-seen", done="200"),
    ]
    ignored, refused = journal_ignored(records, "s", "u", "INBOX", 7)
    assert ignored == {1, 2, 4, 5} and refused


def test_journal_stand_in_survives_hostile_records() -> None:
    records = [
        rec("a", "begin", action="mark-seen", uidvalidity=7, keyword_refused="x"),
        rec("a", "progress", done="1:4294967295"),  # absurd: refused by the parser, names nothing
        rec("a", "progress", done="\u202e1:3"),
        rec("a", "progress", done=["1"]),
        rec("a", "progress", done="2"),
        {"op": 5, "phase": "progress", "done": "9", **CTX},
        rec("z", "progress", done="9"),  # no begin
        rec("u", "begin", action="undo", undoes=["a"], reverse="mark-seen", uidvalidity=7),
        rec("u", "progress", done="2"),
    ]
    assert journal_ignored(records, "s", "u", "INBOX", 7) == ({2}, True)


def test_pulse_note_when_keywords_are_refused() -> None:
    _one, two = pulse_lines(PulseState(connected=True, keyword_note=NO_KEYWORDS_SHORT))
    assert any(NO_KEYWORDS_SHORT in text for _, text, *_ in two)
    _one, two = pulse_lines(PulseState(connected=True))
    assert not any("journal" in text for _, text, *_ in two)
