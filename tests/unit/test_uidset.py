import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage_tui.domain import uidset
from triage_tui.errors import UsageError


def test_compress_and_parse():
    assert uidset.compress([5, 1, 2, 3, 7, 8, 8]) == "1:3,5,7:8"
    assert uidset.compress([]) == ""
    assert uidset.parse("1:3,5,9:7") == [1, 2, 3, 5, 7, 8, 9]
    assert uidset.count("1:3,5,9:7") == 7


@pytest.mark.parametrize("bad", ["1:*", "a", "0", "-3", "1::2", "5:0"])
def test_parse_rejects(bad):
    with pytest.raises(UsageError):
        uidset.parse(bad)


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(min_value=1, max_value=50_000), max_size=3000),
       st.integers(min_value=24, max_value=400), st.integers(min_value=1, max_value=700))
def test_split_covers_exactly_within_limits(uids, max_bytes, max_count):
    pieces = list(uidset.split(uids, max_bytes=max_bytes, max_count=max_count))
    seen: list[int] = []
    for text, members in pieces:
        assert len(text) <= max_bytes
        assert len(members) <= max_count
        assert uidset.parse(text) == sorted(members)
        seen.extend(members)
    assert sorted(seen) == sorted(uids)
    assert len(seen) == len(set(seen))


def test_split_compact_ranges_are_few_commands():
    pieces = list(uidset.split(range(1, 100_001), max_bytes=8192, max_count=1000))
    assert len(pieces) == 100
    assert pieces[0][0] == "1:1000"
