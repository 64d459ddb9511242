"""Secrets against the real servers: every credential source, the permission check, a failing
password command, the prompt, and the canary: no secret in stdout, stderr, logs, the audit
journal or any state file, whatever the command and however it fails."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import imapclient
import pytest
import redis

from tests.conftest import Mailbox
from tests.integration.test_locks import Proc
from tests.mailgen import backlog
from tests.servers import (
    PASSWORD,
    UTF8_PASSWORD,
    UTF8_USER,
    _base_tmp,
    _require,
    _wait_port,
    free_port,
    start_redis,
)
from triage_tui.services.journal import AuditJournal

CANARY_WRONG = "CANARY-wrong-pw-7f3a9e"
CANARY_CMD = "CANARY-cmd-output-51c2d"
CANARY_REDIS = "CANARY-redis-pw-90bb1"
CANARY_TOKEN = "CANARY-oauth-token-3e77"
CANARY_REDIS_WRONG = "CANARY-redis-wrong-c4d1"
CANARY_SENTINEL = "CANARY-sentinel-pw-a81f"
CANARY_UTF8_WRONG = "CANARY-wröng-pässwörd-€"


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


# -- non-ASCII passwords against the real Dovecot --------------------------------------------------


@pytest.fixture(scope="module")
def utf8_mailbox(dovecot) -> Mailbox:  # type: ignore[no-untyped-def]
    """The one Dovecot user whose password is not ASCII (passwd-file in tests/servers.py)."""
    dovecot.seed(UTF8_USER, backlog(3, now=time.time()))
    return Mailbox(dovecot, UTF8_USER)


def _utf8_env(box: Mailbox, password: str = UTF8_PASSWORD) -> dict[str, str]:
    return box.env() | {"TRIAGE_IMAP_PASSWORD": password}


def _spellings(secret: str, user: str) -> list[str]:
    """How a secret could show up in text: raw, repr/ascii/unicode_escape, JSON, percent-encoded,
    UTF-8 read as Latin-1, and base64 of itself and of the SASL PLAIN blob."""
    forms = {secret, repr(secret)[1:-1], ascii(secret)[1:-1], secret.encode("unicode_escape").decode(),
             json.dumps(secret)[1:-1], quote(secret, safe=""), secret.encode().decode("latin-1"),
             repr(secret.encode())[2:-1], base64.b64encode(secret.encode()).decode(),
             base64.b64encode(f"\0{user}\0{secret}".encode()).decode()}
    return sorted(forms)


def _assert_nothing_leaked(everything: str, secrets: list[str], user: str) -> None:
    lowered = everything.lower()
    for secret in secrets:
        for form in _spellings(secret, user):
            assert form.lower() not in lowered, f"secret leaked as {form[:14]!r}..."
    # a non-ASCII password's characters must not show up one by one either (a codec error did that)
    assert "position" not in lowered and "codec" not in lowered and "unicodeencodeerror" not in lowered


def test_non_ascii_password_logs_in(utf8_mailbox, cli, tmp_path):  # type: ignore[no-untyped-def]
    """AUTHENTICATE PLAIN with UTF-8 (RFC 4616): Dovecot compares the UTF-8 bytes."""
    r = cli(["list", "--json"], env=_utf8_env(utf8_mailbox))
    assert r.code == 0, r.err
    assert len(r.lines) == 3
    # from a UTF-8 password file too
    pw = tmp_path / "pw"
    pw.write_bytes(UTF8_PASSWORD.encode() + b"\r\n")
    pw.chmod(0o600)
    env = {k: v for k, v in utf8_mailbox.env().items() if k != "TRIAGE_IMAP_PASSWORD"}
    r = cli(["--password-file", str(pw), "list", "--json"], env=env)
    assert r.code == 0 and len(r.lines) == 3, r.err


def test_non_ascii_password_by_login_literal(utf8_mailbox, cli, monkeypatch):  # type: ignore[no-untyped-def]
    """A server without AUTH=PLAIN: LOGIN with the password as a UTF-8 literal; the server decides."""
    real = imapclient.IMAPClient.has_capability
    monkeypatch.setattr(imapclient.IMAPClient, "has_capability",
                        lambda self, cap: False if cap.upper() == "AUTH=PLAIN" else real(self, cap))
    r = cli(["list", "--json"], env=_utf8_env(utf8_mailbox))
    assert r.code == 0 and len(r.lines) == 3, r.err
    r = cli(["--debug", "list"], env=_utf8_env(utf8_mailbox, CANARY_UTF8_WRONG))
    assert r.code == 3 and r.err.strip().splitlines()[-1].startswith("triage-tui: error: authentication failed")
    _assert_nothing_leaked(r.out + r.err, [CANARY_UTF8_WRONG], UTF8_USER)


def test_wrong_non_ascii_password_is_an_auth_error_that_reveals_nothing(utf8_mailbox, cli, caplog):  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    r = cli(["list"], env=_utf8_env(utf8_mailbox, CANARY_UTF8_WRONG))
    assert r.code == 3 and r.out == ""
    assert len(r.err.strip().splitlines()) == 1, r.err
    assert r.err.startswith(f"triage-tui: error: authentication failed for user {UTF8_USER} at 127.0.0.1:")
    r2 = cli(["--debug", "list"], env=_utf8_env(utf8_mailbox, CANARY_UTF8_WRONG))
    assert r2.code == 3
    r3 = cli(["check", "--json", "--observe", "0"], env=_utf8_env(utf8_mailbox, CANARY_UTF8_WRONG))
    steps = {s["name"]: s for s in json.loads(r3.out)["steps"]}
    assert steps["login"]["status"] == "fail" and "authentication failed" in steps["login"]["detail"]
    _assert_nothing_leaked("\n".join([r.out, r.err, r2.out, r2.err, r3.out, r3.err, caplog.text]),
                           [CANARY_UTF8_WRONG, UTF8_PASSWORD], UTF8_USER)


def test_user_name_is_quoted_not_injected(mailbox, cli):  # type: ignore[no-untyped-def]
    """imaplib sends LOGIN's user name raw: a space (or a CRLF) in it broke or injected a command.
    Configuration refuses a CR/LF in a user name before any connection; below that, the session
    itself quotes the name, so even settings built in code can't inject."""
    from triage_tui.errors import AuthenticationFailed
    from triage_tui.services.imap import ImapSession, Secret

    mailbox.seed(backlog(1, now=time.time()))
    # the configured password is wrong; the "user name" carries the right one and a second command
    injected = f'{mailbox.user} "{PASSWORD}"\r\nX1 NOOP'
    r = cli(["list"], env=mailbox.env() | {"TRIAGE_IMAP_USER": injected, "TRIAGE_IMAP_PASSWORD": CANARY_WRONG})
    assert r.code == 2 and "imap.user" in r.err and "internal error" not in r.err, r.err
    assert len(r.err.splitlines()) == 1 and CANARY_WRONG not in r.err and PASSWORD not in r.err
    for user in (injected, f'{mailbox.user} "{PASSWORD}"'):
        session = ImapSession(mailbox.settings(user=user, password=Secret(CANARY_WRONG)))
        with pytest.raises(AuthenticationFailed) as e:
            session.connect()
        assert CANARY_WRONG not in str(e.value) and "\n" not in str(e.value)
        session.close()


# -- Redis with a password, a Sentinel with a password: the canary over every command ---------------


@contextlib.contextmanager
def _sentinel_with_password(master_port: int, name: str = "gitlab-redis") -> Iterator[int]:
    base = _base_tmp("triage-sentinel-pw-")
    port = free_port()
    conf = base / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {base}\nlogfile {base}/sentinel.log\n"
                    f"requirepass {CANARY_SENTINEL}\n"
                    f"sentinel monitor {name} 127.0.0.1 {master_port} 1\n"
                    f"sentinel auth-pass {name} {CANARY_REDIS}\n"
                    f"sentinel down-after-milliseconds {name} 60000\n")
    (base / "sentinel.log").touch()
    proc = subprocess.Popen([_require("redis-server"), str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    p = Proc(proc, base)
    try:
        _wait_port(port, proc, base / "sentinel.log")
        yield port
    finally:
        p.stop()


@pytest.fixture
def redis_with_password() -> Iterator[tuple[int, redis.Redis]]:
    server = start_redis()
    try:
        server.client().config_set("requirepass", CANARY_REDIS)
        client = redis.Redis(host="127.0.0.1", port=server.port, password=CANARY_REDIS, decode_responses=True)
        yield server.port, client
        client.close()
    finally:
        server.stop()


def _mail_room_yml(tmp_path: Path, mailbox: Mailbox, port: int, sentinel_port: int, sentinel_pw: str) -> Path:
    mr = tmp_path / f"mail_room-{sentinel_pw[-4:]}.yml"
    mr.write_text(f"""\
:mailboxes:
  -
    :host: "127.0.0.1"
    :port: {mailbox.server.imaps_port}
    :ssl: true
    :email: "{mailbox.user}"
    :password: "{PASSWORD}"
    :name: "inbox"
    :arbitration_method: redis
    :arbitration_options:
      :redis_url: "redis://:{CANARY_REDIS}@gitlab-redis/0"
      :namespace: mail_room:gitlab
      :sentinels:
        -
          :host: 127.0.0.1
          :port: {sentinel_port}
      :sentinel_password: "{sentinel_pw}"
""")
    mr.chmod(0o600)
    return mr


def test_no_redis_or_sentinel_password_anywhere(mailbox, cli, tmp_path, caplog, redis_with_password):  # type: ignore[no-untyped-def]
    """The Redis password (URL userinfo and ?password=), the Sentinel password and the IMAP password
    are grepped for, in every spelling, in stdout, stderr, the journal, the state files and the log
    (--debug too) of locks, release (dry run and real), check, config show and list, succeeding and
    failing (wrong password, Redis down, malformed URL)."""
    caplog.set_level(logging.DEBUG)
    port, client = redis_with_password
    mailbox.seed(backlog(4, now=time.time()))
    for uid in (1, 2, 3, 4):
        client.set(f"mail_room:gitlab:delivered:{uid}", "1", ex=600)
    env = mailbox.env()
    down = free_port()
    forms = {
        "userinfo": f"redis://:{CANARY_REDIS}@127.0.0.1:{port}/0",
        "query": f"redis://127.0.0.1:{port}/0?password={CANARY_REDIS}",
        "user+query": f"redis://127.0.0.1:{port}/0?username=default&password={quote(CANARY_REDIS)}",
    }
    runs: list[tuple[list[str], dict[str, str], int | None]] = []
    for url in forms.values():
        e = env | {"TRIAGE_REDIS_URL": url}
        runs += [
            (["locks"], e, 0),
            (["--debug", "locks", "--json"], e, 0),
            (["release", "--all", "--dry-run"], e, 0),
            (["--debug", "release", "--all", "--dry-run", "--json"], e, 0),
            (["check", "--observe", "0"], e, None),
            (["--debug", "check", "--json", "--observe", "0"], e, None),
            (["config", "show"], e, 0),
            (["config", "show", "--json"], e, 0),
            (["--debug", "list", "--json"], e, 0),
        ]
    runs += [
        # a real release: the journal records where (the `redis` field) and which keys
        (["--debug", "release", "--uids", "1", "--yes"], env | {"TRIAGE_REDIS_URL": forms["userinfo"]}, 0),
        (["release", "--uids", "2", "--yes", "--json"], env | {"TRIAGE_REDIS_URL": forms["query"]}, 0),
        # wrong Redis password, both forms
        (["locks"], env | {"TRIAGE_REDIS_URL": f"redis://:{CANARY_REDIS_WRONG}@127.0.0.1:{port}/0"}, 3),
        (["--debug", "locks"], env | {"TRIAGE_REDIS_URL": f"redis://127.0.0.1:{port}/0?password={CANARY_REDIS_WRONG}"},
         3),
        (["check", "--json", "--observe", "0"],
         env | {"TRIAGE_REDIS_URL": f"redis://:{CANARY_REDIS_WRONG}@127.0.0.1:{port}/0"}, None),
        (["--debug", "release", "--all", "--yes"],
         env | {"TRIAGE_REDIS_URL": f"redis://127.0.0.1:{port}/0?password={CANARY_REDIS_WRONG}"}, 3),
        # Redis down
        (["--debug", "locks"], env | {"TRIAGE_REDIS_URL": f"redis://:{CANARY_REDIS}@127.0.0.1:{down}/0"}, 3),
        (["release", "--all", "--dry-run"], env | {"TRIAGE_REDIS_URL": f"redis://127.0.0.1:{down}/0?password={CANARY_REDIS}"},
         3),
        (["--debug", "list"], env | {"TRIAGE_REDIS_URL": f"unix:///nonexistent.sock?password={CANARY_REDIS}"}, 0),
        # malformed URLs: hidden whole
        (["locks"], env | {"TRIAGE_REDIS_URL": f"redis//:{CANARY_REDIS}@127.0.0.1:{port}/0"}, None),
        (["config", "show"], env | {"TRIAGE_REDIS_URL": f"redis:/:{CANARY_REDIS}@127.0.0.1:{port}/0"}, None),
        (["--debug", "check", "--observe", "0"],
         env | {"TRIAGE_REDIS_URL": f"redis://:{CANARY_REDIS} @127.0.0.1:{port}/0"}, None),
    ]
    with _sentinel_with_password(port) as sport:
        good = _mail_room_yml(tmp_path, mailbox, port, sport, CANARY_SENTINEL)
        bad = _mail_room_yml(tmp_path, mailbox, port, sport, CANARY_REDIS_WRONG)
        ca = ["--ca-file", str(mailbox.server.ca_file)]
        runs += [
            (["--mail-room-config", str(good), *ca, "locks"], {}, 0),
            (["--debug", "--mail-room-config", str(good), *ca, "release", "--all", "--dry-run"], {}, 0),
            (["--mail-room-config", str(good), *ca, "release", "--uids", "3", "--yes"], {}, 0),
            (["--mail-room-config", str(good), *ca, "check", "--observe", "0"], {}, None),
            (["--mail-room-config", str(good), "config", "show"], {}, 0),
            (["--mail-room-config", str(good), "config", "show", "--json"], {}, 0),
            (["--debug", "--mail-room-config", str(bad), *ca, "locks"], {}, 3),
            (["--mail-room-config", str(bad), *ca, "check", "--json", "--observe", "0"], {}, None),
        ]
        outputs: list[str] = []
        for argv, run_env, want in runs:
            r = cli(argv, env=run_env)
            if want is not None:
                assert r.code == want, (argv, r.code, r.err)
            assert "internal error" not in r.err, (argv, r.err)
            assert "--debug" in argv or "Traceback" not in r.err, (argv, r.err)
            outputs += [r.out, r.err]
    files = [p for p in AuditJournal().path.parent.rglob("*") if p.is_file()]
    outputs += [p.read_text(errors="replace") for p in files]
    outputs.append(caplog.text)
    outputs += [str(rec.args) for rec in caplog.records]
    everything = "\n".join(outputs)
    releases = [rec for rec in AuditJournal().records() if rec.get("action") == "release-locks"]
    assert len([rec for rec in releases if rec["phase"] == "end" and rec.get("result") == "ok"]) == 3
    assert all("redis" in rec and "***" in rec["redis"] or "sentinel" in rec["redis"] for rec in releases)
    assert client.exists("mail_room:gitlab:delivered:1", "mail_room:gitlab:delivered:2",
                         "mail_room:gitlab:delivered:3") == 0  # the releases did happen
    _assert_nothing_leaked(everything, [CANARY_REDIS, CANARY_REDIS_WRONG, CANARY_SENTINEL, PASSWORD], mailbox.user)
    assert not any(os.fspath(p).count(CANARY_REDIS) for p in files)


def test_unexpected_error_quoting_a_secret_is_scrubbed(mailbox, cli, monkeypatch):  # type: ignore[no-untyped-def]
    """The last line of defence: an exception nobody foresaw that quotes the password (or the Redis
    URL's) does not print it, neither as the one-line internal error nor in the --debug traceback."""
    from triage_tui.services.imap import ImapSession

    mailbox.seed(backlog(1, now=time.time()))

    def boom(self, *a, **kw):  # type: ignore[no-untyped-def]
        raise RuntimeError(f"unexpected: {PASSWORD!r} {PASSWORD.upper()} {quote(CANARY_REDIS)}")

    monkeypatch.setattr(ImapSession, "examine", boom)
    env = mailbox.env() | {"TRIAGE_REDIS_URL": f"redis://:{CANARY_REDIS}@127.0.0.1:1/0"}
    for argv in (["list"], ["--debug", "list"], ["--debug", "locks"]):
        r = cli(argv, env=env)
        assert r.code == 1 and "internal error: RuntimeError: unexpected: '***' ***" in r.err, r.err
        _assert_nothing_leaked(r.out + r.err, [PASSWORD, CANARY_REDIS], mailbox.user)
