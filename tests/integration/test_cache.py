"""The persistent header cache against the real Dovecot: a warm start lists exactly what a cold
one does (new mail, flags another client changed, expunges, a UIDVALIDITY reset, a config
change), fetches no header it already has, keeps its files private, and any broken cache costs
one line and the speed, never a row."""

from __future__ import annotations

import json
import marshal
import os
import sqlite3
import stat
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Mailbox
from tests.integration.test_undo_exact import store as _flag  # another client's flag change
from tests.mailgen import ADDRESS, backlog, message
from triage_tui.domain.analysis import AnalysisConfig
from triage_tui.domain.model import View
from triage_tui.services import cache as cache_mod
from triage_tui.services.cache import HeaderCache
from triage_tui.services.imap import Limits
from triage_tui.services.journal import AuditJournal
from triage_tui.services.triage import TriageService

CFG = AnalysisConfig(address=ADDRESS)
NOW = datetime.now(UTC)

# rows nobody here wrote by hand: encoded words in several scripts, bidi and invisible
# characters, C0 controls, an absurd Date, no Date, a lone surrogate-producing byte, a huge subject
NASTY: list[bytes] = [
    message(subject="=?utf-8?b?0J/RgNC40LLQtdGCINC80LjRgCDwn5iA?= =?iso-8859-1?q?caf=E9?="),
    message(subject="evil \u202egnp.exe \u200b\u2066x\u2069", from_="\u202eBob <bob@example.org>"),
    message(subject="ctl \x1b[31mred\x07", date="Mon, 1 Jan 2024 00:00:00 +2400"),
    message(subject="no date", date="garbage", extra={"Received": "from x by y; Mon, 1 Jan 2024 00:00:00 +0000"}),
    message(key=None, subject="x" * 5000, to="someone@elsewhere.example"),
    b"From: \xff\xfe broken <a@b>\r\nSubject: \xc3\x28 bad utf8\r\nTo: " + ADDRESS.replace("%{key}", "k-1").encode()
    + b"\r\n\r\nbody\r\n",
    b"Subject: only a subject\r\n\r\n",
    message(subject="dup one", message_id="<same@example.org>"),
    message(subject="dup two", message_id="<same@example.org>"),
]


def _seed(mb: Mailbox, n: int = 24) -> None:
    now = time.time()
    rows = backlog(n, now=now, seen_every=4, deleted_every=7)
    rows += [(raw, now - 3 * 86_400 + i, "") for i, raw in enumerate(NASTY)]
    mb.seed(rows)


class Spy:
    """Which UIDs a service fetched headers for."""

    def __init__(self, svc: TriageService) -> None:
        self.uids: list[int] = []
        orig = svc._resumable_fetch

        def spy(uidvalidity: int, uids: list[int], items: str) -> Iterator[Any]:
            self.uids.extend(u for u in uids if u not in self.uids)  # two passes: once
            yield from orig(uidvalidity, uids, items)

        svc._resumable_fetch = spy  # type: ignore[method-assign]


def _svc(mb: Mailbox, path: Path | None, cfg: AnalysisConfig = CFG, problems: list[str] | None = None,
         **kw: Any) -> tuple[TriageService, Spy]:
    cache = HeaderCache(path, cfg, on_problem=(problems if problems is not None else []).append, **kw) \
        if path is not None else None
    svc = TriageService(mb.settings(), read_only=True, journal=AuditJournal(), analysis=cfg, cache=cache)
    return svc, Spy(svc)


def _rows(svc: TriageService, view: View = View.ALL, now: datetime = NOW) -> list[dict[str, Any]]:
    try:
        return [m.to_json(now) for m in sorted(svc.list(view, now=now), key=lambda m: m.uid)]
    finally:
        svc.close()


def _cold(mb: Mailbox, view: View = View.ALL, cfg: AnalysisConfig = CFG, now: datetime = NOW) -> list[dict[str, Any]]:
    return _rows(_svc(mb, None, cfg)[0], view, now)


def _db_rows(path: Path) -> dict[int, str]:
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT uid, flags FROM rows").fetchall())
    finally:
        db.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "triage-tui" / "box.sqlite3"


def full_disk(m: pytest.MonkeyPatch) -> None:
    """Every cache connection opened under ``m`` fails its first real write with SQLITE_FULL."""
    connect = HeaderCache._connect

    def full(self: HeaderCache) -> sqlite3.Connection:
        db = connect(self)
        db.execute("PRAGMA max_page_count = 4")
        return db

    m.setattr(HeaderCache, "_connect", full)


def _refreshes(svc: TriageService) -> list[int]:
    """The ``since`` of every flag refresh ``svc`` asks for after its load (one round trip of its
    own, not the one sent with the SEARCH)."""
    asked: list[int] = []
    own = svc._changed_and_recent

    def counted(uidvalidity: int, since: int) -> tuple[dict[int, tuple[str, ...]], list[int]]:
        asked.append(since)
        return own(uidvalidity, since)

    svc._changed_and_recent = counted  # type: ignore[method-assign]
    return asked


def _warm_up(mb: Mailbox, path: Path, view: View = View.ALL) -> list[dict[str, Any]]:
    svc, _ = _svc(mb, path)
    return _rows(svc, view)


@pytest.mark.parametrize("view", [View.ALL, View.UNSEEN])
def test_warm_start_equals_cold_listing_and_fetches_no_header(mailbox: Mailbox, path: Path, view: View) -> None:
    _seed(mailbox)
    cold = _cold(mailbox, view)
    problems: list[str] = []
    first, spy1 = _svc(mailbox, path, problems=problems)
    assert _rows(first, view) == cold
    assert sorted(spy1.uids) == sorted({r["uid"] for r in cold})
    second, spy2 = _svc(mailbox, path, problems=problems)
    assert _rows(second, view) == cold
    assert spy2.uids == [], "a warm start fetched headers it had"
    assert not problems
    # the rows survived the trip byte for byte, hostile text included
    assert any("\u202e" in r["subject"] for r in cold) and any("\x1b" in r["subject"] for r in cold)


def test_stale_and_age_are_recomputed_at_load(mailbox: Mailbox, path: Path) -> None:
    mailbox.seed(backlog(6, now=time.time()))
    _warm_up(mailbox, path)
    later = NOW + timedelta(days=30)
    warm = _rows(_svc(mailbox, path)[0], View.ALL, later)
    assert warm == _cold(mailbox, View.ALL, now=later)
    assert all(r["stale"] for r in warm) and all(r["age_seconds"] > 29 * 86_400 for r in warm)


def test_new_mail_appears_and_only_it_is_fetched(mailbox: Mailbox, path: Path) -> None:
    _seed(mailbox, 10)
    _warm_up(mailbox, path)
    c = mailbox.client()
    try:
        c.append("INBOX", message(subject="arrived later", key="grp-proj-3-glimt-new1-issue"))
    finally:
        c.logout()
    svc, spy = _svc(mailbox, path)
    warm = _rows(svc)
    assert warm == _cold(mailbox)
    assert [r["subject"] for r in warm if r["uid"] in spy.uids] == ["arrived later"]
    assert max(_db_rows(path)) == warm[-1]["uid"]


@pytest.mark.parametrize("condstore", [True, False], ids=["changedsince", "flags-refresh"])
def test_flags_changed_by_another_client_show(mailbox: Mailbox, path: Path, condstore: bool,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    if not condstore:  # a server without CONDSTORE: every cached UID's FLAGS is fetched instead
        caps = TriageService.capabilities.fget  # type: ignore[attr-defined]
        monkeypatch.setattr(TriageService, "capabilities",
                            property(lambda self: caps(self) - {"CONDSTORE"}))
    _seed(mailbox, 12)
    _warm_up(mailbox, path)
    unseen = mailbox.search("UNSEEN")
    c = mailbox.client()
    try:
        c.select_folder("INBOX")
        c.add_flags([unseen[0]], [b"\\Seen"], silent=True)
        c.add_flags([unseen[1]], [b"\\Deleted"], silent=True)
        c.add_flags([unseen[2]], [b"$TriageIgnored", b"\\Seen"], silent=True)
        c.remove_flags([mailbox.search("SEEN")[-1]], [b"\\Seen"], silent=True)
    finally:
        c.logout()
    for view in (View.ALL, View.UNSEEN, View.IGNORED, View.DELETED):
        svc, spy = _svc(mailbox, path)
        assert _rows(svc, view) == _cold(mailbox, view), view
        assert spy.uids == []
    truth = mailbox.flags()
    assert {u: set(f.split()) for u, f in _db_rows(path).items()} == truth


def test_expunged_messages_disappear_and_leave_the_cache(mailbox: Mailbox, path: Path) -> None:
    _seed(mailbox, 12)
    _warm_up(mailbox, path)  # ALL: every UID cached
    gone = mailbox.search("ALL")[:3]
    c = mailbox.client()
    try:
        c.select_folder("INBOX")
        c.add_flags(gone, [b"\\Deleted"], silent=True)
        c.uid_expunge(gone)
    finally:
        c.logout()
    svc, _ = _svc(mailbox, path)
    warm = _rows(svc, View.UNSEEN)  # a view that does not list every cached UID
    assert warm == _cold(mailbox, View.UNSEEN)
    assert not set(gone) & {r["uid"] for r in warm}
    assert not set(gone) & set(_db_rows(path))


def test_uidvalidity_reset_discards_the_cache(mailbox: Mailbox, path: Path) -> None:
    _seed(mailbox, 8)
    _warm_up(mailbox, path)
    old = mailbox.uidvalidity()
    r = mailbox.server.doveadm("mailbox", "update", "-u", mailbox.user, "--uid-validity", str(old + 5), "INBOX")
    assert r.returncode == 0, r.stderr
    svc, spy = _svc(mailbox, path)
    warm = _rows(svc)
    assert warm == _cold(mailbox)
    assert {x["uidvalidity"] for x in warm} == {old + 5}
    assert sorted(spy.uids) == [x["uid"] for x in warm], "every header must be fetched again"
    db = sqlite3.connect(path)
    assert dict(db.execute("SELECT k, v FROM meta").fetchall())["uidvalidity"] == old + 5
    db.close()


@pytest.mark.parametrize("changed", [
    AnalysisConfig(),  # no address template: nothing decodes
    AnalysisConfig(address=ADDRESS, bot_subject_patterns=("^Message 1",)),
    AnalysisConfig(address=ADDRESS, mailbox_kind="service_desk"),
    AnalysisConfig(address=ADDRESS, project_names={1: "renamed/project"}),
    AnalysisConfig(address=ADDRESS, gitlab_host="gitlab.example.com"),
    AnalysisConfig(address=ADDRESS.replace("incoming+", "in-")),  # another incoming address template
    AnalysisConfig(address=ADDRESS, stale_after=timedelta(minutes=1)),  # the stale limit
], ids=["no-address", "bot-pattern", "service-desk", "projects", "gitlab-host", "template", "stale-limit"])
def test_config_change_re_analyses(mailbox: Mailbox, path: Path, changed: AnalysisConfig) -> None:
    _seed(mailbox, 10)
    _warm_up(mailbox, path)
    svc, spy = _svc(mailbox, path, cfg=changed)
    assert _rows(svc) == _cold(mailbox, cfg=changed)
    assert spy.uids, "a config change must not serve the old verdicts"
    svc, spy = _svc(mailbox, path, cfg=changed)
    assert _rows(svc) == _cold(mailbox, cfg=changed) and spy.uids == []


def test_files_are_private_whatever_the_umask(mailbox: Mailbox, path: Path) -> None:
    _seed(mailbox, 4)
    old = os.umask(0)
    try:
        _warm_up(mailbox, path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    made = [p for p in path.parent.iterdir()]
    assert path in made
    for p in made:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_a_symlink_in_place_of_the_file_is_refused(mailbox: Mailbox, path: Path, tmp_path: Path) -> None:
    _seed(mailbox, 4)
    path.parent.mkdir(parents=True)
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    path.symlink_to(target)
    problems: list[str] = []
    svc, _ = _svc(mailbox, path, problems=problems)
    assert _rows(svc) == _cold(mailbox)
    assert len(problems) == 1
    assert target.read_bytes() == b""


@pytest.mark.parametrize("damage", ["garbage", "directory", "foreign-db", "truncated"])
def test_a_broken_cache_costs_one_line_never_a_row(mailbox: Mailbox, path: Path, damage: str) -> None:
    _seed(mailbox, 8)
    if damage == "truncated":
        _warm_up(mailbox, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3] + b"\0" * 100)
        for side in (Path(str(path) + "-wal"), Path(str(path) + "-shm")):
            side.unlink(missing_ok=True)
    else:
        path.parent.mkdir(parents=True)
        if damage == "garbage":
            path.write_bytes(os.urandom(5000))
        elif damage == "directory":
            path.mkdir()
        else:
            db = sqlite3.connect(path)
            db.execute("CREATE TABLE rows (x)")
            db.execute("INSERT INTO rows VALUES (1)")
            db.commit()
            db.close()
    problems: list[str] = []
    svc, _ = _svc(mailbox, path, problems=problems)
    assert _rows(svc) == _cold(mailbox)
    assert len(problems) <= 1 and all("\n" not in p for p in problems)
    if damage in ("garbage", "directory"):  # a truncated file may still open, and a database of
        # other tables is simply reset: then it is just a cold start
        assert len(problems) == 1 and "header cache disabled" in problems[0]


def test_a_damaged_chunk_is_fetched_again(mailbox: Mailbox, path: Path) -> None:
    _seed(mailbox, 6)
    _warm_up(mailbox, path)
    uids = sorted(_db_rows(path))
    db = sqlite3.connect(path)
    db.execute("UPDATE rows SET chunk = chunk + 100 WHERE uid = ?", (uids[0],))  # points nowhere
    db.execute("INSERT INTO chunks VALUES (?, ?, ?)", (555, blob := marshal.dumps([(uids[1], (1, 2))]), zlib.crc32(blob)))
    db.execute("UPDATE rows SET chunk = 555 WHERE uid = ?", (uids[1],))  # a chunk of the wrong shape
    db.execute("INSERT INTO chunks VALUES (?, ?, ?)", (556, b"\xff\x00nonsense", zlib.crc32(b"\xff\x00nonsense")))
    db.execute("UPDATE rows SET chunk = 556 WHERE uid = ?", (uids[2],))  # not marshal at all
    db.commit()
    db.close()
    problems: list[str] = []
    svc, spy = _svc(mailbox, path, problems=problems)
    assert _rows(svc) == _cold(mailbox)
    assert sorted(spy.uids) == uids[:3] and not problems
    svc, spy = _svc(mailbox, path, problems=problems)
    assert _rows(svc) == _cold(mailbox) and spy.uids == [], "fetched again, cached again"


def test_a_locked_database_is_left_alone(mailbox: Mailbox, path: Path) -> None:
    _seed(mailbox, 6)
    _warm_up(mailbox, path)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # a second triage-tui in the middle of a write
    try:
        problems: list[str] = []
        svc, _ = _svc(mailbox, path, problems=problems, busy_timeout=0.05)
        assert _rows(svc) == _cold(mailbox)
        assert len(problems) == 1 and "locked" in problems[0]
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_two_caches_interleaved_never_serve_old_flags(mailbox: Mailbox, path: Path) -> None:
    """Two processes' caches on one file: whichever writes last, the next warm start is right."""
    _seed(mailbox, 10)
    _warm_up(mailbox, path)
    a, _ = _svc(mailbox, path)
    it = a.iter_list(View.ALL, now=NOW)
    next(it)  # a has read the cache and refreshed its flags
    _flag(mailbox, mailbox.search("UNSEEN")[:2], b"\\Seen")
    assert _rows(_svc(mailbox, path)[0]) == _cold(mailbox)  # b, in between
    list(it)
    a.close()
    assert _rows(_svc(mailbox, path)[0]) == _cold(mailbox)


# -- the CLI ---------------------------------------------------------------------------------------


def _json_lines(out: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    for r in rows:
        r.pop("age_seconds", None)
        r.pop("stale", None)
    return rows


def _cache_files(tmp_path: Path) -> list[Path]:
    d = tmp_path / "cache" / "triage-tui"
    return sorted(d.iterdir()) if d.exists() else []


def test_cli_list_twice_equal_and_cache_info_clear(mailbox: Mailbox, cli: Any, tmp_path: Path) -> None:
    _seed(mailbox, 10)
    env = {**mailbox.env(), "TRIAGE_ADDRESS": ADDRESS}
    cold = cli(["--read-only", "list", "--view", "all", "--json"], env=env)
    assert cold.code == 0, cold.err
    files = _cache_files(tmp_path)
    assert [p.name.endswith(".sqlite3") for p in files].count(True) == 1
    warm = cli(["--read-only", "list", "--view", "all", "--json"], env=env)
    assert warm.code == 0 and not warm.err.strip(), warm.err
    # the same rows in the same order (a cold listing sends the few rows whose key only Received
    # holds last, in a second pass: a warm one gives its cached rows where a cold one would)
    assert _json_lines(warm.out) == _json_lines(cold.out)
    from tests.servers import PASSWORD

    for p in _cache_files(tmp_path):  # customer headers, yes; the credential, never
        assert PASSWORD.encode() not in p.read_bytes()
    info = cli(["cache", "info", "--json"], env=env)
    assert info.code == 0, info.err
    (entry,) = json.loads(info.out)["caches"]
    assert entry["rows"] == len(_json_lines(cold.out)) and entry["uidvalidity"] == mailbox.uidvalidity()
    text = cli(["cache", "info"], env=env)
    assert text.code == 0 and f"{entry['rows']} rows" in text.out
    cleared = cli(["cache", "clear"], env=env)
    assert cleared.code == 0 and "deleted 1" in cleared.out
    assert _cache_files(tmp_path) == []
    assert cli(["cache", "clear"], env=env).code == 0  # nothing to clear is fine
    assert "no cached mailboxes" in cli(["cache", "info"], env=env).out


@pytest.mark.parametrize("off", [["--no-cache"], "env", "file"])
def test_cli_no_cache_writes_nothing(mailbox: Mailbox, cli: Any, tmp_path: Path, off: Any) -> None:
    _seed(mailbox, 4)
    env = dict(mailbox.env())
    args: list[str] = []
    if off == "env":
        env["TRIAGE_CACHE"] = "false"
    elif off == "file":
        cfg = tmp_path / "config" / "triage-tui" / "config.toml"
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text("[cache]\nenabled = false\n")
    else:
        args = off
    r = cli([*args, "list", "--view", "all", "--json"], env=env)
    assert r.code == 0, r.err
    assert len(_json_lines(r.out)) == 4 + len(NASTY)
    assert _cache_files(tmp_path) == []
    assert not (tmp_path / "cache").exists()


def test_cli_corrupt_cache_one_line_and_same_rows(mailbox: Mailbox, cli: Any, tmp_path: Path) -> None:
    """A damaged file costs one line and one cold listing: it is deleted, and the next listing
    makes a new one (left in place, every later run would list cold and say the same line)."""
    _seed(mailbox, 6)
    env = mailbox.env()
    clean = cli(["--no-cache", "list", "--view", "all", "--json"], env=env)
    cli(["list", "--view", "all", "--json"], env=env)
    (db,) = [p for p in _cache_files(tmp_path) if p.name.endswith(".sqlite3")]
    for p in _cache_files(tmp_path):
        p.unlink()
    db.write_bytes(b"this is not a database\n" * 300)
    info = cli(["cache", "info"], env=env)
    assert info.code == 0 and "unreadable" in info.out
    r = cli(["list", "--view", "all", "--json"], env=env)
    assert r.code == 0
    assert _json_lines(r.out) == _json_lines(clean.out)
    lines = [x for x in r.err.splitlines() if x.strip()]
    assert len(lines) == 1 and "header cache disabled" in lines[0] and "deleted" in lines[0], r.err
    assert "Traceback" not in r.err
    assert not db.exists()
    for _ in range(2):  # a new cache, then a warm start from it: no line
        r = cli(["list", "--view", "all", "--json"], env=env)
        assert r.code == 0 and r.err.strip() == "", r.err
        assert _json_lines(r.out) == _json_lines(clean.out)
    assert db.exists()


def test_cli_bad_cache_config_is_a_usage_error(mailbox: Mailbox, cli: Any) -> None:
    r = cli(["list"], env={**mailbox.env(), "TRIAGE_CACHE_MAX_AGE_DAYS": "-3"})
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err


def test_age_limit_drops_unused_rows_and_files(mailbox: Mailbox, path: Path, tmp_path: Path) -> None:
    _seed(mailbox, 6)
    _warm_up(mailbox, path)
    old_file = path.parent / ("0" * 32 + ".sqlite3")
    old_file.write_bytes(b"")
    long_ago = time.time() - 30 * 86_400
    os.utime(old_file, (long_ago, long_ago))
    db = sqlite3.connect(path)
    first = min(_db_rows(path))
    db.execute("UPDATE rows SET day = day - 20 WHERE uid = ?", (first,))
    db.commit()
    db.close()
    svc, spy = _svc(mailbox, path)
    assert _rows(svc) == _cold(mailbox)
    assert spy.uids == [first]  # dropped for age, so fetched again (and cached again)
    assert not old_file.exists()
    assert cache_mod.files(path.parent) == [path]


def test_a_full_disk_costs_one_line_never_a_row(mailbox: Mailbox, path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(mailbox, 12)
    problems: list[str] = []
    with monkeypatch.context() as m:
        full_disk(m)
        svc, _ = _svc(mailbox, path, problems=problems)
        assert _rows(svc) == _cold(mailbox)
    assert len(problems) == 1 and "full" in problems[0], problems
    svc, _ = _svc(mailbox, path, problems=problems)
    assert _rows(svc) == _cold(mailbox)  # whatever was (not) written, the next start is right


def test_a_listing_stopped_early_keeps_what_arrived(mailbox: Mailbox, path: Path) -> None:
    _seed(mailbox, 30)
    svc, _ = _svc(mailbox, path)
    svc.limits = Limits(max_count=5)  # batches of 5
    it = svc.iter_list(View.ALL, now=NOW)
    got = [m.uid for m in next(it)]
    it.close()  # `list --limit`, a closed TUI
    svc.close()
    assert set(got) <= set(_db_rows(path))
    svc, spy = _svc(mailbox, path)
    assert _rows(svc) == _cold(mailbox)
    assert not set(got) & set(spy.uids)


def test_fetching_only_new_mail_leaves_the_cached_flags_to_the_next_refresh(mailbox: Mailbox, path: Path) -> None:
    """The TUI's sync lists only new UIDs: that must not vouch for the cached rows' flags."""
    _seed(mailbox, 10)
    _warm_up(mailbox, path)
    c = mailbox.client()
    try:
        c.append("INBOX", message(subject="new"))
        c.select_folder("INBOX")
        c.add_flags(mailbox.search("UNSEEN")[:3], [b"\\Seen"], silent=True)
    finally:
        c.logout()
    svc, spy = _svc(mailbox, path)
    uv, found = svc.search(View.ALL)
    new = [u for u in found if u not in _db_rows(path)]
    got = [m for batch in svc.iter_messages(uv, new, now=NOW) for m in batch]
    svc.close()
    assert [m.subject for m in got] == ["new"] and spy.uids == new
    svc, spy = _svc(mailbox, path)
    assert _rows(svc) == _cold(mailbox) and spy.uids == []


@pytest.mark.parametrize("where", ["with the SEARCH", "after the load"])
def test_a_connection_lost_during_the_flag_refresh_reconnects_and_lists_right(mailbox: Mailbox, path: Path,
                                                                             where: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The flags changed since are asked with the SEARCH (pipelined) or, where that is not
    possible, after the load: the link lost during either reconnects and lists the same rows."""
    from tests.faults.conftest import FAST_RETRY
    from triage_tui.services.imap import ImapSession

    _seed(mailbox, 10)
    _warm_up(mailbox, path)
    _flag(mailbox, mailbox.search("UNSEEN")[:2], b"\\Seen")
    svc, spy = _svc(mailbox, path)
    svc.retry = FAST_RETRY
    changed_since = svc._changed_and_recent
    cut = []

    def dropping(uidvalidity: int, since: int) -> tuple[dict[int, tuple[str, ...]], list[int]]:
        if not cut:
            cut.append(1)
            svc.abort()  # the socket goes away under the refresh
        return changed_since(uidvalidity, since)

    svc._changed_and_recent = dropping  # type: ignore[method-assign]
    if where == "with the SEARCH":
        pipelined = ImapSession.search_and_changes

        def dropping_search(self, criteria: str, since: int, *a):  # type: ignore[no-untyped-def]
            if not cut:
                cut.append(1)
                svc.abort()
            return pipelined(self, criteria, since, *a)

        monkeypatch.setattr(ImapSession, "search_and_changes", dropping_search)
    else:
        monkeypatch.setattr(ImapSession, "search_and_changes", None)  # as on a server without ESEARCH
    assert _rows(svc) == _cold(mailbox)
    assert cut and spy.uids == []


def test_the_tui_lists_the_same_rows_warm_and_its_sync_stays_right(mailbox: Mailbox, path: Path) -> None:
    """The UI's load and its sync (new mail only) through the cache: the same rows as cold."""
    import asyncio

    from tests.tui.conftest import loaded, wait_for
    from triage_tui.tui.app import TriageApp

    _seed(mailbox, 10)

    async def shown(svc: TriageService, add: bool = False) -> dict[int, dict[str, Any]]:
        app = TriageApp(svc, clock=lambda: NOW, watcher_factory=None, view=View.ALL)
        async with app.run_test() as pilot:
            await loaded(pilot)
            if add:
                c = mailbox.client()
                try:
                    c.append("INBOX", message(subject="during the session"))
                finally:
                    c.logout()
                n = len(app.model.messages)
                app.request_sync("test", force=True)
                await wait_for(pilot, lambda: len(app.model.messages) > n, what="the new message")
            rows = {u: m.to_json(NOW) for u, m in app.model.messages.items()}
        svc.close()
        return rows

    cold = asyncio.run(shown(_svc(mailbox, path)[0]))
    warm_svc, spy = _svc(mailbox, path)
    warm = asyncio.run(shown(warm_svc, add=True))
    assert {u: r for u, r in warm.items() if u in cold} == cold
    assert spy.uids == [max(warm)]
    assert _rows(_svc(mailbox, path)[0]) == _cold(mailbox)


def test_keys_during_a_warm_stream_leave_the_right_rows_and_the_collector_on(mailbox: Mailbox, path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator switches views and asks for a full re-list while a warm start is still
    handing out its rows (each stream closed mid-way): the list ends with the view's rows, as
    the UI lists them without the cache, and the cyclic GC is back on."""
    import asyncio
    import gc

    from tests.tui.conftest import loaded
    from triage_tui.tui.app import TriageApp

    _seed(mailbox, 120)
    monkeypatch.setattr(cache_mod, "CHUNK", 5)
    _warm_up(mailbox, path, View.UNSEEN)
    _warm_up(mailbox, path, View.DELETED)

    async def run(svc: TriageService, keys: tuple[str, ...]) -> dict[int, dict[str, Any]]:
        app = TriageApp(svc, clock=lambda: NOW, watcher_factory=None)
        async with app.run_test() as pilot:
            for key in keys:
                await pilot.pause(0.15)
                await pilot.press(key)
            await loaded(pilot)
            return {u: m.to_json(NOW) for u, m in app.model.messages.items()}

    def listed(cached: bool, keys: tuple[str, ...] = ()) -> dict[int, dict[str, Any]]:
        svc, _ = _svc(mailbox, path if cached else None)
        svc.limits = Limits(max_count=5, workers=0)
        try:
            return asyncio.run(run(svc, keys))
        finally:
            svc.close()
            gc.unfreeze()

    cold = listed(False)
    rebuild = cache_mod.Rebuilder.__call__

    def slow(self: Any, *a: Any) -> Any:
        time.sleep(0.01)  # ~1 s for the unseen view: the keys arrive while its rows are handed out
        return rebuild(self, *a)

    monkeypatch.setattr(cache_mod.Rebuilder, "__call__", slow)
    warm = listed(True, ("3", "1", "R", "3", "1"))
    assert gc.isenabled()
    assert warm == cold


def test_the_ui_shows_a_warm_starts_first_rows_while_the_rest_still_comes(mailbox: Mailbox, path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The first screen of a warm start does not wait for the whole cache: rows are on screen
    while the listing is still rebuilding the others, and the list ends complete."""
    import asyncio

    from tests.tui.conftest import loaded, wait_for
    from triage_tui.tui.app import TriageApp

    _seed(mailbox, 120)
    monkeypatch.setattr(cache_mod, "CHUNK", 5)
    _warm_up(mailbox, path, View.UNSEEN)
    cold = _cold(mailbox, View.UNSEEN)
    rebuild = cache_mod.Rebuilder.__call__

    def slow(self: Any, *a: Any) -> Any:
        time.sleep(0.01)  # ~1 s for the view
        return rebuild(self, *a)

    monkeypatch.setattr(cache_mod.Rebuilder, "__call__", slow)
    svc, spy = _svc(mailbox, path)
    svc.limits = Limits(max_count=5, workers=0)

    async def run() -> tuple[int, bool, list[int]]:
        app = TriageApp(svc, clock=lambda: NOW, watcher_factory=None)
        async with app.run_test() as pilot:
            await wait_for(pilot, lambda: bool(app.model.rows), what="the first rows")
            early, still_loading = len(app.model.rows), app._loading
            await loaded(pilot)
            return early, still_loading, sorted(app.model.messages)

    try:
        early, still_loading, uids = asyncio.run(run())
    finally:
        svc.close()
    assert still_loading and 0 < early < len(cold)
    assert uids == [r["uid"] for r in cold] and spy.uids == []


def test_a_warm_start_without_esearch_reads_plain_search_answers(mailbox: Mailbox, path: Path) -> None:
    """The changed flags and \\Recent come in one pipelined exchange; a server without ESEARCH
    answers ``* SEARCH n n`` there, among the FETCH answers (Dovecot itself, told we did not see
    ESEARCH in its capabilities)."""
    _seed(mailbox, 10)
    _warm_up(mailbox, path)
    _flag(mailbox, mailbox.search("UNSEEN")[:3], b"\\Seen")
    c = mailbox.client()  # appends without a mailbox open: the next session to open it sees \\Recent
    try:
        c.append("INBOX", message(subject="new, with \\Recent"))
    finally:
        c.logout()
    svc, spy = _svc(mailbox, path)
    svc.connect()
    assert "ESEARCH" in svc.reader.capabilities
    svc.reader.capabilities = svc.reader.capabilities - {"ESEARCH"}
    rows = _rows(svc)
    assert rows == _cold(mailbox)
    assert len(spy.uids) == 1  # only the new message's header
    assert [r["uid"] for r in rows if "\\Recent" in r["flags"]] == [spy.uids[0]]


def test_rows_written_while_a_cold_listing_goes_on(mailbox: Mailbox, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large cold listing writes its rows a part at a time (not all at its end), leaving the
    stored HIGHESTMODSEQ alone until the end: a warm start then lists the same rows and fetches
    nothing; a listing stopped early keeps what it wrote, and its flags are still refreshed."""
    from triage_tui.services import listing as listing_mod  # noqa: PLC0415

    monkeypatch.setattr(listing_mod, "COMMIT_EVERY", 7)
    _seed(mailbox)
    cold = _cold(mailbox)
    commits: list[object] = []
    real = HeaderCache.commit

    def spy(self: HeaderCache, token: Any, **kw: Any) -> Any:
        commits.append(kw.get("modseq"))
        return real(self, token, **kw)

    monkeypatch.setattr(HeaderCache, "commit", spy)
    first, _ = _svc(mailbox, path)
    first.limits = Limits(max_count=5)
    assert _rows(first) == cold
    assert commits.count(cache_mod.KEEP) >= 3 and commits[-1] is not cache_mod.KEEP
    second, spy2 = _svc(mailbox, path)
    assert _rows(second) == cold and spy2.uids == []

    # stopped early: what was written stays; the rest is fetched next time; flags stay right
    other = path.with_name("other.sqlite3")
    svc, _ = _svc(mailbox, other)
    svc.limits = Limits(max_count=5)
    it = svc.iter_list(View.ALL, now=NOW)
    for _ in range(4):
        next(it)
    it.close()
    svc.close()
    _flag(mailbox, mailbox.search("UNSEEN")[:2], b"\\Seen")
    third, spy3 = _svc(mailbox, other)
    assert _rows(third) == _cold(mailbox)
    assert 0 < len(spy3.uids) < len(cold)


def test_a_large_warm_start_freezes_its_rows_out_of_the_collector(mailbox: Mailbox, path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows rebuilt from the cache are made with the cyclic GC off; tens of thousands of them
    would then be scanned by the next collections (~100 ms each at 90k: a UI stall). A large
    warm start moves them into the permanent generation; a small one leaves the GC alone."""
    import gc  # noqa: PLC0415

    from triage_tui.services import listing as listing_mod  # noqa: PLC0415

    _seed(mailbox, 10)
    cold = _warm_up(mailbox, path)
    gc.unfreeze()
    try:
        assert _rows(_svc(mailbox, path)[0]) == cold
        assert gc.get_freeze_count() == 0  # 19 rows: below FREEZE_ROWS
        monkeypatch.setattr(listing_mod, "FREEZE_ROWS", 5)
        assert _rows(_svc(mailbox, path)[0]) == cold
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_a_warm_start_gives_its_first_rows_before_decoding_every_chunk(mailbox: Mailbox, path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A warm listing hands out cached rows as each chunk is decoded (at 90k, its first rows came
    only after all 50 chunks: 1 s), in the order a cold listing gives them; the collector, off
    while rows are rebuilt, is on while the caller has a batch and at the end, also when the
    caller stops after one batch or keeps the stream without finishing it."""
    import gc  # noqa: PLC0415

    _seed(mailbox, 60)
    monkeypatch.setattr(cache_mod, "CHUNK", 5)
    first, _ = _svc(mailbox, path)
    first.limits = Limits(max_count=5, workers=0)
    cold = [m.to_json(NOW) for batch in first.iter_list(View.ALL, now=NOW) for m in batch]
    first.close()
    decoded: list[int] = []
    decode = cache_mod.decode_chunk

    def counted(blob: bytes) -> list[tuple[int, tuple[Any, ...]]]:
        decoded.append(len(blob))
        return decode(blob)

    monkeypatch.setattr(cache_mod, "decode_chunk", counted)
    svc, spy = _svc(mailbox, path)
    svc.limits = Limits(max_count=5, workers=0)
    try:
        stream = svc.iter_list(View.ALL, now=NOW)
        batch = next(stream)
        assert batch and gc.isenabled()
        assert 1 <= len(decoded) <= 3  # of 14 chunks
        warm = [m.to_json(NOW) for m in batch] + [m.to_json(NOW) for b in stream for m in b]
        assert len(decoded) >= 12
        assert warm == cold and spy.uids == []  # the same rows, in the same order, none fetched
        assert gc.isenabled()
        stopped = svc.iter_list(View.ALL, now=NOW)
        assert next(stopped)
        stopped.close()
        assert gc.isenabled()
        dropped = svc.iter_list(View.ALL, now=NOW)
        assert next(dropped)
        del dropped
        assert gc.isenabled()
        kept = svc.iter_list(View.ALL, now=NOW)
        assert next(kept) and gc.isenabled()  # a caller holding it, for now
        kept.close()
    finally:
        gc.unfreeze()
        svc.close()


@pytest.mark.parametrize("damage", ["chunk", "row"])
def test_a_damaged_middle_chunk_or_row_keeps_the_cold_order(mailbox: Mailbox, path: Path, damage: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A row the warm start cannot rebuild, in the middle of the view, is fetched again; the rows
    after it wait for their place, so the order is a cold listing's (what ``list`` prints first
    and which copy of a duplicate Message-ID it flags depend on it)."""
    _seed(mailbox, 60)
    monkeypatch.setattr(cache_mod, "CHUNK", 5)

    def listed() -> tuple[list[dict[str, Any]], list[int]]:
        svc, spy = _svc(mailbox, path)
        svc.limits = Limits(max_count=5, workers=0)
        try:
            return [m.to_json(NOW) for b in svc.iter_list(View.ALL, now=NOW) for m in b], spy.uids
        finally:
            svc.close()

    cold, _ = listed()
    uid = cold[len(cold) // 2]["uid"]
    db = sqlite3.connect(path)
    cid = db.execute("SELECT chunk FROM rows WHERE uid = ?", (uid,)).fetchone()[0]
    if damage == "chunk":  # its check value no longer matches
        db.execute("UPDATE chunks SET crc = crc + 1 WHERE id = ?", (cid,))
    else:  # checks out, but a value is not what a row can hold (a naive delivery time)
        blob = db.execute("SELECT blob FROM chunks WHERE id = ?", (cid,)).fetchone()[0]
        rows = marshal.loads(blob)
        i = cache_mod.STORED.index("internaldate")
        rows = [(u, v[:i] + ("2024-01-01T00:00:00",) + v[i + 1:]) if u == uid else (u, v) for u, v in rows]
        blob = marshal.dumps(rows)
        db.execute("UPDATE chunks SET blob = ?, crc = ? WHERE id = ?", (blob, zlib.crc32(blob), cid))
    db.commit()
    db.close()
    warm, fetched = listed()
    assert uid in fetched and len(fetched) <= 5
    assert warm == cold


def test_the_cache_is_read_while_the_server_searches_and_only_for_that_examine(mailbox: Mailbox, path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A warm listing's cache load runs in a thread while the SEARCH burst is answered, and is
    used only by the listing of that same EXAMINE: after another EXAMINE the listing loads for
    itself. Either way the rows are a cold listing's."""
    import threading  # noqa: PLC0415

    _seed(mailbox, 12)
    cold = _cold(mailbox, View.UNSEEN)
    _warm_up(mailbox, path, View.UNSEEN)
    loads: list[tuple[str, bool]] = []
    load = HeaderCache.load

    def spy(self: HeaderCache, uidvalidity: int, h: Any, wanted: Any, uidnext: Any = None) -> Any:
        loads.append((threading.current_thread().name, wanted is None))
        return load(self, uidvalidity, h, wanted, uidnext=uidnext)

    monkeypatch.setattr(HeaderCache, "load", spy)
    svc, spy_fetch = _svc(mailbox, path)
    assert _rows(svc, View.UNSEEN) == cold and spy_fetch.uids == []
    assert loads == [("triage-cache-load", True)]  # one load, in the thread, every chunk

    loads.clear()
    svc, spy_fetch = _svc(mailbox, path)
    try:
        uv, found = svc.search(View.UNSEEN, warm=True)
        svc.reader.search("ALL")  # a command in between: the next EXAMINE is a new one
        svc.reader.examine()
        msgs = [m for b in svc.iter_messages(uv, found, now=NOW) for m in b]
    finally:
        svc.close()
    assert [m.to_json(NOW) for m in sorted(msgs, key=lambda m: m.uid)] == cold and spy_fetch.uids == []
    assert [w for _, w in loads] == [True, False]  # the preload dropped, the listing's own load


def test_what_was_asked_with_the_search_is_used_only_for_its_own_since(mailbox: Mailbox, path: Path,
                                                                       monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The changed flags asked with the SEARCH are for the HIGHESTMODSEQ the cache held when it
    was peeked. If the load then finds another (a second process committed in between), they
    are not used: the listing asks again for its own. Rows (with a flag changed meanwhile by
    another client, and a cached row expunged) stay those of a cold listing."""
    _seed(mailbox, 12)
    _warm_up(mailbox, path, View.UNSEEN)
    c = mailbox.client()
    try:
        c.select_folder("INBOX")
        unseen = mailbox.search("UNSEEN")
        c.add_flags(unseen[:2], [b"\\Flagged"], silent=True)
        c.add_flags(unseen[2:4], [b"\\Seen"], silent=True)  # cached rows that left the view
        c.add_flags(unseen[4:5], [b"\\Deleted"], silent=True)
        c.expunge()
    finally:
        c.logout()
    peeked = HeaderCache.peek_since
    monkeypatch.setattr(HeaderCache, "peek_since", lambda self, uv, h0: (peeked(self, uv, h0) or 2) - 1)
    svc, spy = _svc(mailbox, path)
    asked = _refreshes(svc)
    assert _rows(svc, View.UNSEEN) == _cold(mailbox, View.UNSEEN)
    assert len(asked) == 1 and spy.uids == []  # asked again, for its own since; nothing fetched
    monkeypatch.setattr(HeaderCache, "peek_since", peeked)
    svc, spy = _svc(mailbox, path)
    asked = _refreshes(svc)
    assert _rows(svc, View.UNSEEN) == _cold(mailbox, View.UNSEEN)
    assert asked == [] and spy.uids == []  # this time the burst's answers were used


def test_search_answers_without_their_tag_fall_back_to_one_command_at_a_time(mailbox: Mailbox, path: Path,
                                                                           monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A server whose ESEARCH answers leave out the TAG correlator (RFC 4731 allows it to): the
    burst's answers cannot be told apart, so none of them is used; the listing asks one command
    at a time and its rows are those of a cold listing."""
    import re as re_  # noqa: PLC0415

    from triage_tui.services.imapwire import Response, Wire  # noqa: PLC0415

    _seed(mailbox, 12)
    _warm_up(mailbox, path, View.UNSEEN)
    _flag(mailbox, mailbox.search("UNSEEN")[:2], b"\\Flagged")
    read = Wire.read_response

    def untagged(self):  # type: ignore[no-untyped-def]
        resp = read(self)
        first = re_.sub(rb'^\* ESEARCH \(TAG "[^"]*"\) ', b"* ESEARCH ", resp.first)
        return Response([first, *resp.segments[1:]], resp.literals)

    monkeypatch.setattr(Wire, "read_response", untagged)
    svc, spy = _svc(mailbox, path)
    asked = _refreshes(svc)
    assert _rows(svc, View.UNSEEN) == _cold(mailbox, View.UNSEEN)
    assert len(asked) == 1 and spy.uids == []
