"""Secrets against the real servers: every credential source, the permission check, a failing
password command, the prompt, and the canary: no secret in stdout, stderr, logs, the audit
journal or any state file, whatever the command and however it fails."""

from __future__ import annotations

import base64
import json
import logging
import time
from pathlib import Path

import pytest

from tests.mailgen import backlog
from tests.servers import PASSWORD
from triage_tui.services.journal import AuditJournal

CANARY_WRONG = "CANARY-wrong-pw-7f3a9e"
CANARY_CMD = "CANARY-cmd-output-51c2d"
CANARY_REDIS = "CANARY-redis-pw-90bb1"
CANARY_TOKEN = "CANARY-oauth-token-3e77"


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o700)
    return path


def _pwfile(tmp_path: Path, mode: int) -> Path:
    p = tmp_path / "imap.pw"
    p.write_text(PASSWORD + "\n")
    p.chmod(mode)
    return p


def _env_without_password(mailbox) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {k: v for k, v in mailbox.env().items() if k != "TRIAGE_IMAP_PASSWORD"}


def test_password_file_must_be_private(mailbox, cli, tmp_path):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(2, now=time.time()))
    env = _env_without_password(mailbox)
    pw = _pwfile(tmp_path, 0o644)
    r = cli(["--password-file", str(pw), "list"], env=env)
    assert r.code == 2 and r.err.strip() == (f"triage-tui: error: password file {pw} is readable by group or "
                                             f"others: run `chmod 600 {pw}`")
    pw.chmod(0o600)
    r = cli(["list", "--json"], env=env | {"TRIAGE_IMAP_PASSWORD_FILE": str(pw)})
    assert r.code == 0 and len(r.lines) == 2, r.err


def test_password_command_and_its_failure(mailbox, cli, tmp_path):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(2, now=time.time()))
    env = _env_without_password(mailbox)
    pw = _pwfile(tmp_path, 0o600)
    good = _script(tmp_path / "good.sh", f"cat {pw}\n")
    r = cli(["--password-command", str(good), "list", "--json"], env=env)
    assert r.code == 0 and len(r.lines) == 2, r.err
    bad = _script(tmp_path / "bad.sh", f"echo {CANARY_CMD}\necho {CANARY_CMD} >&2\nexit 7\n")
    r = cli(["--password-command", str(bad), "list"], env=env)
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1
    assert "password_command (flag --password-command) failed with exit status 7" in r.err
    assert CANARY_CMD not in r.out + r.err


def test_prompt_on_a_terminal_only(mailbox, cli, monkeypatch):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(1, now=time.time()))
    env = _env_without_password(mailbox)
    prompts: list[str] = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or PASSWORD)
    r = cli(["list", "--json"], env=env, tty=True)
    assert r.code == 0 and len(r.lines) == 1, r.err
    assert prompts == [f"IMAP password for {mailbox.user} at 127.0.0.1:{mailbox.server.imaps_port}: "]
    r = cli(["list"], env=env, tty=False)
    assert r.code == 2 and "no IMAP password" in r.err and len(prompts) == 1


def test_no_secret_anywhere(mailbox, cli, tmp_path, caplog, redis_server):  # type: ignore[no-untyped-def]
    """A batch of commands, succeeding and failing, with and without --debug: the real password
    (the canary Dovecot accepts) and the wrong ones must not appear in any output, log or file."""
    caplog.set_level(logging.DEBUG)
    mailbox.seed(backlog(6, now=time.time()))
    env = mailbox.env()
    no_pw = _env_without_password(mailbox)
    pw = _pwfile(tmp_path, 0o600)
    cmd = _script(tmp_path / "vault.sh", f"cat {pw}\n")
    failing = _script(tmp_path / "failing.sh", f"echo {CANARY_CMD}\necho {CANARY_CMD} >&2\nexit 1\n")
    token = _script(tmp_path / "token.sh", f"echo {CANARY_TOKEN}\n")
    gitlab_yml = tmp_path / "gitlab.yml"
    gitlab_yml.write_text(f"""\
production:
  incoming_email:
    enabled: true
    address: "incoming+%{{key}}@incoming.gitlab.example.com"
    user: "{mailbox.user}"
    password: "{PASSWORD}"
    host: "127.0.0.1"
    port: {mailbox.server.imaps_port}
    ssl: true
""")
    ca = ["--ca-file", str(mailbox.server.ca_file)]
    redis_bad = ["--redis-url", f"redis://:{CANARY_REDIS}@127.0.0.1:{redis_server.port}/0"]
    runs: list[tuple[list[str], dict[str, str], int | None]] = [
        (["list", "--json"], env, 0),
        (["--debug", "list"], env, 0),
        (["mark-seen", "--uids", "1", "--yes"], env, 0),
        (["--debug", "mark-seen", "--uids", "2", "--yes", "--json"], env, 0),
        (["config", "show"], env, 0),
        (["--debug", "config", "show", "--json"], env, 0),
        (["check", "--observe", "0"], env, None),
        (["--debug", "check", "--json", "--observe", "1"], env, None),
        (["--debug", "--password-file", str(pw), "list"], no_pw, 0),
        (["--debug", "--password-command", str(cmd), "check", "--observe", "0"], no_pw, None),
        (["--gitlab-config", str(gitlab_yml), "config", "show"], {}, 0),
        (["--debug", "--gitlab-config", str(gitlab_yml), *ca, "list", "--json"], {}, 0),
        (["--debug", "--gitlab-config", str(gitlab_yml), *ca, "mark-unseen", "--uids", "1", "--yes"], {}, 0),
        # failing login with a wrong password
        (["--debug", "list"], env | {"TRIAGE_IMAP_PASSWORD": CANARY_WRONG}, 3),
        (["check", "--json", "--observe", "0"], env | {"TRIAGE_IMAP_PASSWORD": CANARY_WRONG}, 1),
        # a failing password command that prints its "secret"
        (["--debug", "--password-command", str(failing), "list"], no_pw, 2),
        (["--password-command", str(failing), "check", "--json", "--observe", "0"], no_pw, 1),
        # a token the server does not accept (Dovecot here offers no XOAUTH2)
        (["--debug", "--oauth2-token-command", str(token), "list"], no_pw, 3),
        # a password in the Redis URL (this Redis has none configured and accepts any)
        ([*redis_bad, "--debug", "check", "--observe", "0"], env, None),
        ([*redis_bad, "config", "show", "--json"], env, 0),
    ]
    outputs: list[str] = []
    for argv, run_env, want in runs:
        r = cli(argv, env=run_env)
        if want is not None:
            assert r.code == want, (argv, r.code, r.err)
        outputs += [r.out, r.err]
    files = [p for p in AuditJournal().path.parent.rglob("*") if p.is_file()]
    assert AuditJournal().path in files
    outputs += [p.read_text(errors="replace") for p in files]
    outputs.append(caplog.text)
    outputs += [str(rec.args) for rec in caplog.records]
    everything = "\n".join(outputs)
    assert "mark-seen" in everything and "logged in as" in everything  # the batch did run
    canaries = [PASSWORD, CANARY_WRONG, CANARY_CMD, CANARY_REDIS, CANARY_TOKEN]
    encoded = [base64.b64encode(f"user={mailbox.user}\1auth=Bearer {CANARY_TOKEN}\1\1".encode()).decode(),
               base64.b64encode(f"\0{mailbox.user}\0{PASSWORD}".encode()).decode()]
    for secret in canaries + encoded:
        assert secret not in everything, f"secret leaked: {secret[:12]}..."
    # and the journal still says who did what, where
    marks = [rec for rec in AuditJournal().records() if rec.get("action") == "mark-seen" and rec["phase"] == "end"]
    assert marks and marks[0]["user"] == mailbox.user


@pytest.mark.parametrize("mode", [0o640, 0o604])
def test_group_or_other_readable_file_refused_even_via_config(mailbox, cli, tmp_path, mode):  # type: ignore[no-untyped-def]
    pw = _pwfile(tmp_path, mode)
    cfg = tmp_path / "config" / "triage-tui" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(f'[imap]\npassword_file = "{pw}"\n')
    r = cli(["check", "--json", "--observe", "0"], env=_env_without_password(mailbox))
    steps = {s["name"]: s for s in json.loads(r.out)["steps"]}
    assert r.code == 1 and steps["login"]["status"] == "fail" and f"chmod 600 {pw}" in steps["login"]["detail"]
