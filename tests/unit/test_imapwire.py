import io

import pytest

from triage_tui.services.imapwire import (
    ProtocolError,
    Response,
    Wire,
    parse_completion,
    parse_fetch,
    parse_internaldate,
    parse_tokens,
    redact,
)


def test_parse_fetch_with_literal():
    header = b"From: a@b\r\nSubject: x\r\n\r\n"
    resp = Response([b'* 12 FETCH (UID 500 FLAGS (\\Seen $Junk) INTERNALDATE " 1-Feb-2024 10:11:12 +0100" '
                     b"RFC822.SIZE 1234 BODY[HEADER.FIELDS (FROM SUBJECT)] {%d}\r\n" % len(header), b")\r\n"],
                    [header])
    rec = parse_fetch(resp)
    assert rec is not None
    assert (rec.seq, rec.uid, rec.flags, rec.size, rec.body) == (12, 500, ("\\Seen", "$Junk"), 1234, header)
    assert rec.internaldate is not None and rec.internaldate.isoformat() == "2024-02-01T10:11:12+01:00"


def test_parse_fetch_quoted_and_nil_body_any_order():
    resp = Response([b'* 1 FETCH (BODY[HEADER.FIELDS (FROM)] "From: q\\"x\\"" RFC822.SIZE 5 UID 9 FLAGS ())\r\n'], [])
    rec = parse_fetch(resp)
    assert rec is not None and rec.uid == 9 and rec.body == b'From: q"x"' and rec.flags == ()
    rec = parse_fetch(Response([b"* 1 FETCH (UID 3 BODY[HEADER.FIELDS (FROM)] NIL)\r\n"], []))
    assert rec is not None and rec.body == b""


def test_not_a_fetch():
    assert parse_fetch(Response([b"* 3 EXPUNGE\r\n"], [])) is None
    assert parse_fetch(Response([b"* OK [ALERT] hi\r\n"], [])) is None


def test_tokens_errors():
    with pytest.raises(ProtocolError):
        parse_tokens([b"* 1 FETCH (UID 1\r\n"], [])
    with pytest.raises(ProtocolError):
        parse_tokens([b"* 1 FETCH (BODY[] {3}\r\n", b")\r\n"], [])


def test_completion():
    c = parse_completion(b"A12 OK [MODIFIED 7,9:11] Store completed\r\n")
    assert c.ok and c.code == "MODIFIED" and c.code_arg == "7,9:11" and c.text == "Store completed"
    c = parse_completion(b"A13 BAD Too long argument\r\n")
    assert not c.ok and c.status == "BAD" and c.code is None


def test_internaldate():
    assert parse_internaldate(b"bogus") is None
    assert parse_internaldate(b"31-Feb-2024 00:00:00 +0000") is None
    assert parse_internaldate(b"01-Jan-2024 00:00:00 -0000").utcoffset().total_seconds() == 0


def test_redact_never_shows_credentials():
    assert "hunter2" not in redact(b"LOGIN user hunter2")
    assert "tok" not in redact(b"AUTHENTICATE XOAUTH2 dG9r")


class _FakeImap:
    def __init__(self, data: bytes) -> None:
        self.file = io.BytesIO(data)
        self.tagged_commands: dict[bytes, None] = {}
        self.sent = b""
        self._n = 0

    def read(self, n: int) -> bytes:
        return self.file.read(n)

    def send(self, data: bytes) -> None:
        self.sent += data

    def _new_tag(self) -> bytes:
        self._n += 1
        return b"T%d" % self._n


def test_pipeline_matches_tags_and_bye():
    fake = _FakeImap(b"* 1 FETCH (UID 5 FLAGS ())\r\nT1 OK done\r\nT2 NO [SERVERBUG] x\r\n")
    pipe = Wire(fake).pipeline(2)  # type: ignore[arg-type]
    pipe.submit(b"UID FETCH 5 (FLAGS)", "a")
    pipe.submit(b"UID FETCH 6 (FLAGS)", "b")
    events = list(pipe.events())
    assert fake.sent == b"T1 UID FETCH 5 (FLAGS)\r\nT2 UID FETCH 6 (FLAGS)\r\n"
    assert [e[0] for e in events if isinstance(e, tuple)] == ["a", "b"]
    assert not events[-1][1].ok

    from triage_tui.errors import ConnectionLost

    pipe = Wire(_FakeImap(b"* BYE going down\r\n")).pipeline(1)  # type: ignore[arg-type]
    pipe.submit(b"NOOP")
    with pytest.raises(ConnectionLost):
        list(pipe.events())
    pipe = Wire(_FakeImap(b"")).pipeline(1)  # type: ignore[arg-type]
    pipe.submit(b"NOOP")
    with pytest.raises(ConnectionLost):
        list(pipe.events())


def test_pipeline_announces_each_window_before_sending_it_without_draining():
    """Write-ahead without a stall: the next window is announced (journaled) right before its
    first command goes, while the previous window's last command is still in flight."""
    fake = _FakeImap(b"".join(b"T%d OK done\r\n" % i for i in range(1, 6)))
    log: list[object] = []
    fake.send = lambda data: log.append(data.split(b" ", 1)[0])  # type: ignore[method-assign]

    def announce(ctxs: list[object]) -> bool:
        log.append(list(ctxs))
        return True

    pipe = Wire(fake).pipeline(2, announce=announce)  # type: ignore[arg-type]
    for c in "abcde":
        pipe.submit(b"NOOP", c)
    done = [e[0] for e in pipe.events() if isinstance(e, tuple)]
    assert done == list("abcde")
    # T2 is still unanswered when [c, d] is announced and T3 sent
    assert log == [["a", "b"], b"T1", b"T2", ["c", "d"], b"T3", b"T4", ["e"], b"T5"]


def test_pipeline_sends_nothing_more_once_an_announcement_fails():
    fake = _FakeImap(b"".join(b"T%d OK done\r\n" % i for i in range(1, 6)))
    answers = iter([True, False])
    pipe = Wire(fake).pipeline(2, announce=lambda _ctxs: next(answers))  # type: ignore[arg-type]
    for c in "abcde":
        pipe.submit(b"NOOP", c)
    done = [e[0] for e in pipe.events() if isinstance(e, tuple)]
    assert done == ["a", "b"]  # what was in flight completes
    assert pipe.unsent == ["c", "d", "e"]
    assert fake.sent == b"T1 NOOP\r\nT2 NOOP\r\n"


def test_pipeline_skims_runs_of_one_line_answers_across_buffer_edges():
    """Runs of ``* n FETCH (UID u MODSEQ (m))`` go to the skim callback in bulk, whatever the
    read buffer's edges; a line cut by an edge, or worded otherwise, comes as a Response."""
    import re

    lines = [b"* %d FETCH (UID %d MODSEQ (%d))\r\n" % (i, 100 + i, 5000 + i) for i in range(1, 301)]
    lines.insert(150, b"* 7 EXPUNGE\r\n")
    lines.insert(200, b"* 8 FETCH (MODSEQ (1) UID 999)\r\n")
    data = b"".join(lines[:250]) + b"T1 OK done\r\n" + b"".join(lines[250:]) + b"T2 OK done\r\n"
    for size in (64, 100, 4096):
        fake = _FakeImap(b"")
        fake.file = io.BufferedReader(io.BytesIO(data), buffer_size=size)  # type: ignore[assignment]
        skimmed: list[bytes] = []
        run = re.compile(rb"(?:\* \d+ FETCH \(UID \d+ MODSEQ \(\d+\)\)\r\n)+")
        pipe = Wire(fake).pipeline(2, skim=(run, skimmed.append))  # type: ignore[arg-type]
        pipe.submit(b"UID STORE 1:150 +FLAGS.SILENT (\\Seen)", "a")
        pipe.submit(b"UID STORE 151:300 +FLAGS.SILENT (\\Seen)", "b")
        events = list(pipe.events())
        done = [e[0] for e in events if isinstance(e, tuple)]
        slow = [e.first for e in events if not isinstance(e, tuple)]
        assert done == ["a", "b"]
        assert b"* 7 EXPUNGE\r\n" in slow and b"* 8 FETCH (MODSEQ (1) UID 999)\r\n" in slow
        # every line is seen exactly once, in bulk or as a Response
        got = b"".join(skimmed).split(b"\r\n")[:-1]
        assert sorted(got + [s.rstrip(b"\r\n") for s in slow]) == sorted(x.rstrip(b"\r\n") for x in lines)
        if size == 4096:
            assert len(slow) <= 2 + 4  # the two odd lines, and at most one cut line per refill


def test_esearch_answers_are_told_apart_by_their_tag() -> None:
    """Pipelined SEARCHes (a warm listing's burst) are answered by ``* ESEARCH (TAG "t")``: each
    set is its own tag's (no ALL: no match). Answers that cannot be told apart (one without its
    TAG, a tag answered twice, ALL followed by something else than a set) give None: the
    listing then asks one command at a time."""
    from triage_tui.services.imap import _esearch_by_tag
    from triage_tui.services.imapwire import Response

    def r(line: bytes) -> Response:
        return Response([line], [])

    good = [r(b'* ESEARCH (TAG "A2") UID ALL 7:9'), r(b'* ESEARCH (TAG "A1") UID'), r(b'* ESEARCH (TAG "A4") UID ALL 3,1')]
    assert _esearch_by_tag(good) == {b"A2": "7:9", b"A1": "", b"A4": "3,1"}
    assert _esearch_by_tag([]) == {}
    for bad in ([r(b"* ESEARCH UID ALL 1:5")], [r(b'* ESEARCH (TAG "A1") UID ALL (1 2)')],
                [r(b'* ESEARCH (TAG "A1") UID ALL 1'), r(b'* ESEARCH (TAG "A1") UID ALL 2')],
                [r(b"* ESEARCH")], [r(b'* ESEARCH ("TAG")')], [r(b"* ESEARCH (TAG)")],
                [r(b'* ESEARCH (TAG "A1") UID ALL')], [r(b'* ESEARCH (TAG ("A1")) UID ALL 1')]):
        assert _esearch_by_tag(bad) is None, bad
