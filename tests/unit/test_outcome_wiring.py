"""GitLab's verdict wired through: on every message (annotate), in --json, in the filter language,
and the re-ingest selection that leaves stale rejected/dropped mail out by default."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from triage_tui.domain.analysis import AnalysisConfig, build_message, minimal_message
from triage_tui.domain.filter import FILTER_HELP, FilterSyntaxError, parse_filter
from triage_tui.domain.reingest import select_for_reingest

T = "incoming+%{key}@incoming.gitlab.example.com"
CFG = AnalysisConfig(address=T, gitlab_host="gitlab.example.com", stale_after=timedelta(days=2))
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
HEX = "0123456789abcdef0123456789abcdef"
ISSUE = "incoming+gitlab-org-gitlab-20-glimt-abc-issue@incoming.gitlab.example.com"


def msg(uid: int, *lines: str, age: timedelta = timedelta(hours=1), size: int | None = None):  # type: ignore[no-untyped-def]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() if lines else b""
    return build_message(uid, 7, (), NOW - age, len(raw) if size is None else size, raw, CFG, NOW)


def reply(uid: int, age: timedelta = timedelta(hours=1)):  # type: ignore[no-untyped-def]
    return msg(uid, "From: a@example.org", f"To: incoming+{HEX}@incoming.gitlab.example.com", "Subject: Re: x", age=age)


def nokey(uid: int, age: timedelta = timedelta(hours=1)):  # type: ignore[no-untyped-def]
    return msg(uid, "From: c@example.org", "To: someone@example.org", "Subject: hello", age=age)


def auto(uid: int, age: timedelta = timedelta(hours=1)):  # type: ignore[no-untyped-def]
    return msg(uid, "From: ooo@example.org", f"To: {ISSUE}", "Auto-Submitted: auto-replied", "Subject: away", age=age)


def test_every_annotated_message_has_an_outcome_and_json_fields() -> None:
    cases = {"handled": reply(1), "rejected": nokey(2), "dropped": auto(3)}
    for verdict, m in cases.items():
        assert m.outcome.verdict == verdict
        d = json.loads(json.dumps(m.to_json(NOW)))  # JSON-serialisable
        assert d["gitlab_outcome"] == verdict
        assert d["gitlab_outcome_reason"] == m.outcome.reason
        assert "outcome" not in d  # the object itself is not dumped
    assert json.loads(json.dumps(reply(1).to_json(NOW)))["gitlab_handler"] == "create_note"
    assert nokey(2).to_json(NOW)["gitlab_handler"] is None


def test_blank_mail_is_dropped_not_rejected() -> None:
    m = msg(1, size=0)
    assert m.outcome.verdict == "dropped" and m.outcome.rule == "blank"


def test_unreadable_header_row_is_unknown() -> None:
    m = minimal_message(5, 7, (), NOW, 10, CFG, NOW, ValueError("x"))
    assert m.to_json(NOW)["gitlab_outcome"] == "unknown"


def test_without_template_the_verdict_is_unknown() -> None:
    raw = b"From: a@example.org\r\nTo: x@example.org\r\n\r\n"
    m = build_message(1, 7, (), NOW, len(raw), raw, AnalysisConfig(), NOW)
    assert m.outcome.verdict == "unknown"


@pytest.mark.parametrize(("text", "uids"), [
    ("outcome:rejected", {2}), ("outcome:dropped", {3}), ("outcome:handled", {1, 4}), ("outcome:unknown", set()),
    ("!outcome:handled", {2, 3}), ("outcome:REJECT", {2}), ("outcome=dropped or outcome:rejected", {2, 3}),
    ("problem", {4}), ("has:problem", {4}), ("is:problem", {4}), ("problem:no", {1, 2, 3}),
    ("has:problems", {4}),
])
def test_filter_outcome_and_problem(text: str, uids: set[int]) -> None:
    bad = msg(4, "From: d@example.org", f"To: {ISSUE}", "Date: not a date at all")
    assert bad.problems
    ms = [reply(1), nokey(2), auto(3), bad]
    flt = parse_filter(text)
    assert {m.uid for m in ms if flt.matches(m, NOW)} == uids


def test_outcome_is_never_pushed_to_the_server() -> None:
    assert parse_filter("outcome:rejected").pushdown(NOW) is None
    # ANDed with something the server can narrow: only that part is pushed (a superset)
    assert parse_filter("outcome:rejected from:bob").pushdown(NOW) == 'FROM "bob"'
    assert parse_filter("!outcome:rejected").pushdown(NOW) is None


@pytest.mark.parametrize("text", ["outcome:", "outcome:nope", "outcome>2", "outcome:/rej/", "has:nothing"])
def test_bad_outcome_filters_name_the_choices(text: str) -> None:
    with pytest.raises(FilterSyntaxError) as e:
        parse_filter(text)
    assert "position" in str(e.value)


def test_filter_help_names_outcome_and_problem() -> None:
    assert "outcome:" in FILTER_HELP and "rejected" in FILTER_HELP and "has:problem" in FILTER_HELP
    assert all(len(line) <= 80 for line in FILTER_HELP.splitlines() if "outcome" in line or "problem" in line)


# --- the re-ingest selection --------------------------------------------------------------------

OLD = timedelta(days=21)


def mix():  # type: ignore[no-untyped-def]
    return [reply(1), reply(2, OLD), nokey(3), nokey(4, OLD), auto(5), auto(6, OLD), nokey(7, OLD)]


def test_stale_rejected_and_dropped_are_left_out_by_default() -> None:
    sel = select_for_reingest(mix(), timedelta(days=2), now=NOW)
    assert sel.included == (1, 2, 3, 5)
    assert sel.excluded == (4, 6, 7)
    assert sel.counts[("rejected", "stale")] == 2 and sel.counts[("dropped", "stale")] == 1
    assert sel.counts[("handled", "stale")] == 1  # a stale reply is not junk: the operator decides (stale filter)
    assert sel.left_out == {("rejected", "stale"): 2, ("dropped", "stale"): 1}
    text = "\n".join(sel.lines())
    assert "left out: 3 stale message(s)" in text and "4,6:7" in text and "--include-junk" in text
    js = json.loads(json.dumps(sel.to_json()))
    assert js["excluded"] == 3 and js["included"] == 4 and js["excluded_uids"] == "4,6:7"


def test_the_switch_brings_them_in_and_says_so() -> None:
    sel = select_for_reingest(mix(), timedelta(days=2), now=NOW, include_junk=True)
    assert sel.included == (1, 2, 3, 4, 5, 6, 7) and sel.excluded == ()
    assert sel.junk == (4, 6, 7)
    assert any(line.startswith("included on request: 3") for line in sel.lines())


def test_no_date_is_never_stale_and_duplicates_count_once() -> None:
    m = nokey(9)
    m.internaldate = None
    sel = select_for_reingest([m, m, nokey(10, OLD)], 3600.0, now=NOW)
    assert sel.included == (9,) and sel.excluded == (10,)
    assert sel.counts == {("rejected", "no date"): 1, ("rejected", "stale"): 1}


def test_a_message_without_outcome_is_unknown_and_kept() -> None:
    m = nokey(11, OLD)
    m.outcome = None
    sel = select_for_reingest([m], timedelta(days=2), now=NOW)
    assert sel.included == (11,) and sel.counts == {("unknown", "stale"): 1}


def test_empty_selection() -> None:
    sel = select_for_reingest([], timedelta(days=2), now=NOW)
    assert sel.selected == 0 and sel.lines()[0].startswith("GitLab's verdict on the 0 selected")
