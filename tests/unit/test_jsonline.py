"""``message_json`` writes exactly what the generic encoder writes for ``to_json``: on every row
of the build corpus (realistic mail in many scripts, the mutation fuzzer's absurd and hostile
cases, the nasty corpus, the demo backlog), on generated messages whose fields take every value
their types allow (and some they do not), and with the extras and lock fields the CLI adds."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_build_golden import NOW, corpus
from triage_tui.domain.analysis import build_message
from triage_tui.domain.jsonline import ENCODER, _age_text, message_json
from triage_tui.domain.model import Message
from triage_tui.domain.outcome import Outcome


def generic(m: Message, now: datetime) -> str:
    return ENCODER.encode(m.to_json(now))


def test_every_corpus_row_is_the_same_text() -> None:
    n = 0
    for i, (name, raw, cfg, t, size, flags) in enumerate(corpus()):
        m = build_message(i + 1, 77, flags, t, size, raw, cfg, NOW)  # type: ignore[arg-type]
        for now in (NOW, NOW + timedelta(seconds=0.0004), None if i % 97 else NOW - timedelta(days=400)):
            if now is None:
                continue
            fast = message_json(m, now)
            assert fast == generic(m, now), name
            assert fast.isascii()
            n += 1
    assert n > 10_000


_text = st.one_of(st.none(), st.text(max_size=40), st.sampled_from(["", "\x1b[31m", "\u202e", "\udcff", "a\"b\\c\n"]))
_int = st.one_of(st.none(), st.integers(min_value=-(2**70), max_value=2**70))
_bool = st.one_of(st.booleans(), st.none())
_date = st.one_of(st.none(), st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-9, minutes=-30)),
                                                                     timezone(timedelta(hours=14))])))
_outcome = st.one_of(st.none(), st.builds(Outcome, st.text(max_size=20), st.one_of(st.none(), st.text(max_size=10)),
                                          st.text(max_size=60), st.booleans(), st.text(max_size=5)))
_extra = st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(["flags", "uid", "from", "age_seconds",
                                                                           "gitlab_outcome", "evidence", "lock"])),
                         st.one_of(st.none(), st.integers(), st.text(max_size=10), st.lists(st.integers(), max_size=3),
                                   st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2)),
                         max_size=3)
# values of the wrong type for the field (the generic path must take them, with the same text)
_odd = st.one_of(st.integers(), st.booleans(), st.floats(allow_nan=True), st.binary(max_size=4), st.text(max_size=4),
                 st.none(), st.tuples(st.text(max_size=3)))


def _message(draw: st.DrawFn) -> Message:
    m = Message(
        uid=draw(st.integers(0, 2**32)), uidvalidity=draw(st.integers(0, 2**32)),
        flags=tuple(draw(st.lists(st.text(max_size=12), max_size=4))),
        internaldate=draw(_date), size=draw(st.integers(0, 2**40)),
        from_name=draw(st.text(max_size=30)), from_addr=draw(st.text(max_size=30)), to=draw(st.text(max_size=30)),
        cc=draw(st.text(max_size=10)), subject=draw(st.text(max_size=60)), date=draw(_date),
        message_id=draw(st.text(max_size=20)), kind=draw(st.text(max_size=10)), key=draw(_text),
        project_id=draw(_int), project_slug=draw(_text), project_path=draw(_text), issue_iid=draw(_int),
        reply_key=draw(_text), namespace_id=draw(_int), matched_header=draw(_text), stale=draw(st.booleans()),
        bot=draw(st.booleans()), bot_reason=draw(_text), suspicious=draw(st.booleans()),
        suspicious_reason=draw(_text), no_key=draw(st.booleans()), outcome=draw(_outcome),
        problems=tuple(draw(st.lists(st.text(max_size=15), max_size=3))), lock=draw(_text), lock_ttl=draw(_int),
        extra=draw(_extra),
    )
    if draw(st.integers(0, 5)) == 0:  # a field holding what its type does not allow
        name = draw(st.sampled_from([f.name for f in dataclasses.fields(Message) if f.name not in ("extra",)]))
        try:
            setattr(m, name, draw(_odd))
        except Exception:  # noqa: BLE001, S110 - a slot that refuses it: keep the message as it is
            pass
    return m


@settings(max_examples=600, deadline=None)
@given(st.composite(_message)(), st.datetimes(timezones=st.just(UTC)))
def test_generated_messages_are_the_same_text(m: Message, now: datetime) -> None:
    try:
        expected = generic(m, now)
    except Exception as exc:  # noqa: BLE001 - what the generic path cannot write, the fast one raises too
        try:
            message_json(m, now)
        except Exception as exc2:  # noqa: BLE001
            assert type(exc2) is type(exc)
            return
        raise AssertionError("the fast path wrote what the generic one could not") from exc
    assert message_json(m, now) == expected
    json.loads(expected)


def test_outcomes_are_remembered_but_never_mixed_up() -> None:
    base = Message(uid=1, uidvalidity=2, internaldate=NOW, outcome=Outcome("handled", "create_note", "because", True))
    other = dataclasses.replace(base, outcome=Outcome("handled", "create_note", "because", False))
    for m in (base, other, base, other):
        assert message_json(m, NOW) == generic(m, NOW)


@given(st.integers(min_value=-(2**62), max_value=2**62))
def test_age_from_integer_microseconds_is_what_round_writes(us: int) -> None:
    """The age in integer µs, rounded to ms and divided, is what ``round(total_seconds(), 3)``
    writes; at ties, -0 and huge ages it is ``round`` itself."""
    for x in (us, us - us % 1000 + 500, us - us % 1000 + 499, us - us % 1000 + 501, us % 2000 - 1000,
              us % 10**16, -(us % 10**16)):
        assert _age_text(x) == repr(round(timedelta(microseconds=x).total_seconds(), 3)), x


def test_age_edges_are_what_round_writes() -> None:
    """Every µs around 0, around ms ties and around the 10**15 µs switch, and ages of years."""
    edges = [*range(-3000, 3001), *(k * 10**15 + d for k in (-1, 1) for d in range(-1500, 1501)),
             *(y * 365 * 86_400 * 10**6 + d for y in (1, 30, 9999) for d in range(-1500, 1501))]
    for x in edges:
        assert _age_text(x) == repr(round(timedelta(microseconds=x).total_seconds(), 3)), x


def test_flag_texts_are_not_kept_for_lists() -> None:
    """A flags list can change in place: its text is made each time; equal tuples share one."""
    m = Message(uid=1, uidvalidity=2, internaldate=NOW, flags=["\\Seen"])  # type: ignore[arg-type]
    assert message_json(m, NOW) == generic(m, NOW)
    m.flags.append("$x")  # type: ignore[attr-defined]
    assert message_json(m, NOW) == generic(m, NOW)
    for flags in (("\\Seen",), ("\\Seen", "\u2028"), ()):
        m2 = Message(uid=1, uidvalidity=2, internaldate=NOW, flags=flags)
        assert message_json(m2, NOW) == generic(m2, NOW)
