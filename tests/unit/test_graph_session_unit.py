"""The pure parts of the Graph inbox: IMAP criteria over Graph messages (three-valued, never a
wrong subset), the header block rebuilt from internetMessageHeaders (no field can be forged),
and the persistent id map (stable, shared between processes, 0600)."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from triage_tui.errors import OperationFailed
from triage_tui.services.graphcriteria import TRIAGE_CATEGORY, Row, parse
from triage_tui.services.graphidmap import IdMap, map_path
from triage_tui.services.graphsession import _header_block, _header_fields

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def row(uid: int = 1, *, read: bool = False, cats: tuple[str, ...] = (), days: float = 1, deleted: bool = False) -> Row:
    return Row(uid=uid, gid=f"g{uid}", is_read=read, categories=cats, received=NOW - timedelta(days=days),
               deleted=deleted)


def hits(criteria: str, r: Row) -> bool | None:
    return parse(criteria).pred(r, NOW)


def test_views_are_exact() -> None:
    ignored = row(read=True, cats=("Blue", TRIAGE_CATEGORY.lower()))
    stuck = row(read=True)
    assert hits("UNSEEN", row()) is True and hits("UNSEEN", stuck) is False
    assert hits("SEEN UNDELETED KEYWORD $TriageIgnored", ignored) is True
    assert hits("SEEN UNDELETED UNKEYWORD $TriageIgnored", ignored) is False
    assert hits("SEEN UNDELETED UNKEYWORD $TriageIgnored", stuck) is True
    assert hits("DELETED", row(deleted=True)) is True and hits("UNDELETED", row(deleted=True)) is False
    assert parse("DELETED").folders == {"deleted"}
    assert parse("UNSEEN").folders == {"main"} and parse("ALL").folders == {"main"}
    assert parse("OR DELETED SEEN").folders == {"main", "deleted"}
    assert parse("NOT UNDELETED").folders == {"main", "deleted"}
    assert parse("DELETED UNDELETED").folders == set()
    assert parse("UNSEEN SINCE 1-Mar-2026").server == ["isRead eq false", "receivedDateTime ge 2026-03-01T00:00:00Z"]
    assert parse("NOT SEEN").server == []  # only top-level conjuncts go to $filter


def test_dates_ages_and_uids() -> None:
    r = row(uid=7, days=3)  # received 7-Mar-2026 12:00 UTC
    assert hits("SINCE 7-Mar-2026", r) and not hits("SINCE 8-Mar-2026", r)
    assert hits("BEFORE 8-Mar-2026", r) and not hits("BEFORE 7-Mar-2026", r)
    assert hits("ON 7-mar-2026", r) and not hits("ON 6-Mar-2026", r)
    assert hits("OLDER 3600", r) and not hits("YOUNGER 3600", r)
    assert hits("UID 1:5,7", r) is True
    assert hits("UID 8:10", r) is False
    no_date = Row(uid=1, gid="g", is_read=False, categories=(), received=None, deleted=False)
    assert hits("SINCE 1-Jan-2000", no_date) is None  # unknown: kept, never dropped on a guess


def test_text_criteria_are_unknown_so_a_superset_even_under_not() -> None:
    r = row()
    for c in ('FROM "x"', 'NOT FROM "x"', 'OR FROM "x" SUBJECT "y"', "LARGER 100", 'NOT (FROM "a" SMALLER 5)',
              'HEADER "List-Id" "x"'):
        assert hits(c, r) is None, c
    assert hits('UNSEEN NOT FROM "x"', row(read=True)) is False  # a known False still excludes
    assert hits('OR SEEN FROM "x"', row(read=True)) is True


@pytest.mark.parametrize("bad", ["RECENT", "MODSEQ 1", "KEYWORD $Other", "1:4", "ANSWERED", "(UNSEEN", "UNSEEN)",
                                 "SINCE 31-Feb-2026", "SINCE yesterday", "OLDER x", "", "UID", "UID a:b", '"x'])
def test_what_graph_cannot_answer_fails(bad: str) -> None:
    with pytest.raises(OperationFailed):
        parse(bad)


def test_header_block_rebuilds_fields_and_forges_none() -> None:
    headers = [{"name": "Subject", "value": "hi\r\nBcc: victim@example.org"}, {"name": "X-Bad Name", "value": "v"},
               {"name": "From:", "value": "v"}, {"name": "To", "value": "a@b"}, {"name": "Received", "value": "r"},
               "junk", {"name": 5, "value": "x"}, {"name": "Üml", "value": "x"}, {"name": "Subject", "value": "\ud800"}]
    block = _header_block(headers, None)
    assert block == b"Subject: hi  Bcc: victim@example.org\r\nTo: a@b\r\nReceived: r\r\nSubject: ?\r\n\r\n"
    only = _header_block(headers, _header_fields("UID BODY.PEEK[HEADER.FIELDS (TO RECEIVED)]"))
    assert only == b"To: a@b\r\nReceived: r\r\n\r\n"
    assert _header_block(None, None) == b"\r\n"


def test_the_id_map_is_stable_shared_and_private(tmp_path: Path) -> None:
    path = map_path(tmp_path, "https://graph.microsoft.com/", "T", "Box@X", "Inbox")
    assert path == map_path(tmp_path, "https://graph.microsoft.com", "t", "box@x", "inbox")
    a, b = IdMap(path), IdMap(path)
    assert a.uidvalidity == b.uidvalidity
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    first = a.assign([("late", "2026-03-02T00:00:00Z", "inbox"), ("early", "2026-03-01T00:00:00Z", "inbox")])
    assert first == {"late": 2, "early": 1}  # receivedDateTime order among those first seen together
    errors: list[BaseException] = []

    def worker(m: IdMap, tag: str) -> None:
        try:
            for i in range(50):
                m.assign([(f"{tag}{i}", f"2026-03-03T00:00:{i % 60:02d}Z", "inbox"), (f"shared{i}", "2026-03-04T00:00:00Z",
                                                                                     "inbox")])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(m, t)) for m, t in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    c = IdMap(path)
    for m in (a, b):
        m.refresh()
        for gid in ["early", "late"] + [f"shared{i}" for i in range(50)]:
            assert m.uid(gid) == c.uid(gid) is not None
    uids = [c.uid(f"{t}{i}") for t in "ab" for i in range(50)] + [c.uid(f"shared{i}") for i in range(50)]
    assert len(set(uids)) == 150 and b.gid(a.uid("early") or 0) == "early"
    assert a.entry(10**9) is None and a.uid("never") is None


def test_a_broken_map_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "graph-ids" / "x.sqlite"
    path.parent.mkdir(mode=0o700)
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OperationFailed, match="move it aside"):
        IdMap(path)


def _ids(path: Path, sql: str, *args: object) -> None:
    db = sqlite3.connect(path)
    try:
        db.execute(sql, args)
        db.commit()
    finally:
        db.close()


@pytest.mark.parametrize("change", [
    "UPDATE ids SET uid = 9 WHERE uid = 2",  # the UID of another message
    "UPDATE ids SET gid = 'AAMkB' WHERE uid = 2",
    "UPDATE ids SET received = '2020-01-01T00:00:00Z' WHERE uid = 1",
    "UPDATE ids SET folder = 'deleteditems' WHERE uid = 3",
])
def test_a_row_changed_on_disk_refuses_the_map_in_one_line(tmp_path: Path, change: str) -> None:
    """SQLite checks its pages, not the values: a UID changed on disk would name another message,
    and undo would act on it."""
    path = tmp_path / "graph-ids" / "x.sqlite"
    m = IdMap(path)
    m.assign([("AAMkA", "2026-01-01T00:00:01Z", "inbox"), ("AAMkZ", "2026-01-01T00:00:02Z", "inbox"),
              ("AAMkQ", "2026-01-01T00:00:03Z", "inbox")])
    m.assign([("AAMkQ", "2026-01-01T00:00:03Z", "archive")])  # moved: its row (and check) rewritten
    m.close()
    again = IdMap(path)
    assert again.entry(3) == ("AAMkQ", "2026-01-01T00:00:03Z", "archive")
    again.close()
    _ids(path, change)
    with pytest.raises(OperationFailed, match="changed on disk.*move it aside"):
        IdMap(path)


def test_a_map_from_before_the_check_is_read_and_sealed(tmp_path: Path) -> None:
    path = tmp_path / "graph-ids" / "old.sqlite"
    path.parent.mkdir(mode=0o700)
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);"
                     "CREATE TABLE ids (uid INTEGER PRIMARY KEY, gid TEXT NOT NULL UNIQUE, received TEXT NOT NULL,"
                     " folder TEXT NOT NULL);"
                     "INSERT INTO meta VALUES ('uidvalidity', '1700000000');"
                     "INSERT INTO ids VALUES (1, 'AAMkA', '2026-01-01T00:00:01Z', 'inbox');"
                     "INSERT INTO ids VALUES (2, 'AAMkZ', '2026-01-01T00:00:02Z', 'inbox');")
    db.commit()
    db.close()
    m = IdMap(path)
    assert (m.uidvalidity, m.uid("AAMkZ"), m.uidnext) == (1700000000, 2, 3)
    m.close()
    _ids(path, "UPDATE ids SET uid = 5 WHERE uid = 2")
    with pytest.raises(OperationFailed, match="changed on disk"):
        IdMap(path)
