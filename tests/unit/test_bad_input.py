"""Guarantee 5 of issue 11: bad input is a usage error (exit 2) with the fix, never "internal error".

The adversary's table: every flag of every (sub)command found in ``cli.build_parser()``, every
environment variable and every config file key of ``config.SPECS``, each fed hostile values. The
CLI must end with exit 0, 2, 3 or 4, say at most one error line, and never show a traceback or
"internal error". No server is involved: commands that get past their own checks reach
``Context.service()``, which is patched to fail like an unreachable server (exit 3), so the
table runs in seconds and proves that every local check happens *before* a connection.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from triage_tui import cli as cli_mod
from triage_tui.config import SPECS
from triage_tui.context import Context
from triage_tui.errors import ConnectionFailed

HOSTILE = ["", " ", "nan", "inf", "-1", "0", "1e400", "99999999999", "99999999999w", "\x1b[2J", "0x10", "٣",
           "1_000", "\u202e", "-", "*", "a" * 5000, "2", "1:*", "4294967296", "\x00", "${HOME}", "'\"", "=<>",
           "~nosuchuser/x", "/dev/zero", "/", "1:10000000,10000002:20000002", "redis://127.0.0.1/abc", "http://x/0"]
#: Subcommands whose run would start servers or a UI: only their argument checks are exercised.
PARSE_ONLY = {"demo", "check"}
SAFE_ENV = {"TRIAGE_IMAP_HOST": "127.0.0.1", "TRIAGE_IMAP_USER": "u", "TRIAGE_IMAP_PASSWORD": "p",
            "TRIAGE_IMAP_SECURITY": "none"}


class _Stdin(io.StringIO):
    def isatty(self) -> bool:
        return False


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """main() in-process, with the network replaced by a refusal (exit 3)."""
    def no_server(self: Context, *a: object, **k: object) -> object:
        raise ConnectionFailed("test: no server here (the arguments were accepted)")

    monkeypatch.setattr(Context, "service", no_server)
    monkeypatch.setattr(Context, "lock_service", no_server)
    monkeypatch.setattr(cli_mod, "build_parser", lambda: PARSER)  # built once: ~25 ms a call otherwise

    def go(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
        with monkeypatch.context() as m:
            for k, v in (env or {}).items():
                m.setenv(k, v)
            m.setattr(sys, "stdin", _Stdin(""))
            out, err = io.StringIO(), io.StringIO()
            with redirect_stdout(out), redirect_stderr(err):
                code = cli_mod.main(argv)
        return code, out.getvalue(), err.getvalue()

    return go


def problem(code: int, err: str) -> str | None:
    """What is wrong with how a run ended, or None."""
    if code not in (0, 2, 3, 4):
        return f"exit {code}"
    if "Traceback" in err or "internal error" in err:
        return "traceback or internal error"
    errors = [line for line in err.splitlines() if line.startswith("triage-tui:") and "error" in line]
    if len(errors) > 1 or (code != 0 and len(errors) != 1):
        return f"{len(errors)} error lines"
    return None


def check_all(run, cases: list[tuple[list[str], dict[str, str] | None]]) -> None:  # type: ignore[no-untyped-def]
    bad = []
    for argv, env in cases:
        code, _out, err = run(argv, env)
        why = problem(code, err)
        if why:
            bad.append((why, [a[:60] for a in argv], {k: v[:60] for k, v in (env or {}).items()}, err[:300]))
    assert not bad, bad


# -- the options, found programmatically -----------------------------------------------------------


def _subparsers(p: argparse.ArgumentParser) -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield [name], sub
                for path, deeper in _subparsers(sub):
                    yield [name, *path], deeper


def _valued(p: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction | argparse._VersionAction):
            continue
        if action.nargs == 0:
            continue
        yield action


def _options() -> list[tuple[str, list[str], str | None]]:
    """(subcommand path, argv before the value, option) for every option that takes a value."""
    out: list[tuple[str, list[str], str | None]] = []
    for action in _valued(PARSER):
        out.append(("global", [], action.option_strings[0]))
    for path, sub in _subparsers(PARSER):
        for action in _valued(sub):
            out.append((" ".join(path), path, action.option_strings[0] if action.option_strings else None))
    return out


PARSER = cli_mod.build_parser()
OPTIONS = _options()


def _argv(path: list[str], option: str | None, value: str) -> list[str]:
    if not path:
        return [f"{option}={value}", "config", "show"]
    if option is None:  # a positional: after "--" so that "-1" is a value, not an option
        return [*path, "--", value]
    return [*path, f"{option}={value}", *(["7"] if path == ["peek"] else [])]


def test_the_table_covers_every_option() -> None:
    flags = {opt for kind, _, opt in OPTIONS if kind == "global"}
    for must in ("--port", "--timeout", "--chunk", "--max-command-bytes", "--pipeline", "--stale-after",
                 "--redis-url", "--redis-sentinel", "--host", "--config"):
        assert must in flags
    subs = {kind for kind, _, _ in OPTIONS}
    for must in ("list", "peek", "mark-seen", "release", "locks", "expunge", "decode", "check", "tui", "demo"):
        assert must in subs
    assert len(OPTIONS) > 60


@pytest.mark.parametrize(("kind", "path", "option"), OPTIONS, ids=[f"{k}:{o}" for k, _, o in OPTIONS])
def test_hostile_value_in_every_option(run, kind, path, option):  # type: ignore[no-untyped-def]
    cases = []
    for v in HOSTILE:
        argv = _argv(path, option, v)
        if path and path[0] in PARSE_ONLY:
            try:
                PARSER.parse_args(argv)
            except Exception:  # noqa: BLE001, S112 - refused while parsing: check how main() says it
                pass
            else:
                continue  # accepted: running it would start a demo or a full check
        cases.append((argv, SAFE_ENV))
    check_all(run, cases)


# -- environment variables and config file keys ----------------------------------------------------

ENV_NAMES = [s.env for s in SPECS if s.env] + ["TRIAGE_CONFIG", "TRIAGE_PROFILE", "TRIAGE_VIEW"]
ENV_VALUES = [v for v in HOSTILE if v and "\x00" not in v]  # the environment cannot hold NUL


@pytest.mark.parametrize("name", ENV_NAMES)
def test_hostile_environment_variable(run, name):  # type: ignore[no-untyped-def]
    check_all(run, [(argv, {**env, name: v}) for v in ENV_VALUES
                    for argv, env in ((["config", "show"], {}), (["list"], SAFE_ENV), (["tui"], SAFE_ENV))])


TOML_VALUES = [json.dumps(v) for v in HOSTILE] + ["nan", "inf", "-inf", "-1", "0", "99999999999999", "1e400",
                                                  "true", "[]", '["(", "a{99999999999}"]', "{}", "3.5"]
FILE_SPECS = [s for s in SPECS if s.in_file and s.section]


def _config_cases(tmp_path: Path, bodies: list[str], argvs: list[list[str]]) -> list[tuple[list[str], dict[str, str]]]:
    cases = []
    for i, body in enumerate(bodies):
        cfg = tmp_path / f"c{i}.toml"
        cfg.write_text(body, encoding="utf-8")
        cfg.chmod(0o600)
        cases += [(["--config", str(cfg), *argv], SAFE_ENV) for argv in argvs]
    return cases


@pytest.mark.parametrize("spec", FILE_SPECS, ids=[s.name for s in FILE_SPECS])
def test_hostile_config_file_value(run, tmp_path: Path, spec):  # type: ignore[no-untyped-def]
    bodies = [f"[{spec.section}]\n{spec.key} = {v}\n" for v in TOML_VALUES]
    check_all(run, _config_cases(tmp_path, bodies, [["config", "show"]]))


@pytest.mark.parametrize("table", ["keymap", "projects"])
def test_hostile_config_tables(run, tmp_path: Path, table):  # type: ignore[no-untyped-def]
    keys = ['"mark.toggle"', '"mark.toggel"', '"٣"', '"278964"', '"\\u001b[2J"', '""']
    bodies = [f"[{table}]\n{k} = {v}\n" for k in keys for v in TOML_VALUES]
    check_all(run, _config_cases(tmp_path, bodies, [["config", "show"], ["tui"]]))


# -- the cases of the issue, each refused locally with exit 2 and the fix ---------------------------

REFUSED = [
    (["mark-seen", "--older-than", "2", "--dry-run"], "2 what? use 2d"),
    (["--stale-after", "2", "config", "show"], "2 what? use 2d"),
    (["list", "--filter", "age>2"], "2 what? use 2d"),
    (["list", "--filter", "bot age>=90"], "90 what?"),
    (["mark-seen", "--older-than", "0d", "--dry-run"], "is zero"),
    (["mark-seen", "--older-than", "99999999999w", "--dry-run"], "more than 100 years"),
    (["mark-seen", "--older-than", "1e400d", "--dry-run"], "invalid age"),
    (["mark-seen", "--older-than", "nan", "--dry-run"], "invalid age"),
    (["mark-seen", "--older-than", "inf", "--dry-run"], "invalid age"),
    (["mark-seen", "--older-than=-2d", "--dry-run"], "invalid age"),
    (["mark-seen", "--older-than", "٣d", "--dry-run"], "invalid age"),
    (["--timeout", "nan", "config", "show"], "--timeout"),
    (["--timeout=-1", "config", "show"], "between 0.1 and 3600"),
    (["--timeout", "1e9", "config", "show"], "--timeout"),
    (["--timeout", "1000000000", "config", "show"], "between 0.1 and 3600"),
    (["--chunk", "0", "config", "show"], "--chunk"),
    (["--chunk=-5", "config", "show"], "--chunk"),
    (["--pipeline", "0", "config", "show"], "--pipeline"),
    (["--max-command-bytes", "10", "config", "show"], "between 64 and"),
    (["--port", "70000", "config", "show"], "between 1 and 65535"),
    (["--port", "٣", "config", "show"], "digits 0-9"),
    (["peek", "0"], "IMAP UIDs are 1 to 4294967295"),
    (["peek", "--", "-1"], "IMAP UIDs are 1 to 4294967295"),
    (["peek", "4294967296"], "IMAP UIDs are 1 to 4294967295"),
    (["peek", "abc"], "whole number"),
    (["list", "--filter", "size>5G"], "beyond IMAP's range"),
    (["list", "--filter", "size>99999999999999999"], "beyond IMAP's range"),
    (["list", "--filter", "uid:0"], "UIDs from 1 to 4294967295"),
    (["list", "--filter", "uid>4294967296"], "UID"),
    (["list", "--limit=-1"], "--limit"),
    (["list", "--limit", "0"], "--limit"),
    (["locks", "--limit=-1"], "--limit"),
    (["mark-seen", "--uids", "1:10000000,10000002:20000002", "--dry-run"], "more than a mailbox holds"),
    (["mark-seen", "--uids", "1:4294967295", "--dry-run"], "more than a mailbox holds"),
    (["mark-seen", "--uids", "1:*", "--dry-run"], "'*'"),
    (["mark-seen", "--uids", "0", "--dry-run"], "is not a UID"),
    (["mark-seen", "--uids", "5:0", "--dry-run"], "is not a UID"),
    (["mark-seen", "--uids", "4294967296", "--dry-run"], "is not a UID"),
    (["mark-seen", "--uids", "", "--dry-run"], "empty UID set"),
    (["mark-seen", "--uidvalidity", "0", "--all", "--dry-run"], "--uidvalidity"),
    (["release", "--all", "--timeout", "nan"], "--timeout"),
    (["release", "--all", "--timeout=-1"], "--timeout"),
    (["release", "--all", "--timeout", "1e9"], "--timeout"),
    (["release", "--all", "--ttl=-1"], "--ttl"),
    (["release", "--all", "--waves", "0"], "--waves"),
    (["release", "--all", "--poll-cycle", "inf"], "--poll-cycle"),
    (["release", "--all", "--interval", "0"], "--interval"),
    (["check", "--observe", "nan"], "--observe"),
    (["demo", "--size", "99999999999"], "--size"),
    (["--redis-url", "redis://127.0.0.1/abc", "config", "show"], "is not a number"),
    (["--redis-url", "redis://127.0.0.1:99999/0", "config", "show"], "from 1 to 65535"),
    (["--redis-url", "http://127.0.0.1:8080/0", "config", "show"], "is not Redis"),
    (["--redis-url", "127.0.0.1:6379", "config", "show"], "no scheme"),
    (["--redis-sentinel", "h:99999", "--redis-master", "m", "config", "show"], "port from 1 to 65535"),
    (["--host", "\x1b[2J", "config", "show"], "control character"),
    (["tui", "--keymap", '{"mark.toggel": "x"}'], "did you mean 'mark.toggle'"),
    (["tui", "--keymap", '{"action.seen": "ctl+s"}'], "is not a key"),
    (["--config", "/dev/zero", "config", "show"], "not a regular file"),
    (["--config", "/", "config", "show"], "directory"),
    (["--config", "~nosuchuser9/c.toml", "config", "show"], "no such user"),
]


@pytest.mark.parametrize(("argv", "phrase"), REFUSED, ids=[" ".join(a)[:50] for a, _ in REFUSED])
def test_the_issues_cases_are_usage_errors_with_the_fix(run, argv, phrase):  # type: ignore[no-untyped-def]
    code, out, err = run(argv, SAFE_ENV)
    assert code == 2, (argv, code, err)
    assert err.count("\n") == 1 and err.startswith("triage-tui: error: "), err
    assert phrase in err, err
    assert "test: no server here" not in err  # refused before any connection


ACCEPTED = [
    ["mark-seen", "--older-than", "2d", "--dry-run"], ["mark-seen", "--older-than", "90m", "--dry-run"],
    ["mark-seen", "--older-than", "1.5h", "--dry-run"], ["mark-seen", "--older-than", "36500d", "--dry-run"],
    ["peek", "1"], ["peek", "4294967295"], ["list", "--filter", "size<=4095M age>45s uid:1-4294967295"],
    ["list", "--filter", 'msgid:"<a@b>" subject:"=5" from:">x"'], ["list", "--limit", "1"],
    ["locks", "--limit", "0"], ["mark-seen", "--uids", "10:5,3,4,1:2,7:9", "--dry-run"],
    ["mark-seen", "--uids", "1:10000000", "--dry-run"], ["release", "--all", "--timeout", "30", "--ttl", "0"],
    ["--redis-url", "redis://127.0.0.1:6379/0", "locks"], ["--redis-url", "rediss://:p@h:6380/15", "locks"],
    ["--timeout", "0.5", "list"], ["--port", "143", "list"],
]


@pytest.mark.parametrize("argv", ACCEPTED, ids=[" ".join(a)[:50] for a in ACCEPTED])
def test_good_values_pass_the_checks_and_reach_the_server(run, argv):  # type: ignore[no-untyped-def]
    code, _out, err = run(argv, SAFE_ENV)
    assert code == 3 and "test: no server here" in err, (argv, code, err)


@pytest.mark.parametrize(("env", "phrase"), [
    ({"TRIAGE_STALE_AFTER": "2"}, "2 what?"),
    ({"TRIAGE_IMAP_TIMEOUT": "nan"}, "expected a finite number"),
    ({"TRIAGE_IMAP_TIMEOUT": "1e9"}, "expected a finite number"),
    ({"TRIAGE_IMAP_PORT": "٣"}, "expected an integer"),
    ({"TRIAGE_REDIS_URL": "redis://h/abc"}, "redis.url (env TRIAGE_REDIS_URL)"),
    ({"TRIAGE_REDIS_SENTINELS": "h:0"}, "port from 1 to 65535"),
    ({"TRIAGE_KEYMAP": '{"nope": "x"}'}, "unknown binding id"),
    ({"TRIAGE_VIEW": "bogus"}, "TRIAGE_VIEW='bogus': expected one of unseen"),
])
def test_bad_environment_values_name_the_variable(run, env, phrase):  # type: ignore[no-untyped-def]
    code, _out, err = run(["tui"], {**SAFE_ENV, **env})
    assert code == 2 and err.count("\n") == 1 and phrase in err, err


@pytest.mark.parametrize(("body", "phrase"), [
    ('[triage]\nstale_after = "2"\n', "2 what?"),
    ("[imap]\ntimeout = nan\n", "finite number"),
    ("[imap]\ntimeout = inf\n", "finite number"),
    ("[imap]\ntimeout = 1e9\n", "between 0.1 and 3600"),
    ("[mail_room]\nidle_timeout = 99999999999\n", "between 1 and 86400"),
    ('[redis]\nurl = "redis://h/abc"\n', "is not a number"),
    ('[keymap]\n"mark.toggel" = "x"\n', "did you mean 'mark.toggle'"),
    ('[keymap]\n"mark.toggle" = "ctl+x"\n', "is not a key"),
    ('[projects]\n"٣" = "x"\n', "keys are GitLab project ids"),
    ('[triage]\nbot_senders = ["a{99999999999}"]\n', "invalid regular expression"),
])
def test_bad_config_file_values_are_config_errors(run, tmp_path: Path, body, phrase):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.toml"
    cfg.write_text(body, encoding="utf-8")
    code, _out, err = run(["--config", str(cfg), "tui"], SAFE_ENV)
    assert code == 2 and err.count("\n") == 1 and phrase in err, err


# -- GitLab's own files, with each scalar value replaced by a hostile one ------------------------------

CONFIG_CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "config"
YAML_VALUES = [".nan", ".inf", "-.inf", "1e400", "99999999999999999999", "-1", "0", '"٣"', '"\\e[2J"', "~", "[]",
               "{}", "true", '"redis://h/abc"', '"http://x:1/0"', '"h:0"', "'a'", "!!binary aGk=", "&a 1", "*nope"]


@pytest.mark.parametrize("name", ["gitlab.yml", "mail_room.yml"])
def test_hostile_values_in_imported_gitlab_files(run, tmp_path: Path, name):  # type: ignore[no-untyped-def]
    import re

    lines = (CONFIG_CORPUS / name).read_text(encoding="utf-8").splitlines()
    scalar = re.compile(r"^(\s*-?\s*:?[A-Za-z_]+:?\s*:\s+)(\S.*)$")
    flag = "--gitlab-config" if name == "gitlab.yml" else "--mail-room-config"
    cases = []
    n = 0
    for i, line in enumerate(lines):
        m = scalar.match(line)
        if not m or line.lstrip().startswith("#"):
            continue
        for v in YAML_VALUES:
            n += 1
            path = tmp_path / f"{n}.yml"
            path.write_text("\n".join([*lines[:i], m.group(1) + v, *lines[i + 1:]]) + "\n", encoding="utf-8")
            cases.append(([flag, str(path), "config", "show"], {}))
    assert len(cases) > 200
    check_all(run, cases)
