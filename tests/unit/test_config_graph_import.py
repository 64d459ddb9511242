"""GitLab's files for a mailbox read through Microsoft Graph: ``inbox_method: microsoft_graph`` and
its ``inbox_options`` in a rendered gitlab.yml or mail_room YAML set ``--inbox graph`` and the
[graph] settings, the client secret is kept like the IMAP password (a Secret, masked, the lowest
layer), and hostile shapes are one-line errors that never quote the secret."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from triage_tui.cli import build_parser
from triage_tui.config import obtain_graph_secret, resolve
from triage_tui.errors import ConfigError, UsageError
from triage_tui.services.imap import Secret

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "config"
GITLAB = CORPUS / "gitlab_graph.yml"
MAIL_ROOM = CORPUS / "mail_room_graph.yml"


def args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args([*argv, "config", "show"])


def test_gitlab_yml_microsoft_graph_sets_the_graph_inbox_with_sources() -> None:
    s = resolve(args("--gitlab-config", str(GITLAB)), {})
    assert s.mailbox_source == "incoming" and s["triage.inbox"] == "graph"
    assert s["mail_room.inbox_method"] == "microsoft_graph"
    assert s["graph.tenant_id"] == "8a1b2c3d-0000-4000-8000-000000000001"
    assert s["graph.client_id"] == "0f1e2d3c-0000-4000-8000-000000000002"
    assert s["graph.graph_endpoint"] == "https://graph.microsoft.us"  # a national cloud
    assert s["graph.azure_ad_endpoint"] == "https://login.microsoftonline.us"
    assert s["graph.mailbox"] == "incoming@example.onmicrosoft.com" and s["graph.folder"] == "inbox"
    assert s["gitlab.address"] == "incoming+%{key}@example.onmicrosoft.com"
    assert s.source("graph.tenant_id").label == \
        f"gitlab.yml {GITLAB}:21 production.incoming_email.inbox_options.tenant_id"
    assert s.source("triage.inbox").label == f"gitlab.yml {GITLAB}:19 production.incoming_email.inbox_method"
    assert s.source("graph.mailbox").label == f"gitlab.yml {GITLAB}:14 production.incoming_email.user"
    secret = s["graph.client_secret"]
    assert isinstance(secret, Secret) and secret.reveal() == "graph-secret-from-gitlab-yml"
    # an IMAP mailbox beside a Graph one shares no delivered:<uid> keys with it
    assert s.shared_with == ()


def test_the_imported_client_secret_is_never_shown() -> None:
    s = resolve(args("--gitlab-config", str(GITLAB)), {})
    assert s.display("graph.client_secret") == "********" and s.jsonable("graph.client_secret") == "********"
    assert "graph-secret-from-gitlab-yml" not in repr(s)
    assert "graph-secret-from-gitlab-yml" not in repr(s.imported)
    assert "graph-secret-from-gitlab-yml" not in json.dumps({n: s.jsonable(n) for n in s.values}, default=str)


def test_config_show_redacts_the_client_secret(capsys: pytest.CaptureFixture[str]) -> None:
    from triage_tui.cli import main

    for extra in ([], ["--json"]):
        code = main(["--gitlab-config", str(GITLAB), "--mail-room-config", str(MAIL_ROOM), "config", "show",
                     *extra])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "graph-secret-from" not in out + err and "sd-pass-from" not in out + err
        assert "graph.client_secret" in out and "********" in out


def test_the_imported_secret_is_the_lowest_layer(tmp_path: Path) -> None:
    s = resolve(args("--gitlab-config", str(GITLAB)), {})
    assert obtain_graph_secret(s).reveal() == "graph-secret-from-gitlab-yml"
    env = {"TRIAGE_GRAPH_CLIENT_SECRET": "from-env"}
    assert obtain_graph_secret(resolve(args("--gitlab-config", str(GITLAB)), env)).reveal() == "from-env"
    f = tmp_path / "secret"
    f.write_text("from-file\n")
    f.chmod(0o600)
    s = resolve(args("--gitlab-config", str(GITLAB), "--graph-secret-file", str(f)), env)
    assert obtain_graph_secret(s).reveal() == "from-file"
    # a variable named on purpose and unset is an error, not a silent fallback to the file's secret
    s = resolve(args("--gitlab-config", str(GITLAB), "--graph-secret-env", "VAULT_GRAPH_SECRET"), {})
    with pytest.raises(UsageError, match="VAULT_GRAPH_SECRET"):
        obtain_graph_secret(s)


def test_operator_layers_override_the_import(tmp_path: Path) -> None:
    s = resolve(args("--gitlab-config", str(GITLAB), "--inbox", "imap", "--graph-folder", "Archive"),
                {"TRIAGE_GRAPH_TENANT_ID": "other-tenant"})
    assert s["triage.inbox"] == "imap" and s["graph.folder"] == "Archive" and s["graph.tenant_id"] == "other-tenant"
    # the IMAP service desk mailbox of the same file stays IMAP, with no Graph settings from the file
    s = resolve(args("--gitlab-config", str(GITLAB), "--mailbox-source", "service_desk"), {})
    assert s["triage.inbox"] == "imap" and s["imap.host"] == "imap.gitlab.example.com"
    assert s["graph.tenant_id"] is None and s["graph.client_secret"] is None and s["graph.mailbox"] is None


def test_mail_room_yml_microsoft_graph_and_over_gitlab_yml() -> None:
    s = resolve(args("--mail-room-config", str(MAIL_ROOM)), {})
    assert s["triage.inbox"] == "graph" and s["graph.tenant_id"] == "12345"  # unquoted number -> text
    assert s["graph.mailbox"] == "incoming@example.onmicrosoft.com" and s["graph.folder"] == "Triage In"
    assert s["graph.graph_endpoint"] == "https://graph.microsoft.com"
    assert s["redis.key_prefix"] == "mail_room:gitlab:"
    assert s.source("graph.client_id").label == f"mail_room {MAIL_ROOM}:14 :inbox_options: :client_id:"
    s = resolve(args("--gitlab-config", str(GITLAB), "--mail-room-config", str(MAIL_ROOM)), {})
    assert obtain_graph_secret(s).reveal() == "graph-secret-from-mail-room"  # what mail_room runs with
    assert s["graph.graph_endpoint"] == "https://graph.microsoft.com" and s["graph.folder"] == "Triage In"
    assert s["gitlab.address"].startswith("incoming+")  # only gitlab.yml has it


def _gitlab(tmp_path: Path, options: str, method: str = '"microsoft_graph"') -> Path:
    p = tmp_path / "gitlab.yml"
    p.write_text("production:\n  incoming_email:\n    enabled: true\n    address: \"in+%{key}@x.example\"\n"
                 f"    user: \"in@x.example\"\n    inbox_method: {method}\n{options}")
    return p


@pytest.mark.parametrize(("options", "match"), [
    ("    inbox_options: [tenant_id, x]\n", r":7 production\.incoming_email\.inbox_options: expected a mapping"),
    ("    inbox_options: just-a-string\n", "inbox_options: expected a mapping"),
    ("    inbox_options:\n      tenant_id: {a: 1}\n", r":8 production\.incoming_email\.inbox_options\.tenant_id: "
     "expected a single value, got a mapping"),
    ("    inbox_options:\n      client_secret: [s3cr3t-canary]\n", "client_secret: expected a single value"),
    ("    inbox_options:\n      graph_endpoint: \"https://graph\u202e.example\"\n", "U\\+202E"),
])
def test_hostile_inbox_options_are_one_line_errors(tmp_path: Path, options: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as e:
        resolve(args("--gitlab-config", str(_gitlab(tmp_path, options))), {})
    assert "\n" not in str(e.value) and "s3cr3t-canary" not in str(e.value)


def test_an_unknown_inbox_method_and_missing_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be one of imap, microsoft_graph"):
        resolve(args("--gitlab-config", str(_gitlab(tmp_path, "", method="pop3"))), {})
    s = resolve(args("--gitlab-config", str(_gitlab(tmp_path, "", method='":microsoft_graph"'))), {})
    assert s["triage.inbox"] == "graph" and s["mail_room.inbox_method"] == "microsoft_graph"
    # no inbox_options at all: the Graph inbox with nothing to reach it, said when it is used
    s = resolve(args("--gitlab-config", str(_gitlab(tmp_path, ""))), {})
    assert s["triage.inbox"] == "graph" and s["graph.tenant_id"] is None
    with pytest.raises(UsageError, match="no Graph client secret"):
        obtain_graph_secret(s)
    s = resolve(args("--gitlab-config", str(_gitlab(tmp_path, "    inbox_options:\n      client_secret: \"\"\n"))),
                {})
    assert s["graph.client_secret"] is None


def test_a_secret_no_login_can_carry_is_refused_without_showing_it(tmp_path: Path) -> None:
    p = _gitlab(tmp_path, '    inbox_options:\n      client_secret: "canary-\\0-secret"\n')
    s = resolve(args("--gitlab-config", str(p)), {})
    with pytest.raises(ConfigError, match="NUL") as e:
        obtain_graph_secret(s)
    assert "canary" not in str(e.value)


def test_the_config_file_is_not_a_secret_store_for_graph_either(tmp_path: Path) -> None:
    p = tmp_path / "config.toml"
    p.write_text('[graph]\nclient_secret = "x"\n')
    p.chmod(0o600)
    with pytest.raises(ConfigError, match="client_secret_command"):
        resolve(args("--config", str(p)), {})


def test_config_show_says_how_the_graph_secret_is_obtained(capsys: pytest.CaptureFixture[str]) -> None:
    from triage_tui.cli import main
    from triage_tui.config import graph_credential_plan

    s = resolve(args("--gitlab-config", str(GITLAB)), {})
    assert graph_credential_plan(s).method == "password"
    assert graph_credential_plan(resolve(args("--gitlab-config", str(GITLAB)),
                                         {"TRIAGE_GRAPH_CLIENT_SECRET": "x"})).method == "password_env"
    assert graph_credential_plan(resolve(args("--inbox", "graph"), {})).method == "none"
    assert main(["--gitlab-config", str(GITLAB), "config", "show"]) == 0
    out = capsys.readouterr().out
    assert "credential    Graph client secret from the imported file (gitlab.yml" in out
    assert main(["--gitlab-config", str(GITLAB), "config", "show", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["credential"]["method"] == "password" and "graph-secret-from" not in json.dumps(doc)


def _mail_room(tmp_path: Path, method: str, options: str) -> Path:
    p = tmp_path / "mail_room.yml"
    p.write_text(":mailboxes:\n  -\n    :email: \"in@x.example\"\n    :name: \"inbox\"\n"
                 f"    :inbox_method: {method}\n{options}")
    return p


def test_mail_room_symbol_method_and_hostile_shapes(tmp_path: Path) -> None:
    # mail_room's own YAML writes symbols as values too: :inbox_method: :microsoft_graph
    s = resolve(args("--mail-room-config", str(_mail_room(tmp_path, ":microsoft_graph",
                                                          "    :inbox_options:\n      :tenant_id: 0\n"))), {})
    assert s["triage.inbox"] == "graph" and s["mail_room.inbox_method"] == "microsoft_graph"
    assert s["graph.tenant_id"] == "0"  # an unquoted number, even 0, is a value
    for method, options, match in [
        ("[microsoft_graph]", "", r":5 :inbox_method:: expected a single value, got a list"),
        ("microsoft_graph", "    :inbox_options: [s3cr3t-canary]\n", r":6 :inbox_options:: expected a mapping"),
        ("microsoft_graph", "    :inbox_options:\n      :client_secret: {k: s3cr3t-canary}\n",
         r":7 :inbox_options: :client_secret:: expected a single value, got a mapping"),
    ]:
        with pytest.raises(ConfigError, match=match) as e:
            resolve(args("--mail-room-config", str(_mail_room(tmp_path, method, options))), {})
        assert "\n" not in str(e.value) and "s3cr3t-canary" not in str(e.value)


def test_a_named_unset_env_var_is_an_error_that_never_shows_the_imported_secret(tmp_path: Path) -> None:
    p = tmp_path / "config.toml"
    p.write_text('[graph]\nclient_secret_env = "VAULT_GRAPH_SECRET"\n')
    p.chmod(0o600)
    s = resolve(args("--config", str(p), "--gitlab-config", str(GITLAB)), {})
    with pytest.raises(UsageError, match="VAULT_GRAPH_SECRET") as e:
        obtain_graph_secret(s)
    assert "graph-secret-from" not in str(e.value)
    s = resolve(args("--config", str(p), "--gitlab-config", str(GITLAB)), {"VAULT_GRAPH_SECRET": "from-vault"})
    assert obtain_graph_secret(s).reveal() == "from-vault"


def test_config_show_on_graph_does_not_describe_the_imap_password(capsys: pytest.CaptureFixture[str],
                                                                   tmp_path: Path) -> None:
    from triage_tui.cli import main

    f = tmp_path / "secret"
    f.write_text("x\n")
    f.chmod(0o600)
    assert main(["--gitlab-config", str(GITLAB), "--graph-secret-file", str(f), "config", "show"]) == 0
    cred = [x for x in capsys.readouterr().out.splitlines() if x.startswith("credential")]
    assert cred == [f"credential    Graph client secret from file {f} (flag --graph-secret-file)"]
    assert main(["--inbox", "graph", "--graph-secret-command", "vault read x", "config", "show"]) == 0
    cred = [x for x in capsys.readouterr().out.splitlines() if x.startswith("credential")]
    assert len(cred) == 1 and "command `vault read x`" in cred[0] and "not run by config show" in cred[0]
    # the service desk mailbox of the same file is IMAP: its password plan, as before
    assert main(["--gitlab-config", str(GITLAB), "--mailbox-source", "service_desk", "config", "show"]) == 0
    cred = [x for x in capsys.readouterr().out.splitlines() if x.startswith("credential")]
    assert len(cred) == 1 and cred[0].startswith("credential    password from the imported file") and "Graph" not in cred[0]
