"""Ours beside the protocol floor and the runbook, in ONE run, interleaved (issue 13).

    .venv/bin/python bench/bench_floor.py --n 10000 --rounds 5 [--rtt-ms 50] [--count-chunks 250 1000]

Against a real Dovecot (tests.servers) seeded by bench/realistic.py (~90 % UNSEEN), each round
runs, in alternating order:

* **ours, cold**: ``triage-tui list --json`` in a subprocess with a fresh cache directory
  (``XDG_CACHE_HOME``; a header cache, if the CLI has one by then, starts empty) and **warm**:
  the same command again with that cache directory. Wall time, CPU (user+sys from ``os.wait4``),
  peak RSS. The worktree's code is what runs (``python -m triage_tui`` with ``PYTHONPATH``).
* **the floor**: a raw-socket client (plain ``socket``, no imaplib) sending the commands ours
  sends (captured from ours through the proxy before the rounds: its UID SEARCH and its UID FETCH
  chunks with the same items, same window of commands in flight), after ``LOGIN`` and ``EXAMINE``,
  reading to each tagged OK without parsing anything (bytes are scanned for the tag and dropped).
  Its CPU is the thread's CPU time (the proxy threads are not counted).
* **the runbook**: one ``UID FETCH <uid> RFC822.HEADER`` per message through imapclient, each
  parsed with ``email`` (the runbook's ``Mail.read_from_string``), **timed on a sample of
  ``--sample`` UNSEEN messages and scaled to all of them** (it is linear: one round trip each).
* **mark-seen**: ``triage-tui mark-seen --all --yes`` (every UNSEEN message: \\Seen and the ignore
  keyword, journaled) versus one raw ``UID STORE <set> +FLAGS.SILENT (\\Seen)`` on the same set in a
  full raw session (connect, LOGIN, SELECT, STORE, LOGOUT), and a second floor with ours' exact
  flags and modifiers (``ENABLE CONDSTORE``, ``UNCHANGEDSINCE``, ``\\Seen $TriageIgnored``; its
  per-message MODSEQ answers read unparsed): what the server costs for our change. Flags are reset
  (untimed) before each.

``--rtt-ms`` puts tests/proxy.py's LatencyProxy (each direction delayed by rtt/2) in front of
Dovecot for ALL methods. Round trips are counted by that proxy (a zero-delay one when
``--rtt-ms 0``, in an untimed pass): connection setups plus every command the client sent while
it had nothing in flight. ``--count-chunks`` lists ours' commands and round trips for several
``--chunk`` sizes, to show they grow with N/chunk/window, not with N.

Prints a markdown table ready for bench/RESULTS.md. Keep development runs at <= 20k messages.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import imapclient  # noqa: E402

from bench.realistic import seed  # noqa: E402
from tests.proxy import LatencyProxy  # noqa: E402
from tests.servers import PASSWORD, Dovecot, start_dovecot  # noqa: E402
from triage_tui.domain import uidset  # noqa: E402

CLI = [sys.executable, "-m", "triage_tui"]


@dataclass
class Sample:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    commands: int | None = None
    round_trips: int | None = None
    note: str = ""


# -- ours ----------------------------------------------------------------------------------------

def run_cli(args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall s, CPU s user+sys, peak RSS MiB) of one CLI run; exits on a failure."""
    t = time.perf_counter()
    with open(os.devnull, "wb") as devnull, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([*CLI, *args], env=env, stdout=devnull, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            raise SystemExit(f"triage-tui {' '.join(args)} failed ({code}): {err.read().decode(errors='replace')[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss // 1024


def cli_env(port: int, user: str, state: Path, cache: Path) -> dict[str, str]:
    # a real install has bytecode: PYTHONDONTWRITEBYTECODE (set in some sandboxes) would make
    # every start compile the package from source (main() compiles it once, untimed)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(TRIAGE_IMAP_HOST="127.0.0.1", TRIAGE_IMAP_PORT=str(port), TRIAGE_IMAP_SECURITY="none",
               TRIAGE_IMAP_USER=user, TRIAGE_IMAP_PASSWORD=PASSWORD, TRIAGE_STATE_DIR=str(state),
               TRIAGE_ADDRESS="incoming+%{key}@incoming.gitlab.example.com", XDG_CACHE_HOME=str(cache),
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def has_cache_flag() -> bool:
    out = subprocess.run([*CLI, "--help"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False).stdout
    return "--no-cache" in out


# -- the floor -----------------------------------------------------------------------------------

class Raw:
    """A raw IMAP client: sends command lines, reads to each tagged completion, parses nothing."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.n = 0
        while b"\r\n" not in self.buf:  # the greeting
            self._recv()
        self.buf[:] = b"\r\n"

    def _recv(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def send(self, command: bytes) -> bytes:
        self.n += 1
        tag = b"R%d" % self.n
        self.sock.sendall(tag + b" " + command + b"\r\n")
        return tag

    def wait(self, tag: bytes) -> bytes:
        needle = b"\r\n" + tag + b" "
        while True:
            i = self.buf.find(needle)
            if i >= 0:
                j = self.buf.find(b"\r\n", i + 2)
                if j >= 0:
                    line = bytes(self.buf[i + 2:j])
                    del self.buf[:j]
                    if line.split(b" ", 2)[1:2] != [b"OK"]:
                        raise RuntimeError(f"floor: {line[:200]!r}")
                    return line
            elif len(self.buf) > len(needle):
                del self.buf[:-len(needle)]  # nothing kept: the floor parses nothing
            self._recv()

    def run(self, command: bytes) -> bytes:
        return self.wait(self.send(command))

    def pipelined(self, commands: list[bytes], window: int) -> None:
        inflight: list[bytes] = []
        for c in commands:
            if len(inflight) >= window:
                self.wait(inflight.pop(0))
            inflight.append(self.send(c))
        for tag in inflight:
            self.wait(tag)

    def login(self, user: str) -> None:
        self.run(f'LOGIN "{user}" "{PASSWORD}"'.encode())

    def close(self) -> None:
        try:
            self.run(b"LOGOUT")
        except (ConnectionError, RuntimeError, OSError):
            pass
        self.sock.close()


def floor_list(port: int, user: str, search: bytes, fetches: list[bytes], window: int) -> tuple[float, float]:
    t, c = time.perf_counter(), time.thread_time()
    raw = Raw(port)
    raw.login(user)
    raw.run(b'EXAMINE "INBOX"')
    raw.run(search)
    raw.pipelined(fetches, window)
    raw.close()
    return time.perf_counter() - t, time.thread_time() - c


def floor_store(port: int, user: str, uidset_text: str) -> tuple[float, float]:
    t, c = time.perf_counter(), time.thread_time()
    raw = Raw(port)
    raw.login(user)
    raw.run(b'SELECT "INBOX"')
    raw.pipelined([f"UID STORE {part} +FLAGS.SILENT (\\Seen)".encode() for part in set_parts(uidset_text)], 8)
    raw.close()
    return time.perf_counter() - t, time.thread_time() - c


def floor_store_same(port: int, user: str, uidset_text: str) -> tuple[float, float]:
    """The floor with ours' flags and modifiers: ``ENABLE CONDSTORE``, then ``UID STORE <part>
    (UNCHANGEDSINCE <the SELECT's HIGHESTMODSEQ>) +FLAGS.SILENT (\\Seen $TriageIgnored)`` in the same
    8 KB parts, its per-message ``FETCH (UID MODSEQ)`` answers read and dropped unparsed: what the
    server itself costs for our exact change."""
    t, c = time.perf_counter(), time.thread_time()
    raw = Raw(port)
    raw.login(user)
    raw.run(b"ENABLE CONDSTORE")
    tag = raw.send(b'SELECT "INBOX"')
    while b"\r\n" + tag + b" " not in raw.buf:
        raw._recv()
    m = re.search(rb"HIGHESTMODSEQ (\d+)", bytes(raw.buf))
    if m is None:
        raise RuntimeError("floor: the SELECT gave no HIGHESTMODSEQ")
    mod = int(m.group(1))
    raw.wait(tag)
    raw.pipelined([f"UID STORE {part} (UNCHANGEDSINCE {mod}) +FLAGS.SILENT (\\Seen $TriageIgnored)".encode()
                   for part in set_parts(uidset_text)], 8)
    raw.close()
    return time.perf_counter() - t, time.thread_time() - c


def set_parts(uidset_text: str, limit: int = 8000) -> list[str]:
    """A UID set cut at commas into parts of at most ``limit`` bytes: one STORE per part (a
    fragmented 90k-message set is ~100 KB, over Dovecot's 64 KB command line). With few
    fragments this is the one STORE of the issue's floor."""
    parts: list[str] = []
    cur: list[str] = []
    size = 0
    for item in uidset_text.split(","):
        if cur and size + len(item) + 1 > limit:
            parts.append(",".join(cur))
            cur, size = [], 0
        cur.append(item)
        size += len(item) + 1
    if cur:
        parts.append(",".join(cur))
    return parts


def reset_flags(port: int, user: str, uidset_text: str) -> None:
    raw = Raw(port)
    raw.login(user)
    raw.run(b'SELECT "INBOX"')
    raw.pipelined([f"UID STORE {part} -FLAGS.SILENT (\\Seen $TriageIgnored)".encode()
                   for part in set_parts(uidset_text)], 8)
    raw.close()


# -- the runbook ---------------------------------------------------------------------------------

def runbook_list(port: int, user: str, sample: list[int]) -> tuple[float, float]:
    """One RFC822.HEADER fetch per message, parsed like Mail.read_from_string (wall, CPU) for the sample."""
    t, c = time.perf_counter(), time.thread_time()
    cl = imapclient.IMAPClient("127.0.0.1", port=port, ssl=False)
    cl.login(user, PASSWORD)
    cl.select_folder("INBOX", readonly=True)
    cl.search("UNSEEN")
    for uid in sample:
        raw = cl.fetch([uid], ["RFC822.HEADER"])[uid][b"RFC822.HEADER"]
        h = email.message_from_bytes(raw, policy=email.policy.default)
        _ = f"@{h['date']} from {h['from']} to {h['to']}. Subject: {h['subject']}"
    cl.logout()
    return time.perf_counter() - t, time.thread_time() - c


# -- the run -------------------------------------------------------------------------------------

def capture(proxy: LatencyProxy, fn: Callable[[], object]) -> tuple[list[bytes], int, int]:
    """(command lines without tags, lines sent, round trips) of ``fn`` through ``proxy``."""
    proxy.sent.clear()
    proxy.round_trips = proxy.lines_sent = 0
    fn()
    time.sleep(0.2 + proxy.rtt)  # the last bytes through the pumps
    lines = [c.split(b" ", 1)[1] if b" " in c else c for c in proxy.commands()]
    return lines, proxy.lines_sent, proxy.round_trips


def fmt_s(v: float) -> str:
    return f"{v:.2f} s" if v >= 0.1 else f"{v * 1000:.0f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="messages in the mailbox (dev runs <= 20k)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rtt-ms", type=float, default=0.0)
    ap.add_argument("--sample", type=int, default=0, help="runbook messages timed per round (default 300, 40 at a WAN)")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--window", type=int, default=8, help="the floor's commands in flight (ours' default)")
    ap.add_argument("--no-mark-seen", action="store_true")
    ap.add_argument("--count-chunks", type=int, nargs="*", default=[],
                    help="also count ours' commands/round trips at these --chunk sizes")
    a = ap.parse_args()
    if a.n < 10 or a.rounds < 1 or a.window < 1 or a.rtt_ms < 0 or a.sample < 0:
        ap.error("need --n >= 10, --rounds >= 1, --window >= 1, --rtt-ms >= 0, --sample >= 0")
    sample_n = a.sample or (300 if a.rtt_ms <= 0 else 40)
    server: Dovecot = start_dovecot(tls=False)
    work = Path(tempfile.mkdtemp(prefix="bench-floor-"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "triage_tui")], check=False,
                   env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})
    try:
        user = seed(server, a.n, seed_=a.seed)
        counter = LatencyProxy(server.imap_port, rtt=a.rtt_ms / 1000, record=True).start()
        port = counter.port if a.rtt_ms > 0 else server.imap_port
        state = work / "state"
        cache_flag = has_cache_flag()

        # what ours sends (also warms Dovecot's index and cache files: untimed)
        env_c = cli_env(counter.port, user, state, work / "cache-capture")
        cmds, ours_lines, ours_rt = capture(counter, lambda: run_cli(["list", "--json"], env_c))
        env_c2 = env_c  # a second capture with the cache now filled (warm)
        _, warm_lines, warm_rt = capture(counter, lambda: run_cli(["list", "--json"], env_c2))
        search = next(c for c in cmds if c.upper().startswith(b"UID SEARCH"))
        fetches = [c for c in cmds if c.upper().startswith(b"UID FETCH")]
        unseen_raw = Raw(server.imap_port)
        unseen_raw.login(user)
        unseen_raw.run(b'EXAMINE "INBOX"')
        unseen = _search_all(unseen_raw, b"UID SEARCH UNSEEN")
        unseen_raw.close()
        unseen_text = uidset.compress(unseen)
        print(f"  {len(unseen)} UNSEEN of {a.n}; ours sends {len(cmds)} commands "
              f"({len(fetches)} UID FETCH); cache flag in --help: {cache_flag}", file=sys.stderr)
        print("  ours' commands: " + "; ".join(_short(c) for c in cmds), file=sys.stderr)

        _, floor_lines, floor_rt = capture(counter, lambda: floor_list(counter.port, user, search, fetches, a.window))
        k = min(sample_n, len(unseen))
        rng = random.Random(a.seed)
        _, rb_lines, rb_rt = capture(counter, lambda: runbook_list(counter.port, user, sorted(rng.sample(unseen, k))))

        res = {name: Sample() for name in ("cold", "cold1", "warm", "floor", "runbook", "seen_ours", "seen_raw",
                                           "seen_same")}
        res["cold"].commands, res["cold"].round_trips = ours_lines, ours_rt
        res["cold1"].commands, res["cold1"].round_trips = ours_lines, ours_rt
        res["warm"].commands, res["warm"].round_trips = warm_lines, warm_rt
        res["floor"].commands, res["floor"].round_trips = floor_lines, floor_rt
        scale = len(unseen) / k
        res["runbook"].commands, res["runbook"].round_trips = round(rb_lines * scale), round(rb_rt * scale)

        def ours_round(r: int) -> None:
            cache = work / f"cache-{r}"
            env = cli_env(port, user, state, cache)
            for name in ("cold", "warm"):
                w, c, m = run_cli(["list", "--json"], env)
                res[name].wall.append(w)
                res[name].cpu.append(c)
                res[name].rss.append(m)
            shutil.rmtree(cache, ignore_errors=True)
            # cold in one process (no worker processes building rows)
            w, c, m = run_cli(["list", "--json"], {**env, "TRIAGE_WORKERS": "0"})
            res["cold1"].wall.append(w)
            res["cold1"].cpu.append(c)
            res["cold1"].rss.append(m)
            shutil.rmtree(cache, ignore_errors=True)

        def floor_round(_r: int) -> None:
            w, c = floor_list(port, user, search, fetches, a.window)
            res["floor"].wall.append(w)
            res["floor"].cpu.append(c)

        def runbook_round(r: int) -> None:
            smp = sorted(random.Random(a.seed + r).sample(unseen, k))
            w, c = runbook_list(port, user, smp)
            res["runbook"].wall.append(w * scale)
            res["runbook"].cpu.append(c * scale)

        steps = [ours_round, floor_round, runbook_round]
        for r in range(a.rounds):
            for step in (steps if r % 2 == 0 else steps[::-1]):
                step(r)
            print(f"  round {r + 1}/{a.rounds}: cold {res['cold'].wall[-1]:.2f} s (one process {res['cold1'].wall[-1]:.2f} s), warm {res['warm'].wall[-1]:.2f} s, "
                  f"floor {res['floor'].wall[-1]:.2f} s, runbook {res['runbook'].wall[-1]:.1f} s (scaled)",
                  file=sys.stderr)

        if not a.no_mark_seen:
            env = cli_env(port, user, state, work / "cache-seen")
            env_count = cli_env(counter.port, user, state, work / "cache-seen")
            reset_flags(server.imap_port, user, unseen_text)
            _, res["seen_ours"].commands, res["seen_ours"].round_trips = capture(
                counter, lambda: run_cli(["mark-seen", "--all", "--yes"], env_count))
            reset_flags(server.imap_port, user, unseen_text)
            _, res["seen_raw"].commands, res["seen_raw"].round_trips = capture(
                counter, lambda: floor_store(counter.port, user, unseen_text))
            reset_flags(server.imap_port, user, unseen_text)
            _, res["seen_same"].commands, res["seen_same"].round_trips = capture(
                counter, lambda: floor_store_same(counter.port, user, unseen_text))
            for r in range(a.rounds):
                order = ("ours", "raw", "same") if r % 2 == 0 else ("same", "raw", "ours")
                for which in order:
                    reset_flags(server.imap_port, user, unseen_text)
                    if which == "ours":
                        w, c, m = run_cli(["mark-seen", "--all", "--yes"], env)
                        res["seen_ours"].rss.append(m)
                    elif which == "raw":
                        w, c = floor_store(port, user, unseen_text)
                    else:
                        w, c = floor_store_same(port, user, unseen_text)
                    res[f"seen_{which}"].wall.append(w)
                    res[f"seen_{which}"].cpu.append(c)
                print(f"  mark-seen round {r + 1}/{a.rounds}: ours {res['seen_ours'].wall[-1]:.2f} s, "
                      f"raw STORE {res['seen_raw'].wall[-1]:.2f} s, raw same STORE {res['seen_same'].wall[-1]:.2f} s",
                      file=sys.stderr)
            reset_flags(server.imap_port, user, unseen_text)

        chunk_rows = []
        for chunk in a.count_chunks:
            env_k = cli_env(counter.port, user, state, work / f"cache-chunk-{chunk}")
            cm, lines, rt = capture(counter, lambda env_k=env_k, chunk=chunk: run_cli(
                ["--chunk", str(chunk), "list", "--json"], env_k))
            chunk_rows.append((chunk, sum(1 for c in cm if c.upper().startswith(b"UID FETCH")), lines, rt))

        report(a, len(unseen), k, res, chunk_rows, cache_flag)
        counter.stop()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def _search_all(raw: Raw, command: bytes) -> list[int]:
    """The one place the harness parses an answer: the UNSEEN set, for mark-seen and the sample."""
    tag = raw.send(command)
    data = bytearray()
    while (b"\r\n" + tag + b" ") not in raw.buf:
        raw._recv()
    data = bytes(raw.buf)
    raw.buf[:] = b"\r\n"
    out: list[int] = []
    for line in data.split(b"\r\n"):
        if line.startswith(b"* SEARCH"):
            out.extend(int(x) for x in line[8:].split())
    return sorted(out)


def _short(c: bytes) -> str:
    text = c.decode("utf-8", "replace")
    if text.upper().startswith("LOGIN") or text.upper().startswith("AUTHENTICATE"):
        return text.split(" ", 1)[0] + " <redacted>"
    return text if len(text) <= 60 else text[:57] + "..."


def report(a: argparse.Namespace, unseen: int, k: int, res: dict[str, Sample], chunk_rows: list[tuple[int, int, int, int]],
           cache_flag: bool) -> None:
    def mmm(v: list[float]) -> str:
        return " / ".join(fmt_s(x) for x in (min(v), statistics.median(v), max(v))) if v else "—"

    def med(v: list[float]) -> float:
        return statistics.median(v) if v else float("nan")

    def rt(s: Sample) -> str:
        return f"{s.commands} / {s.round_trips}" if s.commands is not None else "—"

    floor, raw_store, same_store = med(res["floor"].wall), med(res["seen_raw"].wall), med(res["seen_same"].wall)
    where = f"behind a {a.rtt_ms:.0f} ms RTT proxy" if a.rtt_ms > 0 else "loopback"
    print(f"\n### {a.n:,} realistic messages ({unseen:,} UNSEEN), {where}, {a.rounds} interleaved rounds\n")
    print(f"`bench/bench_floor.py --n {a.n} --rounds {a.rounds}{f' --rtt-ms {a.rtt_ms:g}' if a.rtt_ms else ''}`"
          f" (header cache in the CLI: {'yes' if cache_flag else 'no'}; cold = fresh cache directory)\n")
    print("| | wall min / median / max | CPU (median) | peak RSS | × floor (median) | commands / round trips |")
    print("|---|---|---:|---:|---:|---:|")
    rows = [("`list --json`, ours cold (default: worker processes build rows)", "cold", floor),
            ("`list --json`, ours cold, one process (`TRIAGE_WORKERS=0`)", "cold1", floor),
            ("`list --json`, ours warm", "warm", floor),
            ("floor: raw socket, same SEARCH + FETCHes, no parsing", "floor", floor),
            (f"runbook: RFC822.HEADER per message + `email` (timed on {k}, scaled)", "runbook", floor)]
    if res["seen_ours"].wall:
        rows += [(f"`mark-seen --all --yes` of {unseen:,}, ours", "seen_ours", raw_store),
                 ("floor: raw `UID STORE <set> +FLAGS.SILENT (\\Seen)`, the set in 8 KB parts, pipelined", "seen_raw", raw_store),
                 ("floor with ours' flags and modifiers: `ENABLE CONDSTORE`, `UID STORE <set> (UNCHANGEDSINCE m) "
                  "+FLAGS.SILENT (\\Seen $TriageIgnored)`, same parts", "seen_same", raw_store)]
    for label, key, base in rows:
        s = res[key]
        rss = f"{max(s.rss)} MiB" if s.rss else "—"
        ratio = med(s.wall) / base if base == base and base > 0 else float("nan")
        print(f"| {label} | {mmm(s.wall)} | {fmt_s(med(s.cpu))} | {rss} | ×{ratio:.2f} | {rt(s)} |")
    if res["seen_same"].wall:
        print(f"\nmark-seen against the floor with ours' flags and modifiers: ×{med(res['seen_ours'].wall) / same_store:.2f} "
              "(the × column compares with the plain floor)")
    print("\nRound trips: counted by the proxy (connection setups + commands sent with nothing in flight); the "
          "floor's CPU is its thread's only. The runbook's figures are scaled from the sample.")
    if chunk_rows:
        print("\n| ours `--chunk` | UID FETCH commands | command lines | round trips |")
        print("|---:|---:|---:|---:|")
        for chunk, fetches, lines, rtrips in chunk_rows:
            print(f"| {chunk} | {fetches} | {lines} | {rtrips} |")


if __name__ == "__main__":
    main()
