"""Issue 12 §4, the CLI half: what a newcomer tripped on, without a server.

``--uids 5-10`` (the filter's spelling) is accepted; global options after the subcommand and a
mistyped subcommand are one usage line (exit 2) that says the fix; ``list --json`` says it is
JSON Lines; plain ``list`` rows fit the terminal by display width (CJK counts two cells).
"""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime, timedelta

import pytest

from triage_tui import cli as cli_mod
from triage_tui.commands import list_
from triage_tui.domain import uidset
from triage_tui.domain.model import Message
from triage_tui.domain.width import cell_len, char_width, fit
from triage_tui.errors import UsageError


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli_mod.main(argv)
    return code, out.getvalue(), err.getvalue()


# --- --uids 5-10 -------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "runs"), [
    ("5-10", [(5, 10)]), ("5:10", [(5, 10)]), ("10-5", [(5, 10)]), ("1-3,5,7:9", [(1, 3), (5, 5), (7, 9)]),
    (" 1 - 3 ", [(1, 3)]), ("1-2,2-4", [(1, 4)]),
])
def test_uids_accept_both_spellings(text, runs):  # type: ignore[no-untyped-def]
    assert uidset.parse_ranges(text, dashes=True) == runs


@pytest.mark.parametrize("bad", ["-3", "5-", "5--10", "5-10-12", "5:10-12", "5-*", "0-3", "1-4294967296",
                                 "1-10000000,10000002-20000002", "١-٣", "5—10", "5 10"])
def test_uids_dash_still_validated(bad):  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError):
        uidset.parse_ranges(bad, dashes=True)


def test_server_replies_never_get_the_dash():  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError):
        uidset.parse("5-10")


def test_cli_uids_dash_passes_the_local_checks(monkeypatch):  # type: ignore[no-untyped-def]
    from triage_tui.context import Context
    from triage_tui.errors import ConnectionFailed

    def no_server(self, *a, **k):  # type: ignore[no-untyped-def]
        raise ConnectionFailed("test: no server here (the arguments were accepted)")

    monkeypatch.setattr(Context, "service", no_server)
    for k, v in {"TRIAGE_IMAP_HOST": "127.0.0.1", "TRIAGE_IMAP_USER": "u", "TRIAGE_IMAP_PASSWORD": "p",
                 "TRIAGE_IMAP_SECURITY": "none"}.items():
        monkeypatch.setenv(k, v)
    code, _, err = run(["mark-seen", "--uids", "5-10", "--dry-run"])
    assert code == 3 and "arguments were accepted" in err
    code, _, err = run(["mark-seen", "--uids", "5-1-0", "--dry-run"])
    assert code == 2 and len(err.strip().splitlines()) == 1


# --- global options after the subcommand, "did you mean" ------------------------------------------

@pytest.mark.parametrize(("argv", "want"), [
    (["list", "--read-only"], "--read-only is a global option: put it before the subcommand: "
                              "triage-tui --read-only list"),
    (["peek", "--read-only", "5"], "triage-tui --read-only peek"),
    (["list", "--host", "imap.example"], "--host is a global option: put it before the subcommand: "
                                         "triage-tui --host HOST list"),
    (["list", "--redis-url=redis://:hunter2@h/0"], "triage-tui --redis-url REDIS_URL list"),
    (["list", "--host", "x", "--read-only"], "--host, --read-only are global options: put them before"),
    (["lsit"], "unknown subcommand 'lsit': did you mean list?"),
    (["mark-sen"], "did you mean mark-seen?"),
    (["LIST"], "did you mean list?"),
    (["config", "shwo"], "did you mean show?"),
    (["list", "--view", "unsen"], "did you mean unseen?"),
    (["zzz"], "unknown subcommand 'zzz': choose from list, peek"),
    (["\x1b[0mzz"], "unknown subcommand '\\\\x1b[0mzz'"),  # not a value another test registers as a secret
])
def test_usage_errors_say_the_fix(argv, want):  # type: ignore[no-untyped-def]
    code, out, err = run(argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert want in lines[0], lines[0]
    assert "hunter2" not in err and "\x1b" not in err and "Traceback" not in err


def test_unknown_option_still_unrecognized():  # type: ignore[no-untyped-def]
    code, _, err = run(["list", "--bogus"])
    assert code == 2 and "unrecognized arguments: --bogus" in err


# --- list --json is JSON Lines ---------------------------------------------------------------------

def test_list_help_says_json_lines(capsys):  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit):
        cli_mod.main(["list", "--help"])
    assert "JSON Lines" in capsys.readouterr().out


# --- display width ---------------------------------------------------------------------------------

def test_cell_widths():  # type: ignore[no-untyped-def]
    assert cell_len("abc") == 3
    assert cell_len("张伟") == 4
    assert cell_len("ｆｕｌｌ") == 8  # fullwidth forms
    assert cell_len("e\u0301") == 1  # a combining accent takes no cell
    assert cell_len("한국어") == 6
    assert char_width("😀") == 2


@pytest.mark.parametrize("text", ["", "abc", "张伟张伟张伟", "a张b伟c" * 9, "e\u0301" * 30, "x" * 100, "한" * 50])
@pytest.mark.parametrize("width", [1, 2, 3, 5, 10, 17])
def test_fit_is_exact(text, width):  # type: ignore[no-untyped-def]
    out = fit(text, width)
    assert cell_len(out) == width
    if cell_len(text) > width:
        assert out.rstrip().endswith("…")
    else:
        assert out.rstrip() == text.rstrip()


NOW = datetime(2026, 5, 1, tzinfo=UTC)
HOSTILE = [
    Message(uid=1, uidvalidity=1, from_name="张伟" * 20, from_addr="zhang@example.cn", subject="请帮我查看" * 30,
            internaldate=NOW - timedelta(days=3)),
    Message(uid=4242, uidvalidity=1, from_addr="a@b.example", subject="plain", internaldate=NOW),
    Message(uid=9_999_999, uidvalidity=1, from_name="Ｆｕｌｌ Ｗｉｄｔｈ", from_addr="f@w.example",
            subject="\x1b[2J\u202e" + "ｘ" * 100, internaldate=NOW - timedelta(weeks=60)),
    Message(uid=7, uidvalidity=1, from_name="Zoë " + "e\u0301" * 40, from_addr="z@e.example", subject="😀" * 80,
            project_path="grp/" + "项目" * 20, internaldate=NOW - timedelta(hours=5)),
]


@pytest.mark.parametrize("width", [60, 80, 100, 120, 200])
def test_rows_fit_the_width_and_columns_line_up(width):  # type: ignore[no-untyped-def]
    lay = list_.layout(width)
    head = list_.header(lay)
    rows = [list_._row(m, NOW, lay) for m in HOSTILE]
    for line in [head, *rows]:
        assert cell_len(line) <= width - 1, (width, line)
        assert "\x1b" not in line
    # the SUBJECT column starts at the same cell on every line, whatever the script
    start = cell_len(head) - len("SUBJECT")
    for r, m in zip(rows, HOSTILE, strict=True):
        prefix = r[: len(r) - len(list_.fit(list_.inert(m.subject, limit=lay.subject + 1), lay.subject, pad=False))]
        assert cell_len(prefix) == start, (r, prefix)


def test_width_from_columns(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COLUMNS", "80")
    assert list_.terminal_width() == 80
    monkeypatch.setenv("COLUMNS", "3")
    assert list_.terminal_width() == 20  # absurd: still a usable layout
    monkeypatch.delenv("COLUMNS")
    monkeypatch.setattr(sys, "__stdout__", io.StringIO())  # not a terminal
    assert list_.terminal_width() == 120


# --- triage-tui is not on PATH after the README's install -----------------------------------------

def test_errors_name_the_program_as_it_was_called(monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    exe = tmp_path / ".venv" / "bin" / "triage-tui"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [".venv/bin/triage-tui", "list", "--read-only"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # not on PATH, as right after `pip install -e .`
    assert cli_mod.invoked_as() == ".venv/bin/triage-tui"
    code, _, err = run(["list", "--read-only"])
    assert code == 2 and "put it before the subcommand: .venv/bin/triage-tui --read-only list" in err
    monkeypatch.setenv("PATH", f"{exe.parent}:/usr/bin:/bin")  # activated: the short name works
    assert cli_mod.invoked_as() == "triage-tui"
    monkeypatch.setattr(sys, "argv", ["/tmp/we ird/triage-tui"])  # a path with a space is quoted
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert cli_mod.invoked_as() == "'/tmp/we ird/triage-tui'"


def test_readme_says_where_the_command_is():  # type: ignore[no-untyped-def]
    from pathlib import Path

    text = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    install = text.index("pip install -q -e .")
    after = text[install:]
    # the first prose after the install says the command is in the virtualenv (or activate)
    note = after[after.index("```", after.index("\n")) + 3:][:400]
    assert ".venv/bin/triage-tui" in note and ". .venv/bin/activate" in note
    # the demo variants right after it are runnable as written
    demo = after[after.index("demo --read-only") - 40:][:200]
    assert ".venv/bin/triage-tui demo --read-only" in demo
    assert "JSON Lines" in text
