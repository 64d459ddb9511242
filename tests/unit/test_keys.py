"""GitLab key decoding: templates, address extraction, header order, handler classification.

Expected values come from GitLab's sources (the gitlab-email_handler gem's matchers and MailKey,
and their specs); ``tests/corpus/reference.py`` holds literal translations of GitLab's regexes,
against which the linear implementation is checked on a corpus and on generated keys.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.corpus import load, reference
from triage_tui.domain.headers import Headers
from triage_tui.domain.keys import (
    HEADER_ORDER,
    KeyInfo,
    classify_key,
    decode_address,
    find_key,
    key_from_address,
    key_from_message_id,
    reference_ids,
    split_addresses,
    template_regex,
)

T = "incoming+%{key}@incoming.gitlab.example.com"
CATCH_ALL = "incoming-%{key}@exchange.example.com"
HEX = "0123456789abcdef0123456789abcdef"
R25 = "abcdefghijklmnopqrstuvwxy"


def fields(info: KeyInfo) -> dict[str, object]:
    return {k: v for k, v in info.to_json().items() if v is not None and k not in ("key", "matched_header")}


def ref(key: str, mailbox_kind: str = "incoming") -> dict[str, object]:
    r = reference.identify(key) if mailbox_kind == "incoming" else reference.identify_service_desk_mailbox(key)
    return {k: v for k, v in r.items() if v is not None}


# --- the corpus of keys, with what GitLab makes of them -------------------------------------

KEYS = [
    # (key, expected)
    (HEX, {"kind": "reply", "reply_key": HEX}),
    (f"1-{R25}", {"kind": "reply", "reply_key": f"1-{R25}", "partition": 1}),
    (f"zz-{R25}-2s", {"kind": "reply", "reply_key": f"zz-{R25}-2s", "partition": 36 * 35 + 35, "namespace_id": 100}),
    (f"1-{R25}-{'z' * 13}", {"kind": "reply", "reply_key": f"1-{R25}-{'z' * 13}", "partition": 1,
                             "namespace_id": int("z" * 13, 36)}),
    (HEX.upper(), {"kind": "unknown"}),  # uppercase hex is not a reply key
    (HEX[:31], {"kind": "unknown"}),
    (f"{HEX}-unsubscribe", {"kind": "unsubscribe", "reply_key": HEX}),
    (f"{HEX}+unsubscribe", {"kind": "unsubscribe", "reply_key": HEX}),
    (f"3-{R25}-a-unsubscribe", {"kind": "unsubscribe", "reply_key": f"3-{R25}-a", "partition": 3, "namespace_id": 10}),
    ("gitlab-org-gitlab-20-glimt-abc123-issue",
     {"kind": "new_issue", "project_slug": "gitlab-org-gitlab", "project_id": 20}),
    ("gitlab-org-gitlab-ce-20-Author_Token-issue",  # GitLab's own example
     {"kind": "new_issue", "project_slug": "gitlab-org-gitlab-ce", "project_id": 20}),
    # slug ending in digits: the greedy slug keeps them
    ("group-2024-99-glimt-tok-issue", {"kind": "new_issue", "project_slug": "group-2024", "project_id": 99}),
    # a token containing -<digits>-: GitLab's greedy slug swallows the start of the token
    ("my-proj-42-glimt-abc-7-def-issue", {"kind": "new_issue", "project_slug": "my-proj-42-glimt-abc", "project_id": 7}),
    ("a-1-b-2-c-issue", {"kind": "new_issue", "project_slug": "a-1-b", "project_id": 2}),
    ("Group-Proj-5-glimt-x-issue", {"kind": "new_issue", "project_slug": "Group-Proj", "project_id": 5}),
    ("gitlab-org/gitlab+glimt-abc", {"kind": "new_issue", "project_path": "gitlab-org/gitlab"}),
    ("gitlab-org/gitlab+Author_Token", {"kind": "new_issue", "project_path": "gitlab-org/gitlab"}),
    ("+tok", {"kind": "new_issue", "project_path": ""}),  # Ruby's "" is truthy: GitLab accepts the form
    ("gitlab-org-gitlab-ce-20-Author_Token-issue-34",
     {"kind": "note_on_issuable", "project_slug": "gitlab-org-gitlab-ce", "project_id": 20, "issue_iid": 34}),
    ("p-1-t-issue-1-issue-5", {"kind": "note_on_issuable", "project_slug": "p", "project_id": 1, "issue_iid": 5}),
    ("a/b-1-t-issue-2", {"kind": "note_on_issuable", "project_slug": "a/b", "project_id": 1, "issue_iid": 2}),
    ("gitlab-org-gitlab-ce-20-Author_Token-merge-request",
     {"kind": "new_merge_request", "project_slug": "gitlab-org-gitlab-ce", "project_id": 20}),
    ("gitlab-org/gitlab-ce+merge-request+Author_Token",
     {"kind": "new_merge_request", "project_path": "gitlab-org/gitlab-ce"}),
    ("gitlab-org-gitlab-ce-20-issue-", {"kind": "service_desk", "project_slug": "gitlab-org-gitlab-ce", "project_id": 20}),
    ("org-2024-7-issue-", {"kind": "service_desk", "project_slug": "org-2024", "project_id": 7}),
    ("gitlab-org/gitlab-ce", {"kind": "service_desk", "project_path": "gitlab-org/gitlab-ce"}),
    ("gitlab-org-gitlab", {"kind": "unknown"}),  # no '/', no handler shape
    ("a/b-1-t-issue", {"kind": "service_desk", "project_path": "a/b-1-t-issue"}),  # '/' disables the new form
    ("a/b+tok+more", {"kind": "unknown"}),
    ("x-issue", {"kind": "unknown"}),
    ("-1-t-issue", {"kind": "unknown"}),  # the slug must not be empty
    ("p-1--issue", {"kind": "unknown"}),  # nor the token
    ("p-١-t-issue", {"kind": "unknown"}),  # Ruby's \d is ASCII
]


@pytest.mark.parametrize(("key", "expected"), KEYS, ids=[k for k, _ in KEYS])
def test_classify_key_corpus(key: str, expected: dict[str, object]) -> None:
    info = classify_key(key)
    assert fields(info) == expected
    assert info.key == key
    assert fields(info) == ref(key)  # and GitLab's literal regexes agree


SD_KEYS = [
    ("acme-support-278964-issue-", {"kind": "service_desk", "project_slug": "acme-support", "project_id": 278964}),
    ("acme-support-my_sd_key", {"kind": "service_desk", "project_slug": "acme-support"}),
    ("group/project", {"kind": "service_desk", "project_path": "group/project"}),
    (HEX, {"kind": "service_desk"}),
    ("gitlab-org-gitlab-20-glimt-abc-issue", {"kind": "service_desk", "project_slug": "gitlab-org-gitlab-20-glimt-abc"}),
    ("UPPER-KEY", {"kind": "service_desk"}),
]


@pytest.mark.parametrize(("key", "expected"), SD_KEYS, ids=[k for k, _ in SD_KEYS])
def test_service_desk_mailbox_sends_every_key_to_service_desk(key: str, expected: dict[str, object]) -> None:
    info = classify_key(key, "service_desk")
    assert fields(info) == expected
    assert fields(info) == ref(key, "service_desk")


# --- differential: linear matchers == GitLab's regexes --------------------------------------

_FRAGMENTS = ["-", "+", "/", "_", "a", "Z", "0", "7", "42", "\n", "-issue", "-issue-", "issue",
              "-merge-request", "+merge-request+", "-unsubscribe", "+unsubscribe", "glimt-", HEX, R25,
              "1-", "-2s", " ", "é", "١"]


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=10).map("".join))
def test_matchers_agree_with_gitlab_regexes(key: str) -> None:
    assert fields(classify_key(key)) == ref(key)
    assert fields(classify_key(key, "service_desk")) == ref(key, "service_desk")


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ab-19+/\n_", max_size=30))
def test_matchers_agree_on_small_alphabet(key: str) -> None:
    assert fields(classify_key(key)) == ref(key)
    assert fields(classify_key(key, "service_desk")) == ref(key, "service_desk")


# --- templates and addresses -----------------------------------------------------------------

def test_template_regex_is_gitlabs_anchored_case_sensitive_pattern() -> None:
    assert template_regex(T).pattern == r"\A<?incoming\+(.+)@incoming\.gitlab\.example\.com>?\Z"
    assert key_from_address("incoming+abc@incoming.gitlab.example.com", T) == "abc"
    assert key_from_address("<incoming+abc@incoming.gitlab.example.com>", T) == "abc"
    assert key_from_address("incoming+abc@incoming.gitlab.example.com>", T) == "abc"  # both <> optional
    assert key_from_address("Incoming+abc@incoming.gitlab.example.com", T) is None  # case-sensitive
    assert key_from_address("incoming+abc@INCOMING.gitlab.example.com", T) is None
    assert key_from_address("incoming+abc@gitlab.example.com", T) is None  # wrong domain
    assert key_from_address("incoming+abc@incoming.gitlab.example.com.evil", T) is None
    assert key_from_address("xincoming+abc@incoming.gitlab.example.com", T) is None
    assert key_from_address("incoming+@incoming.gitlab.example.com", T) is None  # (.+) needs a char
    assert key_from_address("incoming+a\nb@incoming.gitlab.example.com", T) is None  # . excludes \n
    assert key_from_address("incomingXabc@incoming.gitlab.example.com", T) is None  # '+' is literal


def test_key_keeps_everything_up_to_the_last_domain() -> None:
    assert key_from_address("incoming+a@b@incoming.gitlab.example.com", T) == "a@b"


def test_catch_all_template() -> None:
    info = decode_address("incoming-group-2024-99-glimt-7x2k-issue-34@exchange.example.com", CATCH_ALL)
    assert fields(info) == {"kind": "note_on_issuable", "project_slug": "group-2024", "project_id": 99, "issue_iid": 34}
    assert decode_address("incoming+group-1-t-issue@exchange.example.com", CATCH_ALL).key is None


def test_dedicated_address_never_yields_a_key_from_an_address() -> None:
    assert key_from_address("incoming@gitlab.example.com", "incoming@gitlab.example.com") is None


def test_no_template_no_key() -> None:
    assert key_from_address("incoming+abc@x", None) is None
    assert decode_address("incoming+abc@x", None) == KeyInfo()
    assert find_key(Headers.parse(b"To: incoming+abc@x\r\n"), None) == KeyInfo()


def test_template_with_two_placeholders_uses_the_first() -> None:
    t = "in+%{key}-%{key}@x.example"
    assert key_from_address("in+abc-%{key}@x.example", t) == "abc"
    assert key_from_address("in+abc-def@x.example", t) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a@b", ["a@b"]),
        ("  a@b  ", ["a@b"]),
        ("Name <a@b>", ["a@b"]),
        ('"Doe, John" <a@b>, c@d', ["a@b", "c@d"]),
        ("a@b (Comment, with, commas), <c@d>", ["a@b", "c@d"]),
        ("(nested (comment)) a@b", ["a@b"]),
        ("Team: a@b, Name <c@d>;, e@f", ["a@b", "c@d", "e@f"]),
        ("Undisclosed recipients:;", []),
        ('"incoming+key"@x', ['"incoming+key"@x']),
        ('"quoted \\" name" <a@b>', ["a@b"]),
        ("=?utf-8?q?J=C3=B6rg?= <a@b>", ["a@b"]),
        ("=?utf-8?b?SsO2cmcsIFRlYW0=?= <a@b>, c@d", ["a@b", "c@d"]),
        ("<a@b>", ["a@b"]),
        ("a @ b", ["a@b"]),
        ("", []),
        (",,,", []),
        ("<unterminated@x", ["unterminated@x"]),
        ('"unterminated <a@b>', ['"unterminated <a@b>']),
    ],
)
def test_split_addresses(value: str, expected: list[str]) -> None:
    assert split_addresses(value) == expected


def test_decode_address_takes_the_first_matching_recipient() -> None:
    value = ('"Doe, Jane" <jane@example.com>, =?utf-8?q?Git_Lab?= <incoming+p-5-t-merge-request@incoming.gitlab.example.com>,'
             " incoming+q-6-t-issue@incoming.gitlab.example.com")
    info = decode_address(value, T)
    assert fields(info) == {"kind": "new_merge_request", "project_slug": "p", "project_id": 5}
    assert info.matched_header is None


def test_quoted_local_part_never_matches() -> None:
    assert decode_address('"incoming+p-5-t-issue"@incoming.gitlab.example.com', T).key is None


def test_group_recipients_are_searched() -> None:
    info = decode_address("GitLab: incoming+p-5-t-issue@incoming.gitlab.example.com;", T)
    assert info.kind == "new_issue"


# --- References and Received ------------------------------------------------------------------

def test_reference_ids_like_gitlab_scan() -> None:
    assert reference_ids("<a@example.com>,<b@example.com>") == ["a@example.com", "b@example.com"]
    assert reference_ids("<a@x> <b@y>") == ["a@x", "b@y"]
    assert reference_ids("no brackets") == []
    assert reference_ids("x>") == ["x"]
    assert reference_ids(None) == []


def test_key_from_message_id() -> None:
    assert key_from_message_id("reply-abc@gitlab.example.com", "gitlab.example.com") == "abc"
    assert key_from_message_id("reply-abc@other.example.com", "gitlab.example.com") is None
    assert key_from_message_id("reply-abc@any.host", None) == "abc"
    assert key_from_message_id("reply-@gitlab.example.com", "gitlab.example.com") is None
    assert key_from_message_id("notreply-abc@gitlab.example.com", None) is None


# --- find_key: GitLab's header order, first key wins -----------------------------------------

def h(*lines: str) -> Headers:
    return Headers.parse("\r\n".join(lines).encode() + b"\r\n\r\n")


ADDR = "incoming+p-5-t-issue@incoming.gitlab.example.com"


@pytest.mark.parametrize(
    ("header", "line"),
    [
        ("To", f"To: Support <{ADDR}>"),
        ("Delivered-To", f"Delivered-To: {ADDR}"),
        ("X-Delivered-To", f"X-Delivered-To: {ADDR}"),
        ("Envelope-To", f"Envelope-To: <{ADDR}>"),
        ("X-Envelope-To", f"X-Envelope-To: {ADDR}"),
        ("Received", f"Received: from x by y with ESMTP id 1 for <{ADDR}>; Mon, 1 Jan 2024 00:00:00 +0000"),
        ("X-Original-To", f"X-Original-To: {ADDR}"),
        ("X-Forwarded-To", f"X-Forwarded-To: {ADDR}"),
        ("Cc", f"Cc: a@b, GitLab <{ADDR}>"),
    ],
)
def test_each_header_gitlab_reads(header: str, line: str) -> None:
    info = find_key(h("To: someone@example.com", line), T)
    assert (info.kind, info.project_id, info.matched_header) == ("new_issue", 5, header)


def test_header_order_is_gitlabs() -> None:
    assert HEADER_ORDER == ("To", "References", "Delivered-To", "X-Delivered-To", "Envelope-To", "X-Envelope-To",
                            "Received", "X-Original-To", "X-Forwarded-To", "Cc")
    lines = [
        "Cc: incoming+cc-1-t-issue@incoming.gitlab.example.com",
        "X-Forwarded-To: incoming+xf-1-t-issue@incoming.gitlab.example.com",
        "X-Original-To: incoming+xo-1-t-issue@incoming.gitlab.example.com",
        "Received: from a by b for <incoming+rc-1-t-issue@incoming.gitlab.example.com>; Mon, 1 Jan 2024 00:00:00 +0000",
        "X-Envelope-To: incoming+xe-1-t-issue@incoming.gitlab.example.com",
        "Envelope-To: incoming+en-1-t-issue@incoming.gitlab.example.com",
        "X-Delivered-To: incoming+xd-1-t-issue@incoming.gitlab.example.com",
        "Delivered-To: incoming+de-1-t-issue@incoming.gitlab.example.com",
        f"References: <reply-{HEX}@gitlab.example.com>",
        "To: incoming+to-1-t-issue@incoming.gitlab.example.com",
    ]
    expected = ["To", "References", "Delivered-To", "X-Delivered-To", "Envelope-To", "X-Envelope-To",
                "Received", "X-Original-To", "X-Forwarded-To", "Cc"]
    # remove the winner each time: the next header in GitLab's order must win
    for want in expected:
        info = find_key(h(*lines), T, gitlab_host="gitlab.example.com")
        assert info.matched_header == want
        lines = [ln for ln in lines if not ln.startswith(want + ":")]
    assert find_key(h(*lines), T) == KeyInfo()


def test_first_key_wins_even_when_no_handler_takes_it() -> None:
    """GitLab stops at the first header carrying a key, then fails to handle it: it does not
    look further, so the valid key in Delivered-To is never used."""
    info = find_key(h("To: incoming+garbage@incoming.gitlab.example.com", f"Delivered-To: {ADDR}"), T)
    assert (info.kind, info.key, info.matched_header) == ("unknown", "garbage", "To")


def test_raw_headers_are_matched_whole() -> None:
    """Delivered-To & co. are read as raw values: a display name there hides the key."""
    assert find_key(h(f"Delivered-To: Support <{ADDR}>"), T) == KeyInfo()
    assert find_key(h(f"Envelope-To: {ADDR}, other@example.com"), T) == KeyInfo()


def test_multiple_delivered_to_are_all_read_in_order() -> None:
    info = find_key(h("Delivered-To: someone@example.com",
                      "Delivered-To: incoming+a-1-t-issue@incoming.gitlab.example.com",
                      "Delivered-To: incoming+b-2-t-issue@incoming.gitlab.example.com"), T)
    assert (info.project_slug, info.matched_header) == ("a", "Delivered-To")


def test_references_need_gitlabs_host_when_known() -> None:
    hdr = h("To: incoming@gitlab.example.com", f"References: <x@y>, <reply-{HEX}@gitlab.example.com>")
    assert find_key(hdr, "incoming@gitlab.example.com", gitlab_host="gitlab.example.com").kind == "reply"
    assert find_key(hdr, "incoming@gitlab.example.com", gitlab_host="other.example.com") == KeyInfo()
    info = find_key(hdr, "incoming@gitlab.example.com")  # host unknown: any host accepted
    assert (info.kind, info.reply_key, info.matched_header) == ("reply", HEX, "References")


def test_received_for_uses_gitlabs_regex() -> None:
    # no brackets: GitLab's /for\s+<([^<]+)>/ does not match
    assert find_key(h(f"Received: from a by b with esmtp for {ADDR}; Mon, 1 Jan 2024 00:00:00 +0000"), T) == KeyInfo()
    # case-sensitive "for"
    assert find_key(h(f"Received: from a by b FOR <{ADDR}>; Mon, 1 Jan 2024 00:00:00 +0000"), T) == KeyInfo()
    # folded across lines
    info = find_key(Headers.parse(f"Received: from a by b\r\n\tfor\r\n <{ADDR}>; Mon, 1 Jan 2024\r\n\r\n".encode()), T)
    assert info.matched_header == "Received"


def test_rfc2047_display_name_in_to() -> None:
    info = find_key(h(f"To: =?utf-8?q?Support=2C_Team?= <{ADDR}>"), T)
    assert info.matched_header == "To"


def test_several_to_headers() -> None:
    info = find_key(h("To: a@example.com", f"To: {ADDR}"), T)
    assert info.matched_header == "To"


def test_service_desk_mailbox_kind_through_find_key() -> None:
    info = find_key(h("To: support+acme-web-opaquekey@sd.example.com"), "support+%{key}@sd.example.com",
                    "service_desk")
    assert (info.kind, info.project_slug, info.project_id) == ("service_desk", "acme-web", None)


# --- corpus messages ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "template", "expected"),
    [
        ("new_issue_postfix.eml", T, ("new_issue", 20, "gitlab-org-gitlab", None, "To")),
        ("dsn_bounce.eml", T, ("reply", None, None, None, "To")),
        ("auto_reply.eml", T, ("reply", None, None, None, "To")),
        ("signup_service_desk.eml", T, ("service_desk", 278964, "acme-support", None, "To")),
        ("exchange_catchall.eml", CATCH_ALL, ("note_on_issuable", 99, "group-2024", 34, "Envelope-To")),
        ("dedicated_references.eml", "incoming@gitlab.example.com", ("reply", None, None, None, "References")),
        ("no_key.eml", T, ("unknown", None, None, None, None)),
        ("list_mail.eml", T, ("new_issue", 20, "gitlab-org-gitlab", None, "To")),
    ],
)
def test_corpus_messages(name: str, template: str, expected: tuple[object, ...]) -> None:
    info = find_key(Headers.parse(load(name)), template, gitlab_host=None)
    assert (info.kind, info.project_id, info.project_slug, info.issue_iid, info.matched_header) == expected


def test_keyinfo_json_fields() -> None:
    assert list(KeyInfo().to_json()) == ["kind", "key", "project_id", "project_slug", "project_path", "issue_iid",
                                         "reply_key", "namespace_id", "matched_header", "partition"]
