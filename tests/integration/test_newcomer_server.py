"""Issue 12 §4 against the real Dovecot: ``--uids 5-10`` marks exactly 5..10, and plain ``list``
at 80 columns keeps every row on one line with straight columns, CJK names included."""

from __future__ import annotations

import json
import time

from tests.mailgen import backlog, message
from triage_tui.domain.width import cell_len

NOW = time.time()


def test_mark_seen_uids_with_a_dash(mailbox, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(14, now=NOW))
    r = cli(["mark-seen", "--uids", "5-10,12", "--yes", "--json"], env=mailbox.env())
    assert r.code == 0, r.err
    assert json.loads(r.lines[-1])["changed"] == 7
    assert mailbox.search("SEEN") == [5, 6, 7, 8, 9, 10, 12]


def test_mark_seen_uids_dash_and_colon_mean_the_same(mailbox, cli):  # type: ignore[no-untyped-def]
    mailbox.seed(backlog(8, now=NOW))
    r = cli(["mark-seen", "--uids", "2:3,6-7", "--yes"], env=mailbox.env())
    assert r.code == 0, r.err
    assert mailbox.search("SEEN") == [2, 3, 6, 7]


def test_list_fits_80_columns_by_display_width(mailbox, cli):  # type: ignore[no-untyped-def]
    mailbox.seed([
        (message(subject="请帮我查看这个问题" * 8, from_="=?utf-8?b?5byg5Lyf5byg5Lyf5byg5Lyf5byg5Lyf?= <zhang@example.cn>",
                 date=NOW - 3600), NOW - 3600, ""),
        (message(subject="Plain ASCII subject that is quite long " * 4, date=NOW - 60), NOW - 60, ""),
        (message(subject="日本語の件名", from_="山田太郎 <yamada@example.jp>", date=NOW - 7200), NOW - 7200, ""),
    ])
    r = cli(["list"], env={**mailbox.env(), "COLUMNS": "80"})
    assert r.code == 0, r.err
    lines = r.lines
    assert len(lines) == 4, r.out  # the header and one line per message: nothing wrapped
    for line in lines:
        assert cell_len(line) <= 79, line
    head = lines[0]
    assert any("张伟" in line for line in lines) and any("山田" in line for line in lines)
    # every row's PROJECT/KIND column begins at the same display cell as in the header
    col = cell_len(head[: head.index("PROJECT/KIND")])
    for line in lines[1:]:
        cells = 0
        for i, ch in enumerate(line):
            if cells == col:
                assert line[i - 1] == " ", line
                break
            cells += cell_len(ch)
        else:
            raise AssertionError(line)
