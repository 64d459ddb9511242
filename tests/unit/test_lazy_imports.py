"""Start-up cost, guarded without timing (issue 13): which packages a fresh interpreter has
imported once a subcommand's command line is parsed, and once it has run as far as the
connection. Each case runs in its own subprocess (``sys.modules`` of this one is polluted by
the other tests); the connection goes to 127.0.0.1 port 1, refused at once, so a case runs
everything a real run does before the first byte to the server: settings, credentials, the
command's own imports. Timing is measured by ``bench/bench_startup.py``, not here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Top-level packages no headless IMAP subcommand needs when no Redis is configured.
NEVER_HEADLESS = ("textual", "rich", "redis", "asyncio", "mailparser", "humanize", "yaml", "pymap", "fakeredis",
                  "triage_tui.tui", "triage_tui.demo", "triage_tui.services.locks", "triage_tui.services.sidekiq")
#: What only parsing a command line (``--help``, ``--version``, a usage error) must not import either:
#: no IMAP client, no TLS, no settings layers, no classification tables.
NEVER_PARSING = (*NEVER_HEADLESS, "imapclient", "imaplib", "ssl", "sqlite3", "platformdirs", "triage_tui.config",
                 "triage_tui.context", "triage_tui.services", "triage_tui.domain.classify",
                 "triage_tui.domain.analysis", "triage_tui.domain.hops")

CONN = ["--host", "127.0.0.1", "--port", "1", "--security", "none", "--user", "u"]

_PROBE = r"""
import io, json, sys
from contextlib import redirect_stderr, redirect_stdout
from triage_tui import cli
argv = json.loads(sys.argv[1])
out, err = io.StringIO(), io.StringIO()
with redirect_stdout(out), redirect_stderr(err):
    try:
        code = cli.main(argv)
    except SystemExit as e:  # --help / --version exit from argparse
        code = e.code
print(json.dumps({"code": code, "out": out.getvalue()[-4000:], "err": err.getvalue()[-2000:],
                  "modules": sorted(sys.modules)}))
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env.update(TRIAGE_IMAP_PASSWORD="not-a-real-password", XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_STATE_HOME=str(tmp_path / "state"), XDG_CACHE_HOME=str(tmp_path / "cache"),
               HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    return env


def _imported(argv: list[str], tmp_path: Path) -> tuple[int, str, list[str]]:
    r = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argv)], env=_env(tmp_path), cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    return doc["code"], doc["err"], doc["modules"]


def _loaded(modules: list[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden))


@pytest.mark.parametrize("argv", [
    ["list", "--json"],
    ["list", "--view", "seen-stuck", "--filter", "from:bot"],
    ["mark-seen", "--older-than", "2d", "--yes"],
    ["mark-unseen", "--all", "--dry-run"],
    ["expunge", "--all", "--dry-run"],
    ["peek", "42"],
    ["plan"],
], ids=lambda a: " ".join(a))
def test_headless_commands_import_no_redis_ui_or_demo(argv: list[str], tmp_path: Path) -> None:
    code, err, modules = _imported([*CONN, *argv], tmp_path)
    # it really got as far as the connection (so every import on the way was made) ...
    assert code == 3 and "refused" in err, err
    # ... and the IMAP client is there, the rest is not
    assert "imapclient" in modules and "triage_tui.services.triage" in modules
    assert _loaded(modules, NEVER_HEADLESS) == []


@pytest.mark.parametrize("argv", [
    ["--version"],
    ["--help"],
    ["list", "--help"],
    ["mark-seen", "--help"],
    ["release", "--help"],
    ["plan", "--help"],
    ["check", "--help"],
    ["config", "show", "--help"],
    ["mark-seen"],  # a usage error (no selector)
    ["lsit"],
], ids=lambda a: " ".join(a))
def test_parsing_alone_imports_no_client(argv: list[str], tmp_path: Path) -> None:
    code, err, modules = _imported(argv, tmp_path)
    forbidden = NEVER_PARSING
    if argv == ["release", "--help"]:  # its help shows mail_room's poll cycle, from the lock service
        forbidden = ("textual", "rich", "triage_tui.tui", "triage_tui.demo", "pymap", "fakeredis")
    if argv == ["mark-seen"]:  # the selector check runs after the settings: they are resolved first
        forbidden = NEVER_HEADLESS
    assert code == (2 if argv in (["mark-seen"], ["lsit"]) else 0), err
    assert _loaded(modules, forbidden) == []


def test_every_subcommand_still_has_its_arguments_when_introspected() -> None:
    """The subcommands' arguments are added on first use; anything that looks at a subparser's
    actions (help, completion, the bad-input table) sees all of them."""
    from triage_tui import cli
    from triage_tui.commands import COMMAND_MODULES

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, cli.argparse._SubParsersAction))
    assert len(sub.choices) == len(COMMAND_MODULES)
    dests = {name: {a.dest for a in p._actions} for name, p in sub.choices.items()}
    assert {"uids", "older_than", "dry_run", "yes", "json"} <= dests["mark-seen"]
    assert {"poll_cycle", "ttl", "waves"} <= dests["release"]
    assert {"view", "limit", "json"} <= dests["list"]
    # and a parse of one subcommand fills only that one
    parser = cli.build_parser()
    args = parser.parse_args(["list", "--json"])
    assert args.json is True and args.command == "list"
    sub = next(a for a in parser._actions if isinstance(a, cli.argparse._SubParsersAction))
    filled = [name for name, p in sub.choices.items() if "_fill" not in p.__dict__]
    assert filled == ["list"]


def test_mark_seen_and_peek_on_a_real_mailbox_never_import_redis(mailbox, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Past the connection too: with mail_room's Redis configured (as --mail-room-config does),
    mark-seen and peek talk to Dovecot only; Redis is imported by the commands that use it."""
    import time

    old = time.time() - 5 * 86400
    mailbox.seed([(f"From: a{i}@example.com\r\nTo: incoming+x@example.com\r\nSubject: s{i}\r\n"
                   f"Message-ID: <m{i}@example.com>\r\n\r\nbody\r\n".encode(), old, "") for i in range(3)])
    env = {**_env(tmp_path), **mailbox.env(), "TRIAGE_REDIS_URL": "redis://127.0.0.1:1/0"}
    for argv, check in ((["mark-seen", "--older-than", "1d", "--dry-run", "--json"], '"dry_run": true'),
                        (["peek", "2"], "Subject: s1")):
        r = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argv)], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout.strip().splitlines()[-1])
        assert doc["code"] == 0 and check in doc["out"], doc
        assert "triage_tui.services.triage" in doc["modules"]
        assert _loaded(doc["modules"], NEVER_HEADLESS) == [], argv
    assert mailbox.search("UNSEEN") == [1, 2, 3]  # the dry run changed nothing on the server


def test_the_tui_starts_without_importing_redis(tmp_path: Path) -> None:
    """The TUI's screens hold the lock and Sidekiq views, whose modules use redis-py only inside
    functions (services/redislib.py): with no Redis configured, its ~0.1 s import is never paid."""
    probe = ("import json, sys; import triage_tui.tui.app, triage_tui.services.locks, triage_tui.services.sidekiq; "
             "print(json.dumps(sorted(m for m in sys.modules if m == 'redis' or m.startswith('redis.'))))")
    r = subprocess.run([sys.executable, "-c", probe], env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []
