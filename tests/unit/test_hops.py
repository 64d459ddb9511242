"""Header analysis for peek: Received hops, TLS, delays, skew, Authentication-Results, transit."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.corpus import load
from triage_tui.domain.analysis import AnalysisConfig
from triage_tui.domain.hops import analyze_header, parse_auth_results, parse_hops, parse_received

T = "incoming+%{key}@incoming.gitlab.example.com"
CFG = AnalysisConfig(address=T)
D = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (  # Postfix with TLS comment
            "from mail.example.org (mail.example.org [203.0.113.5]) (using TLSv1.3 with cipher "
            "TLS_AES_256_GCM_SHA384 (256/256 bits)) (No client certificate requested) by mx.example.com "
            "(Postfix) with ESMTPS id 4ABC for <x@example.com>; Mon, 02 Mar 2026 10:00:20 +0000",
            {"from_host": "mail.example.org", "from_ip": "203.0.113.5", "by": "mx.example.com", "with_": "ESMTPS",
             "id": "4ABC", "for_": "x@example.com", "tls": True, "tls_detail": "TLSv1.3", "plaintext": False},
        ),
        (  # Exim
            "from [10.0.0.7] (helo=laptop) by mail.example.org with esmtpsa (TLS1.3) tls TLS_AES_256_GCM_SHA384 "
            "(Exim 4.96) (envelope-from <a@example.org>) id 1vABC-000 for y@example.com; "
            "Mon, 02 Mar 2026 10:00:05 +0000",
            {"from_host": "[10.0.0.7]", "from_ip": "10.0.0.7", "by": "mail.example.org", "with_": "esmtpsa",
             "id": "1vABC-000", "for_": "y@example.com", "tls": True, "tls_detail": "TLS1.3"},
        ),
        (  # Gmail
            "from mail-sor-f41.google.com (mail-sor-f41.google.com. [209.85.220.41]) by mx.google.com with "
            "SMTPS id a1sor2;        Mon, 02 Mar 2026 02:00:01 -0800 (PST)",
            {"from_ip": "209.85.220.41", "by": "mx.google.com", "with_": "SMTPS", "tls": None},
        ),
        (  # Gmail TLS in a comment after the id
            "from out.example (out.example. [192.0.2.1]) by mx.google.com with ESMTPS id b2 for <z@gmail.com> "
            "(version=TLS1_3 cipher=TLS_AES_128_GCM_SHA256 bits=128/128); Mon, 02 Mar 2026 10:00:00 +0000",
            {"tls": True, "tls_detail": "TLS1_3", "for_": "z@gmail.com"},
        ),
        (  # Exchange
            "from EX02.corp.example (10.1.0.2) by EX01.corp.example (10.1.0.1) with Microsoft SMTP Server "
            "(version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.1.2507.6 via Frontend "
            "Transport; Thu, 5 Mar 2026 11:00:04 +0100",
            {"from_host": "EX02.corp.example", "from_ip": "10.1.0.2", "by": "EX01.corp.example",
             "with_": "Microsoft SMTP Server", "via": "Frontend Transport", "id": "15.1.2507.6", "tls": True,
             "tls_detail": "TLS1_2"},
        ),
        (  # Exchange without TLS
            "from EX03.corp.example (10.1.0.3) by EX02.corp.example (10.1.0.2) with Microsoft SMTP Server id "
            "15.1.2507.6; Thu, 5 Mar 2026 11:00:02 +0100",
            {"tls": False, "plaintext": True},
        ),
        (  # qmail
            "(qmail 12345 invoked by uid 89); 6 Mar 2026 12:00:09 -0000",
            {"from_host": None, "by": None, "with_": None, "tls": None},
        ),
        (
            "from unknown (HELO mail.example.com) (192.0.2.55) by mx.example.com with SMTP; 6 Mar 2026 12:00:05 -0000",
            {"from_host": "unknown", "from_ip": "192.0.2.55", "by": "mx.example.com", "tls": False, "plaintext": True},
        ),
        (  # Dovecot LMTP: not SMTP, TLS unknown and not flagged
            "from mx.example.com by imap.example.com with LMTP id abc; Mon, 02 Mar 2026 10:00:30 +0000",
            {"with_": "LMTP", "tls": None, "plaintext": False},
        ),
        (  # sendmail-style, IPv6
            "from h.example ([IPv6:2001:db8::1]) by mx.example.com (8.15.2/8.15.2) with ESMTP id 1AB; "
            "Mon, 2 Mar 2026 10:00:00 GMT",
            {"from_ip": "2001:db8::1", "with_": "ESMTP", "plaintext": True},
        ),
    ],
)
def test_parse_received_formats(value: str, expected: dict[str, object]) -> None:
    hop = parse_received(value)
    assert hop.time is not None
    for k, v in expected.items():
        assert getattr(hop, k) == v, k


def test_missing_semicolon_still_finds_the_date() -> None:
    hop = parse_received("from a by b with SMTP id x Mon, 02 Mar 2026 10:00:01 +0000")
    assert hop.time == datetime(2026, 3, 2, 10, 0, 1, tzinfo=UTC)
    assert (hop.by, hop.id) == ("b", "x")
    assert parse_received("from a by b with SMTP id x").time is None
    assert parse_received("from a by b; not a date").time is None


def test_semicolon_inside_comment_does_not_confuse_the_date() -> None:
    hop = parse_received("from a (x; y) by b with ESMTP; Mon, 02 Mar 2026 10:00:01 +0000")
    assert hop.by == "b" and hop.time is not None


def test_hops_oldest_first_with_delays_shares_and_skew() -> None:
    received = [  # as in the header: newest first
        "from c by d with ESMTPS; Mon, 02 Mar 2026 10:00:08 +0000",
        "from b by c with ESMTP; Mon, 02 Mar 2026 10:00:10 +0000",  # later than the newest: skew next
        "from a by b with ESMTPS; Mon, 02 Mar 2026 11:00:04 +0100",  # 10:00:04 UTC
    ]
    hops = parse_hops(received, D)
    assert [h.by for h in hops] == ["b", "c", "d"]
    assert [h.delay_seconds for h in hops] == [4.0, 6.0, -2.0]
    assert [h.clock_skew for h in hops] == [False, False, True]
    assert hops[0].share == 0.4 and hops[1].share == 0.6 and hops[2].share is None
    assert [h.plaintext for h in hops] == [False, True, False]


def test_auth_results() -> None:
    a = parse_auth_results(
        "mx.google.com 1; dkim=pass header.i=@example.org header.s=s1 header.b=abc; "
        "dkim=fail (bad sig; really) header.i=@other.example; spf=softfail (google.com: domain of x) "
        "smtp.mailfrom=x@example.org; dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=example.org; arc=pass")
    assert a.authserv_id == "mx.google.com"
    assert a.results == {"dkim": ["pass", "fail"], "spf": ["softfail"], "dmarc": ["pass"], "arc": ["pass"]}
    j = a.to_json()
    assert (j["spf"], j["dkim"], j["dmarc"], j["arc"]) == ("softfail", "pass", "pass", "pass")
    none = parse_auth_results("mx.example.com; none")
    assert none.authserv_id == "mx.example.com" and none.results == {}
    assert parse_auth_results("").authserv_id == ""
    assert parse_auth_results("x; =; a=; b").results == {}


def test_analyze_postfix_corpus() -> None:
    internal = datetime(2026, 3, 2, 10, 0, 31, tzinfo=UTC)
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    a = analyze_header(load("new_issue_postfix.eml"), internal, now, CFG)
    assert [h.by for h in a.hops] == ["relay.example.org", "mail.example.org", "mx.gitlab.example.com",
                                      "imap.gitlab.example.com"]
    assert [h.tls for h in a.hops] == [False, True, True, None]
    assert a.transit_seconds == 31.0 and a.date_to_last_hop_seconds == 30.0
    assert a.last_hop_to_internaldate_seconds == 1.0 and a.waiting_seconds == 7169.0
    assert abs(sum(h.share or 0 for h in a.hops) + 1 / 31 - 1) < 1e-3  # the rest is the mailbox segment
    assert (a.key.kind, a.key.project_id, a.key.matched_header) == ("new_issue", 20, "To")
    assert a.auth[0].authserv_id == "mx.gitlab.example.com" and a.auth[0].first("dmarc") == "pass"
    assert a.classification["bot"] is False and a.classification["stale"] is False
    assert any("plaintext" in w for w in a.warnings)
    j = json.loads(json.dumps(a.to_json()))
    assert j["hops"][0]["from"] == "internal.example.org" and j["hops"][2]["with"] == "ESMTPS"
    assert j["key"]["matched_header"] == "To" and j["summary"]["subject"] == "Build broken"
    text = "\n".join(a.render_text())
    assert "GitLab key: new_issue  project 20 (gitlab-org-gitlab)  matched in To" in text
    assert "PLAINTEXT" in text and "waiting in the mailbox: 119m" in text


def test_analyze_classification_reasons() -> None:
    a = analyze_header(load("dsn_bounce.eml"), datetime(2026, 3, 3, 8, 0, 6, tzinfo=UTC),
                       datetime(2026, 3, 9, tzinfo=UTC), CFG)
    assert a.classification["bot"] and "reply-loop risk" in a.classification["bot_reason"]
    assert a.classification["stale"]
    assert "bot: delivery status notification" in "\n".join(a.render_text())


def test_analyze_exchange_and_qmail() -> None:
    ex = analyze_header(load("exchange_catchall.eml"), datetime(2026, 3, 5, 10, 0, 5, tzinfo=UTC), None,
                        AnalysisConfig(address="incoming-%{key}@exchange.example.com"))
    assert [h.tls for h in ex.hops] == [False, True]
    assert (ex.key.kind, ex.key.issue_iid, ex.key.matched_header) == ("note_on_issuable", 34, "Envelope-To")
    assert ex.summary["from"] == "Jörg Müller <joerg@corp.example>"
    qm = analyze_header(load("dedicated_references.eml"), datetime(2026, 3, 6, 12, 0, 10, tzinfo=UTC),
                        datetime(2026, 3, 6, 12, 1, tzinfo=UTC), AnalysisConfig(address="incoming@gitlab.example.com"))
    assert len(qm.hops) == 3 and qm.hops[0].by == "2002:a05:6a10:1234:0:0:0:0"
    assert [h.delay_seconds for h in qm.hops] == [3.0, 2.0, 4.0]
    assert (qm.key.kind, qm.key.matched_header) == ("reply", "References")


def test_internaldate_before_last_hop_is_flagged() -> None:
    raw = b"Received: from a by b with ESMTPS; Mon, 02 Mar 2026 10:00:10 +0000\r\nDate: Mon, 02 Mar 2026 10:00:00 +0000\r\n\r\n"
    a = analyze_header(raw, D + timedelta(seconds=5), D + timedelta(hours=1), CFG)
    assert any("INTERNALDATE is 5s before the last hop" in w for w in a.warnings)


def test_no_template_is_said_once() -> None:
    a = analyze_header(load("new_issue_postfix.eml"), D, D, AnalysisConfig(address=None))
    assert a.key.kind == "unknown" and a.classification["no_key"] is False
    assert sum("no incoming address template" in w for w in a.warnings) == 1


def test_empty_and_missing_inputs() -> None:
    for raw in (b"", None, b"garbage without colon", "To: x\r\n"):
        a = analyze_header(raw, None, None, CFG)
        assert a.hops == [] and a.transit_seconds is None and a.waiting_seconds is None
        json.dumps(a.to_json())
        a.render_text()


def test_timezones_are_respected() -> None:
    raw = (b"Received: from a by b with ESMTPS; Mon, 02 Mar 2026 11:00:05 +0100\r\n"
           b"Date: Mon, 02 Mar 2026 05:00:00 -0500\r\n\r\n")
    a = analyze_header(raw, datetime(2026, 3, 2, 10, 0, 6, tzinfo=UTC), D + timedelta(minutes=1), CFG)
    assert a.hops[0].delay_seconds == 5.0 and a.transit_seconds == 6.0


def test_many_hops_are_capped() -> None:
    raw = b"".join(b"Received: from a by b with ESMTPS; Mon, 02 Mar 2026 10:00:00 +0000\r\n" for _ in range(150))
    a = analyze_header(raw, D, D, CFG)
    assert len(a.hops) == 100 and any("first 100 Received" in w for w in a.warnings)
