"""Settings: defaults < GitLab's own files < config file (TOML) < environment < flags.

Every setting is declared once in :data:`SPECS` (its type, default, environment variable and
flag), and :func:`resolve` is the one place where the layers meet: argparse defaults are all
``None`` so that "not given" can be told apart from "given the default value", and each
resolved value remembers where it came from. ``triage-tui config show`` prints exactly that,
because during an incident "why is it connecting *there*?" must have a one-command answer.

Layers, lowest first:

1. built-in defaults (GitLab's own defaults where GitLab has one: port 143, mailbox inbox...);
2. ``--gitlab-config`` (a rendered ``gitlab.yml``), then ``--mail-room-config`` (a rendered
   mail_room YAML, which is what the consumer really runs with);
3. the TOML config file: top-level tables, overlaid by the chosen ``[profiles.NAME]`` tables;
4. ``TRIAGE_*`` environment variables;
5. command-line flags.

Imported files sit below the operator's own file on purpose: they describe the GitLab host,
while the config file, environment and flags describe how *this* operator reaches it (an SSH
tunnel, a different CA bundle, a token instead of the basic-auth password).

Secrets are never stored in the TOML file: it names how to obtain them (``password_command``,
``password_file``, ``password_env``, ``oauth2_token_command``), and :func:`obtain_credentials`
runs that only when a connection is actually made, never for ``config show``.

The code lives in the submodules, by job: :mod:`.specs` (the declarations, sources and paths),
:mod:`.tomlfile` (the config file), :mod:`.gitlab` (gitlab.yml and mail_room's YAML),
:mod:`.layers` (the layers and :class:`Settings`) and :mod:`.credentials` (secrets). This
module re-exports their public names, the ones callers import.
"""

from triage_tui.config.credentials import (
    SECRET_MAX_BYTES,
    CredentialPlan,
    Credentials,
    credential_plan,
    graph_credential_plan,
    obtain_credentials,
    obtain_graph_secret,
    read_password_file,
    run_secret_command,
)
from triage_tui.config.gitlab import (
    GITLAB_DEFAULTS,
    SECTION_OF,
    ImportedMailbox,
    LineDict,
    load_gitlab_yml,
    load_mail_room_yml,
)
from triage_tui.config.layers import Settings, resolve
from triage_tui.config.specs import (
    APP,
    BY_NAME,
    COMMAND_KEYS,
    DEFAULT,
    DEFAULT_KEY_PREFIX,
    MASK,
    RANK,
    SECTIONS,
    SENSITIVE,
    SPECS,
    TABLES,
    Source,
    Spec,
    default_config_path,
    journal_path,
    locate_config,
    state_dir,
)
from triage_tui.config.tomlfile import ConfigFile, read_regular_file, toml_line
from triage_tui.domain.redact import mask_url

__all__ = ["APP", "BY_NAME", "COMMAND_KEYS", "DEFAULT", "DEFAULT_KEY_PREFIX", "GITLAB_DEFAULTS", "MASK", "RANK", "SECRET_MAX_BYTES", "SECTIONS", "SECTION_OF", "SENSITIVE", "SPECS", "TABLES", "ConfigFile", "CredentialPlan", "Credentials", "ImportedMailbox", "LineDict", "Settings", "Source", "Spec", "credential_plan", "graph_credential_plan", "default_config_path", "journal_path", "load_gitlab_yml", "load_mail_room_yml", "locate_config", "mask_url", "obtain_credentials", "obtain_graph_secret", "read_password_file", "read_regular_file", "resolve", "run_secret_command", "state_dir", "toml_line"]
