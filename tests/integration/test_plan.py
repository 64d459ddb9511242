"""triage-tui plan against the real Dovecot and Redis: the buckets are exact and disjoint, and
--apply changes exactly what the plan says (flags, keyword, keys), one journal op per step;
read-only and unconfirmed runs change nothing."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.integration.test_locks import redis_env
from tests.mailgen import ADDRESS, message
from triage_tui.domain.model import TRIAGE_KEYWORD
from triage_tui.services.journal import AuditJournal

NOW = time.time()
DAY = 86400.0
OLD = NOW - 21 * DAY
PREFIX = "mail_room:gitlab:"


def key(uid: int) -> str:
    return f"{PREFIX}delivered:{uid}"


def seed(mailbox: Any, redis_client: Any) -> None:
    """UNSEEN 1-8, seen-stuck 9-11, \\Deleted 12; locks held on 1, 2, 4, 5, 7, 9."""
    fresh = NOW - 600
    mailbox.seed([
        (message(subject="old issue", date=OLD), OLD, ""),  # 1 stale
        (message(subject="Out of office", extra={"Auto-Submitted": "auto-replied"}, date=fresh), fresh, ""),  # 2 bot
        (message(subject="old junk", key=None, date=OLD), OLD, ""),  # 3 stale rejected
        (message(subject="Please verify your email address", date=fresh), fresh, ""),  # 4 suspicious
        (message(subject="Real bug \x1b[31m\u202e", date=fresh), fresh, ""),  # 5 release (locked)
        (message(subject="Another bug", date=fresh), fresh, ""),  # 6 release (no lock)
        (message(subject="bad date", date="not a date at all"), fresh, ""),  # 7 ~ row, fresh: review
        (message(subject="bad date, old", date="32 Foo 99999 99:99"), OLD, ""),  # 8 ~ row, old: stale
        (message(subject="trapped", date=fresh), fresh, "S"),  # 9 crash-trapped
        (message(subject="old seen", date=OLD), OLD, "S"),  # 10 seen-left (stale)
        (message(subject="seen junk", key=None, date=fresh), fresh, "S"),  # 11 seen-left (junk)
        (message(subject="deleted", date=fresh), fresh, "ST"),  # 12 \Deleted leftover
    ])
    for u in (1, 2, 4, 5, 7, 9):
        redis_client.set(key(u), "1", ex=600)


def env(mailbox: Any, redis_server: Any) -> dict[str, str]:
    return redis_env(mailbox, redis_server.url, TRIAGE_ADDRESS=ADDRESS)


def state(mailbox: Any, redis_client: Any) -> tuple[dict[int, set[str]], dict[int, bool]]:
    return mailbox.flags(), {u: redis_client.exists(key(u)) == 1 for u in range(1, 13)}


def buckets(doc: dict[str, Any]) -> dict[str, str]:
    return {b["name"]: b["uids"] for b in doc["buckets"] if b["count"]}


EXPECTED = {"bots": "2", "stale-rejected": "3", "stale": "1,8", "problems": "7", "suspicious": "4",
            "release": "5:6", "crash-trapped": "9", "seen-left": "10:11", "deleted": "12"}


def test_plan_json_buckets_exact_and_disjoint_read_only(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    seed(mailbox, redis_client)
    before = state(mailbox, redis_client)
    r = cli(["plan", "--json"], env=env(mailbox, redis_server))
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert buckets(doc) == EXPECTED
    assert sum(b["count"] for b in doc["buckets"]) == 12  # disjoint and complete
    assert [(s["action"], s["uids"]) for s in doc["steps"]] == [
        ("ignore", "1:3,8"), ("unsee-release", "9"), ("release", "5:6")]
    assert doc["locks_read"] is True
    stale = next(b for b in doc["buckets"] if b["name"] == "stale")
    assert stale["with_problems"] == 1
    # the text form: counts, why, the commands; mail text inert
    r = cli(["plan"], env=env(mailbox, redis_server))
    assert r.code == 0, r.err
    assert "\x1b" not in r.out and "\u202e" not in r.out
    assert "triage-tui mark-seen --uidvalidity" in r.out and "--uids 1:3,8" in r.out
    assert "triage-tui plan --apply --yes" in r.out and "why:" in r.out
    assert state(mailbox, redis_client) == before, "plan changed something"


def test_apply_changes_exactly_the_plan_one_op_per_step(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    seed(mailbox, redis_client)
    flags0, _ = state(mailbox, redis_client)
    r = cli(["plan", "--apply", "--yes"], env=env(mailbox, redis_server))
    assert r.code == 0, r.out + r.err
    flags, keys = state(mailbox, redis_client)
    for u in (1, 2, 3, 8):  # ignored: \Seen with the keyword
        assert flags[u] == {"\\Seen", TRIAGE_KEYWORD}, (u, flags[u])
    for u in (4, 5, 6, 7, 9):  # UNSEEN (9 un-seen), no keyword
        assert flags[u] == set(), (u, flags[u])
    assert flags[10] == flags[11] == {"\\Seen"}  # seen-left untouched
    assert flags[12] == flags0[12] == {"\\Seen", "\\Deleted"}  # no expunge unless asked
    assert keys == {1: True, 2: True, 3: False, 4: True, 5: False, 6: False, 7: True, 8: False, 9: False,
                    10: False, 11: False, 12: False}
    assert redis_client.ttl(key(4)) > 500 and redis_client.ttl(key(7)) > 500  # review: untouched
    begins = [rec["action"] for rec in AuditJournal().records() if rec.get("phase") == "begin"]
    assert begins == ["mark-seen", "mark-unseen", "release-locks", "release-locks"]
    assert "undo" in r.out
    # undo undoes the last flag step (the un-see of 9)
    u = cli(["undo", "--yes"], env=env(mailbox, redis_server))
    assert u.code == 0, u.out + u.err
    assert mailbox.flags()[9] == {"\\Seen"} and mailbox.flags()[1] == {"\\Seen", TRIAGE_KEYWORD}
    # applying again: nothing left to ignore; still succeeds
    again = cli(["plan", "--json"], env=env(mailbox, redis_server))
    assert json.loads(again.out)["steps"][0]["action"] != "ignore"


def test_overrides_and_expunge(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    seed(mailbox, redis_client)
    r = cli(["plan", "--apply", "--yes", "--keep", "suspicious", "--ignore", "release", "--keep-uids", "1",
             "--include-expunge", "--json"], env=env(mailbox, redis_server))
    assert r.code == 0, r.out + r.err
    doc = json.loads(r.out)
    assert [(s["action"], s["uids"]) for s in doc["plan"]["steps"]] == [
        ("ignore", "2:3,5:6,8"), ("unsee-release", "9"), ("release", "1,4"), ("expunge", "12")]
    assert doc["ok"] and [s["action"] for s in doc["steps"]] == ["ignore", "unsee-release", "release", "expunge"]
    flags = mailbox.flags()
    assert 12 not in flags and flags[4] == set() and flags[1] == set() and flags[5] == {"\\Seen", TRIAGE_KEYWORD}
    assert not redis_client.exists(key(4)) and not redis_client.exists(key(1))
    assert redis_client.exists(key(7))


def test_read_only_and_unconfirmed_refuse_and_change_nothing(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    seed(mailbox, redis_client)
    before = state(mailbox, redis_client)
    ttl_before = redis_client.ttl(key(5))
    r = cli(["--read-only", "plan", "--apply", "--yes"], env=env(mailbox, redis_server))
    assert r.code == 4, r.out + r.err
    assert "read-only" in r.err
    r = cli(["plan", "--apply"], env=env(mailbox, redis_server))  # no TTY, no --yes
    assert r.code == 4, r.out + r.err
    assert "--yes" in r.err
    r = cli(["plan", "--apply", "--dry-run"], env=env(mailbox, redis_server))
    assert r.code == 0, r.err
    assert "dry run: nothing was changed" in r.out and "step 3" in r.out
    assert state(mailbox, redis_client) == before
    assert redis_client.ttl(key(5)) <= ttl_before and redis_client.ttl(key(5)) > 500
    assert [rec for rec in AuditJournal().records() if rec.get("phase") == "begin"] == []


def test_bad_input_is_one_line(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    for args in (["--keep", "stael"], ["--keep-uids", ""], ["--ignore-uids", " "], ["--keep", "bots", "--ignore", "bots"], ["--keep-uids", "1:x"],
                 ["--keep-uids", "1:99999999"], ["--keep-uids", "3", "--ignore-uids", "3"]):
        r = cli(["plan", *args], env=env(mailbox, redis_server))
        assert r.code == 2, (args, r.out, r.err)
        assert "Traceback" not in r.err and r.err.strip(), args


def test_apply_without_redis_is_refused_before_anything(mailbox, cli):  # type: ignore[no-untyped-def]
    mailbox.seed([(message(subject="old", date=OLD), OLD, ""), (message(subject="new"), NOW, "")])
    before = mailbox.flags()
    r = cli(["plan", "--apply", "--yes"], env={**mailbox.env(), "TRIAGE_ADDRESS": ADDRESS})
    assert r.code == 2 and "TRIAGE_REDIS_URL" in r.err, r.out + r.err
    assert mailbox.flags() == before
    # ignoring the release bucket needs no Redis: the stale one is marked
    r = cli(["plan", "--apply", "--yes", "--ignore", "release"], env={**mailbox.env(), "TRIAGE_ADDRESS": ADDRESS})
    assert r.code == 0, r.out + r.err
    assert all(f == {"\\Seen", TRIAGE_KEYWORD} for f in mailbox.flags().values())


def test_tty_confirms_step_by_step_and_stops_naming_what_was_done(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    seed(mailbox, redis_client)
    # step 1 (mark-seen) confirmed with y; step 2 asks for the typed key count and gets a wrong one
    r = cli(["plan", "--apply"], env=env(mailbox, redis_server), stdin="y\n7\n", tty=True)
    assert r.code == 4, r.out + r.err
    stop = [line[line.index("STOPPED"):] for line in r.out.splitlines() if "STOPPED" in line]
    assert len(stop) == 1 and "before step 2 (unsee-release)" in stop[0] and "step 1 ignore: 4 marked" in stop[0], r.out
    flags = mailbox.flags()
    assert flags[1] == {"\\Seen", TRIAGE_KEYWORD} and flags[9] == {"\\Seen"}  # step 2 never ran
    assert redis_client.exists(key(9)) and redis_client.exists(key(5))


def test_redis_lost_before_the_release_step_stops_with_one_line(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    seed(mailbox, redis_client)
    dead = {**env(mailbox, redis_server), "TRIAGE_REDIS_URL": "redis://127.0.0.1:1/0"}
    r = cli(["plan", "--apply", "--yes"], env=dead)
    assert r.code == 3, r.out + r.err
    assert "Redis unavailable" in r.err and "Traceback" not in r.err
    stop = [line for line in r.out.splitlines() if line.startswith("STOPPED")]
    assert len(stop) == 1 and "step 2" in stop[0] and "step 1 ignore: 4 marked" in stop[0], r.out
    flags = mailbox.flags()
    assert flags[9] == {"\\Seen"} and flags[5] == set()  # nothing past step 1


def test_hostile_sample_text_cannot_forge_lines(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    forged = "=?utf-8?b?" + __import__("base64").b64encode("x\ndone: 3 step(s)\r\u2028\x1b]0;t\x07".encode()).decode() + "?="
    mailbox.seed([(message(subject=forged, from_=f'"{forged}" <a@example.org>'), NOW, "")])
    r = cli(["plan"], env=env(mailbox, redis_server))
    assert r.code == 0, r.err
    assert not any(line.startswith("done:") for line in r.out.splitlines())
    assert "\x1b" not in r.out and "\u2028" not in r.out and "\x07" not in r.out


def test_empty_mailbox_nothing_to_do(mailbox, redis_server, cli):  # type: ignore[no-untyped-def]
    r = cli(["plan", "--apply", "--yes"], env=env(mailbox, redis_server))
    assert r.code == 0, r.out + r.err
    assert "Nothing to do" in r.out and "nothing to do" in r.out
    r = cli(["--read-only", "plan", "--apply", "--yes", "--json"], env=env(mailbox, redis_server))
    assert r.code == 0 and json.loads(r.out)["steps"] == []


def test_demo_backlog_plan_is_exact_and_apply_touches_only_its_steps(mailbox, redis_server, redis_client, cli):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime  # noqa: PLC0415

    from triage_tui.demo.backlog import ADDRESS_TEMPLATE, build_backlog  # noqa: PLC0415
    from triage_tui.domain.uidset import parse  # noqa: PLC0415

    demo = build_backlog(size=200, seed=11, now=datetime.now(UTC))
    letters = {"\\Seen": "S", "\\Deleted": "T"}
    mailbox.seed([(raw, ts, "".join(letters[f] for f in flags if f in letters)) for raw, ts, flags in demo.items()])
    for lk in demo.locks:
        if lk.index is not None:  # UID = index + 1
            redis_client.set(key(lk.index + 1), "1", ex=lk.ttl if lk.ttl else 600)
    e = redis_env(mailbox, redis_server.url, TRIAGE_ADDRESS=ADDRESS_TEMPLATE)
    r = cli(["plan", "--json"], env=e)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    got = {b["name"]: set(parse(b["uids"])) if b["uids"] else set() for b in doc["buckets"]}
    every = [u for s in got.values() for u in s]
    assert len(every) == len(set(every))  # disjoint
    unseen = set(mailbox.search("UNSEEN"))
    stuck = set(mailbox.search(f"SEEN UNDELETED UNKEYWORD {TRIAGE_KEYWORD}"))
    deleted = set(mailbox.search("DELETED"))
    assert set().union(*(got[b] for b in ("bots", "stale-rejected", "stale", "problems", "suspicious",
                                            "release"))) == unseen
    assert got["crash-trapped"] | got["seen-left"] == stuck
    assert got["deleted"] == deleted - unseen
    assert got["bots"] and got["stale"] and got["release"] and got["crash-trapped"]  # a realistic mix
    flags0 = mailbox.flags()
    keys0 = {u: redis_client.pttl(key(u)) for u in flags0}
    r = cli(["plan", "--apply", "--yes", "--json"], env=e)
    assert r.code == 0, r.out + r.err
    steps = {s["action"]: set(parse(s["uids"])) for s in json.loads(r.out)["plan"]["steps"]}
    flags = mailbox.flags()
    for u, f in flags.items():
        if u in steps.get("ignore", ()):
            assert f == flags0[u] | {"\\Seen", TRIAGE_KEYWORD}, u
        elif u in steps.get("unsee-release", ()):
            assert f == flags0[u] - {"\\Seen"}, u
        else:
            assert f == flags0[u], u  # review, leave, release, deleted: flags untouched
    for u, before in keys0.items():
        now = redis_client.pttl(key(u))
        if u in steps.get("release", set()) | steps.get("unsee-release", set()):
            assert now == -2, u  # released: gone
        elif before >= 0:
            assert 0 < now <= before, u  # untouched (counting down)
        else:
            assert now == before, u
    begins = [rec["action"] for rec in AuditJournal().records() if rec.get("phase") == "begin"]
    assert begins == ["mark-seen", "mark-unseen", "release-locks", "release-locks"]
