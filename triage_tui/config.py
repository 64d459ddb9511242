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
"""

from __future__ import annotations

import difflib
import functools
import getpass
import json
import math
import os
import re
import shlex
import stat
import subprocess
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import platformdirs

from triage_tui.domain.age import parse_age
from triage_tui.domain.numbers import parse_float, parse_int
from triage_tui.domain.redact import mask_host, mask_url
from triage_tui.domain.redisurl import check_redis_url
from triage_tui.errors import ConfigError, UsageError
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
COMMAND_KEYS = ("password_command", "oauth2_token_command")
#: Settings that are never echoed back, even in an error message.
SENSITIVE = {"imap.password", "redis.sentinel_password", "redis.url"}
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


# -- TOML with line numbers -------------------------------------------------------------------

_HEADER_RE = re.compile(r"^\s*\[\[?\s*(.+?)\s*\]\]?\s*(?:#.*)?$")
_KEY_RE = re.compile(r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+))*)\s*=""")
_PART_RE = re.compile(r""""([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+)""")


def _dotted(text: str) -> tuple[str, ...]:
    return tuple(a or b or c for a, b, c in _PART_RE.findall(text))


def toml_line(text: str, path: Iterable[str]) -> int:
    """The line where ``path`` (table names then key) is assigned, found by scanning the text:
    tomllib reports no positions for values. Falls back to the line of the longest enclosing
    table or dotted prefix, then to line 1."""
    target = tuple(path)
    table: tuple[str, ...] = ()
    best, best_len = 1, -1
    in_multiline: str | None = None
    for n, line in enumerate(text.splitlines(), 1):
        if in_multiline:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        if line.lstrip().startswith("#"):
            continue
        m = _HEADER_RE.match(line)
        if m and not _KEY_RE.match(line):
            table = _dotted(m.group(1))
            if target[: len(table)] == table and len(table) > best_len:
                best, best_len = n, len(table)
            continue
        k = _KEY_RE.match(line)
        if not k:
            continue
        full = table + _dotted(k.group(1))
        for quote in ('"""', "'''"):
            if line.count(quote) % 2 == 1:
                in_multiline = quote
        if full == target:
            return n
        # an inline table (`imap = { host = ... }`) or a dotted prefix
        common = 0
        for a, b in zip(full, target, strict=False):
            if a != b:
                break
            common += 1
        if common == len(full) and common > best_len:
            best, best_len = n, common
    return best


def read_regular_file(path: Path, what: str, limit: int) -> bytes:
    """A regular file's bytes, at most ``limit`` of them: a directory, a FIFO (blocks forever),
    a device (``/dev/zero`` never ends) or a huge file is a config error, not a hang."""
    shown = ascii(str(path))[1:-1][:200]
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb", buffering=0) as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ConfigError(f"{what} {shown} is not a regular file")
            raw = f.read(limit + 1) or b""
    except IsADirectoryError:
        raise ConfigError(f"{what} {shown} is a directory, not a file") from None
    except OSError as e:
        raise ConfigError(f"cannot read {what} {shown}: {e.strerror or e}") from None
    except ValueError:
        raise ConfigError(f"{what} {shown} is not a usable path") from None
    if len(raw) > limit:
        raise ConfigError(f"{what} {shown} is larger than {limit >> 20} MB: is it the right file?")
    return raw


def _type_name(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "a table"}.get(type(v), type(v).__name__)


@dataclass
class ConfigFile:
    """A parsed TOML config file, validated against :data:`SPECS` (unknown keys and wrong types
    are errors with file, line and key)."""

    path: Path
    text: str
    data: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> ConfigFile:
        raw = read_regular_file(path, "config file", 1 << 20)
        text = raw.decode("utf-8", "replace")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            msg = str(e)
            m = re.search(r"\(at line (\d+), column \d+\)", msg)
            where = f"{path}:{m.group(1)}" if m else str(path)
            raise ConfigError(f"{where}: not valid TOML: {re.sub(r' ?[(]at (line|end).*[)]', '', msg)}") from None
        cf = cls(path, text, data)
        cf._validate()
        cf._check_permissions()
        return cf

    def line(self, *path: str) -> int:
        return toml_line(self.text, path)

    def where(self, *path: str) -> str:
        return f"{self.path}:{self.line(*path)}"

    def error(self, path: tuple[str, ...], message: str) -> ConfigError:
        return ConfigError(f"{self.where(*path)}: {message}")

    @property
    def profiles(self) -> dict[str, Any]:
        p = self.data.get("profiles", {})
        return p if isinstance(p, dict) else {}

    def _validate(self) -> None:
        top = dict(self.data)
        profile = top.pop("profile", None)
        if profile is not None and not isinstance(profile, str):
            raise self.error(("profile",), f"profile: expected a string (a profile name), got {_type_name(profile)}")
        profiles = top.pop("profiles", {})
        self._validate_tables(top, ())
        if not isinstance(profiles, dict):
            raise self.error(("profiles",), f"profiles: expected tables [profiles.NAME], got {_type_name(profiles)}")
        for name, body in profiles.items():
            if not isinstance(body, dict):
                raise self.error(("profiles", name),
                                 f"profiles.{name}: expected a table [profiles.{name}.imap] ..., got {_type_name(body)}")
            self._validate_tables(body, ("profiles", name))

    def _validate_tables(self, tables: dict[str, Any], prefix: tuple[str, ...]) -> None:
        known = [*SECTIONS, *TABLES]
        for section, body in tables.items():
            path = (*prefix, section)
            dotted = ".".join(path)
            if section not in SECTIONS and section not in TABLES:
                hint = difflib.get_close_matches(section, known, n=1)
                extra = f" (did you mean [{'.'.join((*prefix, hint[0]))}]?)" if hint else \
                    f" (known: {', '.join(known)})"
                raise self.error(path, f"unknown key {dotted!r}{extra}")
            if not isinstance(body, dict):
                raise self.error(path, f"{dotted}: expected a table [{dotted}], got {_type_name(body)}")
            if section in TABLES:
                self._validate_map(TABLES[section], body, path)
                continue
            specs = SECTIONS[section]
            for key, value in body.items():
                kpath = (*path, key)
                spec = specs.get(key)
                if spec is None or not spec.in_file:
                    if key == "password" and section == "imap":
                        raise self.error(kpath, f"[{dotted}] password: the config file is not a secret store: use "
                                         "password_command (e.g. a vault CLI), password_file (mode 600) or password_env")
                    choices = [k for k, s in specs.items() if s.in_file]
                    hint = difflib.get_close_matches(key, choices, n=1)
                    extra = f" (did you mean {hint[0]!r}?)" if hint else f" (known: {', '.join(choices)})"
                    raise self.error(kpath, f"unknown key {key!r} in [{dotted}]{extra}")
                _check_type(spec, value, functools.partial(self.error, kpath), f"[{dotted}] {key}")

    def _validate_map(self, spec: Spec, body: dict[str, Any], path: tuple[str, ...]) -> None:
        dotted = ".".join(path)
        for key, value in body.items():
            kpath = (*path, key)
            if spec.type == "projects":
                if not (key.isascii() and key.isdigit()) or len(key) > 18:
                    raise self.error(kpath, f"[{dotted}] {key!r}: keys are GitLab project ids (digits), e.g. "
                                     '278964 = "gitlab-org/gitlab"')
                if not isinstance(value, str):
                    raise self.error(kpath, f"[{dotted}] {key}: expected a string (the project path), got "
                                     f"{_type_name(value)}")
            else:
                ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(x, str) for x in value))
                if not ok:
                    raise self.error(kpath, f"[{dotted}] {key}: expected a key string like \"ctrl+s\" (or an array "
                                     f"of them), got {_type_name(value)}")

    def _check_permissions(self) -> None:
        """A file that makes us run a program must not be writable by anyone else: whoever can
        edit it chooses what runs with the operator's credentials."""
        commands = [k for k in COMMAND_KEYS if k in self.text]
        if not commands:
            return
        try:
            st = self.path.stat()
        except OSError:
            return
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ConfigError(f"config file {self.path} defines {commands[0]} (a program run as you) but is writable "
                              f"by group or others: run `chmod go-w {self.path}`")

    def profile_names(self) -> list[str]:
        return sorted(self.profiles)

    def values(self, profile: str | None) -> dict[str, tuple[Any, Source]]:
        """name -> (value, source): top-level tables, then the profile's tables over them."""
        out: dict[str, tuple[Any, Source]] = {}
        layers: list[tuple[dict[str, Any], tuple[str, ...]]] = [(self.data, ())]
        if profile is not None:
            if profile not in self.profiles:
                have = ", ".join(self.profile_names()) or "none defined"
                raise ConfigError(f"{self.path}: no profile {profile!r} (profiles: {have})")
            layers.append((self.profiles[profile], ("profiles", profile)))
        for tables, prefix in layers:
            for section, body in tables.items():
                if section in ("profile", "profiles") and not prefix:
                    continue
                if section in TABLES:
                    path = (*prefix, section)
                    label = f"file {self.where(*path)} [{'.'.join(path)}]"
                    merged = dict(out[section][0]) if section in out else {}
                    merged.update({k: (",".join(v) if isinstance(v, list) else v) for k, v in body.items()})
                    out[section] = (merged, Source.of("file", label))
                    continue
                for key, value in body.items():
                    spec = SECTIONS[section][key]
                    path = (*prefix, section, key)
                    if spec.type == "path":
                        value = str((self.path.parent / _expand(value)).resolve()) \
                            if not _expand(value).is_absolute() else str(_expand(value))
                    out[spec.name] = (value, Source.of("file", f"file {self.where(*path)} [{'.'.join(path[:-1])}]"))
        return out


def _check_type(spec: Spec, value: Any, err: Callable[[str], ConfigError], label: str) -> None:
    t = spec.type
    ok: bool
    if t in ("str", "path", "age", "choice"):
        ok = isinstance(value, str)
        want = "a string"
        if ok and t == "path" and ("\x00" in value or len(value) > 4096):
            raise err(f"{label}: not a usable path ({ascii(value)[:60]})")
    elif t == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        want = "an integer"
    elif t == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        want = "a number"
    elif t == "bool":
        ok = isinstance(value, bool)
        want = "true or false"
    elif t in ("strlist", "regexlist"):
        ok = isinstance(value, list) and all(isinstance(x, str) for x in value)
        want = "an array of strings"
    else:  # pragma: no cover - every type is handled above
        ok, want = True, ""
    if not ok:
        shown = "" if spec.name in SENSITIVE else f" ({value!r})" if isinstance(value, str | int | float) else ""
        raise err(f"{label}: expected {want}, got {_type_name(value)}{shown}")


# -- GitLab's files -------------------------------------------------------------------------------


class LineDict(dict):  # type: ignore[type-arg]
    """A YAML mapping that remembers the line of each key (for sources and errors)."""

    lines: dict[Any, int]

    def __init__(self) -> None:
        super().__init__()
        self.lines = {}


def _yaml_load(path: Path, what: str) -> Any:
    """Parse a GitLab YAML file; an ERB template is refused with the line of its first tag."""
    import yaml  # noqa: PLC0415 - only when a GitLab file is imported

    text = read_regular_file(path, what, 16 << 20).decode("utf-8", "replace")
    for n, line in enumerate(text.splitlines(), 1):
        if "<%" in line and not line.lstrip().startswith("#"):
            raise ConfigError(
                f"{path}:{n}: this is an ERB template (<%= ... %>), not rendered YAML: mail_room renders it from "
                "gitlab.yml at start-up; pass the rendered gitlab.yml with --gitlab-config instead "
                "(Omnibus: /var/opt/gitlab/gitlab-rails/etc/gitlab.yml)")

    class Loader(yaml.SafeLoader):
        pass

    def construct_map(loader: Any, node: Any) -> Any:
        data = LineDict()
        yield data
        mapping = loader.construct_mapping(node, deep=True)  # flattens merge keys (<<: *base)
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                data.lines[key] = key_node.start_mark.line + 1
            except TypeError:
                pass
        data.update(mapping)

    Loader.add_constructor("tag:yaml.org,2002:map", construct_map)
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML ({what}): {problem}") from None


def _sym(d: Any) -> dict[str, Any]:
    """mail_room's Ruby symbol keys (``:host:`` reads as ``':host'``) -> plain names."""
    if not isinstance(d, dict):
        return {}
    out = LineDict()
    for k, v in d.items():
        name = k.lstrip(":") if isinstance(k, str) else k
        out[name] = v
        if isinstance(d, LineDict) and k in d.lines:
            out.lines[name] = d.lines[k]
    return out


@dataclass
class ImportedMailbox:
    """One mailbox (incoming_email or service_desk_email) as GitLab/mail_room would use it."""

    which: str  # incoming | service_desk
    values: dict[str, tuple[Any, Source]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # "gitlab.yml PATH", "mail_room PATH"

    def get(self, name: str) -> Any:
        v = self.values.get(name)
        return v[0] if v else None

    def __repr__(self) -> str:
        shown = {k: _shown(k, v[0]) for k, v in self.values.items()}
        return f"ImportedMailbox(which={self.which!r}, values={shown!r}, files={self.files!r})"


SECTION_OF = {"incoming": "incoming_email", "service_desk": "service_desk_email"}
#: GitLab's own defaults for a mailbox section (Gitlab::MailRoom::DEFAULT_CONFIG).
GITLAB_DEFAULTS = {"port": 143, "ssl": False, "start_tls": False, "mailbox": "inbox", "idle_timeout": 60,
                   "expunge_deleted": False, "delete_after_delivery": True, "inbox_method": "imap"}


def _security(ssl_value: Any, start_tls: Any) -> str:
    if ssl_value:  # true, or a hash of SSL parameters
        return "ssl"
    return "starttls" if start_tls else "none"


def load_gitlab_yml(path: Path, env: str) -> dict[str, ImportedMailbox]:
    """The enabled ``incoming_email`` / ``service_desk_email`` sections of a rendered gitlab.yml."""
    doc = _yaml_load(path, "gitlab.yml")
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: not a gitlab.yml (expected a mapping of environments such as production:)")
    if env not in doc:
        envs = ", ".join(str(k) for k in doc if isinstance(doc.get(k), dict))
        raise ConfigError(f"{path}: no {env!r} environment (has: {envs or 'none'}); choose one with --gitlab-env")
    root = doc[env]
    if not isinstance(root, dict):
        raise ConfigError(f"{path}:{doc.lines.get(env, 1) if isinstance(doc, LineDict) else 1}: "
                          f"{env}: expected a mapping")
    out: dict[str, ImportedMailbox] = {}
    for which, section in SECTION_OF.items():
        sec = root.get(section)
        if not isinstance(sec, dict) or not sec.get("enabled") or not str(sec.get("address") or ""):
            continue  # GitLab's enabled?: enabled and a non-empty address
        out[which] = _gitlab_mailbox(which, sec, f"{env}.{section}", path)
    return out


def _gitlab_mailbox(which: str, sec: dict[str, Any], where: str, path: Path) -> ImportedMailbox:
    mb = ImportedMailbox(which, files=[f"gitlab.yml {path} ({where.split('.')[0]})"])
    lines = sec.lines if isinstance(sec, LineDict) else {}

    def src(key: str) -> Source:
        if key in sec:
            return Source.of("gitlab", f"gitlab.yml {path}:{lines.get(key, 1)} {where}.{key}")
        return Source.of("gitlab", f"gitlab.yml {path}: GitLab default for {where}.{key}")

    def val(key: str) -> Any:
        v = sec.get(key)
        return GITLAB_DEFAULTS.get(key) if v is None else v

    mb.values["gitlab.address"] = (str(sec["address"]), src("address"))
    if sec.get("user"):
        mb.values["imap.user"] = (str(sec["user"]), src("user"))
    if sec.get("password"):
        mb.values["imap.password"] = (Secret(str(sec["password"])), src("password"))
    if sec.get("host"):
        mb.values["imap.host"] = (str(sec["host"]), src("host"))
    mb.values["imap.port"] = (_int(val("port"), src("port")), src("port"))
    mb.values["imap.security"] = (_security(val("ssl"), val("start_tls")),
                                  src("ssl") if sec.get("ssl") or not sec.get("start_tls") else src("start_tls"))
    mb.values["imap.mailbox"] = (str(val("mailbox")), src("mailbox"))
    mb.values["mail_room.idle_timeout"] = (_int(val("idle_timeout"), src("idle_timeout")), src("idle_timeout"))
    mb.values["mail_room.delete_after_delivery"] = (bool(val("delete_after_delivery")), src("delete_after_delivery"))
    mb.values["mail_room.expunge_deleted"] = (bool(val("expunge_deleted")), src("expunge_deleted"))
    mb.values["mail_room.inbox_method"] = (str(val("inbox_method")), src("inbox_method"))
    if which == "service_desk":
        mb.values["gitlab.mailbox_kind"] = ("service_desk", src("address"))
    return mb


def _int(v: Any, source: Source) -> int:
    if isinstance(v, float) and not v.is_integer():  # also nan and inf (YAML .nan, 1e400)
        raise ConfigError(f"{source.label.split(' ', 1)[1]}: expected an integer, got {v!r}")
    try:
        return int(v) if not isinstance(v, str) else parse_int(v, what="value")
    except (TypeError, ValueError, OverflowError, UsageError):
        raise ConfigError(f"{source.label.split(' ', 1)[1]}: expected an integer, got {str(v)[:40]!r}") from None


_WORKERS = {"EmailReceiverWorker": "incoming", "ServiceDeskEmailReceiverWorker": "service_desk"}


def load_mail_room_yml(path: Path) -> dict[str, ImportedMailbox]:
    """The mailboxes of a rendered mail_room YAML (symbol keys), identified the way GitLab
    renders them: by delivery worker or webhook URL, else in GitLab's order (incoming first)."""
    doc = _sym(_yaml_load(path, "mail_room config"))
    boxes = doc.get("mailboxes")
    if not isinstance(boxes, list) or not boxes:
        raise ConfigError(f"{path}: no :mailboxes: list (is this a mail_room configuration?)")
    found: list[tuple[str | None, dict[str, Any]]] = []
    for raw in boxes:
        box = _sym(raw)
        delivery = _sym(box.get("delivery_options"))
        which: str | None = _WORKERS.get(str(delivery.get("worker") or ""))
        url = str(delivery.get("delivery_url") or "")
        if which is None and url.rstrip("/").endswith("/service_desk_email"):
            which = "service_desk"
        elif which is None and url.rstrip("/").endswith("/incoming_email"):
            which = "incoming"
        found.append((which, box))
    order = iter(w for w in ("incoming", "service_desk") if w not in {f[0] for f in found})
    out: dict[str, ImportedMailbox] = {}
    for which, box in found:
        name = which or next(order, None)
        if name is None or name in out:
            continue  # more mailboxes than GitLab renders: not ours to guess
        mb = ImportedMailbox(name, files=[f"mail_room {path}"])
        lines = box.lines if isinstance(box, LineDict) else {}

        def src(key: str, lines: dict[Any, int] = lines, box: dict[str, Any] = box) -> Source:
            if key in box:
                return Source.of("mail_room", f"mail_room {path}:{lines.get(key, 1)} :{key}:")
            return Source.of("mail_room", f"mail_room {path}: GitLab default for :{key}:")

        if box.get("host"):
            mb.values["imap.host"] = (str(box["host"]), src("host"))
        if box.get("port") is not None:
            mb.values["imap.port"] = (_int(box["port"], src("port")), src("port"))
        if "ssl" in box or "start_tls" in box:
            mb.values["imap.security"] = (_security(box.get("ssl"), box.get("start_tls")),
                                          src("ssl") if box.get("ssl") or not box.get("start_tls") else src("start_tls"))
        if box.get("email"):
            mb.values["imap.user"] = (str(box["email"]), src("email"))
        if box.get("password"):
            mb.values["imap.password"] = (Secret(str(box["password"])), src("password"))
        if box.get("name"):
            mb.values["imap.mailbox"] = (str(box["name"]), src("name"))
        for key in ("idle_timeout",):
            if box.get(key) is not None:
                mb.values[f"mail_room.{key}"] = (_int(box[key], src(key)), src(key))
        for key in ("delete_after_delivery", "expunge_deleted"):
            if box.get(key) is not None:
                mb.values[f"mail_room.{key}"] = (bool(box[key]), src(key))
        if box.get("inbox_method"):
            mb.values["mail_room.inbox_method"] = (str(box["inbox_method"]), src("inbox_method"))
        if name == "service_desk":
            mb.values["gitlab.mailbox_kind"] = ("service_desk", src("name"))
        arb = _sym(box.get("arbitration_options"))
        alines = arb.lines if isinstance(arb, LineDict) else {}
        if str(box.get("arbitration_method") or "redis") == "redis" and arb:
            def asrc(key: str, alines: dict[Any, int] = alines) -> Source:
                return Source.of("mail_room", f"mail_room {path}:{alines.get(key, 1)} :arbitration_options: :{key}:")

            if arb.get("redis_url"):
                mb.values["redis.url"] = (str(arb["redis_url"]), asrc("redis_url"))
            if arb.get("namespace"):
                mb.values["redis.key_prefix"] = (f"{arb['namespace']}:", asrc("namespace"))
            sentinels = arb.get("sentinels")
            if isinstance(sentinels, list) and sentinels:
                items = []
                for s in sentinels:
                    s = _sym(s)
                    if s.get("host"):
                        items.append(f"{s['host']}:{s.get('port') or 26379}")
                mb.values["redis.sentinels"] = (items, asrc("sentinels"))
                # with Sentinels, mail_room's redis_url host is the master's name
                host = urlsplit(str(arb.get("redis_url") or "")).hostname
                if host:
                    mb.values["redis.master"] = (host, asrc("redis_url"))
            if arb.get("sentinel_password"):
                mb.values["redis.sentinel_password"] = (Secret(str(arb["sentinel_password"])),
                                                        asrc("sentinel_password"))
        out[name] = mb
    return out


# -- resolution -------------------------------------------------------------------------------


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _from_env(spec: Spec, raw: str) -> Any:
    where = f"environment variable {spec.env}"
    t = spec.type
    if t == "bool":
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{where}={raw!r}: expected one of {', '.join(_TRUE + _FALSE)}")
    if t == "int":
        try:
            return parse_int(raw, what=where)
        except UsageError:
            raise ConfigError(f"{where}={raw!r}: expected an integer (digits 0-9)") from None
    if t == "float":
        try:
            return parse_float(raw, what=where)
        except UsageError:
            raise ConfigError(f"{where}={raw!r}: expected a finite number like 2.5 (digits 0-9, no exponent)") from None
    if t == "strlist":
        return [s.strip() for s in raw.split(",") if s.strip()]
    if t == "map":
        return _json_map(raw, where)
    return raw


def _json_map(raw: str, where: str) -> dict[str, str]:
    try:
        km = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where} is not valid JSON: {e}") from None
    if not isinstance(km, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in km.items()):
        raise ConfigError(f'{where} must be a JSON object of binding id -> key, e.g. {{"mark.toggle": "x"}}')
    return km


def _from_flag(spec: Spec, value: Any) -> Any:
    if spec.invert:
        return not value
    if spec.type == "map" and isinstance(value, str):
        return _json_map(value, f"--{spec.dest}")
    return value


@dataclass
class Settings:
    """The resolved settings: a value and a :class:`Source` for every name in :data:`SPECS`."""

    values: dict[str, Any]
    sources: dict[str, Source]
    config_path: Path
    config_source: Source
    config_exists: bool
    profile: str | None
    profile_source: Source | None
    profiles: list[str] = field(default_factory=list)
    imported: dict[str, ImportedMailbox] = field(default_factory=dict)
    mailbox_source: str | None = None  # which imported mailbox is in use
    notes: list[str] = field(default_factory=list)
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def __repr__(self) -> str:
        """A debugger, a log line or a traceback with locals sees what ``config show`` shows."""
        shown = {k: _shown(k, v) for k, v in self.values.items()}
        return (f"Settings(values={shown!r}, config_path={self.config_path!r}, profile={self.profile!r}, "
                f"imported={self.imported!r})")

    def get(self, name: str, default: Any = None) -> Any:
        v = self.values.get(name)
        return default if v is None else v

    def source(self, name: str) -> Source:
        return self.sources.get(name, DEFAULT)

    @property
    def shared_with(self) -> tuple[str, ...]:
        """Other imported mailboxes that use the same Redis and key prefix (their UIDs collide)."""
        if not self.mailbox_source:
            return ()
        out = []
        for which, mb in self.imported.items():
            if which == self.mailbox_source:
                continue
            url = mb.get("redis.url")
            prefix = mb.get("redis.key_prefix")
            same_url = url is None or url == self.values.get("redis.url")
            same_prefix = (prefix or DEFAULT_KEY_PREFIX) == self.values.get("redis.key_prefix")
            if same_url and same_prefix:
                out.append(SECTION_OF[which])
        return tuple(out)

    def write_back(self, args: Any) -> None:
        """Set the resolved values on the argparse namespace under their flags' destinations, so
        code reading ``args.host`` or ``args.read_only`` sees the same answer as ``config show``."""
        for spec in SPECS:
            if not spec.dest or spec.dest in _NO_WRITE_BACK:
                continue
            v = self.values.get(spec.name)
            try:
                setattr(args, spec.dest, (not v) if spec.invert else v)
            except AttributeError:
                pass

    def display(self, name: str) -> str:
        """The value for people: secrets masked, Redis URL passwords masked."""
        v = self.values.get(name)
        if v is None:
            return "auto (993 for ssl, 143 otherwise)" if name == "imap.port" else "-"
        if isinstance(v, Secret):
            return MASK
        if name in _MASKED:
            v = _MASKED[name](v)
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list | tuple):
            return ", ".join(str(x) for x in v) if v else "-"
        if isinstance(v, dict):
            return ", ".join(f"{k}={x}" for k, x in v.items()) if v else "-"
        return str(v)

    def jsonable(self, name: str) -> Any:
        v = self.values.get(name)
        if isinstance(v, Secret):
            return MASK
        if name in _MASKED and v:
            return _MASKED[name](v)
        if isinstance(v, tuple):
            return list(v)
        return v


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


#: C0/C1 controls, bidi controls and invisible format characters (category Cf) have no place
#: in a host name, a path, a command or a mailbox name: they hide what the value really is.
_HIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069"
                     r"\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]")


def _check_text(spec: Spec, value: str, where: str) -> None:
    bad = _HIDDEN.search(value)
    if bad is not None:
        what = "" if spec.name in SENSITIVE else f" {ascii(value)[:80]}"
        raise ConfigError(f"{spec.name}{what} ({where}): contains the invisible or control character "
                          f"U+{ord(bad.group()):04X}: retype it")
    if spec.name == "imap.host" and (not value.strip() or any(c.isspace() for c in value) or value.startswith("-")):
        raise ConfigError(f"imap.host {ascii(value)[:80]} ({where}): not a host name (no spaces; e.g. "
                          "imap.example.com, 10.0.0.5 or ::1)")


def _validate_value(spec: Spec, value: Any, source: Source) -> Any:
    """Choices, ranges, ages and regexes; the error names where the bad value came from."""
    where = source.label
    shown = "" if spec.name in SENSITIVE else f" {value!r}"
    if value is None:
        return None
    if spec.type == "choice":
        v = str(value)
        match = [c for c in spec.choices if c.lower() == v.lower()]
        if not match:
            raise ConfigError(f"{spec.name}{shown} ({where}): must be one of {', '.join(spec.choices)}")
        return match[0]
    if spec.type in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError(f"{spec.name}{shown} ({where}): must be a finite number")
        if spec.type == "int" and not isinstance(value, int):
            raise ConfigError(f"{spec.name}{shown} ({where}): must be a whole number")
        if (spec.minimum is not None and value < spec.minimum) or (spec.maximum is not None and value > spec.maximum):
            rng = f"between {spec.minimum:g} and {spec.maximum:g}" if spec.maximum is not None else \
                f">= {spec.minimum:g}"
            raise ConfigError(f"{spec.name}{shown} ({where}): must be {rng}")
    if spec.name == "redis.url":
        try:
            check_redis_url(value)
        except UsageError as e:
            raise ConfigError(f"redis.url ({where}): {e}") from None
    elif spec.type in ("str", "path", "choice") and isinstance(value, str):
        _check_text(spec, value, where)
    if spec.type == "age":
        try:
            parse_age(str(value))
        except UsageError as e:
            raise ConfigError(f"{spec.name} ({where}): {e}") from None
    if spec.type == "regexlist":
        for p in value:
            try:
                re.compile(p)
            except (re.error, OverflowError, RecursionError, ValueError) as e:
                raise ConfigError(f"{spec.name} ({where}): invalid regular expression {p!r}: {e}") from None
        return tuple(value)
    if spec.type == "strlist":
        for item in value:
            host, _, port = str(item).rpartition(":")
            if spec.name == "redis.sentinels" and (
                    not host or not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535
                    or _HIDDEN.search(host) or any(c.isspace() for c in host)):
                raise ConfigError(f"invalid Sentinel address {ascii(mask_host(str(item)))[:80]} ({where}): expected "
                                  "HOST:PORT with a port from 1 to 65535, e.g. sentinel1.example.com:26379")
            if spec.name == "redis.sentinels" and mask_host(host) != host:
                raise ConfigError(f"invalid Sentinel address {mask_host(str(item))!r} ({where}): expected HOST:PORT "
                                  "(the Sentinel password goes in redis.sentinel_password, not in the address)")
        return list(value)
    if spec.type == "projects":
        return {int(k): str(v) for k, v in value.items()}
    return value


def resolve(args: Any, environ: Mapping[str, str] | None = None) -> Settings:
    """Every setting from every layer, in one place. Runs no commands and opens no sockets."""
    env = os.environ if environ is None else environ
    cfg_path, cfg_src, explicit = locate_config(args, env)
    cfg: ConfigFile | None = None
    if "\x00" in str(cfg_path) or len(str(cfg_path)) > 4096:
        raise ConfigError(f"config file path ({cfg_src.label}) is not a usable path: {ascii(str(cfg_path))[:80]}")
    try:
        exists = cfg_path.exists()
    except OSError as e:
        raise ConfigError(f"cannot read config file {ascii(str(cfg_path))[:80]} ({cfg_src.label}): {e.strerror}") from None
    if exists:
        cfg = ConfigFile.load(cfg_path)
    elif explicit:
        raise ConfigError(f"config file {cfg_path} not found ({cfg_src.label})")

    profile, profile_src = None, None
    if getattr(args, "profile", None):
        profile, profile_src = args.profile, Source.of("flag", "flag --profile")
    elif _nonempty(env, "TRIAGE_PROFILE"):
        profile, profile_src = env["TRIAGE_PROFILE"], Source.of("env", "env TRIAGE_PROFILE")
    elif cfg is not None and isinstance(cfg.data.get("profile"), str):
        profile = cfg.data["profile"]
        profile_src = Source.of("file", f"file {cfg.where('profile')}")
    if profile is not None and cfg is None:
        raise ConfigError(f"profile {profile!r} ({profile_src}) needs a config file, and {cfg_path} does not exist "
                          "(`triage-tui config path` shows where it goes)")

    layers: dict[str, dict[str, tuple[Any, Source]]] = {"file": cfg.values(profile) if cfg else {}, "env": {},
                                                         "flag": {}}
    for spec in SPECS:
        if spec.env:
            raw = _nonempty(env, spec.env)
            if raw is not None:
                layers["env"][spec.name] = (_from_env(spec, raw), Source.of("env", f"env {spec.env}"))
        if spec.dest:
            v = getattr(args, spec.dest, None)
            if v is not None:
                layers["flag"][spec.name] = (_from_flag(spec, v), Source.of("flag", f"flag {spec.flag}"))

    def pick(name: str, extra: Iterable[dict[str, tuple[Any, Source]]] = ()) -> tuple[Any, Source]:
        best: tuple[Any, Source] = (BY_NAME[name].default, DEFAULT)
        for layer in (*extra, layers["file"], layers["env"], layers["flag"]):
            if name in layer and layer[name][1].rank >= best[1].rank:
                if BY_NAME[name].type in ("map", "projects") and isinstance(best[0], dict):
                    best = ({**best[0], **layer[name][0]}, layer[name][1])
                else:
                    best = layer[name]
        return best

    # phase 1: which GitLab files, and which of their mailboxes
    imported: dict[str, ImportedMailbox] = {}
    gitlab_path = _validate_value(BY_NAME["gitlab.config"], *pick("gitlab.config"))
    gitlab_env = _validate_value(BY_NAME["gitlab.env"], *pick("gitlab.env"))
    mail_room_path = _validate_value(BY_NAME["gitlab.mail_room_config"], *pick("gitlab.mail_room_config"))
    from_gitlab = load_gitlab_yml(_expand(gitlab_path), str(gitlab_env)) if gitlab_path else {}
    from_mail_room = load_mail_room_yml(_expand(mail_room_path)) if mail_room_path else {}
    if gitlab_path and not from_gitlab:
        raise ConfigError(f"{gitlab_path}: neither incoming_email nor service_desk_email is enabled (with an "
                          f"address) in {gitlab_env!r}")
    for which in ("incoming", "service_desk"):
        if which in from_gitlab or which in from_mail_room:
            mb = ImportedMailbox(which)
            for part in (from_gitlab.get(which), from_mail_room.get(which)):
                if part is not None:
                    mb.values.update(part.values)
                    mb.files.extend(part.files)
            imported[which] = mb
    chosen, chosen_src = pick("gitlab.mailbox_source")
    chosen = _validate_value(BY_NAME["gitlab.mailbox_source"], chosen, chosen_src)
    notes: list[str] = []
    mailbox_source: str | None = None
    import_layers: list[dict[str, tuple[Any, Source]]] = []
    if imported:
        if chosen is not None and chosen not in imported:
            have = ", ".join(SECTION_OF[w] for w in imported)
            raise ConfigError(f"--mailbox-source {chosen} ({chosen_src}): {SECTION_OF[chosen]} is not configured in "
                              f"the imported files (they have: {have})")
        mailbox_source = chosen or ("incoming" if "incoming" in imported else "service_desk")
        if chosen is None and len(imported) > 1:
            notes.append("both incoming_email and service_desk_email are configured: using incoming_email "
                         "(--mailbox-source service_desk to switch)")
        mb = imported[mailbox_source]
        import_layers = [{k: v for k, v in mb.values.items() if v[1].kind == "gitlab"},
                         {k: v for k, v in mb.values.items() if v[1].kind == "mail_room"}]

    # phase 2: everything else
    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    for spec in SPECS:
        v, s = pick(spec.name, import_layers)
        values[spec.name] = _validate_value(spec, v, s)
        sources[spec.name] = s

    # --mailbox-source service_desk implies the service desk kind, at the rank it was chosen
    if chosen == "service_desk":
        kind_src = sources["gitlab.mailbox_kind"]
        if kind_src.rank == chosen_src.rank and values["gitlab.mailbox_kind"] != "service_desk" \
                and kind_src.kind != "default":
            raise ConfigError(f"{chosen_src} says service_desk but {kind_src} says mailbox kind "
                              f"{values['gitlab.mailbox_kind']}: choose one")
        if kind_src.rank <= chosen_src.rank:
            values["gitlab.mailbox_kind"] = "service_desk"
            sources["gitlab.mailbox_kind"] = Source("implied", f"implied by {chosen_src}", chosen_src.rank)
    if values["redis.sentinels"] and not values["redis.master"]:
        raise ConfigError(f"redis.sentinels ({sources['redis.sentinels']}) needs redis.master (--redis-master, "
                          "the Sentinel master name)")
    return Settings(values=values, sources=sources, config_path=cfg_path, config_source=cfg_src,
                    config_exists=cfg is not None, profile=profile, profile_source=profile_src,
                    profiles=cfg.profile_names() if cfg else [], imported=imported, mailbox_source=mailbox_source,
                    notes=notes, environ=env)


# -- credentials ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CredentialPlan:
    """How the IMAP credential will be obtained, decided without running anything."""

    method: str  # oauth2_token_env | oauth2_token_command | password_file | password_command |
    #              password_env | password | prompt | none
    detail: str
    source: Source

    @property
    def oauth2(self) -> bool:
        return self.method.startswith("oauth2")

    def describe(self) -> str:
        said = self.source.kind == "default" or self.source.label.split(" ", 1)[-1] in self.detail
        return self.detail if said else f"{self.detail} ({self.source})"


#: Tie-break between methods given at the same layer: OAuth2 first (where basic auth is gone,
#: a password cannot work), then the ones a security team prefers.
_METHOD_ORDER = ("oauth2_token_env", "oauth2_token_command", "password_file", "password_command",
                 "password_env", "password")


def credential_plan(settings: Settings, interactive: bool) -> CredentialPlan:
    """Pick the credential source with the highest-precedence layer (flags over env over file
    over imported files); within one layer, the order of :data:`_METHOD_ORDER`."""
    s, env = settings, settings.environ
    cands: list[tuple[int, int, CredentialPlan]] = []

    def add(method: str, detail: str, source: Source) -> None:
        cands.append((source.rank, -_METHOD_ORDER.index(method), CredentialPlan(method, detail, source)))

    if s["imap.oauth2_token_env"]:
        add("oauth2_token_env", f"{s['imap.oauth2_mechanism']} token from environment variable "
            f"{s['imap.oauth2_token_env']}", s.source("imap.oauth2_token_env"))
    if s["imap.oauth2_token_command"]:
        add("oauth2_token_command", f"{s['imap.oauth2_mechanism']} token from command "
            f"`{s['imap.oauth2_token_command']}`", s.source("imap.oauth2_token_command"))
    if s["imap.password_file"]:
        add("password_file", f"password from file {s['imap.password_file']}", s.source("imap.password_file"))
    if s["imap.password_command"]:
        add("password_command", f"password from command `{s['imap.password_command']}`",
            s.source("imap.password_command"))
    name = s["imap.password_env"]
    name_src = s.source("imap.password_env")
    if name_src.kind != "default":
        add("password_env", f"password from environment variable {name}", name_src)
    elif _nonempty(env, name):
        add("password_env", f"password from environment variable {name}", Source.of("env", f"env {name}"))
    if s["imap.password"]:
        add("password", "password from the imported file", s.source("imap.password"))
    if cands:
        return max(cands, key=lambda c: (c[0], c[1]))[2]
    if interactive:
        return CredentialPlan("prompt", "password prompted for on the terminal", DEFAULT)
    return CredentialPlan("none", "no password configured", DEFAULT)


def run_secret_command(command: str, *, what: str, source: Source, timeout: float) -> Secret:
    """Run ``command`` without a shell (split with shlex) and take the first line of its stdout.

    Its output is never shown, not even when it fails: a vault CLI may print the secret, or
    part of it, alongside an error."""
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise ConfigError(f"{what} ({source}) cannot be split into arguments: {e}") from None
    if not argv:
        raise ConfigError(f"{what} ({source}) is empty")
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise ConfigError(f"{what} ({source}) failed: program {argv[0]!r} not found") from None
    except PermissionError:
        raise ConfigError(f"{what} ({source}) failed: program {argv[0]!r} is not executable") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{what} ({source}) failed: no answer within {timeout:g} s "
                          "(imap.secret_command_timeout)") from None
    except OSError as e:
        raise ConfigError(f"{what} ({source}) failed: {e.strerror}") from None
    if proc.returncode != 0:
        raise ConfigError(f"{what} ({source}) failed with exit status {proc.returncode} "
                          "(its output is not shown: it may hold the secret; run it yourself to see why)")
    return Secret(_first_line(proc.stdout, f"the output of {what} ({source})",
                              empty=f"{what} ({source}) printed nothing on its first line"))


#: a password file, or a command's answer, longer than this on its first line is not a password
SECRET_MAX_BYTES = 64 * 1024


def _first_line(data: bytes, where: str, *, empty: str | None = None) -> str:
    """The first line of a secret source, its line ending (LF, CRLF) and a UTF-8 BOM removed and
    nothing else: spaces are part of a password. Never quotes the content in an error."""
    line = data.split(b"\n", 1)[0]
    if len(line) > SECRET_MAX_BYTES:
        raise ConfigError(f"{where}: the first line is longer than {SECRET_MAX_BYTES // 1024} KiB: not a password")
    if line.endswith(b"\r"):
        line = line[:-1]
    if line.startswith(b"\xef\xbb\xbf"):
        line = line[3:]
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: the first line is not UTF-8 text (content not shown)") from None
    if not text:
        raise ConfigError(empty or f"{where} is empty on its first line (the secret goes on the first line)")
    _check_secret(text, where)
    return text


def _check_secret(value: str, where: str) -> None:
    """A secret that no IMAP login can carry is a configuration error, said without showing it."""
    if "\0" in value:
        raise ConfigError(f"{where}: the secret contains a NUL character, which no IMAP login can carry")
    try:
        value.encode("utf-8")
    except UnicodeError:
        raise ConfigError(f"{where}: the secret holds bytes that are not UTF-8 text (content not shown)") from None


def read_password_file(path: str, *, what: str = "password file") -> Secret:
    """The first line of a regular file only its owner can read: anything looser is refused, with
    the fix. A FIFO, socket, device or directory is refused before it is opened (a FIFO would
    block forever), and the file is opened non-blocking and checked again once open."""
    p = _expand(path)
    try:
        st = p.stat()
    except OSError as e:
        raise ConfigError(f"cannot read {what} {p}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{what} {p} is a directory: give the path of the file holding the password")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a file")
        raise ConfigError(f"{what} {p} is {kind}, not a regular file: give the path of a file holding the password")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{what} {p} is readable by group or others: run `chmod 600 {p}`")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(p, flags)
    except OSError as e:
        raise ConfigError(f"cannot read {what} {p}: {e.strerror}") from None
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise ConfigError(f"{what} {p} was replaced while being opened: try again")
        chunks: list[bytes] = []
        size = 0
        while size <= SECRET_MAX_BYTES:
            chunk = os.read(fd, SECRET_MAX_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if b"\n" in chunk:
                break
    except OSError as e:
        raise ConfigError(f"cannot read {what} {p}: {e.strerror}") from None
    finally:
        os.close(fd)
    return Secret(_first_line(b"".join(chunks), f"{what} {p}"))


@dataclass
class Credentials:
    password: Secret | None = None
    oauth2_token: Secret | None = None
    plan: CredentialPlan | None = None


def obtain_credentials(settings: Settings, *, stdin: TextIO, user: str, server: str) -> Credentials:
    """Run the chosen credential source (a command, a file, an env var, a prompt)."""
    plan = credential_plan(settings, interactive=_isatty(stdin))
    s, env = settings, settings.environ
    timeout = float(s["imap.secret_command_timeout"])
    if plan.method == "oauth2_token_env":
        name = s["imap.oauth2_token_env"]
        v = _nonempty(env, name)
        if v is None:
            raise UsageError(f"no OAuth2 token: environment variable {name} ({plan.source}) is not set")
        _check_secret(v, f"environment variable {name} ({plan.source})")
        return Credentials(oauth2_token=Secret(v), plan=plan)
    if plan.method == "oauth2_token_command":
        return Credentials(oauth2_token=run_secret_command(s["imap.oauth2_token_command"], what="oauth2_token_command",
                                                           source=plan.source, timeout=timeout), plan=plan)
    if plan.method == "password_file":
        return Credentials(password=read_password_file(s["imap.password_file"]), plan=plan)
    if plan.method == "password_command":
        return Credentials(password=run_secret_command(s["imap.password_command"], what="password_command",
                                                       source=plan.source, timeout=timeout), plan=plan)
    if plan.method == "password_env":
        name = s["imap.password_env"]
        v = _nonempty(env, name)
        if v is None:
            raise UsageError(f"no IMAP password: environment variable {name} ({plan.source}) is not set")
        _check_secret(v, f"environment variable {name} ({plan.source})")
        return Credentials(password=Secret(v), plan=plan)
    if plan.method == "password":
        _check_secret(s["imap.password"].reveal(), f"the password ({plan.source})")
        return Credentials(password=s["imap.password"], plan=plan)
    if plan.method == "prompt":
        try:
            value = getpass.getpass(f"IMAP password for {user} at {server}: ")
        except (EOFError, OSError):
            value = ""
        if not value:
            raise UsageError("no IMAP password entered")
        _check_secret(value, "the password entered")
        return Credentials(password=Secret(value), plan=plan)
    raise UsageError(f"no IMAP password: set {s['imap.password_env']}, or give --password-file, --password-command "
                     "(or password_command in the config file), or an OAuth2 token with --oauth2-token-command")


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


__all__ = [
    "SPECS", "ConfigFile", "CredentialPlan", "Credentials", "Settings", "Source", "credential_plan",
    "default_config_path", "journal_path", "load_gitlab_yml", "load_mail_room_yml", "mask_url",
    "obtain_credentials", "read_password_file", "resolve", "run_secret_command", "state_dir", "toml_line",
]
