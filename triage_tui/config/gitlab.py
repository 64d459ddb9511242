"""GitLab's own files as a layer: a rendered ``gitlab.yml`` and mail_room's YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from triage_tui.config.specs import Source, _shown
from triage_tui.config.tomlfile import read_regular_file
from triage_tui.domain.numbers import parse_int
from triage_tui.errors import ConfigError, UsageError
from triage_tui.services.imap import Secret

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

    # libyaml's parser where PyYAML has it (the same safe constructors; ~10x faster on a large
    # gitlab.yml), else the pure-Python one
    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
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
    method = _method(val("inbox_method"), src("inbox_method"))
    mb.values["mail_room.inbox_method"] = (method, src("inbox_method"))
    if method == "microsoft_graph":
        opts = _options(sec.get("inbox_options"), src("inbox_options"))
        olines = opts.lines if isinstance(opts, LineDict) else {}

        def osrc(key: str) -> Source:
            return Source.of("gitlab", f"gitlab.yml {path}:{olines.get(key, 1)} {where}.inbox_options.{key}")

        _graph_values(mb, opts, osrc, src("inbox_method"))
        if sec.get("user"):
            mb.values["graph.mailbox"] = (str(sec["user"]), src("user"))
        mb.values["graph.folder"] = (str(val("mailbox")), src("mailbox"))
    if which == "service_desk":
        mb.values["gitlab.mailbox_kind"] = ("service_desk", src("address"))
    return mb


def _graph_values(mb: ImportedMailbox, opts: dict[str, Any], src: Any, method_src: Source) -> None:
    """``inbox_method: microsoft_graph``: the Graph inbox and its ``inbox_options`` (tenant, client
    id and secret, national-cloud endpoints)."""
    mb.values["triage.inbox"] = ("graph", method_src)
    for key, name in (("tenant_id", "graph.tenant_id"), ("client_id", "graph.client_id"),
                      ("graph_endpoint", "graph.graph_endpoint"), ("azure_ad_endpoint", "graph.azure_ad_endpoint")):
        if opts.get(key) not in (None, ""):  # a tenant id written unquoted is a number: 0 is still a value
            mb.values[name] = (_scalar(opts[key], src(key)), src(key))
    if opts.get("client_secret") not in (None, ""):
        mb.values["graph.client_secret"] = (Secret(_scalar(opts["client_secret"], src("client_secret"))),
                                            src("client_secret"))


def _where(source: Source) -> str:
    """A source's label without its kind word: ``PATH:LINE KEY``, the start of a one-line error."""
    return source.label.split(" ", 1)[1]


def _scalar(v: Any, source: Source) -> str:
    """A YAML scalar as text (a tenant id may be written unquoted, as a number); a mapping or a
    list where one value belongs is an error naming the file, line and key, never the value
    (it may be the client secret)."""
    if isinstance(v, dict | list):
        raise ConfigError(f"{_where(source)}: expected a single value, got a "
                          f"{'mapping' if isinstance(v, dict) else 'list'}")
    return str(v)


def _method(v: Any, source: Source) -> str:
    """``inbox_method`` as mail_room reads it: a Ruby symbol (``:microsoft_graph``) is the same
    method as the string; anything but imap / microsoft_graph is refused when settings resolve."""
    return _scalar(v, source).strip().lstrip(":")


def _options(v: Any, source: Source) -> dict[str, Any]:
    """``inbox_options`` of a Graph mailbox: absent is empty (said when the inbox is used), a
    non-mapping is a one-line error rather than silently ignored."""
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ConfigError(f"{_where(source)}: expected a mapping (tenant_id, client_id, client_secret, ...) "
                          "for inbox_method microsoft_graph")
    return _sym(v)


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
        method = _method(box["inbox_method"], src("inbox_method")) if box.get("inbox_method") else ""
        if method:
            mb.values["mail_room.inbox_method"] = (method, src("inbox_method"))
        if method == "microsoft_graph":
            opts = _options(box.get("inbox_options"), src("inbox_options"))
            olines = opts.lines if isinstance(opts, LineDict) else {}

            def osrc(key: str, olines: dict[Any, int] = olines) -> Source:
                return Source.of("mail_room", f"mail_room {path}:{olines.get(key, 1)} :inbox_options: :{key}:")

            _graph_values(mb, opts, osrc, src("inbox_method"))
            if box.get("email"):
                mb.values["graph.mailbox"] = (str(box["email"]), src("email"))
            if box.get("name"):
                mb.values["graph.folder"] = (str(box["name"]), src("name"))
        if name == "service_desk":
            mb.values["gitlab.mailbox_kind"] = ("service_desk", src("name"))
        if str(box.get("delivery_method") or "") == "sidekiq":  # where the jobs go: the watch reads them
            dsrc = Source.of("mail_room", f"mail_room {path}: :delivery_options:")
            if delivery.get("queue"):
                mb.values["redis.sidekiq_queues"] = ([str(delivery["queue"])], dsrc)
            if delivery.get("namespace"):
                mb.values["redis.sidekiq_namespace"] = (f"{delivery['namespace']}:", dsrc)
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
