"""Secrets: how to obtain them (:func:`credential_plan`), and obtaining them only when a
connection is actually made (commands, files, environment, a prompt).
"""

from __future__ import annotations

import getpass
import os
import shlex
import stat
import subprocess
from dataclasses import dataclass
from typing import Any, TextIO

from triage_tui.config.layers import Settings
from triage_tui.config.specs import DEFAULT, Source, _expand, _nonempty
from triage_tui.errors import ConfigError, UsageError
from triage_tui.services.imap import Secret

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


def _secret_from_env(env: Any, name: str, missing: str, source: Any) -> Secret:
    """A secret from environment variable ``name``: set, non-empty and carriable by a login."""
    v = _nonempty(env, name)
    if v is None:
        raise UsageError(f"{missing}: environment variable {name} ({source}) is not set")
    _check_secret(v, f"environment variable {name} ({source})")
    return Secret(v)


def obtain_credentials(settings: Settings, *, stdin: TextIO, user: str, server: str) -> Credentials:
    """Run the chosen credential source (a command, a file, an env var, a prompt)."""
    plan = credential_plan(settings, interactive=_isatty(stdin))
    s, env = settings, settings.environ
    timeout = float(s["imap.secret_command_timeout"])
    if plan.method == "oauth2_token_env":
        return Credentials(oauth2_token=_secret_from_env(env, s["imap.oauth2_token_env"], "no OAuth2 token",
                                                         plan.source), plan=plan)
    if plan.method == "oauth2_token_command":
        return Credentials(oauth2_token=run_secret_command(s["imap.oauth2_token_command"], what="oauth2_token_command",
                                                           source=plan.source, timeout=timeout), plan=plan)
    if plan.method == "password_file":
        return Credentials(password=read_password_file(s["imap.password_file"]), plan=plan)
    if plan.method == "password_command":
        return Credentials(password=run_secret_command(s["imap.password_command"], what="password_command",
                                                       source=plan.source, timeout=timeout), plan=plan)
    if plan.method == "password_env":
        return Credentials(password=_secret_from_env(env, s["imap.password_env"], "no IMAP password", plan.source),
                           plan=plan)
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


def graph_credential_plan(settings: Settings) -> CredentialPlan:
    """How :func:`obtain_graph_secret` will get the client secret, decided without running anything
    (``config show`` says it on a Graph inbox, where the IMAP password plan means nothing)."""
    s, env = settings, settings.environ
    if s["graph.client_secret_file"]:
        return CredentialPlan("password_file", f"Graph client secret from file {s['graph.client_secret_file']}",
                              s.source("graph.client_secret_file"))
    if s["graph.client_secret_command"]:
        return CredentialPlan("password_command", "Graph client secret from command "
                              f"`{s['graph.client_secret_command']}`", s.source("graph.client_secret_command"))
    name = s["graph.client_secret_env"]
    name_src = s.source("graph.client_secret_env")
    if _nonempty(env, name) is not None or name_src.kind != "default":
        return CredentialPlan("password_env", f"Graph client secret from environment variable {name}",
                              name_src if name_src.kind != "default" else Source.of("env", f"env {name}"))
    if isinstance(s["graph.client_secret"], Secret):
        return CredentialPlan("password", "Graph client secret from the imported file",
                              s.source("graph.client_secret"))
    return CredentialPlan("none", f"no Graph client secret configured (set {name})", DEFAULT)


def obtain_graph_secret(settings: Settings) -> Secret:
    """The Graph app's client secret, from the first configured of: a file, a command, the
    environment variable (``TRIAGE_GRAPH_CLIENT_SECRET`` unless renamed), and last the
    ``inbox_options.client_secret`` of an imported gitlab.yml / mail_room file, unless the variable
    was renamed on purpose. Never prompted for."""
    s, env = settings, settings.environ
    if s["graph.client_secret_file"]:
        return read_password_file(s["graph.client_secret_file"], what="Graph client secret file")
    if s["graph.client_secret_command"]:
        return run_secret_command(s["graph.client_secret_command"], what="graph client_secret_command",
                                  source=s.source("graph.client_secret_command"),
                                  timeout=float(s["imap.secret_command_timeout"]))
    name = s["graph.client_secret_env"]
    named = s.source("graph.client_secret_env").kind != "default"
    if _nonempty(env, name) is None and s["graph.client_secret"] and not named:
        # a variable named on purpose (--graph-secret-env, the config file) and unset is an error
        # below, not a silent fallback to the imported file's secret
        imported = s["graph.client_secret"]
        _check_secret(imported.reveal(), f"the client secret ({s.source('graph.client_secret')})")
        return imported  # type: ignore[no-any-return]
    if _nonempty(env, name) is None:
        raise UsageError(f"no Graph client secret: set {name}, or give --graph-secret-file or --graph-secret-command")
    return _secret_from_env(env, name, "no Graph client secret", s.source("graph.client_secret_env"))


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
