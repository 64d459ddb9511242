"""Classification: the decoded key on the Message, stale, bot, no key, suspicious, duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.corpus import load
from triage_tui.domain import classify
from triage_tui.domain.analysis import AnalysisConfig, build_message
from triage_tui.domain.headers import Headers
from triage_tui.domain.model import Message

T = "incoming+%{key}@incoming.gitlab.example.com"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
CFG = AnalysisConfig(address=T)
ISSUE = "incoming+gitlab-org-gitlab-20-glimt-abc-issue@incoming.gitlab.example.com"
SD = "incoming+acme-support-278964-issue-@incoming.gitlab.example.com"
REPLY = "incoming+0123456789abcdef0123456789abcdef@incoming.gitlab.example.com"


def msg(*lines: str, config: AnalysisConfig = CFG, age: timedelta = timedelta(hours=1), uid: int = 1) -> Message:
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return build_message(uid, 7, (), NOW - age, len(raw), raw, config, NOW)


def test_key_fields_are_filled_from_the_decoding() -> None:
    m = msg("From: Alice <alice@example.org>", f"To: GitLab <{ISSUE}>", "Subject: hi")
    assert (m.kind, m.key, m.project_id, m.project_slug, m.project_path, m.issue_iid, m.matched_header) == (
        "new_issue", "gitlab-org-gitlab-20-glimt-abc-issue", 20, "gitlab-org-gitlab", None, None, "To")
    assert not m.no_key and not m.bot and not m.suspicious and not m.stale


def test_reply_fields() -> None:
    m = msg("From: a@example.org", "To: incoming+1-abcdefghijklmnopqrstuvwxy-2s-unsubscribe@incoming.gitlab.example.com")
    assert (m.kind, m.reply_key, m.namespace_id) == ("unsubscribe", "1-abcdefghijklmnopqrstuvwxy-2s", 100)


def test_no_key_when_no_header_carries_one() -> None:
    m = msg("From: a@example.org", "To: sales@incoming.gitlab.example.com")
    assert m.no_key and m.kind == "unknown" and m.key is None and m.matched_header is None


def test_unhandled_key_is_not_no_key() -> None:
    m = msg("From: a@example.org", "To: incoming+garbage@incoming.gitlab.example.com")
    assert (m.kind, m.key, m.no_key) == ("unknown", "garbage", False)


def test_without_template_nothing_is_claimed() -> None:
    m = msg("From: a@example.org", f"To: {ISSUE}", config=AnalysisConfig(address=None))
    assert (m.kind, m.key, m.no_key, m.matched_header) == ("unknown", None, False, None)
    assert m.bot_reason is None and m.suspicious_reason is None  # nothing noisy about it


def test_service_desk_mailbox_kind() -> None:
    cfg = AnalysisConfig(address="support+%{key}@sd.example.com", mailbox_kind="service_desk")
    m = msg("From: a@example.org", "To: support+gitlab-org-gitlab-20-glimt-abc-issue@sd.example.com", config=cfg)
    assert m.kind == "service_desk"


# --- stale -------------------------------------------------------------------------------------

def test_stale_by_internaldate_not_date_header() -> None:
    fresh_but_old_date = msg("From: a@x.org", f"To: {ISSUE}", "Date: Mon, 1 Jan 2001 00:00:00 +0000")
    assert not fresh_but_old_date.stale
    assert msg("From: a@x.org", f"To: {ISSUE}", age=timedelta(days=3)).stale
    assert not msg("From: a@x.org", f"To: {ISSUE}", age=timedelta(days=2)).stale  # older than, strictly
    cfg = AnalysisConfig(address=T, stale_after=timedelta(hours=6))
    assert msg("From: a@x.org", f"To: {ISSUE}", age=timedelta(hours=7), config=cfg).stale


def test_no_internaldate_is_not_stale() -> None:
    m = build_message(1, 1, (), None, 0, f"To: {ISSUE}\r\n\r\n".encode(), CFG, NOW)
    assert not m.stale


# --- bot ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("lines", "reason_part"),
    [
        (["Auto-Submitted: auto-replied"], "GitLab will ignore this"),
        (["Auto-Submitted: auto-generated"], "GitLab will ignore this"),
        (["Auto-Submitted: No"], "GitLab will ignore this"),  # GitLab compares with 'no' exactly
        (["Auto-Submitted:"], "GitLab will ignore this"),
        (["X-Autoreply: yes"], "X-Autoreply: yes: GitLab will ignore this"),
        (["Content-Type: multipart/report; report-type=delivery-status"], "reply-loop risk"),
        (["Return-Path: <>"], "reply-loop risk"),
        (["Return-Path: < >"], "Return-Path <>"),
        (["From: MAILER-DAEMON@mx.example.org"], "from MAILER-DAEMON"),
        (["From: Postmaster <postmaster@example.org>"], "from postmaster"),
        (["From: Mail Delivery System <bounce-x@example.org>"], "delivery status notification"),
        (["Precedence: bulk"], "Precedence: bulk"),
        (["Precedence: JUNK"], "Precedence: junk"),
        (["Precedence: list"], "Precedence: list"),
        (["List-Id: <dev.lists.example.org>"], "mailing list"),
        (["List-Unsubscribe: <mailto:x@example.org>"], "List-Unsubscribe"),
        (["From: GitHub <noreply@github.com>"], "no-reply style sender"),
        (["From: jira-no-reply@example.org"], "no-reply style sender"),
        (["From: do_not_reply@bank.example"], "no-reply style sender"),
        (["From: notifications@ci.example"], "no-reply style sender"),
        (["From: bounces+123@mailer.example"], "no-reply style sender"),
    ],
)
def test_bot_rules(lines: list[str], reason_part: str) -> None:
    if not any(ln.startswith("From:") for ln in lines):
        lines = ["From: Alice <alice@example.org>", *lines]
    m = msg(*lines, f"To: {ISSUE}", "Subject: hello")
    assert m.bot
    assert m.bot_reason is not None and reason_part in m.bot_reason


@pytest.mark.parametrize(
    "lines",
    [
        ["Auto-Submitted: no"],
        ["Auto-Submitted:  no  "],  # Mail::Field#value strips
        ["X-Autoreply: no"],
        ["X-Autoreply: YES"],  # GitLab compares with 'yes' exactly; nothing else flags it here
        ["Precedence: first-class"],
        ["Return-Path: <alice@example.org>"],
        ["Content-Type: multipart/mixed; boundary=x"],
        ["From: Noreen Replyson <noreen@example.org>"],
        ["From: reply@example.org"],
    ],
)
def test_not_bots(lines: list[str]) -> None:
    if not any(ln.startswith("From:") for ln in lines):
        lines = ["From: Alice <alice@example.org>", *lines]
    m = msg(*lines, f"To: {ISSUE}", "Subject: hello")
    assert not m.bot, m.bot_reason


def test_bot_reasons_are_ordered_and_combined() -> None:
    m = msg("From: MAILER-DAEMON@x.org", "Auto-Submitted: auto-replied", "Return-Path: <>", f"To: {ISSUE}")
    assert m.bot_reason is not None
    parts = m.bot_reason.split("; ")
    assert parts[0].startswith("Auto-Submitted: auto-replied: GitLab will ignore this")
    assert parts[1].startswith("delivery status notification (Return-Path <>, from MAILER-DAEMON)")


def test_operator_patterns() -> None:
    cfg = AnalysisConfig(address=T, bot_sender_patterns=(r"@monitoring\.example$", "[unclosed"),
                         bot_subject_patterns=("Error fetching",))
    a = msg("From: Mon <alerts@monitoring.example>", f"To: {ISSUE}", "Subject: disk full", config=cfg)
    assert a.bot and "sender matches configured pattern" in (a.bot_reason or "")
    b = msg("From: x@example.org", f"To: {ISSUE}", "Subject: ERROR FETCHING data from FOO", config=cfg)
    assert b.bot and "subject matches configured pattern 'Error fetching'" in (b.bot_reason or "")
    c = msg("From: \"x [unclosed\" <x@example.org>", f"To: {ISSUE}", "Subject: hi", config=cfg)  # invalid regex: literal
    assert c.bot


def test_corpus_bots() -> None:
    dsn = build_message(1, 1, (), NOW, 0, load("dsn_bounce.eml"), CFG, NOW)
    assert dsn.bot and "reply-loop risk" in (dsn.bot_reason or "")
    ooo = build_message(2, 1, (), NOW, 0, load("auto_reply.eml"), CFG, NOW)
    assert ooo.bot and (ooo.bot_reason or "").count("GitLab will ignore this") == 2
    lst = build_message(3, 1, (), NOW, 0, load("list_mail.eml"), CFG, NOW)
    assert lst.bot and "mailing list" in (lst.bot_reason or "")
    human = build_message(4, 1, (), NOW, 0, load("new_issue_postfix.eml"), CFG, NOW)
    assert not human.bot


# --- suspicious -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "subject",
    [
        "Confirm your email address on Slack",
        "Slack confirmation code: 123-456",
        "Please verify your e-mail",
        "Verify your account",
        "Activate your new account",
        "Welcome to Acme Cloud!",
        "Your verification code is 1234",
        "Reset your password",
        "Complete your registration",
        "Email verification required",
        "Jane invited you to join Acme on Slack",
    ],
)
def test_signup_mail_to_project_address_is_suspicious(subject: str) -> None:
    for to in (ISSUE, SD, "incoming+grp-prj-3-glimt-x-merge-request@incoming.gitlab.example.com"):
        m = msg("From: Service <no-reply@service.example>", f"To: {to}", f"Subject: {subject}")
        assert m.suspicious, (subject, to)
        assert "sign-up/verification" in (m.suspicious_reason or "")


def test_signup_subject_to_a_reply_address_is_not_suspicious() -> None:
    m = msg("From: a@example.org", f"To: {REPLY}", "Subject: Re: please verify your account settings")
    assert not m.suspicious


def test_ordinary_issue_mail_is_not_suspicious() -> None:
    for subject in ("Build broken", "Error fetching data from FOO", "Welcome page 404", "Confirm the fix works"):
        assert not msg("From: a@example.org", f"To: {ISSUE}", f"Subject: {subject}").suspicious, subject


def test_corpus_signup() -> None:
    m = build_message(1, 1, (), NOW, 0, load("signup_service_desk.eml"), CFG, NOW)
    assert m.suspicious and "Service Desk address" in (m.suspicious_reason or "")
    assert m.bot  # and a no-reply sender


def test_operator_suspicious_patterns() -> None:
    cfg = AnalysisConfig(address=T, suspicious_patterns=("okta",))
    m = msg("From: Okta <noreply@okta.example>", f"To: {REPLY}", "Subject: anything", config=cfg)
    assert m.suspicious and "configured suspicious pattern 'okta'" in (m.suspicious_reason or "")


# --- duplicates --------------------------------------------------------------------------------

def test_mark_duplicates_flags_the_later_copies_and_is_recomputable() -> None:
    a = msg("From: a@x.org", f"To: {ISSUE}", "Message-ID: <same@x>", uid=10)
    b = msg("From: a@x.org", f"To: {ISSUE}", "Message-ID: <same@x>", uid=12)
    c = msg("From: a@x.org", f"To: {ISSUE}", "Message-ID: <other@x>", uid=13)
    d = msg("From: a@x.org", f"To: {ISSUE}", uid=14)  # no Message-ID: never a duplicate
    e = msg("From: a@x.org", f"To: {ISSUE}", uid=15)
    f = msg("From: a@x.org", f"To: {ISSUE}", "Message-ID:  <same@x> ", uid=11)  # spaces around: the same
    assert classify.mark_duplicates([b, a, c, d, e, f]) == 2  # any order: the UIDs decide
    assert not a.suspicious and f.suspicious and b.suspicious
    assert not c.suspicious and not d.suspicious and not e.suspicious
    assert b.suspicious_reason == ("duplicate: same Message-ID as UID 10, delivered earlier "
                                   "(GitLab would process each copy)")
    # idempotent
    assert classify.mark_duplicates([a, b, c, d, e, f]) == 2
    assert b.suspicious_reason is not None and b.suspicious_reason.count("duplicate") == 1
    # after a is gone (expunged), f is the first copy and b a copy of it
    assert classify.mark_duplicates([b, c, f]) == 1
    assert not f.suspicious and f.suspicious_reason is None and "as UID 11," in (b.suspicious_reason or "")
    # after f is gone too, b is no longer a duplicate
    assert classify.mark_duplicates([b, c]) == 0
    assert not b.suspicious and b.suspicious_reason is None


def test_duplicates_streamed_give_the_whole_listings_verdicts() -> None:
    """Seen in ascending UID order (held-back rows included) and marked in any later order, as
    a listing gives them: the verdicts of mark_duplicates over the whole listing."""
    import random

    rng = random.Random(5)
    for _ in range(50):
        uids = sorted(rng.sample(range(1, 200), 40))
        rows = [msg("From: a@x.org", f"To: {ISSUE}", f"Message-ID: <m{rng.randrange(12)}@x>", uid=u)
                for u in uids]
        whole = [msg("From: a@x.org", f"To: {ISSUE}", f"Message-ID: {m.message_id}", uid=m.uid) for m in rows]
        classify.mark_duplicates(whole)
        dups = classify.Duplicates()
        held = [m for m in rows if rng.random() < 0.2]  # given last, as a second pass gives them
        out = [m for m in rows if m not in held] + held
        cut = rng.randrange(len(rows))  # seen in two batches, in any order within each
        dups.see(list(reversed(rows[:cut])))
        dups.see(rows[cut:])
        dups.mark(out[:10])
        dups.mark(out[10:])
        assert [(m.uid, m.suspicious, m.suspicious_reason) for m in rows] == \
            [(m.uid, m.suspicious, m.suspicious_reason) for m in whole]


def test_mark_duplicates_keeps_other_suspicious_reasons() -> None:
    a = msg("From: s@svc.example", f"To: {SD}", "Subject: Verify your email", "Message-ID: <d@x>", uid=1)
    b = msg("From: s@svc.example", f"To: {SD}", "Subject: Verify your email", "Message-ID: <d@x>", uid=2)
    classify.mark_duplicates([a, b])
    assert b.suspicious_reason is not None
    assert "sign-up/verification" in b.suspicious_reason and "duplicate" in b.suspicious_reason
    assert a.suspicious and "duplicate" not in (a.suspicious_reason or "")
    classify.mark_duplicates([b])
    assert b.suspicious and "duplicate" not in (b.suspicious_reason or "")


def test_reannotation_keeps_duplicate_verdict() -> None:
    a = msg("From: a@x.org", f"To: {ISSUE}", "Message-ID: <same@x>", uid=1)
    b = msg("From: a@x.org", f"To: {ISSUE}", "Message-ID: <same@x>", uid=2)
    classify.mark_duplicates([a, b])
    classify.annotate(b, Headers.parse(f"From: a@x.org\r\nTo: {ISSUE}\r\n".encode()), CFG, NOW)
    assert b.suspicious and "duplicate" in (b.suspicious_reason or "")


# --- robustness and speed ----------------------------------------------------------------------

def test_annotate_never_raises_on_broken_config() -> None:
    m = Message(uid=1, uidvalidity=1)
    classify.annotate(m, Headers.parse(b"To: x\r\n"), AnalysisConfig(address="incoming+%{key}@x",
                      bot_sender_patterns=("(",), stale_after=timedelta(days=1)), NOW)
    assert "analysis_error" not in m.extra


def test_annotate_is_repeatable_on_one_message() -> None:
    """annotate twice on the same row gives the same verdicts (its cost is measured in
    bench/bench_build.py, never asserted here: a timed test fails on a loaded machine)."""
    raw = load("new_issue_postfix.eml")
    headers = Headers.parse(raw)
    m = build_message(1, 1, (), NOW - timedelta(days=3), len(raw), raw, CFG, NOW)
    cfg = AnalysisConfig(address=T, bot_subject_patterns=("Error fetching",), bot_sender_patterns=("@monitoring",))
    for _ in range(3):
        classify.annotate(m, headers, cfg, NOW)
    assert m.kind == "new_issue" and m.stale


def test_issue_titles_about_passwords_are_not_signup_mail() -> None:
    from datetime import UTC, datetime

    from triage_tui.domain.analysis import AnalysisConfig, build_message

    cfg = AnalysisConfig(address="incoming+%{key}@gitlab.example.com")
    now = datetime.now(UTC)

    def verdict(subject: str) -> bool:
        raw = (f"From: Ann <ann@example.org>\r\nTo: incoming+group-proj-42-glimt-abc-issue@gitlab.example.com\r\n"
               f"Subject: {subject}\r\n\r\n").encode()
        return build_message(1, 1, (), now, 10, raw, cfg, now).suspicious

    assert not verdict("Password reset link expires immediately")
    assert verdict("Reset your password for Slack")


def test_automated_senders_are_bots() -> None:
    from datetime import UTC, datetime

    from triage_tui.domain.analysis import AnalysisConfig, build_message

    cfg = AnalysisConfig(address="incoming+%{key}@gitlab.example.com")
    now = datetime.now(UTC)

    def bot(sender: str) -> bool:
        raw = (f"From: {sender}\r\nTo: incoming+group-proj-42-glimt-abc-issue@gitlab.example.com\r\n"
               "Subject: Error fetching data from FOO\r\n\r\n").encode()
        return build_message(1, 1, (), now, 10, raw, cfg, now).bot

    for s in ("FOO Monitoring <monitoring-bot@ops.example>", "alertmanager@ops.example", "jenkins@ci.example",
              "dependabot[bot] <x@example.com>", "alerts+prod@example.com"):
        assert bot(s), s
    for s in ("Robert <robert@example.com>", "abbot@example.com", "Alice <alice@example.org>", "cinema@example.com"):
        assert not bot(s), s


def test_references_only_count_on_the_gitlab_host() -> None:
    from datetime import UTC, datetime

    from triage_tui.domain.analysis import AnalysisConfig, build_message

    now = datetime.now(UTC)
    raw = (b"From: a@example.org\r\nTo: someone@example.org\r\n"
           b"References: <reply-0123456789abcdef0123456789abcdef@other.example>\r\nSubject: Re: x\r\n\r\n")
    base = dict(address="incoming+%{key}@incoming.gitlab.example.com")
    anyhost = build_message(1, 1, (), now, 10, raw, AnalysisConfig(**base), now)
    strict = build_message(1, 1, (), now, 10, raw, AnalysisConfig(**base, gitlab_host="gitlab.example.com"), now)
    assert anyhost.kind == "reply" and anyhost.matched_header and anyhost.matched_header.lower() == "references"
    assert strict.kind == "unknown" and strict.no_key
