"""``triage-tui check`` against the real Dovecot and Redis: passing, and failing at each step
with a hint that says what to do."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import imapclient
import pytest

from tests.mailgen import backlog
from tests.servers import PASSWORD, free_port, make_tls_material
from triage_tui.commands.check import Checker

ADDRESS = "incoming+%{key}@incoming.gitlab.example.com"
ORDER = ["config", "dns", "tcp", "tls", "login", "capabilities", "mailbox", "keywords", "address", "redis", "consuming"]


def run_check(cli, env, *extra, observe="0"):  # type: ignore[no-untyped-def]
    r = cli([*extra, "check", "--json", "--observe", observe], env=env)
    doc = json.loads(r.out)
    return r, doc, {s["name"]: s for s in doc["steps"]}


def test_check_passes_against_real_servers(mailbox, cli, redis_server, redis_client):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(4, now=time.time(), step=5))
    redis_client.set("mail_room:gitlab:delivered:99", "1", ex=600)
    env = mailbox.env() | {"TRIAGE_REDIS_URL": redis_server.url, "TRIAGE_ADDRESS": ADDRESS}
    r, doc, steps = run_check(cli, env)
    assert r.code == 0 and doc["ok"] is True and doc["failed"] == 0, doc
    assert [s["name"] for s in doc["steps"]] == ORDER
    assert steps["tls"]["verified"] is True and steps["tls"]["subject"] == "commonName=localhost"
    assert steps["tls"]["cipher"] and steps["tls"]["not_after"]
    assert steps["login"]["status"] == "pass" and steps["capabilities"]["status"] == "pass"
    assert steps["mailbox"]["unseen"] == 4 and steps["mailbox"]["deleted"] == 0
    assert steps["keywords"]["status"] == "pass" and steps["keywords"]["keyword"] == "$TriageIgnored"
    assert steps["address"]["status"] == "pass" and steps["address"]["reply_local_part"] == 41
    assert steps["redis"]["status"] == "pass" and steps["redis"]["delivered"] == 1
    assert steps["consuming"]["status"] == "skip"
    # the human form: one line per step, and nothing was changed
    r = cli(["check", "--observe", "0"], env=env)
    assert r.code == 0 and r.lines[-1].startswith("check: OK")
    assert [line.split()[1] for line in r.lines if line[:4] in ("PASS", "WARN", "FAIL", "SKIP")] == ORDER
    assert all(flags == set() for flags in mailbox.flags().values())


def _mail_room_once(mailbox, redis_client, delay: float) -> threading.Thread:  # type: ignore[no-untyped-def]
    """One mail_room cycle (docs/gitlab-mail.md §1) after ``delay``: SET NX EX, fetch RFC822, \\Deleted."""

    def cycle() -> None:
        time.sleep(delay)
        c = imapclient.IMAPClient("127.0.0.1", port=mailbox.server.imap_port, ssl=False)
        c.login(mailbox.user, PASSWORD)
        c.select_folder("INBOX")
        won = [u for u in c.search("UNSEEN")
               if redis_client.set(f"mail_room:gitlab:delivered:{u}", "1", nx=True, ex=600)]
        if won:
            c.fetch(won, ["RFC822"])
            c.add_flags(won, [b"\\Deleted"], silent=True)
        c.logout()

    t = threading.Thread(target=cycle, daemon=True)
    t.start()
    return t


def test_check_sees_mail_room_consuming(mailbox, cli, redis_server, redis_client, monkeypatch):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(3, now=time.time() - 3600))
    env = mailbox.env() | {"TRIAGE_REDIS_URL": redis_server.url, "TRIAGE_ADDRESS": ADDRESS}
    started: list[threading.Thread] = []
    original = Checker._key_names

    def key_names_then_consume(self):  # type: ignore[no-untyped-def]
        # the observation's first snapshot is taken: mail_room wakes up now (deterministic on a busy machine)
        names = original(self)
        if not started:
            started.append(_mail_room_once(mailbox, redis_client, delay=0.2))
        return names

    monkeypatch.setattr(Checker, "_key_names", key_names_then_consume)
    r, doc, steps = run_check(cli, env, observe="3")
    started[0].join(5)
    c = steps["consuming"]
    assert c["status"] == "pass" and c["picked_up"] == 3 and c["new_lock_keys"] == 3, c
    assert r.code == 0, doc


def test_check_fails_when_nothing_is_consumed(mailbox, cli, redis_server, redis_client):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(3, now=time.time() - 3600))
    redis_client.set("mail_room:gitlab:delivered:2", "1", ex=600)  # held by an instance that died
    env = mailbox.env() | {"TRIAGE_REDIS_URL": redis_server.url, "TRIAGE_ADDRESS": ADDRESS}
    r, doc, steps = run_check(cli, env, observe="1")
    c = steps["consuming"]
    assert r.code == 1 and c["status"] == "fail" and c["held_unseen"] == 1
    assert "1 of them hold a lock key" in c["detail"] and "triage-tui locks" in c["hint"]
    assert steps["mailbox"]["status"] == "pass" and doc["failed"] == 1


def test_check_recent_unseen_not_yet_consumed_is_only_a_warning(mailbox, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(2, now=time.time(), step=1))
    r, doc, steps = run_check(cli, mailbox.env() | {"TRIAGE_ADDRESS": ADDRESS}, observe="1")
    assert steps["consuming"]["status"] == "warn" and "--observe" in steps["consuming"]["hint"]
    assert r.code == 0


def test_wrong_password_fails_login_with_a_hint(mailbox, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(1, now=time.time()))
    r, doc, steps = run_check(cli, mailbox.env() | {"TRIAGE_IMAP_PASSWORD": "not-the-password"})
    assert r.code == 1 and steps["tls"]["status"] in ("pass", "warn")
    login = steps["login"]
    assert login["status"] == "fail" and "authentication failed" in login["detail"]
    assert "TRIAGE_IMAP_PASSWORD" in login["hint"] and "oauth2" in login["hint"]
    assert steps["mailbox"]["status"] == "skip" and steps["consuming"]["status"] == "skip"


def test_wrong_ca_fails_tls_with_a_hint(mailbox, cli, tmp_path: Path):  # type: ignore[no-untyped-def]
    other_ca, _, _ = make_tls_material(tmp_path)
    r, doc, steps = run_check(cli, mailbox.env() | {"TRIAGE_IMAP_CA_FILE": str(other_ca)})
    tls = steps["tls"]
    assert r.code == 1 and tls["status"] == "fail" and "not trusted" in tls["detail"]
    assert "--ca-file" in tls["hint"] and tls["subject"] == "commonName=localhost"  # seen, though not trusted
    assert tls["verified"] is False and steps["login"]["status"] == "skip"
    r = cli(["check", "--observe", "0"], env=mailbox.env() | {"TRIAGE_IMAP_CA_FILE": str(other_ca)})
    assert any(line.startswith("FAIL  tls") for line in r.lines)
    assert any("fix: give --ca-file" in line for line in r.lines)


def test_missing_mailbox_fails_with_the_folders(mailbox, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(1, now=time.time()))
    r, doc, steps = run_check(cli, mailbox.env(), "--mailbox", "Incoming")
    mb = steps["mailbox"]
    assert r.code == 1 and mb["status"] == "fail" and "'Incoming' does not exist" in mb["detail"]
    assert "INBOX" in mb["detail"] and "--mailbox" in mb["hint"]


@pytest.mark.parametrize(("address", "status", "fragment"), [
    ("incoming@incoming.gitlab.example.com", "fail", "no %{key} placeholder"),
    ("incoming@%{key}.example.com", "fail", "in the domain part"),
    ("x" * 33 + "+%{key}@example.com", "fail", "local part with a reply key is 66/64"),
    ("x" * 30 + "+%{key}@example.com", "warn", "local part with a reply key is 63/64"),
    ("x" * 22 + "+%{key}@example.com", "warn", "project keys never fit"),
    ("incoming-%{key}@example.com", "pass", "project keys fit for path slugs up to 8 characters"),
])
def test_address_template_checks(cli, address: str, status: str, fragment: str) -> None:  # type: ignore[no-untyped-def]
    r, doc, steps = run_check(cli, {"TRIAGE_ADDRESS": address})
    a = steps["address"]
    assert a["status"] == status and fragment in a["detail"], a
    assert r.code == 1  # no IMAP host configured in this test: that step fails
    if status != "pass":
        assert a["hint"]


def test_unreachable_host_and_port_and_redis(cli):  # type: ignore[no-untyped-def]
    r, doc, steps = run_check(cli, {"TRIAGE_IMAP_HOST": "no-such-host.invalid", "TRIAGE_IMAP_USER": "u"})
    assert r.code == 1 and steps["dns"]["status"] == "fail" and "cannot resolve" in steps["dns"]["detail"]
    assert steps["tcp"]["status"] == "skip" and steps["tls"]["status"] == "skip"
    port = free_port()
    r, doc, steps = run_check(cli, {"TRIAGE_IMAP_HOST": "127.0.0.1", "TRIAGE_IMAP_USER": "u",
                                    "TRIAGE_IMAP_PORT": str(port),
                                    "TRIAGE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert steps["tcp"]["status"] == "fail" and "firewall" in steps["tcp"]["hint"]
    assert steps["redis"]["status"] == "fail" and "cannot connect" in steps["redis"]["detail"]
    assert steps["tls"]["status"] == "skip" and steps["login"]["status"] == "skip"


def test_no_connection_configured_is_a_failing_step_not_a_crash(cli):  # type: ignore[no-untyped-def]
    r, doc, steps = run_check(cli, {})
    assert r.code == 1 and steps["imap"]["status"] == "fail" and "no IMAP host" in steps["imap"]["detail"]
    assert steps["address"]["status"] == "warn" and steps["redis"]["status"] == "skip"
