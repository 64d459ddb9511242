"""Shared fixtures: a real Dovecot and a real Redis for the whole session, a fresh mailbox (its
own IMAP user) per test, an isolated audit journal, and an in-process CLI runner."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import imapclient
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.servers import PASSWORD, Dovecot, Redis, start_dovecot, start_redis  # noqa: E402
from triage_tui.services.imap import ConnectionSettings, Secret  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own journal/state dir and no stray TRIAGE_* settings."""
    for k in list(os.environ):
        if k.startswith("TRIAGE_"):
            monkeypatch.delenv(k)
    monkeypatch.delenv("NO_COLOR", raising=False)  # changes rendering, breaks snapshots
    state = tmp_path / "state"
    monkeypatch.setenv("TRIAGE_STATE_DIR", str(state))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the header cache, never the real one
    return state


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    server = start_dovecot()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: Redis):  # type: ignore[no-untyped-def]
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


@dataclass
class Mailbox:
    """One test's mailbox on the shared Dovecot, and a separate connection to check its state."""

    server: Dovecot
    user: str

    def seed(self, messages: Iterable[tuple[bytes, float, str]]) -> int:
        return self.server.seed(self.user, messages)

    def settings(self, **kw: object) -> ConnectionSettings:
        base: dict[str, object] = dict(host="127.0.0.1", port=self.server.imaps_port, security="ssl", user=self.user,
                                       password=Secret(PASSWORD), ca_file=str(self.server.ca_file))
        base.update(kw)
        return ConnectionSettings(**base)  # type: ignore[arg-type]

    def env(self) -> dict[str, str]:
        return {"TRIAGE_IMAP_HOST": "127.0.0.1", "TRIAGE_IMAP_PORT": str(self.server.imaps_port),
                "TRIAGE_IMAP_USER": self.user, "TRIAGE_IMAP_PASSWORD": PASSWORD,
                "TRIAGE_IMAP_CA_FILE": str(self.server.ca_file)}

    def client(self) -> imapclient.IMAPClient:
        c = imapclient.IMAPClient("127.0.0.1", port=self.server.imap_port, ssl=False)
        c.login(self.user, PASSWORD)
        return c

    def flags(self) -> dict[int, set[str]]:
        """UID -> flags, read through a separate EXAMINE connection (never our code)."""
        c = self.client()
        try:
            c.select_folder("INBOX", readonly=True)
            uids = c.search("ALL")
            if not uids:
                return {}
            data = c.fetch(uids, ["FLAGS"])
            return {uid: {f.decode() for f in v[b"FLAGS"]} - {"\\Recent"} for uid, v in data.items()}
        finally:
            c.logout()

    def search(self, criteria: str) -> list[int]:
        c = self.client()
        try:
            c.select_folder("INBOX", readonly=True)
            return sorted(c.search(criteria))
        finally:
            c.logout()

    def uidvalidity(self) -> int:
        c = self.client()
        try:
            return int(c.select_folder("INBOX", readonly=True)[b"UIDVALIDITY"])
        finally:
            c.logout()


@pytest.fixture
def mailbox(dovecot: Dovecot) -> Mailbox:
    return Mailbox(dovecot, dovecot.new_user())


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.out.splitlines() if line]


def one_line_error(r: CliResult) -> None:
    """A failure as the brief asks for it: non-zero exit, one line on stderr, no traceback."""
    assert r.code != 0, r
    assert "Traceback" not in r.err and "internal error" not in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1, r.err


class _Stdin(io.StringIO):
    def __init__(self, text: str = "", tty: bool = False) -> None:
        super().__init__(text)
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run ``triage-tui`` in-process: ``cli(args, env=..., stdin=..., tty=...)``."""
    from triage_tui.cli import main

    def run(args: list[str], env: dict[str, str] | None = None, stdin: str = "", tty: bool = False) -> CliResult:
        with monkeypatch.context() as m:
            for k, v in (env or {}).items():
                m.setenv(k, v)
            m.setattr(sys, "stdin", _Stdin(stdin, tty))
            out, err = io.StringIO(), io.StringIO()
            with redirect_stdout(out), redirect_stderr(err):
                code = main(args)
        return CliResult(code, out.getvalue(), err.getvalue())

    return run
