"""Where the layers meet: defaults < GitLab's files < config file < environment < flags.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triage_tui.config.gitlab import SECTION_OF, ImportedMailbox, load_gitlab_yml, load_mail_room_yml
from triage_tui.config.specs import (
    _MASKED,
    _NO_WRITE_BACK,
    BY_NAME,
    DEFAULT,
    DEFAULT_KEY_PREFIX,
    MASK,
    SENSITIVE,
    SPECS,
    Source,
    Spec,
    _expand,
    _nonempty,
    _shown,
    locate_config,
)
from triage_tui.config.tomlfile import ConfigFile
from triage_tui.domain.age import parse_age
from triage_tui.domain.numbers import parse_float, parse_int
from triage_tui.domain.redact import mask_host
from triage_tui.domain.redisurl import check_redis_url
from triage_tui.errors import ConfigError, UsageError
from triage_tui.services.imap import Secret

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
            if "microsoft_graph" in (mb.get("mail_room.inbox_method"), self.values.get("mail_room.inbox_method")):
                continue  # a Graph mailbox's delivered:<id> keys are Graph ids: they collide with no IMAP UID
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
