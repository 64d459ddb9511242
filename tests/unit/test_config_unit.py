"""Settings resolution without servers: the TOML file (line numbers, unknown keys, types,
profiles), precedence and sources, GitLab's files, and the credential sources."""

from __future__ import annotations

import argparse
import stat
import sys
from pathlib import Path

import pytest

from triage_tui.cli import build_parser
from triage_tui.config import (
    ConfigFile,
    credential_plan,
    load_gitlab_yml,
    load_mail_room_yml,
    mask_url,
    obtain_credentials,
    read_password_file,
    resolve,
    run_secret_command,
    toml_line,
)
from triage_tui.errors import ConfigError, UsageError
from triage_tui.services.imap import Secret

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "config"


def args(*argv: str) -> argparse.Namespace:
    """Global options parsed by the real parser (so its defaults are what resolve() sees)."""
    return build_parser().parse_args([*argv, "config", "show"])


def write(tmp_path: Path, text: str, name: str = "config.toml", mode: int = 0o600) -> Path:
    p = tmp_path / name
    p.write_text(text)
    p.chmod(mode)
    return p


class _Tty:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


# -- TOML line numbers ---------------------------------------------------------------------------

TOML = """\
# comment with host = "nope"
profile = "gprd"

[imap]
host = "base.example.com"
timeout = 20

[profiles.gprd.imap]
user = "incoming"
"host" = "gprd.example.com"

[profiles.gstg]
imap.host = "gstg.example.com"
redis = { url = "redis://r/0" }
"""


def test_toml_line_finds_keys_in_tables_profiles_dotted_and_inline() -> None:
    assert toml_line(TOML, ("imap", "host")) == 5
    assert toml_line(TOML, ("imap", "timeout")) == 6
    assert toml_line(TOML, ("profiles", "gprd", "imap", "host")) == 10
    assert toml_line(TOML, ("profiles", "gstg", "imap", "host")) == 13
    assert toml_line(TOML, ("profiles", "gstg", "redis", "url")) == 14  # inline table: its line
    assert toml_line(TOML, ("profile",)) == 2
    assert toml_line(TOML, ("profiles", "gprd", "imap", "missing")) == 8  # falls back to the table


def test_unknown_key_names_file_line_and_key_with_suggestion(tmp_path: Path) -> None:
    p = write(tmp_path, '[imap]\nhost = "h"\nhots = "x"\n')
    with pytest.raises(ConfigError) as e:
        ConfigFile.load(p)
    assert str(e.value).startswith(f"{p}:3: unknown key 'hots' in [imap]") and "did you mean 'host'" in str(e.value)


def test_unknown_section_in_a_profile(tmp_path: Path) -> None:
    p = write(tmp_path, '[profiles.gprd.imapp]\nhost = "h"\n')
    with pytest.raises(ConfigError, match=rf"^{p}:1: unknown key 'profiles.gprd.imapp' \(did you mean "
                       r"\[profiles.gprd.imap\]\?\)"):
        ConfigFile.load(p)


@pytest.mark.parametrize(("body", "line", "fragment"), [
    ('[imap]\nport = "993"\n', 2, "[imap] port: expected an integer, got a string ('993')"),
    ("[imap]\ninsecure_skip_verify = 1\n", 2, "[imap] insecure_skip_verify: expected true or false, got an integer"),
    ('[triage]\n\nbot_senders = "x"\n', 3, "[triage] bot_senders: expected an array of strings, got a string"),
    ("[projects]\n12 = 3\n", 2, "[projects] 12: expected a string (the project path), got an integer"),
    ('[projects]\ngitlab = "x"\n', 2, "[projects] 'gitlab': keys are GitLab project ids"),
    ('imap = "x"\n', 1, "imap: expected a table [imap], got a string"),
])
def test_wrong_types_name_file_line_and_key(tmp_path: Path, body: str, line: int, fragment: str) -> None:
    p = write(tmp_path, body)
    with pytest.raises(ConfigError) as e:
        ConfigFile.load(p)
    assert str(e.value).startswith(f"{p}:{line}: ") and fragment in str(e.value)


def test_password_in_the_config_file_is_refused_with_the_alternatives(tmp_path: Path) -> None:
    p = write(tmp_path, '[imap]\nuser = "u"\npassword = "hunter2"\n')
    with pytest.raises(ConfigError) as e:
        ConfigFile.load(p)
    assert f"{p}:3:" in str(e.value) and "password_command" in str(e.value) and "hunter2" not in str(e.value)


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    p = write(tmp_path, '[imap]\nhost = "a"\nport = \n')
    with pytest.raises(ConfigError, match=rf"^{p}:3: not valid TOML"):
        ConfigFile.load(p)


def test_config_file_that_runs_a_command_must_not_be_writable_by_others(tmp_path: Path) -> None:
    p = write(tmp_path, '[imap]\npassword_command = "vault read x"\n', mode=0o664)
    with pytest.raises(ConfigError, match=r"writable by group or others: run `chmod go-w "):
        ConfigFile.load(p)
    p.chmod(0o644)
    ConfigFile.load(p)  # readable is fine: a command line is not a secret


# -- precedence and sources ---------------------------------------------------------------------


def test_precedence_default_file_env_flag_with_sources(tmp_path: Path) -> None:
    p = write(tmp_path, '[imap]\nhost = "file.example.com"\nuser = "file-user"\nmailbox = "FileBox"\n'
              'port = 1993\n[triage]\nstale_after = "3d"\n')
    env = {"TRIAGE_IMAP_HOST": "env.example.com", "TRIAGE_IMAP_USER": "env-user"}
    s = resolve(args("--config", str(p), "--host", "flag.example.com"), env)
    assert s["imap.host"] == "flag.example.com" and s.source("imap.host").label == "flag --host"
    assert s["imap.user"] == "env-user" and s.source("imap.user").label == "env TRIAGE_IMAP_USER"
    assert s["imap.mailbox"] == "FileBox" and s.source("imap.mailbox").label == f"file {p}:4 [imap]"
    assert s["imap.port"] == 1993 and s["triage.stale_after"] == "3d"
    assert s["imap.security"] == "ssl" and s.source("imap.security").kind == "default"
    assert s["redis.key_prefix"] == "mail_room:gitlab:"


def test_switch_flags_are_none_unless_given_so_env_and_file_still_count(tmp_path: Path) -> None:
    a = args()
    assert a.read_only is None and a.insecure_skip_verify is None and a.allow_plaintext is None
    p = write(tmp_path, "[triage]\nread_only = true\n[imap]\nrequire_tls = false\n")
    s = resolve(args("--config", str(p)), {})
    assert s["triage.read_only"] is True and s["imap.require_tls"] is False
    s = resolve(args(), {"TRIAGE_READ_ONLY": "yes", "TRIAGE_REQUIRE_TLS": "0"})
    assert s["triage.read_only"] is True and s["imap.require_tls"] is False
    s = resolve(args("--allow-plaintext"), {})
    assert s["imap.require_tls"] is False and s.source("imap.require_tls").label == "flag --allow-plaintext"


def test_write_back_keeps_args_attributes_working(tmp_path: Path) -> None:
    p = write(tmp_path, '[gitlab]\naddress = "in+%{key}@x.example"\n[redis]\nkey_prefix = "ns:"\n'
              "[tui]\nmouse = false\n")
    a = args("--config", str(p), "--timeout", "7")
    resolve(a, {}).write_back(a)
    assert a.address == "in+%{key}@x.example" and a.key_prefix == "ns:" and a.no_mouse is True
    assert a.imap_timeout == 7.0 and a.allow_plaintext is False and a.read_only is False
    assert a.password_env == "TRIAGE_IMAP_PASSWORD"


@pytest.mark.parametrize(("env", "message"), [
    ({"TRIAGE_READ_ONLY": "ture"}, "environment variable TRIAGE_READ_ONLY='ture': expected one of"),
    ({"TRIAGE_IMAP_PORT": "imaps"}, "environment variable TRIAGE_IMAP_PORT='imaps': expected an integer"),
    ({"TRIAGE_IMAP_SECURITY": "tls"}, "imap.security 'tls' (env TRIAGE_IMAP_SECURITY): must be one of"),
    ({"TRIAGE_STALE_AFTER": "soon"}, "triage.stale_after (env TRIAGE_STALE_AFTER): invalid age"),
    ({"TRIAGE_IMAP_PORT": "70000"}, "imap.port 70000 (env TRIAGE_IMAP_PORT): must be between 1 and 65535"),
])
def test_bad_environment_values_are_errors_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        resolve(args(), env)
    assert message in str(e.value)


def test_bad_regex_in_the_file_names_its_line(tmp_path: Path) -> None:
    p = write(tmp_path, "[triage]\nsuspicious = ['(unclosed']\n")
    with pytest.raises(ConfigError, match=rf"triage.suspicious \(file {p}:2 \[triage\]\): invalid regular"):
        resolve(args("--config", str(p)), {})


def test_profiles_overlay_the_top_level_and_maps_merge(tmp_path: Path) -> None:
    p = write(tmp_path, """\
profile = "gstg"
[imap]
host = "base"
timeout = 12
[projects]
1 = "base/one"
[keymap]
"mark.toggle" = "x"
[profiles.gprd.imap]
host = "gprd"
[profiles.gprd.projects]
2 = "gprd/two"
[profiles.gstg.imap]
host = "gstg"
[profiles.gstg.keymap]
"action.seen" = ["ctrl+s", "f5"]
""")
    s = resolve(args("--config", str(p)), {})
    assert s.profile == "gstg" and s["imap.host"] == "gstg" and s["imap.timeout"] == 12
    assert s["keymap"] == {"mark.toggle": "x", "action.seen": "ctrl+s,f5"}
    s = resolve(args("--config", str(p), "--profile", "gprd"), {})
    assert s["imap.host"] == "gprd" and s.source("imap.host").label == f"file {p}:10 [profiles.gprd.imap]"
    assert s["projects"] == {1: "base/one", 2: "gprd/two"}
    s = resolve(args("--config", str(p)), {"TRIAGE_PROFILE": "gprd", "TRIAGE_KEYMAP": '{"action.seen": "s"}'})
    assert s["imap.host"] == "gprd" and s["keymap"]["action.seen"] == "s" and s["keymap"]["mark.toggle"] == "x"
    with pytest.raises(ConfigError, match=r"no profile 'prod' \(profiles: gprd, gstg\)"):
        resolve(args("--config", str(p), "--profile", "prod"), {})


def test_config_file_location_flag_env_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    default = tmp_path / "xdg" / "triage-tui" / "config.toml"
    s = resolve(args(), {})
    assert s.config_path == default and not s.config_exists
    default.parent.mkdir(parents=True)
    write(default.parent, '[imap]\nhost = "from-default"\n')
    assert resolve(args(), {})["imap.host"] == "from-default"
    other = write(tmp_path, '[imap]\nhost = "from-env"\n', name="other.toml")
    assert resolve(args(), {"TRIAGE_CONFIG": str(other)})["imap.host"] == "from-env"
    assert resolve(args("--config", str(default)), {"TRIAGE_CONFIG": str(other)})["imap.host"] == "from-default"
    with pytest.raises(ConfigError, match="not found"):
        resolve(args("--config", str(tmp_path / "missing.toml")), {})
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "nothing-here"))
    with pytest.raises(ConfigError, match="needs a config file"):
        resolve(args("--profile", "gprd"), {})


def test_relative_paths_in_the_file_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    p = write(tmp_path / "etc", '[imap]\nca_file = "ca.pem"\npassword_file = "/abs/pw"\n')
    s = resolve(args("--config", str(p)), {})
    assert s["imap.ca_file"] == str(tmp_path / "etc" / "ca.pem") and s["imap.password_file"] == "/abs/pw"


# -- GitLab's files -------------------------------------------------------------------------------


def test_gitlab_yml_both_mailboxes_defaults_to_incoming_with_a_note() -> None:
    s = resolve(args("--gitlab-config", str(CORPUS / "gitlab.yml")), {})
    assert s.mailbox_source == "incoming" and set(s.imported) == {"incoming", "service_desk"}
    assert s["imap.host"] == "imap.gitlab.example.com" and s["imap.port"] == 993 and s["imap.security"] == "ssl"
    assert s["imap.user"] == "incoming@incoming.gitlab.example.com" and s["imap.mailbox"] == "inbox"
    assert s["gitlab.address"] == "incoming+%{key}@incoming.gitlab.example.com"
    assert s["gitlab.mailbox_kind"] == "incoming" and s["mail_room.expunge_deleted"] is False
    assert isinstance(s["imap.password"], Secret) and s["imap.password"].reveal() == "imap-pass-from-gitlab-yml"
    assert s.source("imap.host").label == f"gitlab.yml {CORPUS / 'gitlab.yml'}:19 production.incoming_email.host"
    assert any("--mailbox-source service_desk" in n for n in s.notes)
    assert s.shared_with == ("service_desk_email",)


def test_mailbox_source_service_desk_switches_and_implies_the_kind(tmp_path: Path) -> None:
    s = resolve(args("--gitlab-config", str(CORPUS / "gitlab.yml"), "--mailbox-source", "service_desk"), {})
    assert s["imap.security"] == "starttls" and s["imap.port"] == 143 and s["imap.mailbox"] == "Service Desk"
    assert s["gitlab.address"].startswith("contact+") and s["mail_room.idle_timeout"] == 30
    assert s["gitlab.mailbox_kind"] == "service_desk"
    # even over a config file that says incoming: the switch was made at a higher layer
    p = write(tmp_path, '[gitlab]\nmailbox_kind = "incoming"\n')
    s = resolve(args("--config", str(p), "--gitlab-config", str(CORPUS / "gitlab.yml")),
                {"TRIAGE_MAILBOX_SOURCE": "service_desk"})
    assert s["gitlab.mailbox_kind"] == "service_desk" and "implied by env TRIAGE_MAILBOX_SOURCE" in str(
        s.source("gitlab.mailbox_kind"))
    with pytest.raises(ConfigError, match="choose one"):
        resolve(args("--gitlab-config", str(CORPUS / "gitlab.yml"), "--mailbox-source", "service_desk",
                     "--mailbox-kind", "incoming"), {})


def test_gitlab_yml_environments_and_merge_keys() -> None:
    s = resolve(args("--gitlab-config", str(CORPUS / "gitlab.yml"), "--gitlab-env", "development"), {})
    assert set(s.imported) == {"service_desk"} and s.mailbox_source == "service_desk"
    assert s["gitlab.mailbox_kind"] == "service_desk"
    with pytest.raises(ConfigError, match=r"no 'staging' environment \(has: production, development, test\)"):
        resolve(args("--gitlab-config", str(CORPUS / "gitlab.yml"), "--gitlab-env", "staging"), {})
    with pytest.raises(ConfigError, match="service_desk_email is not configured"):
        resolve(args("--gitlab-config", str(CORPUS / "gitlab_omnibus.yml"), "--mailbox-source", "service_desk"), {})


def test_gitlab_defaults_apply_to_missing_settings() -> None:
    s = resolve(args("--gitlab-config", str(CORPUS / "gitlab_minimal.yml")), {})
    assert s["imap.port"] == 143 and s["imap.security"] == "none" and s["imap.mailbox"] == "inbox"
    assert s["mail_room.delete_after_delivery"] is True and s["mail_room.expunge_deleted"] is False
    assert "GitLab default" in str(s.source("imap.port"))
    s = resolve(args("--gitlab-config", str(CORPUS / "gitlab_omnibus.yml")), {})
    assert s["imap.host"] == "imap.gmail.com" and set(s.imported) == {"incoming"} and not s.notes


def test_operator_layers_override_imported_values(tmp_path: Path) -> None:
    p = write(tmp_path, '[imap]\nhost = "127.0.0.1"\n')
    s = resolve(args("--config", str(p), "--gitlab-config", str(CORPUS / "gitlab.yml"), "--port", "1993"), {})
    assert s["imap.host"] == "127.0.0.1" and s["imap.port"] == 1993 and s["imap.user"].startswith("incoming@")


def test_mail_room_yml_symbols_namespace_sentinels() -> None:
    s = resolve(args("--mail-room-config", str(CORPUS / "mail_room.yml")), {})
    assert s["redis.key_prefix"] == "mail_room:gitlab:" and s["redis.master"] == "gitlab-redis"
    assert s["redis.sentinels"] == ["sentinel1.internal:26379", "sentinel2.internal:26380"]
    assert s["redis.sentinel_password"].reveal() == "sentinel-pass"
    assert s["imap.user"] == "incoming@incoming.gitlab.example.com" and s["imap.password"].reveal() == \
        "imap-pass-from-mail-room"
    assert s.shared_with == ("service_desk_email",)
    assert s.display("redis.url") == "redis://:***@gitlab-redis/0"
    s = resolve(args("--mail-room-config", str(CORPUS / "mail_room.yml"), "--mailbox-source", "service_desk"), {})
    assert s["imap.user"].startswith("contact@") and s["gitlab.mailbox_kind"] == "service_desk"


def test_mail_room_over_gitlab_yml_and_webhook_identification() -> None:
    s = resolve(args("--gitlab-config", str(CORPUS / "gitlab.yml"), "--mail-room-config",
                     str(CORPUS / "mail_room.yml")), {})
    assert s["imap.password"].reveal() == "imap-pass-from-mail-room"  # what mail_room really runs with
    assert s["gitlab.address"].startswith("incoming+")  # only gitlab.yml has the address
    boxes = load_mail_room_yml(CORPUS / "mail_room_webhook.yml")
    assert set(boxes) == {"incoming"} and boxes["incoming"].get("redis.url") == "redis://redis.internal:6379/2"
    assert "redis.sentinels" not in boxes["incoming"].values


def test_erb_template_is_refused_with_its_line() -> None:
    with pytest.raises(ConfigError) as e:
        load_mail_room_yml(CORPUS / "mail_room_erb.yml")
    assert str(e.value).startswith(f"{CORPUS / 'mail_room_erb.yml'}:3: this is an ERB template")
    assert "--gitlab-config" in str(e.value) and "\n" not in str(e.value)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    p = write(tmp_path, "production:\n  incoming_email:\n    enabled: true\n   address: [x\n", name="gitlab.yml")
    with pytest.raises(ConfigError, match=rf"^{p}:\d+: not valid YAML"):
        load_gitlab_yml(p, "production")


def test_nothing_enabled_is_an_error(tmp_path: Path) -> None:
    p = write(tmp_path, "production:\n  incoming_email:\n    enabled: false\n    address: x+%{key}@y\n",
              name="gitlab.yml")
    with pytest.raises(ConfigError, match="neither incoming_email nor service_desk_email is enabled"):
        resolve(args("--gitlab-config", str(p)), {})


# -- credentials ---------------------------------------------------------------------------------


def test_credential_plan_follows_layers_then_method_order(tmp_path: Path) -> None:
    p = write(tmp_path, '[imap]\npassword_command = "vault read x"\n')
    s = resolve(args("--config", str(p)), {})
    assert credential_plan(s, False).method == "password_command"
    s = resolve(args("--config", str(p)), {"TRIAGE_IMAP_PASSWORD": "x"})
    assert credential_plan(s, False).method == "password_env"  # env beats the file
    s = resolve(args("--config", str(p), "--password-file", "/x"), {"TRIAGE_IMAP_PASSWORD": "x"})
    assert credential_plan(s, False).method == "password_file"  # a flag beats env
    s = resolve(args("--oauth2-token-command", "tok", "--password-file", "/x"), {})
    assert credential_plan(s, False).method == "oauth2_token_command"  # same layer: OAuth2 first
    s = resolve(args("--gitlab-config", str(CORPUS / "gitlab.yml")), {})
    assert credential_plan(s, False).method == "password"
    s = resolve(args(), {})
    assert credential_plan(s, True).method == "prompt" and credential_plan(s, False).method == "none"


def test_password_env_named_but_unset_is_an_error_naming_it() -> None:
    s = resolve(args("--password-env", "VAULT_PW"), {})
    with pytest.raises(UsageError, match="environment variable VAULT_PW .*is not set"):
        obtain_credentials(s, stdin=_Tty(False), user="u", server="h:993")  # type: ignore[arg-type]


def test_oauth2_token_from_env_and_command(tmp_path: Path) -> None:
    s = resolve(args("--oauth2-token-env", "TOKEN", "--oauth2-mechanism", "oauthbearer"), {"TOKEN": "ya29.tok"})
    c = obtain_credentials(s, stdin=_Tty(False), user="u", server="h:993")  # type: ignore[arg-type]
    assert c.oauth2_token is not None and c.oauth2_token.reveal() == "ya29.tok" and c.password is None
    assert s["imap.oauth2_mechanism"] == "OAUTHBEARER"
    script = write(tmp_path, "#!/bin/sh\necho tok-from-cmd\necho second-line\n", name="tok.sh", mode=0o700)
    s = resolve(args("--oauth2-token-command", str(script)), {})
    c = obtain_credentials(s, stdin=_Tty(False), user="u", server="h:993")  # type: ignore[arg-type]
    assert c.oauth2_token is not None and c.oauth2_token.reveal() == "tok-from-cmd"


def test_prompt_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: asked.append(prompt) or "typed-pw")
    s = resolve(args(), {})
    c = obtain_credentials(s, stdin=_Tty(True), user="incoming", server="h:993")  # type: ignore[arg-type]
    assert c.password is not None and c.password.reveal() == "typed-pw" and asked == [
        "IMAP password for incoming at h:993: "]
    with pytest.raises(UsageError, match="no IMAP password"):
        obtain_credentials(s, stdin=_Tty(False), user="u", server="h:993")  # type: ignore[arg-type]


def test_secret_command_first_line_no_shell(tmp_path: Path) -> None:
    from triage_tui.config import DEFAULT

    out = tmp_path / "proof"
    secret = run_secret_command(f"{sys.executable} -c \"print('pw one'); print('ignored')\" ; touch {out}",
                                what="password_command", source=DEFAULT, timeout=10)
    assert secret.reveal() == "pw one" and not out.exists()  # `;` and `touch` were arguments, not shell


@pytest.mark.parametrize(("command", "message"), [
    ("{py} -c \"import sys; print('CANARY-out'); print('CANARY-err', file=sys.stderr); sys.exit(3)\"",
     "failed with exit status 3"),
    ("/nonexistent/vault read", "program '/nonexistent/vault' not found"),
    ("{py} -c \"import time; print('CANARY-out', flush=True); time.sleep(5)\"", "no answer within 0.5 s"),
    ("{py} -c \"print('')\"", "printed nothing on its first line"),
    ("'unbalanced", "cannot be split into arguments"),
])
def test_failing_secret_command_is_one_line_without_its_output(command: str, message: str) -> None:
    from triage_tui.config import DEFAULT

    with pytest.raises(ConfigError) as e:
        run_secret_command(command.format(py=sys.executable), what="password_command", source=DEFAULT, timeout=0.5)
    text = str(e.value)
    assert message in text and "CANARY" not in text.replace(command.format(py=sys.executable), "") \
        and "\n" not in text


def test_password_file_permissions(tmp_path: Path) -> None:
    p = write(tmp_path, "pw-in-file\n", name="pw", mode=0o640)
    with pytest.raises(ConfigError, match=rf"readable by group or others: run `chmod 600 {p}`"):
        read_password_file(str(p))
    p.chmod(0o600)
    assert read_password_file(str(p)).reveal() == "pw-in-file"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    with pytest.raises(ConfigError, match="cannot read password file"):
        read_password_file(str(tmp_path / "absent"))


def test_mask_url() -> None:
    assert mask_url("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert mask_url("rediss://user:pw@host/1") == "rediss://user:***@host/1"
    assert mask_url("redis://host/0") == "redis://host/0"


def test_a_profile_can_name_the_hosts_gitlab_files(tmp_path: Path) -> None:
    (tmp_path / "gitlab.yml").write_text((CORPUS / "gitlab.yml").read_text())
    p = write(tmp_path, '[profiles.gprd]\ngitlab.config = "gitlab.yml"\ngitlab.mailbox_source = "service_desk"\n'
              '[profiles.gprd.imap]\nhost = "127.0.0.1"\n')
    s = resolve(args("--config", str(p), "--profile", "gprd"), {})
    assert s["gitlab.config"] == str(tmp_path / "gitlab.yml") and s.mailbox_source == "service_desk"
    assert s["imap.host"] == "127.0.0.1" and s["imap.user"].startswith("contact@")  # file over import
    assert s.source("gitlab.config").label == f"file {p}:2 [profiles.gprd.gitlab]"


# -- secret files and commands (guarantee 3) -----------------------------------------------------


def _pwbytes(tmp_path: Path, data: bytes, name: str = "pw") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    p.chmod(0o600)
    return p


@pytest.mark.parametrize(("data", "password"), [
    (b"first\nsecond\n", "first"),  # first line only
    (b"crlf\r\nsecond\r\n", "crlf"),  # the line ending only
    (b"  spaced pw \t\n", "  spaced pw \t"),  # spaces are part of a password
    (b"no-newline", "no-newline"),
    (b"\xef\xbb\xbfwith-bom\n", "with-bom"),  # an editor's UTF-8 BOM
    ("p\u00e4ss-\u20ac\n".encode(), "p\u00e4ss-\u20ac"),  # UTF-8
    (b"a\rb\n", "a\rb"),  # a CR inside is the password's business (AUTHENTICATE PLAIN carries it)
])
def test_password_file_first_line_exactly(tmp_path: Path, data: bytes, password: str) -> None:
    assert read_password_file(str(_pwbytes(tmp_path, data))).reveal() == password


@pytest.mark.parametrize(("data", "message"), [
    (b"", "is empty on its first line"),
    (b"\n", "is empty on its first line"),
    (b"\r\nsecond\n", "is empty on its first line"),
    (b"p\xe4ss-CANARY\n", "the first line is not UTF-8 text (content not shown)"),  # Latin-1, not UTF-8
    (b"\xff\xfep\x00w\x00\n", "not UTF-8 text"),  # UTF-16
    (b"pw\x00CANARY\n", "contains a NUL character"),
    (b"x" * (70 * 1024), "longer than 64 KiB"),
])
def test_password_file_bad_content_is_a_config_error_without_content(tmp_path: Path, data: bytes,
                                                                     message: str) -> None:
    p = _pwbytes(tmp_path, data)
    with pytest.raises(ConfigError) as e:
        read_password_file(str(p))
    text = str(e.value)
    assert message in text and str(p) in text and "CANARY" not in text and "\\x" not in text and "\n" not in text


def test_password_file_must_be_a_regular_file(tmp_path: Path) -> None:
    """A FIFO hung forever (nobody writes to it): refused before opening, as are directories,
    devices and sockets, also behind a symlink."""
    import os
    import socket

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(ConfigError, match=f"password file {fifo} is a FIFO, not a regular file"):
        read_password_file(str(fifo))
    link = tmp_path / "link"
    link.symlink_to(fifo)
    with pytest.raises(ConfigError, match="is a FIFO, not a regular file"):
        read_password_file(str(link))
    d = tmp_path / "dir"
    d.mkdir(mode=0o700)
    with pytest.raises(ConfigError, match=f"password file {d} is a directory"):
        read_password_file(str(d))
    with pytest.raises(ConfigError, match="/dev/null is a device, not a regular file"):
        read_password_file("/dev/null")
    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        os.chmod(sock_path, 0o600)
        with pytest.raises(ConfigError, match="is a socket, not a regular file"):
            read_password_file(str(sock_path))


def test_password_file_unreadable_says_why_not_what(tmp_path: Path) -> None:
    p = _pwbytes(tmp_path, b"CANARY-unreadable\n")
    with pytest.raises(ConfigError, match="cannot read password file .*: No such file"):
        read_password_file(str(tmp_path / "absent"))
    p.chmod(0o604)
    with pytest.raises(ConfigError, match="readable by group or others"):
        read_password_file(str(p))


@pytest.mark.parametrize(("script", "message"), [
    ("import sys; sys.stdout.buffer.write(b'p\\xe4ss-CANARY\\n')", "is not UTF-8 text (content not shown)"),
    ("import sys; sys.stdout.buffer.write(b'pw\\x00CANARY\\n')", "contains a NUL character"),
    ("print('')", "printed nothing on its first line"),
])
def test_secret_command_output_checked_like_a_file(script: str, message: str) -> None:
    from triage_tui.config import DEFAULT

    with pytest.raises(ConfigError) as e:
        run_secret_command(f"{sys.executable} -c \"{script}\"", what="password_command", source=DEFAULT, timeout=10)
    assert message in str(e.value) and "CANARY" not in str(e.value).replace(script, "")


def test_secret_command_keeps_the_first_line_exactly() -> None:
    from triage_tui.config import DEFAULT

    out = run_secret_command(f"{sys.executable} -c \"import sys; sys.stdout.buffer.write(b' p\\xc3\\xa4ss \\r\\nx')\"",
                             what="password_command", source=DEFAULT, timeout=10)
    assert out.reveal() == " p\u00e4ss "


def test_env_password_with_undecodable_bytes_is_a_config_error() -> None:
    s = resolve(args("--host", "h", "--user", "u"), {"TRIAGE_IMAP_PASSWORD": "p\udce4ss-CANARY"})
    with pytest.raises(ConfigError) as e:
        obtain_credentials(s, stdin=_Tty(False), user="u", server="h:993")  # type: ignore[arg-type]
    assert "not UTF-8 text" in str(e.value) and "TRIAGE_IMAP_PASSWORD" in str(e.value) and "CANARY" not in str(e.value)


def test_config_show_masks_every_credential_form(tmp_path: Path) -> None:
    for url in ("redis://h/0?password=CANARY1", "redis://u:CANARY1@h/0", "unix:///r.sock?password=CANARY1"):
        s = resolve(args("--redis-url", url), {})
        assert "CANARY1" not in s.display("redis.url") and "CANARY1" not in str(s.jsonable("redis.url"))
    for url in ("redis//:CANARY1@h", "redis:/:CANARY1@h"):  # malformed: refused, and not echoed
        with pytest.raises(ConfigError) as e:
            resolve(args("--redis-url", url), {})
        assert "CANARY1" not in str(e.value)
    s = resolve(args("--host", "u:CANARY2@imap.example.com"), {})
    assert "CANARY2" not in s.display("imap.host") and "CANARY2" not in str(s.jsonable("imap.host"))


def test_sentinel_address_with_credentials_refused_without_echo() -> None:
    with pytest.raises(ConfigError) as e:
        resolve(args("--redis-sentinel", "redis://:CANARY3@s1:26379", "--redis-master", "m"), {})
    assert "CANARY3" not in str(e.value) and "expected HOST:PORT" in str(e.value)


def test_settings_repr_shows_what_config_show_shows() -> None:
    """A log line, a debugger or a traceback with locals that prints the settings sees no secret."""
    s = resolve(args("--redis-url", "redis://h/0?password=CANARY4", "--mail-room-config",
                     str(CORPUS / "mail_room.yml")), {})
    text = repr(s)
    for secret in ("CANARY4", "redis-pass", "sentinel-pass", "imap-pass-from-mail-room"):
        assert secret not in text, secret
    assert "password=***" in text and "gitlab-redis" in text
