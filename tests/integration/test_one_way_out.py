"""One way out to a terminal: whatever mail, Redis, a server reply or the journal holds, the bytes
the CLI writes (stdout and stderr, text and --json) carry no control, bidi or invisible character.

Run as a real subprocess so the check is on the bytes a terminal would receive (and a lone
surrogate from undecodable bytes would crash a strict UTF-8 stream rather than hide in a StringIO).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from tests.mailgen import message
from triage_tui.services.journal import _sealed

ROOT = Path(__file__).resolve().parent.parent.parent
PREFIX = "mail_room:gitlab:"
NOW = time.time()

#: What must never reach a terminal raw: C0 (but LF), DEL, C1, bidi and invisible format
#: characters, surrogates, line/paragraph separators.
_BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}

#: The absurd values, pasted wherever text comes from.
OSC52 = "\x1b]52;c;ZWNobyBwd25lZA==\x07"
TITLE = "\x1b]0;pwned\x07"
CSI = "\x1b[2J\x1b[31m"
PASTE_END = "\x1b[201~"
HOSTILE = [OSC52, TITLE, CSI, PASTE_END, "\x9b6n", "\x9d0;t\x9c", "bell\x07", "nul\x00", "\u202egnp.exe",
           "\u2066iso\u2069", "zero\u200bwidth\u200d", "\ufeffbom", "soft\u00adhy", "tag\U000e0041\U000e007f",
           "\u061c\u200f", "del\x7f", "line\u2028sep", "cr\rlf\nx"]


def assert_inert_bytes(data: bytes, where: str) -> str:
    """``data`` is valid UTF-8 with no raw control byte and no dangerous code point."""
    for b in (0x00, 0x07, 0x08, 0x0D, 0x1B, 0x7F):
        assert bytes([b]) not in data, f"{where}: raw byte 0x{b:02x} in {data[:400]!r}"
    text = data.decode("utf-8")  # strict: no undecodable byte, no encoded surrogate
    bad = sorted({f"U+{ord(c):04X}" for c in text if c != "\n" and unicodedata.category(c) in _BAD_CATEGORIES})
    assert not bad, f"{where}: {bad} in {text[:400]!r}"
    return text


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    full.update(env)
    full["PYTHONPATH"] = str(ROOT)
    full.pop("PYTHONIOENCODING", None)
    full["LC_ALL"] = full["LANG"] = "C.UTF-8"
    return subprocess.run([sys.executable, "-m", "triage_tui", *args], env=full, capture_output=True,
                          timeout=60, cwd=ROOT, check=False)


def check(args: list[str], env: dict[str, str], *, code: int | tuple[int, ...] = 0) -> tuple[str, str]:
    p = run_cli(args, env)
    codes = code if isinstance(code, tuple) else (code,)
    assert p.returncode in codes, (args, p.returncode, p.stderr[-2000:])
    out = assert_inert_bytes(p.stdout, f"{args} stdout")
    err = assert_inert_bytes(p.stderr, f"{args} stderr")
    assert "internal error" not in err, err
    assert "Traceback" not in err or "--debug" in args, err
    if os.environ.get("SHOW_OUT"):
        print("\n$", args, p.returncode, "\n", out[:1500], "\n--stderr--\n", err[:1500])
    return out, err


def env_for(mailbox: Any, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**mailbox.env(), "TRIAGE_STATE_DIR": str(tmp_path / "state"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"), **extra}


# -- Redis: key names and values ---------------------------------------------------------------------


def test_locks_and_release_with_hostile_redis_keys_and_values(mailbox, redis_server, redis_client,
                                                             tmp_path):  # type: ignore[no-untyped-def]
    mailbox.seed([(message(subject=f"m{i}"), NOW - 3600, "") for i in range(6)])
    raw = redis.Redis(host="127.0.0.1", port=redis_server.port)  # bytes in, bytes out
    pipe = raw.pipeline(transaction=False)
    names: list[bytes] = [(PREFIX + h).encode("utf-8") for h in HOSTILE]
    names += [PREFIX.encode() + b"\xff\xfe\x1b[31m8bit\x9b", PREFIX.encode() + b"delivered:\x1b[6n",
              PREFIX.encode() + b"delivered:1\x00"]
    for i, name in enumerate(names):
        pipe.set(name, HOSTILE[i % len(HOSTILE)].encode("utf-8"), ex=300)
    # real locks (stuck: the messages are UNSEEN) whose values are hostile, UTF-8 and not
    for uid, value in ((1, OSC52.encode()), (2, b"\xc3\x28\x1b]0;t\x07"), (3, "\u202e1".encode()), (4, b"1")):
        pipe.set(f"{PREFIX}delivered:{uid}".encode(), value, ex=300)
    pipe.execute()
    env = env_for(mailbox, tmp_path, TRIAGE_REDIS_URL=redis_server.url)

    out, _ = check(["locks", "--limit", "0"], env)
    assert "\\x1b]52;c;" in out and "\\u202egnp.exe" in out  # shown, visibly, not interpreted
    assert "\\udcff\\udcfe\\x1b[31m8bit\\udc9b" in out  # undecodable bytes: visible, no crash
    out, _ = check(["locks", "--json"], env)
    doc = json.loads(out)
    keys = {e["key"] for e in doc["entries"]}
    # JSON keeps the data exact (escaped): every hostile name comes back as it is in Redis
    assert {n.decode("utf-8", "surrogateescape") for n in names} <= keys
    for args in (["release", "--all", "--dry-run"], ["release", "--all", "--dry-run", "--json"],
                 ["release", "--all", "--dry-run", "--mark-unseen"]):
        check(args, env)
    assert raw.exists(*names) == len(names)  # dry runs: nothing touched


# -- mail: subject, From, Message-ID in list, peek, decode ---------------------------------------------


def test_mail_text_in_list_peek_and_decode(mailbox, tmp_path):  # type: ignore[no-untyped-def]
    nasty = "".join(HOSTILE).replace("\r", "").replace("\n", "")
    msgs = [
        message(subject=nasty, from_=f"\u202eEvil{CSI} <a{PASTE_END}@evil.example>",
                message_id=f"<x{PASTE_END}; rm -rf ~{OSC52}@evil.example>"),
        message(subject="=?utf-8?q?enc=1B]52;c;ZXZpbA=3D=3D=07_=E2=80=AE=E2=80=8B_end?=",
                from_="=?utf-8?b?G10wO3B3bmVkBw==?= <b@evil.example>"),
        b"Subject: raw 8-bit \xff\x9b2J\x1b[31m \xe2\x80\xae\r\nMessage-ID: <\x1b]52;c;eA==\x07@x>\r\n\r\nbody\r\n",
        # a header that would forge lines of its own if split with str.splitlines()
        b"Subject: hi\xc2\x85X-Forged-1: yes\x0cX-Forged-2: yes\xe2\x80\xa8X-Forged-3: yes\r\n\r\nb\r\n",
        message(key=None, to=f"incoming+grp-1-{TITLE}\u202e-issue@incoming.gitlab.example.com",
                extra={"References": f"<reply-{OSC52}@incoming.gitlab.example.com>", "Cc": f"x{CSI}@y"}),
    ]
    mailbox.seed([(m, NOW - 3600, "") for m in msgs])
    env = env_for(mailbox, tmp_path)
    out, _ = check(["list"], env)
    assert "\\x1b]52;c;" in out
    check(["list", "--json"], env)
    for uid in ("1", "2", "3", "4", "5"):
        out, _ = check(["peek", uid], env)
        check(["peek", uid, "--json"], env)
    out, _ = check(["peek", "4"], env)
    assert not [line for line in out.split("\n") if line.startswith("X-Forged")], out
    out, _ = check(["peek", "1"], env)
    assert "Message-ID: <x\\x1b[201~; rm -rf ~\\x1b]52;c;" in out
    template = "incoming+%{key}@incoming.gitlab.example.com"
    for i, raw in enumerate(msgs):
        path = tmp_path / f"m{i}.eml"
        path.write_bytes(raw)
        check(["decode", "--address", template, "--message", str(path)], env, code=(0, 1))
        check(["decode", "--address", template, "--message", str(path), "--json"], env, code=(0, 1))
    check(["decode", "--address", "incoming+x@i.example", f"incoming+{OSC52}\u202e@i.example"], env,
          code=(0, 1, 2))
    # a filter value typed with escapes is echoed in the error or the status: inert too
    check(["list", "--filter", f"subject:{OSC52}\u202e"], env, code=(0, 1, 2))
    check(["list", "--filter", f"age>{CSI}"], env, code=(0, 1, 2))


# -- a server reply --------------------------------------------------------------------------------------


@contextmanager
def hostile_imap_server(reply: bytes) -> Iterator[int]:
    """A plaintext IMAP server that greets and then answers every command with ``reply``."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] " + reply + b"\r\n")
            f = conn.makefile("rb")
            while not stop.is_set():
                line = f.readline()
                if not line:
                    return
                tag, _, rest = line.partition(b" ")
                cmd = rest.split(b" ", 1)[0].strip().upper()
                if cmd == b"CAPABILITY":
                    conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN " + b"\r\n" + tag + b" OK " + reply + b"\r\n")
                elif cmd == b"AUTHENTICATE" and len(rest.split()) == 2:
                    conn.sendall(b"+ \r\n")
                    f.readline()
                    conn.sendall(tag + b" NO [AUTHENTICATIONFAILED] " + reply + b"\r\n")
                elif cmd == b"LOGOUT":
                    conn.sendall(b"* BYE " + reply + b"\r\n" + tag + b" OK bye\r\n")
                    return
                else:
                    conn.sendall(tag + b" NO [AUTHENTICATIONFAILED] " + reply + b"\r\n")

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(2)
        srv.close()


SERVER_REPLY = (b"denied \x1b]52;c;ZWNobyBwd25lZA==\x07 \x1b]0;title\x07 \x9b2J \xc2\x9b6n \xe2\x80\xae"
                b"\xe2\x80\x8b \xff\xfe \x00nul")


def test_server_reply_text_in_error_lines(tmp_path):  # type: ignore[no-untyped-def]
    with hostile_imap_server(SERVER_REPLY) as port:
        env = {"TRIAGE_IMAP_HOST": "127.0.0.1", "TRIAGE_IMAP_PORT": str(port), "TRIAGE_IMAP_SECURITY": "none",
               "TRIAGE_REQUIRE_TLS": "false", "TRIAGE_IMAP_USER": "u", "TRIAGE_IMAP_PASSWORD": "pw",
               "TRIAGE_STATE_DIR": str(tmp_path / "state"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
        _, err = check(["list"], env, code=(1, 3))
        assert "error" in err
        check(["list", "--json"], env, code=(1, 3))
        check(["check"], env, code=(1, 2, 3))
        check(["check", "--json"], env, code=(1, 2, 3))
        # --debug: log records and the traceback quote the reply too
        _, err = check(["--debug", "list"], env, code=(1, 3))
        assert "Traceback" in err and "\\x1b]52;c;" in err


def test_mailbox_names_from_the_server_in_a_missing_mailbox_error(mailbox, tmp_path):  # type: ignore[no-untyped-def]
    """The error lists the server's folders as a hint; one is named with bidi and invisible
    characters (Dovecot refuses control characters in new names, not those). The configured
    name has escapes too, and Dovecot echoes it in its NO reply."""
    mailbox.seed([(message(subject="m"), NOW - 3600, "")])  # creates the Maildir
    c = mailbox.client()
    try:
        name = "Evil\u202e\u200b" + "x" * 3
        c.create_folder(name)  # modified UTF-7 on the wire; the name comes back decoded
    finally:
        c.logout()
    env = env_for(mailbox, tmp_path, TRIAGE_IMAP_MAILBOX="Nope")
    _, err = check(["list"], env, code=(1, 2, 3))
    assert "does not exist" in err and "Evil\\u202e\\u200bxxx" in err
    check(["check"], env, code=(1, 2, 3))
    # a configured name with escapes is refused before it reaches the server, and said inert
    env = env_for(mailbox, tmp_path, TRIAGE_IMAP_MAILBOX=f"Nope{TITLE}\u202e")
    _, err = check(["list"], env, code=(2,))
    assert "U+001B" in err


# -- the journal -----------------------------------------------------------------------------------------


def _rewrite(journal: Path, records: list[dict[str, Any]]) -> None:
    """Records rewritten as whoever can write the journal could (with a CRC that fits: it is no
    defence against them, only against a disk)."""
    journal.write_bytes(b"".join(_sealed(json.dumps({k: v for k, v in r.items() if k != "crc"})) for r in records))


def test_undo_reads_a_journal_record_with_hostile_fields(mailbox, tmp_path):  # type: ignore[no-untyped-def]
    mailbox.seed([(message(subject=f"m{i}"), NOW - 3600, "") for i in range(3)])
    env = env_for(mailbox, tmp_path)
    check(["mark-seen", "--uids", "1:2", "--yes"], env)
    journal = tmp_path / "state" / "audit.jsonl"
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    for rec in records:
        rec.update(time=f"2026{CSI}", os_user=f"root{OSC52}", host=f"\u202eh{TITLE}")
    _rewrite(journal, records)
    out, _ = check(["undo", "--dry-run"], env)
    assert "\\x1b]52;c;" in out and "\\u202eh" in out
    check(["undo", "--dry-run", "--json"], env)
    # a hostile op id: the record is refused as damaged (exit 4), and the refusal is inert too
    hostile = [dict(rec, op=rec["op"] + PASTE_END) for rec in records]
    _rewrite(journal, hostile)
    _, err = check(["undo", "--dry-run"], env, code=(4,))
    assert "damaged" in err and "\\x1b[201~" in err
    # the UIDVALIDITY refusal quotes the record's time
    for rec in records:
        rec["uidvalidity"] = 1
    _rewrite(journal, records)
    _, err = check(["undo", "--dry-run"], env, code=4)
    assert "\\x1b[2J" in err
