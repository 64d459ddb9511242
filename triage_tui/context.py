"""What a subcommand needs: settings from the global options, lazily built services, output
helpers and the confirmation rule."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any, TextIO

from triage_tui.domain.age import parse_age
from triage_tui.domain.analysis import AnalysisConfig
from triage_tui.errors import ConfigError, Refused, UsageError
from triage_tui.services.imap import ConnectionSettings, Limits, Secret
from triage_tui.services.journal import AuditJournal


def read_password_file(path: str) -> Secret:
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError as e:
        raise ConfigError(f"cannot read password file {p}: {e.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"password file {p} is readable by group or others: run `chmod 600 {p}`")
    try:
        return Secret(p.read_text(encoding="utf-8").rstrip("\r\n"))
    except OSError as e:
        raise ConfigError(f"cannot read password file {p}: {e.strerror}") from None


# one encoder for every line (json.dumps with options builds a new one per call);
# ensure_ascii: text from mail may hold C1 controls or bidi overrides, escaped they are inert
_JSON = json.JSONEncoder(ensure_ascii=True, default=str)


class Context:
    def __init__(self, args: argparse.Namespace, stdout: TextIO | None = None, stdin: TextIO | None = None) -> None:
        self.args = args
        self.out = stdout or sys.stdout
        self.stdin = stdin or sys.stdin
        self.read_only: bool = bool(getattr(args, "read_only", False))
        self._service: Any = None
        self._locks: Any = None
        self._journal: AuditJournal | None = None

    # -- settings -----------------------------------------------------------------------------

    def connection_settings(self) -> ConnectionSettings:
        a = self.args
        password: Secret | None = None
        if getattr(a, "password_file", None):
            password = read_password_file(a.password_file)
        else:
            env_name = getattr(a, "password_env", None) or "TRIAGE_IMAP_PASSWORD"
            value = os.environ.get(env_name)
            if value:
                password = Secret(value)
        if not a.host:
            raise UsageError("no IMAP host: give --host or set TRIAGE_IMAP_HOST (or try `triage-tui demo`)")
        if not a.user:
            raise UsageError("no IMAP user: give --user or set TRIAGE_IMAP_USER")
        if password is None:
            raise UsageError(f"no IMAP password: set {getattr(a, 'password_env', None) or 'TRIAGE_IMAP_PASSWORD'} "
                             "or give --password-file")
        return ConnectionSettings(
            host=a.host, port=a.port, security=a.security, user=a.user, password=password, mailbox=a.mailbox,
            ca_file=a.ca_file, insecure_skip_verify=a.insecure_skip_verify, allow_plaintext=a.allow_plaintext,
            timeout=a.timeout)

    def limits(self) -> Limits:
        a = self.args
        if a.chunk < 1 or a.max_command_bytes < 64 or a.pipeline < 1:
            raise UsageError("--chunk, --pipeline must be >= 1 and --max-command-bytes >= 64")
        return Limits(max_bytes=a.max_command_bytes, max_count=a.chunk, window=a.pipeline)

    def analysis(self) -> AnalysisConfig:
        a = self.args
        return AnalysisConfig(address=a.address, mailbox_kind=a.mailbox_kind, stale_after=parse_age(a.stale_after))

    @property
    def journal(self) -> AuditJournal:
        if self._journal is None:
            self._journal = AuditJournal()
        return self._journal

    def service(self) -> Any:
        """The :class:`~triage_tui.services.triage.TriageService` for these settings (connected)."""
        if self._service is None:
            from triage_tui.services.triage import TriageService  # noqa: PLC0415

            self._service = TriageService(self.connection_settings(), read_only=self.read_only,
                                          journal=self.journal, limits=self.limits(), analysis=self.analysis())
            self._service.connect()
        return self._service

    def redis_configured(self) -> bool:
        a = self.args
        return bool(getattr(a, "redis_url", None) or getattr(a, "redis_sentinel", None)
                    or os.environ.get("TRIAGE_REDIS_SENTINELS"))

    def lock_service(self) -> Any:
        """The :class:`~triage_tui.services.locks.LockService`, or None when no Redis is configured."""
        if not self.redis_configured():
            return None
        if self._locks is None:
            from triage_tui.services.locks import LockService, RedisSettings  # noqa: PLC0415

            a = self.args
            raw = a.redis_sentinel or [s for s in os.environ.get("TRIAGE_REDIS_SENTINELS", "").split(",") if s]
            sentinels: list[tuple[str, int]] = []
            for item in raw:
                host, _, port = item.rpartition(":")
                if not host or not port.isdigit():
                    raise UsageError(f"invalid Sentinel address {item!r}: expected HOST:PORT")
                sentinels.append((host, int(port)))
            if sentinels and not a.redis_master:
                raise UsageError("--redis-sentinel needs --redis-master (the Sentinel master name)")
            settings = RedisSettings(url=a.redis_url, sentinels=sentinels, master=a.redis_master,
                                     key_prefix=a.key_prefix, ca_file=a.redis_ca_file)
            self._locks = LockService(settings, read_only=self.read_only, journal=self.journal)
        return self._locks

    def close(self) -> None:
        if self._locks is not None:
            self._locks.close()
            self._locks = None
        if self._service is not None:
            self._service.close()
            self._service = None

    # -- output ---------------------------------------------------------------------------------

    def emit_json(self, obj: Any) -> None:
        self.out.write(_JSON.encode(obj) + "\n")

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def note(self, text: str) -> None:
        print(text, file=sys.stderr)

    # -- confirmation ---------------------------------------------------------------------------

    def confirm(self, question: str, *, yes: bool, typed: str | None = None) -> None:
        """Return if confirmed; raise :class:`Refused` otherwise. Without a TTY, only ``--yes`` confirms."""
        if yes:
            return
        if not self.stdin.isatty():
            raise Refused("confirmation missing: stdin is not interactive; add --yes to act (or --dry-run to look)")
        if typed:
            answer = input(f"{question}\nType {typed!r} to proceed: ").strip()
            if answer != typed:
                raise Refused("not confirmed: nothing was changed")
        else:
            answer = input(f"{question} [y/N] ").strip().lower()
            if answer not in ("y", "yes"):
                raise Refused("not confirmed: nothing was changed")
