"""The filter language pushed down as IMAP SEARCH gives exactly the same result as evaluating it
locally, against a real Dovecot (which evaluates dates per day, text case-insensitively, sizes
exactly)."""

from __future__ import annotations

import json
import time

import pytest

from tests.mailgen import message

QUERIES = [
    "age>2d", "age<36h", "age>=1d age<=5d", "size>2K", "size<1K", "!size>2K",
    "from:alice", "from:noreply or from:alerts", "subject:\"Error fetching\"", "!subject:error",
    "bot", "!bot age>1d", "stale", "subject:error age>3d", "from:ALICE", "subject:Ünïcode",
    "(from:bob | subject:incident) !age<1d", "kind:new_issue age>1d", "uid>5 uid<20", "!!!size:2000",
    "Error", "\"out of office\"", "to:incoming", "key:glimt", "nokey or suspicious",
]


@pytest.fixture
def varied(mailbox):  # type: ignore[no-untyped-def]
    now = time.time()
    senders = ["Alice <alice@example.org>", "noreply@ci.example.com", "alerts@monitoring.example.io",
               "Bob <bob@example.net>", "MAILER-DAEMON@mx.example.net"]
    subjects = ["Error fetching data from FOO", "Re: incident review", "Automatic reply: out of office",
                "Ünïcode subject", "New issue: login broken"]
    items = []
    for i in range(40):
        age = (i % 9) * 86400 * 0.7 + 3600 * (i % 5)
        body = "x" * (300 + 97 * i)
        raw = message(subject=subjects[i % 5] + f" {i}", from_=senders[(i * 3) % 5], date=now - age,
                      key=None if i % 11 == 0 else f"grp-proj-{i % 4 + 1}-glimt-t{i}-issue", body=body)
        items.append((raw, now - age, ""))
    mailbox.seed(items)
    return mailbox


@pytest.mark.parametrize("query", QUERIES)
def test_pushdown_agrees_with_local_evaluation(varied, cli, query):  # type: ignore[no-untyped-def]
    env = {**varied.env(), "TRIAGE_ADDRESS": "incoming+%{key}@incoming.gitlab.example.com"}
    pushed = cli(["list", "--json", "--filter", query], env=env)
    local = cli(["list", "--json", "--filter", query, "--no-pushdown"], env=env)
    assert pushed.code == 0 and local.code == 0, (pushed.err, local.err)
    a = sorted(json.loads(line)["uid"] for line in pushed.lines)
    b = sorted(json.loads(line)["uid"] for line in local.lines)
    assert a == b, (query, set(a) ^ set(b))


# -- quoted values that begin with <, > or = are text, not comparisons (issue 11) ---------------

QUOTED = [
    # (query, UIDs it must select among the four messages below, 1-based)
    ('msgid:"<quoted-1@example.org>"', [1]),
    ('subject:"=5"', [2]),
    ('from:">x"', [3]),
    ('subject:"<=>"', [4]),
    ('subject:">"', [3, 4]),
    ('!subject:"=5"', [1, 3, 4]),
    ('subject:"=5" or msgid:"<quoted-1@"', [1, 2]),
]


@pytest.fixture
def quoted(mailbox):  # type: ignore[no-untyped-def]
    now = time.time()
    specs = [
        ("plain subject", "Alice <alice@example.org>", "<quoted-1@example.org>"),
        ("price =5 today", "Bob <bob@example.net>", "<quoted-2@example.org>"),
        ("arrow > here", '">x" <gt@example.net>', "<quoted-3@example.org>"),
        ("odd <=> and > signs", "Carol <carol@example.net>", "<quoted-4@example.org>"),
    ]
    mailbox.seed([(message(subject=s, from_=f, message_id=m, date=now - 3600), now - 3600, "")
                  for s, f, m in specs])
    return mailbox


@pytest.mark.parametrize(("query", "expected"), QUOTED)
def test_quoted_operator_characters_are_text_locally_and_pushed_down(quoted, cli, query, expected):  # type: ignore[no-untyped-def]
    pushed = cli(["list", "--json", "--filter", query], env=quoted.env())
    local = cli(["list", "--json", "--filter", query, "--no-pushdown"], env=quoted.env())
    assert pushed.code == 0 and local.code == 0, (pushed.err, local.err)
    a = sorted(json.loads(line)["uid"] for line in pushed.lines)
    b = sorted(json.loads(line)["uid"] for line in local.lines)
    assert a == b == expected, (query, a, b)


@pytest.mark.parametrize("query", ["size<=4095M", "size<4294967295", "uid<=4294967295", "uid>4294967294", "uid>=1",
                                   "uid:1-4294967295", "age<36500d", "!size>=4294967295"])
def test_pushdown_at_the_edges_of_imaps_numbers(varied, cli, query):  # type: ignore[no-untyped-def]
    """LARGER/SMALLER/UID take 32-bit numbers: the edge values either push a valid criterion or
    none, and always agree with the local evaluation (never a BAD from the server)."""
    pushed = cli(["list", "--json", "--filter", query], env=varied.env())
    local = cli(["list", "--json", "--filter", query, "--no-pushdown"], env=varied.env())
    assert pushed.code == 0 and local.code == 0, (pushed.err, local.err)
    assert sorted(json.loads(x)["uid"] for x in pushed.lines) == sorted(json.loads(x)["uid"] for x in local.lines)
