"""Configuration against the real servers: TLS policy (implicit TLS and STARTTLS with a
self-signed CA), precedence through the CLI, profiles, and GitLab's own files driving a real
connection."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.mailgen import backlog, message
from tests.servers import PASSWORD, dovecot
from triage_tui.services.journal import AuditJournal

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "config"


def _no_ca(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "TRIAGE_IMAP_CA_FILE"}


def _config(tmp_path: Path, text: str) -> Path:
    """The default location: the autouse fixture points XDG_CONFIG_HOME at tmp_path/config."""
    p = tmp_path / "config" / "triage-tui" / "config.toml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    p.chmod(0o600)
    return p


def _show(cli, argv: list[str], env: dict[str, str] | None = None) -> dict:  # type: ignore[no-untyped-def]
    r = cli([*argv, "config", "show", "--json"], env=env)
    assert r.code == 0, r.err
    return json.loads(r.out)


# -- TLS policy ----------------------------------------------------------------------------------


def test_implicit_tls_self_signed_refused_by_default_accepted_with_ca_file(mailbox, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(3, now=time.time()))
    env = _no_ca(mailbox.env())
    r = cli(["list", "--json"], env=env)
    assert r.code == 3 and r.out == ""
    assert "not trusted" in r.err and "--ca-file" in r.err and len(r.err.strip().splitlines()) == 1
    r = cli(["--ca-file", str(mailbox.server.ca_file), "list", "--json"], env=env)
    assert r.code == 0, r.err
    assert len(r.lines) == 3


def test_starttls_self_signed_refused_by_default_accepted_with_ca_file(mailbox, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(2, now=time.time()))
    env = _no_ca(mailbox.env()) | {"TRIAGE_IMAP_PORT": str(mailbox.server.imap_port),
                                   "TRIAGE_IMAP_SECURITY": "starttls"}
    r = cli(["list"], env=env)
    assert r.code == 3 and "not trusted" in r.err
    r = cli(["--ca-file", str(mailbox.server.ca_file), "check", "--observe", "0", "--json"], env=env)
    steps = {s["name"]: s for s in json.loads(r.out)["steps"]}
    assert steps["tls"]["verified"] is True and steps["tls"]["version"].startswith("TLSv1.")
    assert steps["login"]["status"] == "pass"
    r = cli(["--ca-file", str(mailbox.server.ca_file), "list", "--json"], env=env)
    assert r.code == 0 and len(r.lines) == 2


def test_server_without_starttls_is_refused_under_starttls(cli):  # type: ignore[no-untyped-def]
    with dovecot(starttls_offered=False) as server:
        user = server.new_user()
        server.seed(user, backlog(1, now=time.time()))
        env = {"TRIAGE_IMAP_HOST": "127.0.0.1", "TRIAGE_IMAP_PORT": str(server.imap_port), "TRIAGE_IMAP_USER": user,
               "TRIAGE_IMAP_PASSWORD": PASSWORD, "TRIAGE_IMAP_SECURITY": "starttls"}
        r = cli(["list"], env=env)
        assert r.code == 3 and "does not offer STARTTLS" in r.err
        r = cli(["check", "--observe", "0", "--json"], env=env)
        steps = {s["name"]: s for s in json.loads(r.out)["steps"]}
        assert r.code == 1 and steps["tls"]["status"] == "fail" and "never falls back" in steps["tls"]["hint"]
        assert steps["login"]["status"] == "skip"
        # the server logged no LOGIN: we never sent the password without TLS
        assert f"user=<{user}>" not in server.log()
        # plaintext to loopback is an explicit choice, and allowed there
        r = cli(["--security", "none", "list", "--json"], env=env)
        assert r.code == 0 and len(r.lines) == 1


def test_require_tls_refuses_plaintext_to_a_remote_host(cli, tmp_path):  # type: ignore[no-untyped-def]
    env = {"TRIAGE_IMAP_PASSWORD": "x"}
    base = ["--host", "192.0.2.10", "--user", "u", "--security", "none", "--timeout", "0.5"]
    r = cli([*base, "list"], env=env)
    assert r.code == 4 and "refusing plaintext IMAP login to 192.0.2.10" in r.err
    _config(tmp_path, "[imap]\nrequire_tls = false\n")
    r = cli([*base, "list"], env=env)
    assert r.code == 3 and "refusing plaintext" not in r.err  # allowed: it now tries (and times out)


def test_insecure_skip_verify_is_loud_and_journaled(mailbox, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(3, now=time.time()))
    env = _no_ca(mailbox.env())
    r = cli(["--insecure-skip-verify", "mark-seen", "--uids", "1", "--yes"], env=env)
    assert r.code == 0, r.err
    assert "WARNING: TLS certificate verification is OFF" in r.err
    assert "\\Seen" in mailbox.flags()[1]
    records = [rec for rec in AuditJournal().records() if rec.get("action") == "mark-seen"]
    assert records and all(rec["tls_verify"] == "SKIPPED (--insecure-skip-verify)" for rec in records)
    # and without the flag, nothing is noted
    r = cli(["--ca-file", str(mailbox.server.ca_file), "mark-seen", "--uids", "2", "--yes"], env=env)
    assert r.code == 0 and "WARNING" not in r.err
    last = [rec for rec in AuditJournal().records() if rec.get("action") == "mark-seen"][-1]
    assert "tls_verify" not in last


# -- precedence through the CLI ---------------------------------------------------------------------


def test_precedence_file_env_flag_drives_the_connection(mailbox, cli, tmp_path):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(2, now=time.time()))
    cfg = _config(tmp_path, f"""\
[imap]
host = "no-such-host.invalid"
port = {mailbox.server.imaps_port}
user = "{mailbox.user}"
ca_file = "{mailbox.server.ca_file}"
timeout = 5
""")
    pw = {"TRIAGE_IMAP_PASSWORD": PASSWORD}
    r = cli(["list"], env=pw)
    assert r.code == 3 and "no-such-host.invalid" in r.err
    r = cli(["list", "--json"], env=pw | {"TRIAGE_IMAP_HOST": "127.0.0.1"})
    assert r.code == 0 and len(r.lines) == 2, r.err
    r = cli(["--host", "127.0.0.1", "list", "--json"], env=pw | {"TRIAGE_IMAP_HOST": "also-wrong.invalid"})
    assert r.code == 0 and len(r.lines) == 2, r.err

    shown = _show(cli, [], pw)
    assert shown["config_file"] == {"path": str(cfg), "exists": True, "source": "default"}
    host = shown["settings"]["imap.host"]
    assert host == {"value": "no-such-host.invalid", "source": f"file {cfg}:2 [imap]", "layer": "file"}
    assert shown["settings"]["imap.user"]["source"] == f"file {cfg}:4 [imap]"
    shown = _show(cli, [], pw | {"TRIAGE_IMAP_HOST": "127.0.0.1"})
    assert shown["settings"]["imap.host"]["source"] == "env TRIAGE_IMAP_HOST"
    shown = _show(cli, ["--host", "localhost"], pw | {"TRIAGE_IMAP_HOST": "127.0.0.1"})
    assert shown["settings"]["imap.host"] == {"value": "localhost", "source": "flag --host", "layer": "flag"}
    assert shown["settings"]["imap.security"]["layer"] == "default"
    assert shown["credential"]["method"] == "password_env"
    assert PASSWORD not in json.dumps(shown)

    text = cli(["config", "show"], env=pw).out
    assert "imap.host" in text and f"file {cfg}:2 [imap]" in text and PASSWORD not in text


def test_profile_with_password_command_connects_and_show_does_not_run_it(mailbox, cli, tmp_path):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(2, now=time.time()))
    marker = tmp_path / "ran"
    script = tmp_path / "vault.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\necho '{PASSWORD}'\n")
    script.chmod(0o700)
    _config(tmp_path, f"""\
profile = "staging"

[imap]
ca_file = "{mailbox.server.ca_file}"

[profiles.gprd.imap]
host = "imap.gprd.invalid"

[profiles.test.imap]
host = "127.0.0.1"
port = {mailbox.server.imaps_port}
user = "{mailbox.user}"
password_command = "{script}"

[profiles.test.gitlab]
address = "incoming+%{{key}}@incoming.gitlab.example.com"
""")
    r = cli(["list"])
    assert r.code == 2 and "no profile 'staging' (profiles: gprd, test)" in r.err
    shown = _show(cli, ["--profile", "test"])
    assert shown["credential"]["method"] == "password_command" and not marker.exists()
    assert shown["profile"] == {"name": "test", "source": "flag --profile", "available": ["gprd", "test"]}
    r = cli(["--profile", "test", "list", "--json"])
    assert r.code == 0, r.err
    rows = [json.loads(line) for line in r.lines]
    assert len(rows) == 2 and marker.exists()
    assert all(row["kind"] == "new_issue" and row["project_id"] for row in rows)  # the profile's address
    r = cli(["list", "--json"], env={"TRIAGE_PROFILE": "test"})
    assert r.code == 0 and len(r.lines) == 2


def test_config_errors_are_one_line_with_file_and_line_and_path_still_works(cli, tmp_path):  # type: ignore[no-untyped-def]
    cfg = _config(tmp_path, '[imap]\nhost = "x"\n\n[redis]\nkey_prefx = "ns:"\n')
    r = cli(["config", "show"])
    assert r.code == 2 and r.err.strip() == (f"triage-tui: error: {cfg}:5: unknown key 'key_prefx' in [redis] "
                                             "(did you mean 'key_prefix'?)")
    r = cli(["config", "path", "--json"])
    assert r.code == 0, r.err
    info = json.loads(r.out)
    assert info["config_file"] == str(cfg) and info["config_file_exists"] is True
    assert info["audit_journal"] == str(AuditJournal().path) and info["state_dir"] == str(AuditJournal().path.parent)
    r = cli(["config", "path"])
    assert r.lines[0].startswith(f"config file    {cfg}  (exists; default)")


# -- GitLab's files ------------------------------------------------------------------------------


def _gitlab_yml(tmp_path: Path, mailbox) -> Path:  # type: ignore[no-untyped-def]
    """The corpus gitlab.yml pointed at the test Dovecot: incoming on implicit TLS, service desk on
    STARTTLS, both the same test user."""
    text = (CORPUS / "gitlab.yml").read_text()
    text = (text.replace('"imap.gitlab.example.com"', '"127.0.0.1"')
            .replace("port: 993", f"port: {mailbox.server.imaps_port}")
            .replace("port: 143", f"port: {mailbox.server.imap_port}")
            .replace('"imap-pass-from-gitlab-yml"', f'"{PASSWORD}"').replace('"sd-pass-from-gitlab-yml"', f'"{PASSWORD}"')
            .replace('"incoming@incoming.gitlab.example.com"', f'"{mailbox.user}"')
            .replace('"contact@servicedesk.gitlab.example.com"', f'"{mailbox.user}"')
            .replace('mailbox: "Service Desk"', 'mailbox: "INBOX"'))
    p = tmp_path / "gitlab.yml"
    p.write_text(text)
    return p


def test_gitlab_yml_import_connects_to_either_mailbox(mailbox, cli, tmp_path):  # type: ignore[no-untyped-def]
    sd = message(subject="Help", to="contact+acme-widgets-77-issue-@servicedesk.gitlab.example.com")
    mailbox.seed([*backlog(3, now=time.time()), (sd, time.time(), "")])
    gl = _gitlab_yml(tmp_path, mailbox)
    ca = ["--ca-file", str(mailbox.server.ca_file)]
    r = cli(["--gitlab-config", str(gl), *ca, "list", "--json"])
    assert r.code == 0, r.err
    kinds = [row["kind"] for row in sorted(map(json.loads, r.lines), key=lambda row: row["uid"])]
    assert kinds == ["new_issue"] * 3 + ["unknown"]  # decoded with incoming_email's address
    r = cli(["--gitlab-config", str(gl), *ca, "--mailbox-source", "service_desk", "check", "--observe", "0",
             "--json"])
    steps = {s["name"]: s for s in json.loads(r.out)["steps"]}
    assert steps["login"]["status"] == "pass" and steps["tls"]["verified"] is True, steps
    assert "service_desk_email from gitlab.yml" in steps["config"]["detail"]
    shown = _show(cli, ["--gitlab-config", str(gl), "--mailbox-source", "service_desk"])
    assert shown["settings"]["imap.security"]["value"] == "starttls"
    assert shown["settings"]["gitlab.mailbox_kind"]["value"] == "service_desk"
    assert shown["settings"]["imap.password"]["value"] == "********"
    assert shown["credential"]["method"] == "password" and PASSWORD not in json.dumps(shown)
    r = cli(["--gitlab-config", str(gl), *ca, "--mailbox-source", "service_desk", "list", "--json"])
    assert r.code == 0, r.err
    rows = sorted(map(json.loads, r.lines), key=lambda row: row["uid"])  # arrival order: held ones last
    assert [row["kind"] for row in rows] == ["unknown"] * 3 + ["service_desk"]  # service_desk_email's address
    assert rows[3]["project_id"] == 77


def test_mail_room_import_drives_redis_checks(mailbox, cli, tmp_path, redis_server, redis_client):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(2, now=time.time()))
    mr = tmp_path / "mail_room.yml"
    mr.write_text(f"""\
:mailboxes:
  -
    :host: "127.0.0.1"
    :port: {mailbox.server.imaps_port}
    :ssl: true
    :start_tls: false
    :email: "{mailbox.user}"
    :password: "{PASSWORD}"
    :name: "inbox"
    :delete_after_delivery: true
    :delivery_method: sidekiq
    :delivery_options:
      :redis_url: "{redis_server.url}"
      :queue: default
      :worker: EmailReceiverWorker
    :arbitration_method: redis
    :arbitration_options:
      :redis_url: "{redis_server.url}"
      :namespace: mail_room:test
""")
    redis_client.set("mail_room:test:delivered:1", "1", ex=600)
    redis_client.set("mail_room:gitlab:delivered:9", "1", ex=600)  # another namespace: not ours
    r = cli(["--mail-room-config", str(mr), "--ca-file", str(mailbox.server.ca_file), "check", "--observe", "0",
             "--json"])
    steps = {s["name"]: s for s in json.loads(r.out)["steps"]}
    assert steps["redis"]["status"] == "pass", steps["redis"]
    assert steps["redis"]["prefix"] == "mail_room:test:" and steps["redis"]["delivered"] == 1
    assert steps["mailbox"]["unseen"] == 2 and steps["address"]["status"] == "warn"  # mail_room has no address


def test_settings_reach_commands_that_read_args_directly(cli, tmp_path):  # type: ignore[no-untyped-def]
    """decode reads args.address: an address set only in the config file must reach it."""
    _config(tmp_path, '[gitlab]\naddress = "incoming+%{key}@incoming.gitlab.example.com"\n')
    r = cli(["decode", "--json", "incoming+gitlab-org-gitlab-278964-glimt-abc-issue@incoming.gitlab.example.com"])
    assert r.code == 0, r.err
    info = json.loads(r.lines[0])
    assert info["kind"] == "new_issue" and info["project_id"] == 278964
