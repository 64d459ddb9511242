"""``triage-tui decode``: offline, no IMAP settings needed, JSON fields as issue 3 lists them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.corpus import CORPUS

T = "incoming+%{key}@incoming.gitlab.example.com"
FIELDS = ["kind", "key", "project_id", "project_slug", "project_path", "issue_iid", "reply_key", "namespace_id",
          "matched_header"]
HEX = "0123456789abcdef0123456789abcdef"


def test_decode_addresses_as_json(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli(["decode", "--address", T, "--json",
             "Support <incoming+my-proj-42-glimt-abc-7-def-issue@incoming.gitlab.example.com>",
             f"incoming+{HEX}-unsubscribe@incoming.gitlab.example.com",
             "someone@example.com"])
    assert r.code == 0, r.err
    objs = [json.loads(line) for line in r.lines]
    assert len(objs) == 3
    for o in objs:
        assert list(o)[: len(FIELDS)] == FIELDS
    assert objs[0] == {"kind": "new_issue", "key": "my-proj-42-glimt-abc-7-def-issue", "project_id": 7,
                       "project_slug": "my-proj-42-glimt-abc", "project_path": None, "issue_iid": None,
                       "reply_key": None, "namespace_id": None, "matched_header": None, "partition": None}
    assert (objs[1]["kind"], objs[1]["reply_key"]) == ("unsubscribe", HEX)  # without the suffix
    assert objs[2]["kind"] == "unknown" and objs[2]["key"] is None


def test_decode_text_output_and_hints(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli(["decode", "--address", T,
             "incoming+gitlab-org-gitlab-20-glimt-abc-issue-34@incoming.gitlab.example.com",
             "Incoming+gitlab-org-gitlab-20-glimt-abc-issue@incoming.gitlab.example.com",
             '"incoming+gitlab-org-gitlab-20-glimt-abc-issue"@incoming.gitlab.example.com',
             "incoming+x@other.example.com"])
    assert r.code == 0, r.err
    assert "note_on_issuable  project 20 (gitlab-org-gitlab)  issue #34" in r.lines[0]
    assert "case-sensitively" in r.lines[1]
    assert "quoted local part" in r.lines[2]
    assert "no address matches" in r.lines[3]


def test_template_from_environment_and_global_flag(cli) -> None:  # type: ignore[no-untyped-def]
    addr = "incoming+acme-support-278964-issue-@incoming.gitlab.example.com"
    r = cli(["decode", "--json", addr], env={"TRIAGE_ADDRESS": T})
    assert r.code == 0, r.err
    assert json.loads(r.out)["project_id"] == 278964
    r = cli(["--address", T, "decode", "--json", addr])
    assert r.code == 0, r.err
    assert json.loads(r.out)["kind"] == "service_desk"
    # the subcommand's flag wins over the environment
    r = cli(["decode", "--json", "--address", "other+%{key}@x.example", addr], env={"TRIAGE_ADDRESS": T})
    assert json.loads(r.out)["kind"] == "unknown"


def test_mailbox_kind_service_desk(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli(["decode", "--address", "support+%{key}@sd.example.com", "--mailbox-kind", "service_desk", "--json",
             "support+acme-web-opaque_key@sd.example.com"])
    assert r.code == 0, r.err
    o = json.loads(r.out)
    assert (o["kind"], o["project_slug"]) == ("service_desk", "acme-web")


def test_bare_keys_need_no_template(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli(["decode", "--json", "1-abcdefghijklmnopqrstuvwxy-2s", "gitlab-org/gitlab+merge-request+tok"])
    assert r.code == 0, r.err
    a, b = (json.loads(x) for x in r.lines)
    assert (a["kind"], a["namespace_id"], a["partition"]) == ("reply", 100, 1)
    assert (b["kind"], b["project_path"]) == ("new_merge_request", "gitlab-org/gitlab")


def test_decode_message_file_and_stdin(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli(["decode", "--address", "incoming-%{key}@exchange.example.com", "--json", "--message",
             str(CORPUS / "exchange_catchall.eml")])
    assert r.code == 0, r.err
    o = json.loads(r.out)
    assert (o["kind"], o["issue_iid"], o["matched_header"]) == ("note_on_issuable", 34, "Envelope-To")
    raw = (CORPUS / "dedicated_references.eml").read_text()
    r = cli(["decode", "--address", "incoming@gitlab.example.com", "--gitlab-host", "gitlab.example.com",
             "--message", "-"], stdin=raw)
    assert r.code == 0, r.err
    assert "reply" in r.out and "matched in References" in r.out
    r = cli(["decode", "--address", "incoming@gitlab.example.com", "--gitlab-host", "other.example",
             "--json", "--message", "-"], stdin=raw)
    assert json.loads(r.out)["kind"] == "unknown"


def test_usage_errors(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = cli(["decode"])
    assert r.code == 2 and "nothing to decode" in r.err
    r = cli(["decode", "a@b.example"])
    assert r.code == 2 and "no address template" in r.err
    r = cli(["decode", "--message", str(CORPUS / "no_key.eml")])
    assert r.code == 2 and "TRIAGE_ADDRESS" in r.err
    r = cli(["decode", "--address", T, "--message", str(tmp_path / "missing.eml")])
    assert r.code == 2 and "cannot read" in r.err
    r = cli(["decode", "--address", T, "--message", "-", "x@y"])
    assert r.code == 2 and "not both" in r.err


def test_text_output_is_inert(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli(["decode", "--address", T, "incoming+p-1-t\x1b]8;;evil\x07-issue@incoming.gitlab.example.com",
             "\x1b[31mred@x.example"])
    assert r.code == 0, r.err
    assert "\x1b" not in r.out and "\x07" not in r.out
    assert "\\x1b" in r.out
