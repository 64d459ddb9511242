"""mark-seen against one raw ``UID STORE``, interleaved in one run, on a real Dovecot (issue 13, goal 4).

    .venv/bin/python bench/bench_markseen.py --n 20000 --runs 5 [--selector older|uids] [--chunk 1000]

Seeds N UNSEEN messages one every 30 s (the older half by INTERNALDATE is what ``--older-than``
selects), then per run, interleaved:

* **ours**: ``triage-tui mark-seen --older-than AGE --yes`` (or ``--uids 1:N/2``) as a subprocess
  (process start, login, selection, plan, the CONDSTORE-guarded, journaled STOREs, logout);
* **raw**: a bare socket: LOGIN, SELECT, one ``UID STORE <same set> +FLAGS.SILENT (\\Seen)``, LOGOUT,
  reading to each tagged OK without parsing (the protocol floor for the same change).

Between runs a raw ``UID STORE 1:* -FLAGS.SILENT (\\Seen $TriageIgnored)`` puts every message back to
UNSEEN. Prints min / median / max of each and the ratio of the medians. ``--inproc`` also times
the same command run in this process (no interpreter start, imports warm).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.mailgen import message  # noqa: E402
from tests.servers import PASSWORD, Dovecot, start_dovecot  # noqa: E402

CLI = [sys.executable, "-m", "triage_tui"]
SPACING = 30.0


def seed(server: Dovecot, n: int, now: float) -> str:
    user = server.new_user("ms")
    body = "Hello,\r\n" + "Some text of the message body.\r\n" * 20
    server.seed(user, ((message(subject=f"Pipeline failed #{i}", date=now - (n - i) * SPACING, body=body),
                        now - (n - i) * SPACING, "") for i in range(n)))
    return user


class Raw:
    """A bare IMAP socket: send a command, read to its tagged answer, parse nothing."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""
        self.tag = 0
        self._until(b"* OK")

    def _until(self, prefix: bytes) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            while i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                if line.startswith(prefix):
                    return line
                i = self.buf.find(b"\r\n")
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def cmd(self, text: str) -> bytes:
        self.tag += 1
        t = f"r{self.tag}".encode()
        self.sock.sendall(t + b" " + text.encode() + b"\r\n")
        line = self._until(t + b" ")
        if not line.startswith(t + b" OK"):
            raise RuntimeError(line.decode(errors="replace"))
        return line

    def close(self) -> None:
        try:
            self.cmd("LOGOUT")
        finally:
            self.sock.close()


def raw_store(port: int, user: str, uidset: str, flags: str = "+FLAGS.SILENT (\\Seen)") -> float:
    t = time.perf_counter()
    r = Raw(port)
    r.cmd(f"LOGIN {user} {PASSWORD}")
    r.cmd("SELECT INBOX")
    r.cmd(f"UID STORE {uidset} {flags}")
    r.close()
    return time.perf_counter() - t


def reset(port: int, user: str) -> None:
    raw_store(port, user, "1:*", "-FLAGS.SILENT (\\Seen $TriageIgnored)")


def unseen_count(port: int, user: str) -> int:
    r = Raw(port)
    r.cmd(f"LOGIN {user} {PASSWORD}")
    r.cmd("EXAMINE INBOX")
    r.tag += 1
    r.sock.sendall(f"r{r.tag} UID SEARCH RETURN (COUNT) UNSEEN\r\n".encode())
    line = r._until(b"* ESEARCH")
    r._until(f"r{r.tag} ".encode())
    r.close()
    return int(line.rsplit(b" ", 1)[1])


def run_ours(args: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run([*CLI, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"mark-seen failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return elapsed


def run_inproc(args: list[str], env: dict[str, str]) -> float:
    import contextlib
    import io

    from triage_tui.cli import main

    old = dict(os.environ)
    os.environ.update(env)
    try:
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = main(args)
        elapsed = time.perf_counter() - t
    finally:
        os.environ.clear()
        os.environ.update(old)
    if code:
        raise SystemExit(f"in-process mark-seen failed ({code})")
    return elapsed


def stats(xs: list[float]) -> str:
    return f"min {min(xs):6.3f}  median {statistics.median(xs):6.3f}  max {max(xs):6.3f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--selector", choices=["older", "uids"], default="older")
    ap.add_argument("--chunk", type=int, default=None, help="pass --chunk N to ours (default: its own default)")
    ap.add_argument("--inproc", action="store_true", help="also time ours in this process")
    a = ap.parse_args()
    server = start_dovecot(tls=False)
    try:
        now = time.time()
        user = seed(server, a.n, now)
        port = server.imap_port
        half = a.n // 2
        # the older half, by INTERNALDATE: message i is (n - i) * SPACING old; age > (n - half) * SPACING - 15
        env = {**os.environ, "TRIAGE_IMAP_HOST": "127.0.0.1", "TRIAGE_IMAP_PORT": str(port),
               "TRIAGE_IMAP_SECURITY": "none", "TRIAGE_IMAP_USER": user, "TRIAGE_IMAP_PASSWORD": PASSWORD,
               "TRIAGE_STATE_DIR": str(server.base / "state-bench"), "PYTHONPATH": str(ROOT)}
        env = {k: v for k, v in env.items() if not k.startswith("TRIAGE_ADDRESS")}
        reset(port, user)  # first SELECT builds Dovecot's index
        ours_t: list[float] = []
        inproc_t: list[float] = []
        raw_t: list[float] = []
        for run in range(a.runs):
            age = f"{int(time.time() - now + (a.n - half) * SPACING - SPACING / 2)}s"
            sel = ["--older-than", age] if a.selector == "older" else ["--uids", f"1:{half}"]
            args = [*(["--chunk", str(a.chunk)] if a.chunk else []), "mark-seen", *sel, "--yes"]
            reset(port, user)
            ours_t.append(run_ours(args, env))
            marked = a.n - unseen_count(port, user)
            if a.inproc:
                reset(port, user)
                inproc_t.append(run_inproc(args, env))
            reset(port, user)
            raw_t.append(raw_store(port, user, f"1:{marked}"))
            print(f"run {run + 1}: ours {ours_t[-1]:.3f} s ({marked} marked)"
                  + (f"  in-process {inproc_t[-1]:.3f} s" if a.inproc else "") + f"  raw {raw_t[-1]:.3f} s",
                  flush=True)
        print(f"\n{a.n} messages, mark-seen of {marked} ({a.selector}), {a.runs} interleaved runs")
        print(f"  ours (subprocess) {stats(ours_t)}")
        if inproc_t:
            print(f"  ours (in-process) {stats(inproc_t)}")
        print(f"  raw UID STORE     {stats(raw_t)}")
        print(f"  ratio of medians  x{statistics.median(ours_t) / statistics.median(raw_t):.2f}"
              + (f"  (in-process x{statistics.median(inproc_t) / statistics.median(raw_t):.2f})" if inproc_t else ""))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
