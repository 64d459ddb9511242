"""The demo backlog keeps its promises: every key kind and trap is there, GitLab's own decoding
(``domain.keys``) agrees with what each message was generated to be, and the classifier sees the
noise the runbook is about. Pure: no servers."""

from __future__ import annotations

import email
import email.policy
import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from triage_tui.demo.backlog import (
    ADDRESS_TEMPLATE,
    DEFAULT_SIZE,
    GITLAB_HOST,
    MAX_SIZE,
    MIN_SIZE,
    TAGS,
    Backlog,
    DemoMessage,
    build_backlog,
    full_path_slug,
)
from triage_tui.domain.analysis import AnalysisConfig, build_message
from triage_tui.domain.classify import mark_duplicates
from triage_tui.domain.headers import Headers, parse_date
from triage_tui.domain.hops import analyze_header
from triage_tui.domain.keys import KINDS, find_key
from triage_tui.domain.model import Message

NOW = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
CONFIG = AnalysisConfig(address=ADDRESS_TEMPLATE)


@pytest.fixture(scope="module")
def backlog() -> Backlog:
    return build_backlog(now=NOW)


@pytest.fixture(scope="module")
def listed(backlog: Backlog) -> list[tuple[DemoMessage, Message]]:
    """Each message as the list path would build it (UIDs as pymap assigns them: from 101)."""
    out = []
    for i, m in enumerate(backlog.messages):
        out.append((m, build_message(101 + i, 1, tuple(sorted(m.flags)), m.internaldate, len(m.raw), header(m),
                                     CONFIG, NOW)))
    mark_duplicates([x for _, x in out])
    return out


def header(m: DemoMessage) -> bytes:
    return m.raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"


def tagged(listed: list[tuple[DemoMessage, Message]], tag: str) -> list[tuple[DemoMessage, Message]]:
    return [(m, x) for m, x in listed if tag in m.tags]


def test_default_size_and_range() -> None:
    assert 1500 <= DEFAULT_SIZE <= 2000
    for size in (MIN_SIZE, 500):
        assert len(build_backlog(size, now=NOW)) == size
    for bad in (MIN_SIZE - 1, MAX_SIZE + 1):
        with pytest.raises(ValueError, match="between"):
            build_backlog(bad, now=NOW)


def test_deterministic_for_a_seed_and_now(backlog: Backlog) -> None:
    again = build_backlog(now=NOW)
    assert [m.raw for m in again.messages] == [m.raw for m in backlog.messages]
    assert again.locks == backlog.locks
    other = build_backlog(seed=7, now=NOW)
    assert [m.raw for m in other.messages] != [m.raw for m in backlog.messages]
    # the same seed later in time: the same mailbox, shifted
    later = build_backlog(now=NOW + timedelta(days=3))
    assert [m.internaldate - backlog.now for m in backlog.messages] == \
        [m.internaldate - later.now for m in later.messages]


def test_oldest_first_with_realistic_ages(backlog: Backlog) -> None:
    dates = [m.internaldate for m in backlog.messages]
    assert dates == sorted(dates)  # UIDs ascend with arrival, as in a real mailbox
    unseen = [NOW - m.internaldate for m in backlog.messages if "\\Seen" not in m.flags]
    assert min(unseen) < timedelta(minutes=30)
    assert timedelta(days=20) < max(unseen) <= timedelta(days=22)
    assert all(d > timedelta(0) for d in unseen)
    stale = sum(1 for a in unseen if a > timedelta(days=2))
    assert 0.3 < stale / len(unseen) < 0.9  # a three-week outage: most of it is stale, not all


def test_every_tag_is_present(backlog: Backlog) -> None:
    counts = backlog.tag_counts()
    missing = sorted(set(TAGS) - set(counts))
    assert not missing, f"promised but absent: {missing}"
    assert set(counts) <= set(TAGS), f"undocumented tags: {sorted(set(counts) - set(TAGS))}"


def test_every_key_kind_and_legacy_form(backlog: Backlog) -> None:
    kinds = backlog.kind_counts()
    assert set(kinds) == set(KINDS)
    assert kinds["reply"] > kinds["new_issue"] > kinds["new_merge_request"]
    legacy = [m for m in backlog.messages if "legacy-key" in m.tags]
    forms = Counter()
    for m in legacy:
        assert m.key is not None
        if m.key.endswith("+unsubscribe"):
            forms["reply+unsubscribe"] += 1
        elif "+merge-request+" in m.key:
            forms["path+merge-request+token"] += 1
        elif "+" in m.key:
            forms["path+token"] += 1
        else:
            assert "/" in m.key
            forms["bare path"] += 1
    assert set(forms) == {"reply+unsubscribe", "path+merge-request+token", "path+token", "bare path"}, forms
    projects = {m.project for m in backlog.messages if m.project}
    assert len(projects) >= 5
    issue_keys = [m.key for m in backlog.messages if m.kind == "new_issue" and m.key and "/" not in m.key]
    assert any("-glimt-" in k for k in issue_keys)  # current tokens
    assert any("-glimt-" not in k for k in issue_keys)  # older bare base36 tokens


def test_gitlab_decodes_every_key_as_generated(backlog: Backlog) -> None:
    """What the generator meant by each message is what GitLab's matchers make of it."""
    wrong = []
    for i, m in enumerate(backlog.messages):
        info = find_key(Headers.parse(header(m)), ADDRESS_TEMPLATE, gitlab_host=GITLAB_HOST)
        if (info.kind, info.key) != (m.kind, m.key):
            wrong.append((i, m.kind, m.key, info.kind, info.key))
    assert not wrong, wrong[:5]


def test_key_is_found_where_promised(listed: list[tuple[DemoMessage, Message]]) -> None:
    for tag, header_name in (("key-in-cc", "Cc"), ("key-in-references", "References"),
                             ("key-in-delivered-to", "Delivered-To"), ("key-in-received", "Received")):
        found = Counter(x.matched_header for _, x in tagged(listed, tag))
        assert found == Counter({header_name: sum(found.values())}), (tag, found)
    for tag in ("no-key", "quoted-local-part", "case-mismatch"):
        assert all(x.no_key and x.kind == "unknown" for _, x in tagged(listed, tag)), tag
    assert all(x.kind == "unknown" and x.key == "support" for _, x in tagged(listed, "unknown-key"))
    slugs = {x.project_slug for _, x in listed if x.project_slug}
    assert "data-eng-etl-pipelines" in slugs and "infra-ops-runbooks" in slugs
    assert full_path_slug("Infra/Ops_Runbooks") == "infra-ops-runbooks"


def test_noise_is_recognised_by_the_classifier(listed: list[tuple[DemoMessage, Message]]) -> None:
    for tag in ("auto-reply", "bounce", "noreply", "bulk"):
        group = tagged(listed, tag)
        assert len(group) >= 5, tag
        assert all(x.bot for _, x in group), (tag, [x.subject for _, x in group if not x.bot][:3])
    assert all(x.suspicious for _, x in tagged(listed, "signup"))
    slack = [x for m, x in tagged(listed, "signup") if x.subject == "Confirm your email address for Slack"]
    assert len(slack) == 1 and slack[0].kind == "new_issue"
    dups = tagged(listed, "duplicate-id")
    assert len(dups) >= 6
    by_id: dict[str, list[Message]] = {}
    for _, x in dups:
        by_id.setdefault(x.message_id.strip(), []).append(x)
    for copies in by_id.values():  # the first delivered copy is the original, the later ones duplicates
        first, *later = sorted(copies, key=lambda x: x.uid)
        assert later and "duplicate" not in (first.suspicious_reason or "")
        assert all(f"same Message-ID as UID {first.uid}," in (x.suspicious_reason or "") for x in later)
    assert max(Counter(x.message_id for _, x in dups).values()) >= 3  # one message delivered three times
    # "Auto-Submitted: no" is a human message
    assert all(not x.bot for _, x in tagged(listed, "auto-submitted-no"))


def test_bot_burst_is_identical_three_weeks_old_alerts(backlog: Backlog) -> None:
    burst = [m for m in backlog.messages if "bot-burst" in m.tags]
    assert 40 <= len(burst) <= 150
    subjects = {Headers.parse(header(m)).get("subject") for m in burst}
    bodies = {m.raw.split(b"\r\n\r\n", 1)[1] for m in burst}
    assert subjects == {"Error fetching data from FOO"} and len(bodies) == 1
    assert len({Headers.parse(header(m)).get("message-id") for m in burst}) == len(burst)
    ages = [NOW - m.internaldate for m in burst]
    assert all(timedelta(days=20) < a < timedelta(days=21, hours=2) for a in ages)
    assert max(ages) - min(ages) < timedelta(hours=1)
    assert all(not m.flags for m in burst)


def test_bounces_are_real_dsns(backlog: Backlog) -> None:
    bounces = [m for m in backlog.messages if "bounce" in m.tags]
    daemons = set()
    for m in bounces:
        h = Headers.parse(header(m))
        assert h.get("return-path") == "<>"
        assert h.get("content-type", "").startswith("multipart/report; report-type=delivery-status")
        parsed = email.message_from_bytes(m.raw, policy=email.policy.default)
        assert [p.get_content_type() for p in parsed.iter_parts()] == \
            ["text/plain", "message/delivery-status", "text/rfc822-headers"]
        daemons.add(h.get("from", "").rpartition("<")[2].split("@")[0].lower())
    assert "mailer-daemon" in daemons


def test_hostile_and_broken_headers(listed: list[tuple[DemoMessage, Message]]) -> None:
    by_tag = {tag: tagged(listed, tag) for tag in TAGS}
    esc = [x.subject for _, x in by_tag["escape"]]
    assert any("\x1b]0;" in s for s in esc) and any("\x9b" in s for s in esc)
    assert any("[bold red]URGENT[/]" in x.subject for _, x in by_tag["rich-markup"])
    assert any("[link=" in x.from_name for _, x in by_tag["rich-markup"])
    assert any("\u202e" in x.subject for _, x in by_tag["bidi"])
    for m, _ in by_tag["8bit"]:
        raw_header = header(m)
        assert any(b > 0x7F for b in raw_header) and b"=?" not in raw_header.split(b"\r\nSubject: ")[1].split(b"\r\n")[0]
    for m, _ in by_tag["broken-encoded-word"]:
        assert b"=?" in header(m)
    assert all(x.date is None for _, x in by_tag["bad-date"])
    assert all(x.date is None and b"\r\nDate:" not in header(m) for m, x in by_tag["missing-date"])
    years = sorted(x.date.year for _, x in by_tag["absurd-date"] if x.date)
    assert years[0] == 1970 and years[-1] == 2999
    scripts = {"cjk": "\u4e00-\u9fff\u3040-\u30ff\uac00-\ud7af", "cyrillic": "\u0400-\u04ff",
               "arabic": "\u0600-\u06ff", "hebrew": "\u0590-\u05ff"}
    for tag, ranges in scripts.items():
        decoded = [x.subject for m, x in by_tag[tag] if "broken-encoded-word" not in m.tags]
        assert any(re.search(f"[{ranges}]", s) for s in decoded), (tag, decoded)
    assert any(re.search(r"=\?iso-2022-jp\?B\?", header(m).decode("ascii", "replace"), re.I)
               for m, _ in by_tag["cjk"])
    assert all(len(x.subject) > 3000 for _, x in by_tag["long-subject"])
    assert all(len(m.raw) > 300_000 for m, _ in by_tag["large"])


def test_received_chains_and_authentication(backlog: Backlog) -> None:
    tls = plaintext = spf_fail = 0
    for m in backlog.messages[::7]:
        a = analyze_header(header(m), m.internaldate, NOW, CONFIG)
        assert len(a.hops) >= 3
        assert a.auth and a.auth[0].authserv_id == "mx1.incoming.gitlab.example.com"
        tls += any(h.tls for h in a.hops)
        plaintext += any(h.plaintext for h in a.hops)
    for m in backlog.messages:
        if "spf-fail" in m.tags:
            a = analyze_header(header(m), m.internaldate, NOW, CONFIG)
            assert a.auth[0].first("spf") == "softfail" and a.auth[0].first("dmarc") == "fail"
            spf_fail += 1
    assert tls > plaintext > 0
    assert spf_fail >= 2


def test_server_states_and_locks(backlog: Backlog) -> None:
    views = backlog.view_counts()
    assert views["all"] == DEFAULT_SIZE
    assert views["seen-stuck"] == sum(1 for m in backlog.messages if "seen-trap" in m.tags) >= 20
    assert views["deleted"] == sum(1 for m in backlog.messages if "deleted" in m.tags) >= 100
    for m in backlog.messages:
        if "seen-trap" in m.tags:
            assert m.flags == {"\\Seen"}
            assert NOW - m.internaldate < timedelta(days=2)  # worth re-ingesting: the trap matters
        if "deleted" in m.tags:
            assert m.flags == {"\\Seen", "\\Deleted"}
    kinds = Counter()
    for lk in backlog.locks:
        if lk.index is None:
            kinds["gone"] += 1
            assert lk.gone_below > 0
            continue
        m = backlog.messages[lk.index]
        assert "\\Deleted" not in m.flags
        assert "\\Seen" not in m.flags or "seen-trap" in m.tags
        if lk.style == "set":
            kinds["set"] += 1
            assert lk.value == 1 and lk.ttl is not None and 0 < lk.ttl <= 600
        else:
            assert lk.style == "incr" and lk.value > 1
            kinds["incr-no-ttl" if lk.ttl is None else "incr"] += 1
    assert kinds["set"] >= 50 and kinds["incr"] >= 10 and kinds["incr-no-ttl"] >= 1 and kinds["gone"] >= 1
    assert len({lk.index for lk in backlog.locks if lk.index is not None}) == \
        sum(1 for lk in backlog.locks if lk.index is not None)  # one key per message
    assert any("seen-trap" in backlog.messages[lk.index].tags for lk in backlog.locks if lk.index is not None)


def test_only_reserved_names(backlog: Backlog) -> None:
    """Generated mail must not name real people's domains."""
    allowed = re.compile(r"(^|\.)(example|example\.com|example\.net|example\.org)$")
    for m in backlog.messages[::3]:
        for addr in re.findall(rb"[\w.+-]+@([\w-]+(?:\.[\w-]+)+)", header(m)):
            assert allowed.search(addr.decode().lower()), addr


def test_summary_is_json_friendly(backlog: Backlog) -> None:
    s = backlog.summary()
    assert json.loads(json.dumps(s))["views"]["all"] == DEFAULT_SIZE
    assert parse_date("Tue, 31 Dec 2999 23:59:59 +0000") is not None
