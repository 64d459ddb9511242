"""The TOML config file: read safely, validated against :data:`SPECS`, each error with its line.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triage_tui.config.specs import COMMAND_KEYS, SECTIONS, SENSITIVE, TABLES, Source, Spec, _expand
from triage_tui.errors import ConfigError

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
                    if key == "client_secret" and section == "graph":
                        raise self.error(kpath, f"[{dotted}] client_secret: the config file is not a secret store: "
                                         "use client_secret_command (e.g. a vault CLI), client_secret_file (mode 600) "
                                         "or client_secret_env")
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
