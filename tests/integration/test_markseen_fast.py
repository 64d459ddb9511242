"""mark-seen at the protocol floor (issue 13, goal 4), against the real Dovecot: age selected on the
server (SEARCH OLDER, RFC 5032 WITHIN) gives exactly the client-side selection, also without
WITHIN; one connection; the journal's write-ahead records; read-only; the CONDSTORE guard."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Mailbox
from tests.mailgen import message
from tests.proxy import LatencyProxy
from triage_tui.commands import _select
from triage_tui.domain import uidset
from triage_tui.services.imap import ImapSession
from triage_tui.services.journal import AuditJournal
from triage_tui.services.triage import TriageService

LIMIT = 3600  # --older-than 1h
# seconds from the boundary: inside the band (judged on INTERNALDATE here), outside it (by the
# server alone), both sides; 10 s leaves room for a slow run between seeding and selecting
OFFSETS = [-5000, -400, -299, -200, -30, -10, 10, 30, 200, 299, 400, 5000]


def seed_boundary(mb: Mailbox) -> tuple[float, dict[int, float]]:
    """Messages aged LIMIT + offset (UIDs in that order), one \\Seen; returns (now, uid -> age)."""
    now = time.time()
    items = []
    for i, off in enumerate(OFFSETS):
        ts = now - (LIMIT + off)
        items.append((message(subject=f"m{i}", date=ts), ts, "S" if off == 5000 else ""))
    mb.seed(items)
    return now, {i + 1: LIMIT + off for i, off in enumerate(OFFSETS)}


def expected(ages: dict[int, float]) -> list[int]:
    # the client-side rule (Message.age_seconds > limit), UNSEEN only (the oldest is \\Seen)
    return [u for u, a in sorted(ages.items()) if a > LIMIT and a - LIMIT != 5000]


def plan_uids(cli: Any, mb: Mailbox, *extra: str) -> list[int]:
    r = cli(["mark-seen", "--older-than", "1h", *extra, "--dry-run", "--json"], env=mb.env())
    assert r.code == 0, r.err
    return uidset.parse(json.loads(r.out)["uids"]) if json.loads(r.out)["uids"] else []


def without_within(monkeypatch: pytest.MonkeyPatch) -> None:
    orig = TriageService.capabilities.fget  # type: ignore[attr-defined]
    monkeypatch.setattr(TriageService, "capabilities",
                        property(lambda self: frozenset(orig(self)) - {"WITHIN"}))


def test_server_age_selection_is_the_client_side_one(mailbox: Mailbox, cli: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _, ages = seed_boundary(mailbox)
    assert "WITHIN" in {c.decode().upper() for c in mailbox.client().capabilities()}
    fetched: list[list[int]] = []
    orig = TriageService.internaldates

    def spy(self: TriageService, uidvalidity: int, uids: list[int]) -> Any:
        fetched.append(list(uids))
        return orig(self, uidvalidity, uids)

    monkeypatch.setattr(TriageService, "internaldates", spy)
    server_side = plan_uids(cli, mailbox)
    assert server_side == expected(ages)
    # only the band around the boundary had its INTERNALDATE fetched (±400 s and beyond: the server)
    band = {u for u, a in ages.items() if abs(a - LIMIT) < _select.AGE_BAND_SECONDS}
    assert fetched and set(fetched[0]) <= band and set(fetched[0]) >= {u for u in band if ages[u] > LIMIT}
    # the same with an explicit UID set, and with --stale (stale_after below the age: the age decides)
    assert plan_uids(cli, mailbox, "--uids", "1:12") == expected(ages)
    assert plan_uids(cli, mailbox, "--uids", "3:7") == [u for u in expected(ages) if 3 <= u <= 7]


def test_without_within_the_fallback_gives_the_same(mailbox: Mailbox, cli: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _, ages = seed_boundary(mailbox)
    with_within = plan_uids(cli, mailbox)
    without_within(monkeypatch)
    searched: list[str] = []
    orig = TriageService.select_view

    def spy(self: TriageService, criteria: str) -> Any:
        searched.append(criteria)
        return orig(self, criteria)

    monkeypatch.setattr(TriageService, "select_view", spy)
    assert plan_uids(cli, mailbox) == with_within == expected(ages)
    assert searched and all("OLDER" not in c for c in searched)


def test_one_connection_journal_and_result(mailbox: Mailbox, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, ages = seed_boundary(mailbox)
    proxy = LatencyProxy(mailbox.server.imaps_port).start()
    env = {**mailbox.env(), "TRIAGE_IMAP_PORT": str(proxy.port)}
    sent: list[str] = []
    orig_search, orig_store = ImapSession.search, ImapSession._store

    def search(self: ImapSession, criteria: str) -> list[int]:
        sent.append(f"SEARCH {criteria}")
        return orig_search(self, criteria)

    def store(self: ImapSession, uids: list[int], flag: str, add: bool, unchangedsince: int | None = None,
              **kw: Any) -> Any:
        sent.append(f"STORE {unchangedsince}")
        return orig_store(self, uids, flag, add, unchangedsince, **kw)

    synced: list[tuple[str, bool]] = []
    orig_append = AuditJournal.append

    def append(self: AuditJournal, record: dict[str, Any], *, durable: bool = True) -> Any:
        synced.append((record.get("phase", ""), durable))
        return orig_append(self, record, durable=durable)

    monkeypatch.setattr(ImapSession, "search", search)
    monkeypatch.setattr(ImapSession, "_store", store)
    monkeypatch.setattr(AuditJournal, "append", append)
    try:
        r = cli(["mark-seen", "--older-than", "1h", "--yes"], env=env)
        assert r.code == 0, r.err
        assert proxy.connections == 1  # no second connection for the write
        # the selection's SEARCHes come first and the write does not search the UIDs again:
        # its UNCHANGEDSINCE (the MODSEQ of the one SELECT, older than the SEARCH) guards them
        # no narrowing of a UID set; one message's age is searched, to hold the clocks together
        probes = [c for c in sent if c.startswith("SEARCH UID ")]
        assert len(probes) == 1 and re.fullmatch(r"SEARCH UID \d+ OLDER \d+ YOUNGER \d+", probes[0]), sent
        assert [c for c in sent if c.startswith("SEARCH") and c not in probes] == [
            f"SEARCH UNSEEN OLDER {3600 - _select.AGE_BAND_SECONDS}",
            f"SEARCH OLDER {3600 - _select.AGE_BAND_SECONDS} YOUNGER {3600 + _select.AGE_BAND_SECONDS}"], sent
        assert sent[-1].startswith("STORE") and "STORE None" not in sent, sent
        # write-ahead: begin and each intent are fsynced before what they announce is sent, the
        # end after; a chunk's progress is fsynced with the next of those
        assert {p for p, on in synced if on} == {"begin", "intent", "end"}, synced
        assert {p for p, on in synced if not on} == {"progress"}, synced
        monkeypatch.setattr(AuditJournal, "append", orig_append)
        monkeypatch.setattr(ImapSession, "search", orig_search)
        monkeypatch.setattr(ImapSession, "_store", orig_store)
        check(mailbox, ages, cli, env)
    finally:
        proxy.stop()


def check(mailbox: Mailbox, ages: dict[int, float], cli: Any, env: dict[str, str]) -> None:
    want = expected(ages)
    flags = mailbox.flags()
    assert sorted(u for u, f in flags.items() if "\\Seen" in f) == sorted([*want, 12])  # 12: \\Seen before
    assert all("$TriageIgnored" in flags[u] for u in want)
    recs = [rec for rec in AuditJournal().records() if rec.get("action") == "mark-seen"]
    phases = [rec["phase"] for rec in recs]
    assert phases[0] == "begin" and phases[-1] == "end" and "intent" in phases and "progress" in phases
    assert phases.index("intent") < phases.index("progress")
    assert recs[0]["unchangedsince"] and recs[-1]["result"] == "ok"
    assert recs[-1]["changed"] == uidset.compress(want)
    # and undo restores exactly that
    r = cli(["undo", "--yes"], env=env)
    assert r.code == 0, r.err
    assert mailbox.search("SEEN") == [12]


def test_read_only_refuses_and_changes_nothing(mailbox: Mailbox, cli: Any) -> None:
    seed_boundary(mailbox)
    before = mailbox.flags()
    r = cli(["--read-only", "mark-seen", "--older-than", "1h", "--yes"], env=mailbox.env())
    assert r.code == 4, (r.code, r.out, r.err)
    assert "read-only" in r.err and "Traceback" not in r.err
    assert mailbox.flags() == before


def test_a_change_by_another_client_after_the_selection_is_left_alone(
        mailbox: Mailbox, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, ages = seed_boundary(mailbox)
    want = expected(ages)
    flagged, seen_by_them = want[0], want[1]
    orig = TriageService.execute

    def meanwhile(self: TriageService, plan: Any, progress: Any = None) -> Any:
        assert flagged in plan.uids and seen_by_them in plan.uids
        c = mailbox.client()
        c.select_folder("INBOX")
        c.add_flags([flagged], [b"\\Flagged"], silent=True)  # someone flags it: not ours to touch
        c.add_flags([seen_by_them], [b"\\Seen"], silent=True)  # mail_room took it
        c.logout()
        return orig(self, plan, progress)

    monkeypatch.setattr(TriageService, "execute", meanwhile)
    r = cli(["mark-seen", "--older-than", "1h", "--yes"], env=mailbox.env())
    assert r.code == 0, r.err
    # the server's UNCHANGEDSINCE (the MODSEQ of the one SELECT, before the selection) leaves both alone
    assert "2 skipped (changed concurrently)" in r.out, r.out
    flags = mailbox.flags()
    assert "\\Seen" not in flags[flagged] and "$TriageIgnored" not in flags[flagged]
    assert "$TriageIgnored" not in flags[seen_by_them]
    end = [rec for rec in AuditJournal().records() if rec.get("phase") == "end"][-1]
    assert end["changed"] == uidset.compress([u for u in want if u not in (flagged, seen_by_them)])
    assert end["skipped_concurrent"] == uidset.compress([flagged, seen_by_them])


@pytest.mark.parametrize("skew", [1200, -1200, 100])
def test_a_server_clock_off_by_more_than_the_band_is_not_trusted(mailbox: Mailbox, cli: Any,
                                                                  monkeypatch: pytest.MonkeyPatch, skew: int) -> None:
    """The ages the operator sees are this machine's (INTERNALDATE against our clock); the
    server's OLDER counts on its own. 20 minutes apart, its answers selected messages younger
    than asked (its clock ahead) or left out older ones (behind): then every age is judged here,
    with one line saying why. Within the band they are used as before."""
    _, ages = seed_boundary(mailbox)

    monkeypatch.setattr(_select, "_now", lambda: datetime.now(UTC) + timedelta(seconds=skew))
    for extra in ([], ["--uids", "1:12"], ["--filter", "subject:m"]):  # a filter: headers are fetched
        r = cli(["mark-seen", "--older-than", "1h", *extra, "--dry-run", "--json"], env=mailbox.env())
        assert r.code == 0, r.err
        got = uidset.parse(json.loads(r.out)["uids"]) if json.loads(r.out)["uids"] else []
        assert got == [u for u, a in sorted(ages.items()) if a + skew > LIMIT and OFFSETS[u - 1] != 5000], (extra, got)
        noted = "server's clock differs" in r.err
        assert noted == (abs(skew) > _select.AGE_BAND_SECONDS), r.err
        assert len([ln for ln in r.err.splitlines() if "clock" in ln]) == int(noted), r.err
