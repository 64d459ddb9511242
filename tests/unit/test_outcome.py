"""GitLab's verdict before re-ingest: every step of Receiver#execute / EmailReceiverWorker, in order.

Expected verdicts follow GitLab's sources (see the docstring of triage_tui/domain/outcome.py for
the files): blank mail is dropped without a reply (the worker returns ``unless raw.present?``),
Auto-Submitted other than exactly ``no`` and ``X-Autoreply: yes`` are dropped without a reply, a
repeated field crashes the check (dropped), no key / an unhandled key is rejected with a mail to
the sender, and a key a handler accepts is handled (GitLab's database may still refuse it).
"""

from __future__ import annotations

import dataclasses
import unicodedata
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from tests.corpus import load
from tests.corpus.nasty import corpus as nasty_corpus
from tests.unit.test_keys import KEYS, SD_KEYS
from triage_tui.domain import outcome as O
from triage_tui.domain.analysis import AnalysisConfig, build_message
from triage_tui.domain.headers import Headers
from triage_tui.domain.keys import KeyInfo, classify_key, find_key
from triage_tui.domain.model import Message
from triage_tui.domain.outcome import Outcome, predict, predict_for_message

T = "incoming+%{key}@incoming.gitlab.example.com"
HOST = "gitlab.example.com"
CFG = AnalysisConfig(address=T, gitlab_host=HOST)
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
HEX = "0123456789abcdef0123456789abcdef"
ISSUE = "incoming+gitlab-org-gitlab-20-glimt-abc-issue@incoming.gitlab.example.com"
REPLY = f"incoming+{HEX}@incoming.gitlab.example.com"
SD_T = "support+%{key}@sd.example.com"


def raw(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def outcome(*lines: str, config: AnalysisConfig = CFG, size: int | None = None, **kw: object) -> Outcome:
    """Both entry points on the same header block; they must agree."""
    header = raw(*lines) if lines else b""
    n = len(header) if size is None else size
    m = build_message(1, 7, (), NOW - timedelta(hours=1), n, header, config, NOW)
    headers = Headers.parse(header)
    a = predict_for_message(m, headers, config, **kw)  # type: ignore[arg-type]
    info = find_key(headers, config.address, config.mailbox_kind, config.gitlab_host)
    b = predict(headers, info, n, config, **kw)  # type: ignore[arg-type]
    assert a == b
    return a


# --- the shape ----------------------------------------------------------------------------------

def test_outcome_is_a_small_frozen_value_with_json() -> None:
    o = outcome("From: a@example.org", f"To: {ISSUE}")
    assert o.to_json() == {"verdict": "handled", "handler": "create_issue", "reason": o.reason,
                           "needs_db": True, "rule": "handler"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.verdict = "dropped"  # type: ignore[misc]


def test_glyphs_are_one_cell_distinct_and_have_an_ascii_fallback() -> None:
    assert set(O.GLYPHS) == set(O.ASCII_GLYPHS) == set(O.VERDICTS)
    assert len(set(O.GLYPHS.values())) == len(O.VERDICTS)
    assert len(set(O.ASCII_GLYPHS.values())) == len(O.VERDICTS)
    for g in O.GLYPHS.values():
        assert len(g) == 1 and unicodedata.east_asian_width(g) in ("N", "Na", "H")  # never wide or ambiguous
        assert g not in "BS!?·."  # the list's other verdict letters
    for g in O.ASCII_GLYPHS.values():
        assert len(g) == 1 and g.isascii() and g.isprintable() and g not in "BS!?."
    o = Outcome("rejected", None, "x", False)
    assert (o.glyph, o.ascii_glyph) == (O.GLYPHS["rejected"], O.ASCII_GLYPHS["rejected"])
    assert O.glyph_for("dropped", ascii_only=True) == "-"
    assert Outcome("nonsense", None, "", False).glyph == "?"


# --- 0. the Sidekiq job size limit (webhook delivery), before anything else ----------------------

def test_over_the_size_limit_is_rejected_even_when_auto_submitted() -> None:
    o = outcome("From: a@example.org", f"To: {ISSUE}", "Auto-Submitted: auto-replied", size=2_000_001,
                size_limit=2_000_000)
    assert (o.verdict, o.rule, o.needs_db) == ("rejected", "too_large", False)
    assert "2,000,001" in o.reason and "EmailTooLarge" in o.reason


@pytest.mark.parametrize(("size", "limit"), [(2_000_000, 2_000_000), (10, None), (10**9, 0)])
def test_at_or_without_a_size_limit_nothing_is_refused(size: int, limit: int | None) -> None:
    assert outcome("From: a@example.org", f"To: {ISSUE}", size=size, size_limit=limit).verdict == "handled"


def test_size_limit_can_come_from_the_config() -> None:
    cfg = SimpleNamespace(address=T, gitlab_host=HOST, sidekiq_job_size_limit=100)
    h = Headers.parse(raw("From: a@example.org", f"To: {ISSUE}"))
    assert predict(h, find_key(h, T), 101, cfg).rule == "too_large"
    assert predict(h, find_key(h, T), 100, cfg).verdict == "handled"


# --- 1. blank mail ------------------------------------------------------------------------------

def test_blank_mail_is_dropped_without_a_rejection() -> None:
    # EmailReceiverWorker#handle_failure: `return unless raw.present?` (no FailureHandler, no mail)
    o = outcome(size=0)
    assert (o.verdict, o.rule, o.handler, o.needs_db) == ("dropped", "blank", None, False)
    assert "EmptyEmailError" in o.reason


def test_size_zero_with_headers_is_not_blank() -> None:
    # a listing that does not know the size (0) must not call real mail blank
    assert outcome("From: a@example.org", f"To: {ISSUE}", size=0).verdict == "handled"


def test_no_header_but_a_body_is_not_blank_and_has_nobody_to_reject_to() -> None:
    o = outcome(size=120)
    assert (o.verdict, o.rule) == ("rejected", "no_key")
    assert "no From" in o.reason


# --- 2. auto-generated mail ---------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    "auto-replied", "auto-generated", "auto-notified", "auto-replied; owner=bob@example.org",
    "No", "NO", "no; reason=x", "no (really)", "=?utf-8?q?no?=", "yes", "",
])
def test_auto_submitted_other_than_exactly_no_is_dropped(value: str) -> None:
    o = outcome("From: a@example.org", f"To: {ISSUE}", f"Auto-Submitted: {value}")
    assert (o.verdict, o.rule, o.handler, o.needs_db) == ("dropped", "auto_submitted", None, False)
    assert "without a reply" in o.reason
    if not value:
        assert "(empty)" in o.reason


@pytest.mark.parametrize("line", ["Auto-Submitted: no", "auto-submitted:   no  ", "AUTO-SUBMITTED:\tno",
                                  "Auto-Submitted:\r\n no"])
def test_auto_submitted_no_is_processed(line: str) -> None:
    # Mail::Header#[] is case-insensitive; Mail::Field#value unfolds and strips
    assert outcome("From: a@example.org", f"To: {ISSUE}", line).verdict == "handled"


def test_repeated_auto_submitted_is_dropped_even_when_each_says_no() -> None:
    # Mail::Header#[] returns an Array for a repeated field; Array#value raises NoMethodError, which
    # FailureHandler has no reason for: no rejection mail
    o = outcome("From: a@example.org", f"To: {ISSUE}", "Auto-Submitted: no", "Auto-Submitted: no")
    assert (o.verdict, o.rule) == ("dropped", "auto_submitted_repeated")
    assert "2 times" in o.reason


def test_a_header_named_like_auto_submitted_is_not_it() -> None:
    assert outcome("From: a@example.org", f"To: {ISSUE}", "Auto_Submitted: auto-replied",
                   "X-Auto-Submitted: auto-replied").verdict == "handled"


@pytest.mark.parametrize(("value", "verdict"), [("yes", "dropped"), ("Yes", "handled"), ("YES", "handled"),
                                                ("no", "handled"), ("", "handled"), ("yes please", "handled"),
                                                ("  yes  ", "dropped")])
def test_x_autoreply_is_exactly_yes(value: str, verdict: str) -> None:
    o = outcome("From: a@example.org", f"To: {ISSUE}", f"X-Autoreply: {value}")
    assert o.verdict == verdict
    if verdict == "dropped":
        assert (o.rule, o.needs_db) == ("x_autoreply", False)


def test_x_autoreply_is_read_only_when_auto_submitted_passed() -> None:
    o = outcome("From: a@example.org", f"To: {ISSUE}", "Auto-Submitted: no", "X-Autoreply: yes")
    assert o.rule == "x_autoreply"
    # Auto-Submitted decides first (Ruby's ||): the repeated X-Autoreply is never read
    o = outcome("From: a@example.org", f"To: {ISSUE}", "Auto-Submitted: auto-replied",
                "X-Autoreply: no", "X-Autoreply: no")
    assert o.rule == "auto_submitted"
    o = outcome("From: a@example.org", f"To: {ISSUE}", "X-Autoreply: no", "X-Autoreply: no")
    assert (o.verdict, o.rule) == ("dropped", "x_autoreply_repeated")


def test_auto_generated_check_comes_before_the_key() -> None:
    # no key at all, yet no rejection mail: ignore_auto_reply! runs before the handler lookup
    o = outcome("From: a@example.org", "To: sales@incoming.gitlab.example.com", "Auto-Submitted: auto-generated")
    assert o.verdict == "dropped"
    # and without any template configured, auto-generated mail is still predictable
    o = outcome("From: a@example.org", f"To: {ISSUE}", "X-Autoreply: yes", config=AnalysisConfig(address=None))
    assert o.verdict == "dropped"


def test_hostile_auto_submitted_value_is_quoted_short() -> None:
    o = outcome("From: a@example.org", f"To: {ISSUE}", "Auto-Submitted: " + "x" * 100_000)
    assert o.verdict == "dropped" and len(o.reason) < 250


# --- 3. the key: every kind of the key corpus mapped to its handler ------------------------------

KIND_HANDLER = {"reply": "create_note", "new_issue": "create_issue", "note_on_issuable": "create_note_on_issuable",
                "unsubscribe": "unsubscribe", "new_merge_request": "create_merge_request",
                "service_desk": "service_desk"}


@pytest.mark.parametrize(("key", "expected"), KEYS, ids=[k for k, _ in KEYS])
def test_every_key_kind_maps_to_its_handler(key: str, expected: dict[str, object]) -> None:
    o = outcome("From: a@example.org", f"To: incoming+{key}@incoming.gitlab.example.com")
    if expected["kind"] == "unknown":
        assert (o.verdict, o.handler, o.rule, o.needs_db) == ("rejected", None, "unknown_key", False)
        assert "UnknownIncomingEmail" in o.reason and repr(key) in o.reason
    elif expected.get("project_path") == "":
        # "+tok": Ruby's "" is truthy, the legacy handler takes it, find_by_full_path("") finds nothing
        assert (o.verdict, o.handler, o.rule) == ("rejected", "create_issue", "project_not_found")
    else:
        assert (o.verdict, o.handler, o.rule, o.needs_db) == ("handled", KIND_HANDLER[str(expected["kind"])],
                                                              "handler", True)
        assert "in To" in o.reason


def test_handler_names_are_gitlabs() -> None:
    assert set(O.HANDLER_FOR_KIND.values()) == {"create_note", "create_issue", "create_note_on_issuable",
                                                "unsubscribe", "create_merge_request", "service_desk"}


@pytest.mark.parametrize(("key", "expected"), SD_KEYS, ids=[k for k, _ in SD_KEYS])
def test_service_desk_mailbox(key: str, expected: dict[str, object]) -> None:
    cfg = AnalysisConfig(address=SD_T, mailbox_kind="service_desk", gitlab_host=HOST)
    o = outcome("From: a@example.org", f"To: support+{key}@sd.example.com", config=cfg)
    assert o.handler == "service_desk"
    if "project_id" in expected or "project_path" in expected:
        assert (o.verdict, o.rule, o.needs_db) == ("handled", "handler", True)
    elif "project_slug" in expected:  # <slug>-<key>: a custom suffix, only GitLab's database resolves it
        assert (o.verdict, o.rule, o.needs_db) == ("handled", "custom_suffix", True)
        assert "custom suffix" in o.reason and "database" in o.reason
    else:  # no form GitLab can resolve: ServiceDeskHandler#execute raises ProjectNotFound
        assert (o.verdict, o.rule, o.needs_db) == ("rejected", "project_not_found", False)


def test_no_key_in_any_header_is_rejected_with_a_mail_to_the_sender() -> None:
    o = outcome("From: a@example.org", "To: sales@incoming.gitlab.example.com", "Cc: b@example.org")
    assert (o.verdict, o.handler, o.rule, o.needs_db) == ("rejected", None, "no_key", False)
    assert "writes to the sender" in o.reason and "no From" not in o.reason


def test_rejection_without_a_from_goes_nowhere() -> None:
    # EmailRejectionMailer#rejection: `return unless @original_message.from`
    for lines in (("To: sales@incoming.gitlab.example.com",), ("From:   ", "To: incoming+garbage@incoming.gitlab.example.com")):
        o = outcome(*lines)
        assert o.verdict == "rejected" and o.reason.endswith("the rejection mail goes nowhere")


def test_first_header_with_a_key_decides_even_when_no_handler_takes_it() -> None:
    o = outcome("From: a@example.org", "To: incoming+garbage@incoming.gitlab.example.com", f"Cc: {ISSUE}")
    assert (o.verdict, o.rule) == ("rejected", "unknown_key")
    assert "in To" in o.reason


def test_key_from_a_later_header_names_it() -> None:
    o = outcome("From: a@example.org", "To: team@corp.example", f"X-Original-To: {ISSUE}")
    assert (o.verdict, o.handler) == ("handled", "create_issue") and "in X-Original-To" in o.reason


def test_without_template_the_verdict_is_unknown_not_rejected() -> None:
    o = outcome("From: a@example.org", f"To: {ISSUE}", config=AnalysisConfig(address=None))
    assert (o.verdict, o.rule) == ("unknown", "no_template")


# --- References-only replies (a dedicated address) ---------------------------------------------

DEDICATED = "incoming@gitlab.example.com"  # no %{key}: replies only, found through References


def refs(host_cfg: str | None, ref_host: str) -> Outcome:
    return outcome("From: a@example.org", "To: incoming@gitlab.example.com",
                   f"References: <1@mail.example.com>,<reply-{HEX}@{ref_host}>",
                   config=AnalysisConfig(address=DEDICATED, gitlab_host=host_cfg))


def test_references_reply_with_the_gitlab_host() -> None:
    o = refs(HOST, HOST)
    assert (o.verdict, o.handler, o.needs_db) == ("handled", "create_note", True)
    assert "in References" in o.reason and "not configured" not in o.reason


def test_references_reply_from_another_host_is_no_key() -> None:
    o = refs(HOST, "other.example.com")
    assert (o.verdict, o.rule) == ("rejected", "no_key")


def test_references_reply_without_a_known_host_says_so() -> None:
    o = refs(None, "other.example.com")
    assert (o.verdict, o.handler) == ("handled", "create_note")
    assert "host is not configured here" in o.reason


def test_references_with_a_template_address() -> None:
    o = outcome("From: a@example.org", "To: someone@example.org", f"References: <reply-{HEX}@{HOST}>")
    assert (o.verdict, o.handler) == ("handled", "create_note") and "in References" in o.reason


# --- Service Desk custom e-mail addresses (GitLab's database) ----------------------------------

@pytest.mark.parametrize("addr", [f"support+{HEX}@acme.com", "support+1-abcdefghijklmnopqrstuvwxy-2s@acme.com",
                                  "support+verify@acme.com"])
def test_a_custom_email_form_without_key_needs_gitlabs_database(addr: str) -> None:
    o = outcome("From: a@example.org", f"To: {addr}")
    assert (o.verdict, o.rule, o.needs_db) == ("unknown", "custom_email_form", True)
    assert "database" in o.reason and "in To" not in o.reason and o.reason.startswith("To has")


@pytest.mark.parametrize("addr", ["support+nothex@acme.com", f"+{HEX}@acme.com", f"support+{HEX}@",
                                  f"support+{HEX}", f"a@b+{HEX}@acme.com"])
def test_plus_addresses_that_are_not_custom_email_forms(addr: str) -> None:
    assert outcome("From: a@example.org", f"To: {addr}").rule == "no_key"


def test_configured_custom_email_routes_to_service_desk() -> None:
    kw = {"custom_emails": ("Support@Acme.com",)}
    o = outcome("From: a@example.org", "To: support@acme.com", **kw)
    assert (o.verdict, o.handler, o.rule, o.needs_db) == ("handled", "service_desk", "custom_email", True)
    # in GitLab's order: a custom e-mail in To beats a template key in a later header
    o = outcome("From: a@example.org", "To: support@acme.com", f"Delivered-To: {ISSUE}", **kw)
    assert o.rule == "custom_email"
    # and a template key in To beats a custom e-mail in Cc
    o = outcome("From: a@example.org", f"To: {ISSUE}", "Cc: support@acme.com", **kw)
    assert (o.handler, o.rule) == ("create_issue", "handler")
    # reply and verification sub-addresses of a configured custom e-mail
    assert outcome("From: a@example.org", f"To: support+{HEX}@acme.com", **kw).rule == "custom_email"
    assert outcome("From: a@example.org", "To: support+verify@acme.com", **kw).rule == "custom_email"


def test_custom_emails_from_the_config() -> None:
    cfg = SimpleNamespace(address=T, gitlab_host=HOST, service_desk_custom_emails=["support@acme.com"])
    h = Headers.parse(raw("From: a@example.org", "To: support@acme.com"))
    assert predict(h, find_key(h, T), 100, cfg).rule == "custom_email"


# --- the corpus ---------------------------------------------------------------------------------

CORPUS = [
    # (file, template, verdict, handler, rule)
    ("auto_reply.eml", T, "dropped", None, "auto_submitted"),
    ("dedicated_references.eml", DEDICATED, "handled", "create_note", "handler"),
    ("dsn_bounce.eml", T, "handled", "create_note", "handler"),  # no Auto-Submitted: GitLab posts the bounce
    ("exchange_catchall.eml", "incoming-%{key}@exchange.example.com", "handled", "create_note_on_issuable", "handler"),
    ("exchange_catchall.eml", T, "rejected", None, "no_key"),
    ("list_mail.eml", T, "handled", "create_issue", "handler"),  # Precedence/List-Id mean nothing to GitLab
    ("new_issue_postfix.eml", T, "handled", "create_issue", "handler"),
    ("no_key.eml", T, "rejected", None, "no_key"),
    ("signup_service_desk.eml", T, "handled", "service_desk", "handler"),
]


@pytest.mark.parametrize(("name", "template", "verdict", "handler", "rule"), CORPUS)
def test_corpus(name: str, template: str, verdict: str, handler: str | None, rule: str) -> None:
    data = load(name)
    header = data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    cfg = AnalysisConfig(address=template, gitlab_host=HOST)
    m = build_message(1, 7, (), NOW, len(data), header, cfg, NOW)
    o = predict_for_message(m, Headers.parse(header), cfg)
    assert (o.verdict, o.handler, o.rule) == (verdict, handler, rule)


# --- hostile input ------------------------------------------------------------------------------

def test_nasty_corpus_never_raises() -> None:
    cfg = AnalysisConfig(address="incoming+%{key}@incoming.gitlab.example.com", gitlab_host=HOST)
    for n in nasty_corpus(NOW.timestamp()):
        header = n.raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        m = build_message(1, 7, (), NOW, len(n.raw), header, cfg, NOW)
        o = predict_for_message(m, Headers.parse(header), cfg, size_limit=1_000_000)
        assert o.verdict in O.VERDICTS, n.name
        assert len(o.reason) < 400, n.name


def test_a_broken_header_object_degrades_to_unknown() -> None:
    bad = Headers.__new__(Headers)
    bad.fields = [("from", None)]  # type: ignore[list-item]
    o = predict(bad, KeyInfo(), 10, CFG)
    assert (o.verdict, o.rule) == ("unknown", "error")
    bad.fields = None  # type: ignore[assignment]
    m = Message(uid=1, uidvalidity=1, size=10)
    assert predict_for_message(m, bad, CFG).rule == "error"
    assert predict(Headers([]), None, None, object()).verdict in O.VERDICTS  # no config attributes at all


def test_a_failed_annotation_is_unknown() -> None:
    m = Message(uid=1, uidvalidity=1, size=10)
    m.extra["analysis_error"] = "RecursionError"
    o = predict_for_message(m, Headers.parse(raw("From: a@example.org")), CFG)
    assert (o.verdict, o.rule) == ("unknown", "error") and "RecursionError" in o.reason


@pytest.mark.parametrize("value", ["\x1b[2J[bold]x[/]", "\u202eevil", "a\x00b", "é" * 500])
def test_control_and_bidi_in_values_do_not_break_it(value: str) -> None:
    o = outcome("From: a@example.org", f"To: incoming+{value}@incoming.gitlab.example.com",
                f"Auto-Submitted: no{value}")
    assert o.verdict == "dropped" and len(o.reason) < 250
    o = outcome("From: a@example.org", f"To: incoming+{value}@incoming.gitlab.example.com")
    # "\x1b[2J[bold]x[/]" has a '/' and no '+': GitLab's legacy Service Desk form takes it
    assert (o.verdict, o.handler) == (("handled", "service_desk") if "/" in value else ("rejected", None))
    assert len(o.reason) < 250


def test_thousands_of_plus_recipients_without_key() -> None:
    rcpts = ", ".join(f"user{i}+x{i}@example.org" for i in range(5_000))
    o = outcome("From: a@example.org", f"To: {rcpts}")
    assert o.rule == "no_key"
    rcpts += f", support+{HEX}@acme.com"
    assert outcome("From: a@example.org", f"To: {rcpts}").rule == "custom_email_form"


def test_classify_key_is_reused_not_copied() -> None:
    # the reply-key check of a custom e-mail form is keys.classify_key's (partitioned keys included)
    assert classify_key("1-abcdefghijklmnopqrstuvwxy").kind == "reply"
    assert O._custom_reply_form("s+1-abcdefghijklmnopqrstuvwxy@acme.com")


# --- custom e-mail: what GitLab's database would be asked, in GitLab's order --------------------

CUSTOM = {"custom_emails": ("support@acme.com",)}


def test_custom_email_reply_beats_the_service_desk_key_in_a_later_header() -> None:
    # the custom e-mail reply flow: To is the customer-facing reply address, Delivered-To the
    # project's Service Desk address it was forwarded to; GitLab asks its database about To first
    lines = ("From: customer@example.org", f"To: support+{HEX}@acme.com",
             "Delivered-To: incoming+acme-support-278964-issue-@incoming.gitlab.example.com")
    o = outcome(*lines)
    assert (o.verdict, o.handler, o.rule, o.needs_db) == ("handled", "create_note", "custom_email_form", True)
    assert "Delivered-To decides (service_desk)" in o.reason
    o = outcome(*lines, **CUSTOM)
    assert (o.verdict, o.handler, o.rule) == ("handled", "create_note", "custom_email")


def test_custom_email_form_before_an_unhandled_key() -> None:
    o = outcome("From: a@example.org", f"To: support+{HEX}@acme.com",
                "Cc: incoming+garbage@incoming.gitlab.example.com")
    assert (o.verdict, o.rule) == ("unknown", "custom_email_form") and "matches no handler" in o.reason


def test_custom_email_verification_goes_to_service_desk() -> None:
    o = outcome("From: a@example.org", "To: support+verify@acme.com", **CUSTOM)
    assert (o.verdict, o.handler, o.rule) == ("handled", "service_desk", "custom_email")
    o = outcome("From: a@example.org", "To: support+verify@acme.com")
    assert (o.verdict, o.handler, o.rule) == ("unknown", "service_desk", "custom_email_form")


def test_other_sub_addresses_of_a_custom_email_are_not_it() -> None:
    # key_from_settings only strips "+verify"; key_from_reply_address needs a reply key
    assert outcome("From: a@example.org", "To: support+sales@acme.com", **CUSTOM).rule == "no_key"
    assert outcome("From: a@example.org", "To: support@acme.org", **CUSTOM).rule == "no_key"


def test_the_config_cache_follows_the_config() -> None:
    h = Headers.parse(raw("From: a@example.org", f"To: {ISSUE}"))
    a, b = AnalysisConfig(address=T), AnalysisConfig(address=None)
    info = find_key(h, T)
    for _ in range(2):
        assert predict(h, info, 10, a).verdict == "handled"
        assert predict(h, info, 10, b).verdict == "unknown"
        assert predict(h, info, 10, a, size_limit=5).rule == "too_large"
        assert predict(h, info, 10, a).verdict == "handled"


@pytest.mark.parametrize("limit", [True, -5, "100", 1.5])
def test_a_nonsense_size_limit_is_no_limit(limit: object) -> None:
    cfg = SimpleNamespace(address=T, gitlab_host=HOST, sidekiq_job_size_limit=limit)
    h = Headers.parse(raw("From: a@example.org", f"To: {ISSUE}"))
    assert predict(h, find_key(h, T), 10**9, cfg).verdict == "handled"
