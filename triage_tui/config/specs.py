"""Every setting declared once (:data:`SPECS`), where a value came from (:class:`Source`), and
the paths of the config file, the state directory and the journal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from triage_tui.domain.redact import mask_host, mask_url
from triage_tui.errors import ConfigError
from triage_tui.services.imap import Secret

APP = "triage-tui"
DEFAULT_KEY_PREFIX = "mail_room:gitlab:"
MASK = "********"

# -- sources ----------------------------------------------------------------------------------

RANK = {"default": 0, "gitlab": 1, "mail_room": 2, "file": 3, "env": 4, "flag": 5}


@dataclass(frozen=True)
class Source:
    """Where a value came from. ``rank`` orders the layers; ``label`` is for people."""

    kind: str  # default | gitlab | mail_room | file | env | flag | implied
    label: str
    rank: int

    @classmethod
    def of(cls, kind: str, label: str) -> Source:
        return cls(kind, label, RANK[kind])

    def __str__(self) -> str:
        return self.label


DEFAULT = Source.of("default", "default")


# -- the settings ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One setting. ``name`` is ``section.key`` as written in the TOML file (``projects`` and
    ``keymap`` are whole tables). ``dest`` is the argparse destination of its flag, which is also
    the attribute the resolved value is written back to, so subcommands reading ``args.host``
    see the resolved value."""

    name: str
    type: str  # str path int float bool choice age regexlist map projects secret
    default: Any = None
    env: str | None = None
    flag: str | None = None
    dest: str | None = None
    invert: bool = False  # the flag sets the negation (--allow-plaintext -> require_tls = false)
    choices: tuple[str, ...] = ()
    in_file: bool = True
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""

    @property
    def section(self) -> str | None:
        return self.name.split(".", 1)[0] if "." in self.name else None

    @property
    def key(self) -> str:
        return self.name.split(".", 1)[1] if "." in self.name else self.name


SPECS: tuple[Spec, ...] = (
    # IMAP connection
    Spec("imap.host", "str", None, "TRIAGE_IMAP_HOST", "--host", "host"),
    Spec("imap.port", "int", None, "TRIAGE_IMAP_PORT", "--port", "port", minimum=1, maximum=65535),
    Spec("imap.security", "choice", "ssl", "TRIAGE_IMAP_SECURITY", "--security", "security",
         choices=("ssl", "starttls", "none")),
    Spec("imap.user", "str", None, "TRIAGE_IMAP_USER", "--user", "user"),
    Spec("imap.mailbox", "str", "INBOX", "TRIAGE_IMAP_MAILBOX", "--mailbox", "mailbox"),
    Spec("imap.password", "secret", None, in_file=False, help="only from an imported gitlab.yml / mail_room file"),
    Spec("imap.password_env", "str", "TRIAGE_IMAP_PASSWORD", None, "--password-env", "password_env"),
    Spec("imap.password_file", "path", None, "TRIAGE_IMAP_PASSWORD_FILE", "--password-file", "password_file"),
    Spec("imap.password_command", "str", None, "TRIAGE_IMAP_PASSWORD_COMMAND", "--password-command",
         "password_command"),
    Spec("imap.oauth2_token_env", "str", None, None, "--oauth2-token-env", "oauth2_token_env"),
    Spec("imap.oauth2_token_command", "str", None, "TRIAGE_OAUTH2_TOKEN_COMMAND", "--oauth2-token-command",
         "oauth2_token_command"),
    Spec("imap.oauth2_mechanism", "choice", "XOAUTH2", "TRIAGE_OAUTH2_MECHANISM", "--oauth2-mechanism",
         "oauth2_mechanism", choices=("XOAUTH2", "OAUTHBEARER")),
    Spec("imap.secret_command_timeout", "float", 30.0, "TRIAGE_SECRET_COMMAND_TIMEOUT", minimum=0.1, maximum=3600),
    Spec("imap.ca_file", "path", None, "TRIAGE_IMAP_CA_FILE", "--ca-file", "ca_file"),
    Spec("imap.insecure_skip_verify", "bool", False, "TRIAGE_IMAP_INSECURE_SKIP_VERIFY", "--insecure-skip-verify",
         "insecure_skip_verify"),
    Spec("imap.require_tls", "bool", True, "TRIAGE_REQUIRE_TLS", "--allow-plaintext", "allow_plaintext",
         invert=True),
    Spec("imap.timeout", "float", 30.0, "TRIAGE_IMAP_TIMEOUT", "--timeout", "imap_timeout", minimum=0.1,
         maximum=3600),
    # the inbox: IMAP (above) or Microsoft Graph (below)
    Spec("triage.inbox", "choice", "imap", "TRIAGE_INBOX", "--inbox", "inbox", choices=("imap", "graph"),
         help="how the mailbox is reached: imap, or graph (Microsoft Graph, as mail_room's microsoft_graph "
         "inbox_method)"),
    Spec("graph.tenant_id", "str", None, "TRIAGE_GRAPH_TENANT_ID", "--graph-tenant-id", "graph_tenant_id"),
    Spec("graph.client_id", "str", None, "TRIAGE_GRAPH_CLIENT_ID", "--graph-client-id", "graph_client_id"),
    Spec("graph.client_secret", "secret", None, in_file=False, help="only from an imported gitlab.yml / mail_room file"),
    Spec("graph.client_secret_env", "str", "TRIAGE_GRAPH_CLIENT_SECRET", None, "--graph-secret-env",
         "graph_secret_env"),
    Spec("graph.client_secret_file", "path", None, "TRIAGE_GRAPH_CLIENT_SECRET_FILE", "--graph-secret-file",
         "graph_secret_file"),
    Spec("graph.client_secret_command", "str", None, "TRIAGE_GRAPH_CLIENT_SECRET_COMMAND", "--graph-secret-command",
         "graph_secret_command"),
    Spec("graph.graph_endpoint", "str", "https://graph.microsoft.com", "TRIAGE_GRAPH_ENDPOINT", "--graph-endpoint",
         "graph_endpoint"),
    Spec("graph.azure_ad_endpoint", "str", "https://login.microsoftonline.com", "TRIAGE_AZURE_AD_ENDPOINT",
         "--azure-ad-endpoint", "azure_ad_endpoint"),
    Spec("graph.mailbox", "str", None, "TRIAGE_GRAPH_MAILBOX", "--graph-mailbox", "graph_mailbox",
         help="the mailbox's address (mail_room's inbox_options.user_id / email)"),
    Spec("graph.folder", "str", "inbox", "TRIAGE_GRAPH_FOLDER", "--graph-folder", "graph_folder"),
    # GitLab semantics and import
    Spec("gitlab.address", "str", None, "TRIAGE_ADDRESS", "--address", "address"),
    Spec("gitlab.host", "str", None, "TRIAGE_GITLAB_HOST", "--gitlab-host", "gitlab_host_global",
         help="GitLab's host name: only reply-<key>@<this host> counts in References"),
    Spec("gitlab.mailbox_kind", "choice", "incoming", "TRIAGE_MAILBOX_KIND", "--mailbox-kind", "mailbox_kind",
         choices=("incoming", "service_desk")),
    Spec("gitlab.config", "path", None, "TRIAGE_GITLAB_CONFIG", "--gitlab-config", "gitlab_config"),
    Spec("gitlab.env", "str", "production", "TRIAGE_GITLAB_ENV", "--gitlab-env", "gitlab_env"),
    Spec("gitlab.mail_room_config", "path", None, "TRIAGE_MAIL_ROOM_CONFIG", "--mail-room-config",
         "mail_room_config"),
    Spec("gitlab.mailbox_source", "choice", None, "TRIAGE_MAILBOX_SOURCE", "--mailbox-source", "mailbox_source",
         choices=("incoming", "service_desk")),
    # what mail_room does with the mailbox (imported; settable for hosts whose files you lack)
    Spec("mail_room.idle_timeout", "int", 60, minimum=1, maximum=86400),
    Spec("mail_room.delete_after_delivery", "bool", True),
    Spec("mail_room.expunge_deleted", "bool", False),
    Spec("mail_room.inbox_method", "choice", "imap", choices=("imap", "microsoft_graph")),
    # Redis arbitration
    Spec("redis.url", "str", None, "TRIAGE_REDIS_URL", "--redis-url", "redis_url"),
    Spec("redis.sentinels", "strlist", None, "TRIAGE_REDIS_SENTINELS", "--redis-sentinel", "redis_sentinel"),
    Spec("redis.master", "str", None, "TRIAGE_REDIS_MASTER", "--redis-master", "redis_master"),
    Spec("redis.sentinel_password", "secret", None, in_file=False),
    Spec("redis.ca_file", "path", None, "TRIAGE_REDIS_CA_FILE", "--redis-ca-file", "redis_ca_file"),
    Spec("redis.key_prefix", "str", DEFAULT_KEY_PREFIX, "TRIAGE_KEY_PREFIX", "--key-prefix", "key_prefix"),
    Spec("redis.sidekiq_queues", "strlist", None, "TRIAGE_SIDEKIQ_QUEUES", "--sidekiq-queue", "sidekiq_queue",
         help="GitLab's Sidekiq queues the watch after a release reads on the locks' Redis "
         "(default email_receiver and default)"),
    Spec("redis.sidekiq_namespace", "str", None, "TRIAGE_SIDEKIQ_NAMESPACE", "--sidekiq-namespace",
         "sidekiq_namespace", help="key prefix of the Sidekiq queues (older GitLab: resque:gitlab:)"),
    # triage
    Spec("triage.stale_after", "age", "2d", "TRIAGE_STALE_AFTER", "--stale-after", "stale_after"),
    Spec("triage.bot_senders", "regexlist", ()),
    Spec("triage.bot_subjects", "regexlist", ()),
    Spec("triage.suspicious", "regexlist", ()),
    Spec("triage.read_only", "bool", False, "TRIAGE_READ_ONLY", "--read-only", "read_only"),
    Spec("triage.chunk", "int", 1000, None, "--chunk", "chunk", minimum=1, maximum=100_000),
    Spec("triage.max_command_bytes", "int", 8192, None, "--max-command-bytes", "max_command_bytes", minimum=64,
         maximum=1_048_576),
    Spec("triage.pipeline", "int", 8, None, "--pipeline", "pipeline", minimum=1, maximum=256),
    Spec("triage.workers", "int", None, "TRIAGE_WORKERS", "--workers", "workers", minimum=0, maximum=16,
         help="processes that build a large listing's rows beside the one reading the socket "
         "(default: 2 on two CPUs, one fewer than the CPUs on more, at most 4; 0: none)"),
    # the persistent header cache (customer mail headers on this disk: see the README)
    Spec("cache.enabled", "bool", True, "TRIAGE_CACHE", "--no-cache", "no_cache", invert=True,
         help="keep parsed headers in the user cache directory for fast warm starts"),
    Spec("cache.max_age_days", "int", 14, "TRIAGE_CACHE_MAX_AGE_DAYS", minimum=1, maximum=3650,
         help="cached rows unused for this many days are dropped"),
    # UI
    Spec("tui.theme", "str", None, "TRIAGE_THEME", "--theme", "theme"),
    Spec("tui.mouse", "bool", True, None, "--no-mouse", "no_mouse", invert=True),
    Spec("projects", "projects", None),
    Spec("keymap", "map", None, "TRIAGE_KEYMAP", "--keymap", "keymap"),
)
BY_NAME: dict[str, Spec] = {s.name: s for s in SPECS}
SECTIONS: dict[str, dict[str, Spec]] = {}
for _s in SPECS:
    if _s.section:
        SECTIONS.setdefault(_s.section, {})[_s.key] = _s
TABLES = {s.name: s for s in SPECS if s.section is None}  # whole-table settings: projects, keymap
#: Keys that name a program run as the operator: a config file that defines one must not be
#: writable by anyone else.
COMMAND_KEYS = ("password_command", "oauth2_token_command", "client_secret_command")
#: Settings that are never echoed back, even in an error message.
SENSITIVE = {"imap.password", "redis.sentinel_password", "redis.url", "graph.client_secret"}
#: Write-back attributes that must not be set on the namespace (a subcommand parses its own).
_NO_WRITE_BACK = {"keymap", "theme"}


# -- paths ----------------------------------------------------------------------------------


def default_config_path() -> Path:
    """``$XDG_CONFIG_HOME/triage-tui/config.toml`` on Linux (platformdirs elsewhere)."""
    return Path(platformdirs.user_config_dir(APP, appauthor=False)) / "config.toml"


def state_dir() -> Path:
    from triage_tui.services.journal import default_path  # noqa: PLC0415 - one definition of the path

    return default_path().parent


def journal_path() -> Path:
    from triage_tui.services.journal import default_path  # noqa: PLC0415

    return default_path()


def _expand(path: str | Path) -> Path:
    """``~`` and ``~user`` expanded; an unknown user is a config error, not a RuntimeError."""
    try:
        return Path(path).expanduser()
    except (RuntimeError, KeyError):
        raise ConfigError(f"cannot expand {ascii(str(path))[:80]}: no such user's home directory (give a full "
                          "path)") from None


def _nonempty(environ: Mapping[str, str], name: str) -> str | None:
    v = environ.get(name)
    return v if v not in (None, "") else None


def locate_config(args: Any, environ: Mapping[str, str]) -> tuple[Path, Source, bool]:
    """(path, how it was chosen, whether it was asked for explicitly)."""
    flag = getattr(args, "config", None)
    if flag:
        return _expand(flag), Source.of("flag", "flag --config"), True
    env = _nonempty(environ, "TRIAGE_CONFIG")
    if env:
        return _expand(env), Source.of("env", "env TRIAGE_CONFIG"), True
    return default_config_path(), DEFAULT, False



def _shown(name: str, value: Any) -> Any:
    if isinstance(value, Secret):
        return value
    if name in _MASKED and value:
        return _MASKED[name](value)
    return value


#: values shown by ``config show`` (text and JSON) through a mask: a URL's or host's credentials
_MASKED: dict[str, Callable[[Any], Any]] = {
    "redis.url": lambda v: mask_url(str(v)),
    "imap.host": lambda v: mask_host(str(v)),
    "redis.sentinels": lambda v: [mask_host(str(x)) for x in v],
}
