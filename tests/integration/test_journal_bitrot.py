"""The audit journal on a disk that changes bytes, against the real Dovecot: undo reverts what
the journal says we changed, so a record read back wrong is a change nobody asked for. Found by
flipping bits in a real journal: ``"changed": "1:5"`` read as ``"1:7"`` or ``"5:9"`` made undo
un-see messages mail_room had taken since (GitLab would act on them a second time)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from tests.conftest import Mailbox
from tests.integration.test_undo_exact import store
from tests.mailgen import backlog
from triage_tui.domain import uidset
from triage_tui.services.journal import default_path
from triage_tui.services.plan_types import LEFT_UNPROVEN

NOW = time.time()


def _mark_1_to_5(mb: Mailbox, cli: Any) -> None:
    mb.seed(backlog(20, now=NOW))
    r = cli(["mark-seen", "--uids", "1:5", "--uidvalidity", str(mb.uidvalidity()), "--yes"], env=mb.env())
    assert r.code == 0, r.err
    store(mb, list(range(6, 21)), b"\\Seen")  # mail_room takes them


def _planned(cli: Any, mb: Mailbox) -> tuple[set[int], dict[str, Any]] | None:
    r = cli(["undo", "--dry-run", "--json"], env=mb.env())
    if r.code != 0:
        assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err, r.err
        return None
    out = json.loads(r.out)
    return set(uidset.parse(out["uids"])) if out.get("uids") else set(), out


def test_a_flipped_bit_in_a_uid_set_or_modseq_never_widens_an_undo(mailbox: Mailbox, cli: Any) -> None:
    _mark_1_to_5(mailbox, cli)
    path = default_path()
    pristine = path.read_bytes()
    spots = [m.start(1) + k for m in re.finditer(rb'"(?:changed|done|modseq|targets|uids)": "?([^",]+)', pristine)
             for k in range(len(m.group(1)))]
    assert len(spots) >= 10
    for i in spots:
        for bit in range(7):
            data = bytearray(pristine)
            data[i] ^= 1 << bit
            path.write_bytes(bytes(data))
            got = _planned(cli, mailbox)
            assert got is None or got[0] <= {1, 2, 3, 4, 5}, (i, bit, bytes(data[i - 12:i + 4]), got)
    path.write_bytes(pristine)
    r = cli(["undo", "--yes"], env=mailbox.env())
    assert r.code == 0, r.err
    assert mailbox.search("UNSEEN") == [1, 2, 3, 4, 5]


def test_a_damaged_end_record_undoes_only_the_confirmed_chunks(mailbox: Mailbox, cli: Any) -> None:
    _mark_1_to_5(mailbox, cli)
    path = default_path()
    lines = path.read_bytes().splitlines(keepends=True)
    end = next(i for i, ln in enumerate(lines) if b'"phase": "end"' in ln)
    lines[end] = lines[end].replace(b'"changed": "1:5"', b'"changed": "1:7"')
    path.write_bytes(b"".join(lines))
    r = cli(["undo", "--yes", "--json"], env=mailbox.env())
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["changed"] == 5
    assert mailbox.search("UNSEEN") == [1, 2, 3, 4, 5]


def test_a_record_from_before_the_crc_can_not_widen_an_undo_either(mailbox: Mailbox, cli: Any) -> None:
    """Lines written before records carried a CRC are read as they are: the end record's
    ``changed`` must still fall inside the chunks the journal confirmed."""
    _mark_1_to_5(mailbox, cli)
    path = default_path()
    old = []
    for ln in path.read_bytes().splitlines():
        rec = json.loads(ln)
        del rec["crc"]
        if rec.get("phase") == "end":
            rec["changed"] = "1:7"
        old.append(json.dumps(rec).encode() + b"\n")
    path.write_bytes(b"".join(old))
    got = _planned(cli, mailbox)
    assert got is not None
    uids, out = got
    assert uids == {1, 2, 3, 4, 5}
    assert {"reason": LEFT_UNPROVEN, "count": 2, "uids": "6:7"} in out["left_alone"], out["left_alone"]
    r = cli(["undo", "--yes"], env=mailbox.env())
    assert r.code == 0, r.err
    assert mailbox.search("UNSEEN") == [1, 2, 3, 4, 5]


def test_a_modseq_read_higher_never_restores_what_mail_room_took_since(mailbox: Mailbox, cli: Any) -> None:
    """Undo leaves alone what changed after our change (SEARCH MODSEQ <ours + 1>): a chunk's
    MODSEQ read one higher would hide mail_room's change to one of them, and un-see it."""
    _mark_1_to_5(mailbox, cli)
    store(mailbox, [3], b"\\Deleted")  # mail_room took 3 after our change
    path = default_path()
    data = path.read_bytes()
    m = re.search(rb'"done": "1:5", "count": 5, "modseq": (\d+)', data)
    assert m is not None
    c = mailbox.client()
    try:
        top = int(c.folder_status("INBOX", [b"HIGHESTMODSEQ"])[b"HIGHESTMODSEQ"])  # 3's change
    finally:
        c.logout()
    assert top > int(m.group(1))
    higher = str(top).encode()
    path.write_bytes(data[:m.start(1)] + higher + data[m.end(1):])
    r = cli(["undo", "--yes", "--json"], env=mailbox.env())
    assert 3 not in mailbox.search("UNSEEN")
    # the chunk's line fails its CRC: none of its UIDs is proven ours, none restored, all named
    assert r.code == 0, r.err
    assert json.loads(r.out)["left_alone"] == [{"reason": LEFT_UNPROVEN, "count": 5, "uids": "1:5"}]
    assert mailbox.search("UNSEEN") == []


def test_nothing_to_undo_says_when_lines_were_skipped(mailbox: Mailbox, cli: Any) -> None:
    """Every record of the change damaged: "nothing to undo" alone would read as "you changed
    nothing"; it says how many lines it could not read."""
    _mark_1_to_5(mailbox, cli)
    path = default_path()
    path.write_bytes(path.read_bytes().replace(b'"action": "mark-seen"', b'"action": "mark-seeN"'))
    r = cli(["undo", "--dry-run"], env=mailbox.env())
    assert r.code == 4 and "nothing to undo" in r.err and "4 damaged line(s) skipped" in r.err, r.err
    assert len(r.err.strip().splitlines()) == 1
