"""New rows are merged into the stretch of the order their keys fall in (not a re-sort of every
row per batch); the orders must equal those of the plain key functions on hostile data: no date,
years 1 and 9999, exact ties, offsets of +-23:59, naive times, UIDs arriving in any order."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.tui.fakes import NOW, fixed_clock
from triage_tui.domain.model import Message
from triage_tui.tui.listmodel import SORTS, ListModel, project_label, verdict_rank

INF = float("inf")

#: the key functions spelled out (the reference the incremental orders must equal)
OLD_KEYS = {
    "age": lambda m: (m.internaldate.timestamp() if m.internaldate is not None else INF, m.uid),
    "uid": lambda m: m.uid,
    "sender": lambda m: ((m.from_addr or m.from_name).lower(), m.uid),
    "project": lambda m: (project_label(m).lower(), m.uid),
    "kind": lambda m: (m.kind, m.uid),
    "subject": lambda m: (m.subject.lower(), m.uid),
    "size": lambda m: (m.size, m.uid),
    "verdict": lambda m: (-verdict_rank(m), m.uid),
    "lock": lambda m: (m.lock_ttl if m.lock_ttl is not None else -1, m.uid),
}


def hostile(n: int, seed: int) -> list[Message]:
    """Dates as real mail has them: none, year 1 and 9999, the same instant in offsets of
    +23:59 and -23:59, microsecond steps, many exact ties, naive (local) times; UIDs in no order."""
    rnd = random.Random(seed)
    base = datetime(2026, 5, 1, 12, tzinfo=UTC)
    east, west = timezone(timedelta(hours=23, minutes=59)), timezone(-timedelta(hours=23, minutes=59))
    choices: list[Any] = [
        lambda: None,
        lambda: datetime(1, 1, 1, tzinfo=UTC),
        lambda: datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        lambda: base,
        lambda: base.astimezone(east),
        lambda: base.astimezone(west),
        lambda: base + timedelta(microseconds=rnd.choice((-1, 1))),
        lambda: datetime(2026, 5, 1, 12),  # naive: timestamp() reads it as local time
        lambda: base - timedelta(seconds=rnd.randrange(10**8)),
    ]
    uids = rnd.sample(range(1, 10 * n), n)
    out = []
    for u in uids:
        out.append(Message(uid=u, uidvalidity=1, internaldate=rnd.choice(choices)(), size=rnd.randrange(3),
                           from_addr=rnd.choice(["", "a@x", "B@x"]), from_name=rnd.choice(["", "z"]),
                           subject=rnd.choice(["", "Re", "re"]), kind=rnd.choice(["reply", "unknown"]),
                           lock_ttl=rnd.choice([None, 0, 5]), bot=rnd.random() < 0.5))
    return out


@pytest.mark.parametrize("key", sorted(SORTS))
@pytest.mark.parametrize("reverse", [False, True])
def test_incremental_listing_orders_as_the_plain_key_functions(key: str, reverse: bool) -> None:
    rnd = random.Random(hash((key, reverse)) & 0xFFFF)
    msgs = hostile(600, seed=len(key))
    m = ListModel(clock=fixed_clock)
    m.set_sort(key, reverse)
    i = 0
    while i < len(msgs):  # batches of any size, a rebuild after some of them
        step = rnd.choice((1, 2, 7, 50, 120))
        m.add(msgs[i:i + step])
        i += step
        if rnd.random() < 0.5:
            m.rebuild()
            assert m.order == sorted(m.messages, key=lambda u: OLD_KEYS[key](m.messages[u]), reverse=reverse)
    # a batch replacing rows (dates changed), one mixing new and known UIDs, a removal
    changed = [Message(uid=x.uid, uidvalidity=1, internaldate=None if x.internaldate else NOW) for x in msgs[:40]]
    m.add(changed)
    m.add(hostile(30, seed=99) + [Message(uid=msgs[50].uid, uidvalidity=1, internaldate=NOW)])
    m.remove([x.uid for x in msgs[100:130]])
    m.rebuild()
    ref = sorted(m.messages, key=lambda u: OLD_KEYS[key](m.messages[u]), reverse=reverse)
    assert m.order == ref and m.rows == ref
    cached = m._keys[key]
    assert {u: cached[u] for u in m.messages} == {u: OLD_KEYS[key](x) for u, x in m.messages.items()}


def test_a_batch_with_a_uid_twice_keeps_the_last_copy() -> None:
    m = ListModel(clock=fixed_clock)
    a = Message(uid=5, uidvalidity=1, internaldate=NOW, subject="first")
    b = Message(uid=5, uidvalidity=1, internaldate=None, subject="second")
    assert m.add([a, b]) == 1
    m.add([Message(uid=3, uidvalidity=1, internaldate=NOW)])
    m.rebuild()
    assert m.messages[5] is b and m.order == [3, 5]  # no date: last
