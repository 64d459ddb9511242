"""GitLab's key regexes, translated literally from the ``gitlab-email_handler`` gem
(``reply_key.rb``, ``matchers/*.rb``, ``identifier.rb``) and ``ServiceDeskHandler``.

Ruby and Python are both backtracking engines with leftmost, greedy-first semantics, so these give
GitLab's captures. They are quadratic on long hostile keys, which is why production code
(:mod:`triage_tui.domain.keys`) uses linear scans; the tests check both agree. Translation notes:
Ruby ``\\d`` is ASCII (``[0-9]``), ``.`` excludes only ``\\n`` (as in Python), ``\\z`` is ``\\Z``.
"""

from __future__ import annotations

import re
from typing import Any

BASE36 = r"[0-9a-z]"
NAMESPACE = rf"(?:-(?P<namespace_id>{BASE36}{{1,13}}))?"
PARTITIONED = rf"(?P<partition>{BASE36}{{1,4}})-(?P<reply_key>{BASE36}{{25}}){NAMESPACE}"
LEGACY = r"(?P<legacy_key>[a-f0-9]{32})"
FULL_REPLY = rf"(?:({LEGACY})|({PARTITIONED}))"
BASE = r"(?P<project_slug>.+)-(?P<project_id>[0-9]+)"

CREATE_NOTE = re.compile(rf"\A{FULL_REPLY}\Z")
CREATE_ISSUE = re.compile(rf"\A{BASE}-(?P<incoming_email_token>.+)-issue\Z")
CREATE_ISSUE_LEGACY = re.compile(r"\A(?P<project_path>[^+]*)\+(?P<incoming_email_token>.*)\Z")
NOTE_ON_ISSUABLE = re.compile(rf"\A{BASE}-(?P<incoming_email_token>.+)-issue-(?P<issuable_iid>[0-9]+)\Z")
UNSUBSCRIBE = re.compile(rf"\A(?P<reply_token>{FULL_REPLY})-unsubscribe\Z")
UNSUBSCRIBE_LEGACY = re.compile(rf"\A(?P<reply_token>{FULL_REPLY})\+unsubscribe\Z")
CREATE_MR = re.compile(rf"\A{BASE}-(?P<incoming_email_token>.+)-merge-request\Z")
CREATE_MR_LEGACY = re.compile(r"\A(?P<project_path>[^+]*)\+merge-request\+(?P<incoming_email_token>.*)")
SERVICE_DESK = re.compile(rf"\A{BASE}-issue-\Z")
SERVICE_DESK_LEGACY = re.compile(r"\A(?P<project_path>[^+]*)\Z")
SD_PROJECT_KEY = re.compile(r"\A(?P<slug>.+)-(?P<key>[a-z0-9_]+)\Z")


def _reply(m: re.Match[str], kind: str, reply_key: str) -> dict[str, Any]:
    ns = m.group("namespace_id")
    part = m.group("partition")
    return {"kind": kind, "reply_key": reply_key, "namespace_id": int(ns, 36) if ns else None,
            "partition": int(part, 36) if part and not m.group("legacy_key") else None}


def identify(key: str) -> dict[str, Any]:
    """Identifier.call(mail_key) for the incoming_email mailbox, as a flat dict."""
    m = CREATE_NOTE.match(key)
    if m:
        return _reply(m, "reply", key)
    m = CREATE_ISSUE.match(key) if "/" not in key else None
    if m:
        return {"kind": "new_issue", "project_slug": m["project_slug"], "project_id": int(m["project_id"])}
    m = CREATE_ISSUE_LEGACY.match(key)
    if m and "+" not in m["incoming_email_token"] and "+unsubscribe" not in key:
        return {"kind": "new_issue", "project_path": m["project_path"]}
    m = NOTE_ON_ISSUABLE.match(key)
    if m:
        return {"kind": "note_on_issuable", "project_slug": m["project_slug"],
                "project_id": int(m["project_id"]), "issue_iid": int(m["issuable_iid"])}
    m = UNSUBSCRIBE.match(key) or UNSUBSCRIBE_LEGACY.match(key)
    if m:
        return _reply(m, "unsubscribe", m["reply_token"])
    m = CREATE_MR.match(key) if "/" not in key else None
    if m:
        return {"kind": "new_merge_request", "project_slug": m["project_slug"], "project_id": int(m["project_id"])}
    m = CREATE_MR_LEGACY.match(key)
    if m:
        return {"kind": "new_merge_request", "project_path": m["project_path"]}
    m = SERVICE_DESK.match(key) if "/" not in key else None
    if m:
        return {"kind": "service_desk", "project_slug": m["project_slug"], "project_id": int(m["project_id"])}
    m = SERVICE_DESK_LEGACY.match(key)
    if m and "/" in m["project_path"] and "+" not in key:
        return {"kind": "service_desk", "project_path": m["project_path"]}
    return {"kind": "unknown"}


def identify_service_desk_mailbox(key: str) -> dict[str, Any]:
    """ServiceDeskHandler.new(mail, nil, service_desk_key: key): every key is Service Desk."""
    m = SERVICE_DESK.match(key) if "/" not in key else None
    if m:
        return {"kind": "service_desk", "project_slug": m["project_slug"], "project_id": int(m["project_id"])}
    m = SERVICE_DESK_LEGACY.match(key)
    if m and "/" in key:
        return {"kind": "service_desk", "project_path": key}
    m = SD_PROJECT_KEY.match(key)
    if m:
        return {"kind": "service_desk", "project_slug": m["slug"]}
    return {"kind": "service_desk"}
