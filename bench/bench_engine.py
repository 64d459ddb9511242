"""Engine benchmark against a real Dovecot: our CLI beside the runbook's per-message method.

    .venv/bin/python bench/bench_engine.py --sizes 10000 100000 [--rtt-ms 50] [--full-baseline]

For each size N it seeds a fresh maildir with N realistic messages, warms Dovecot's cache with
one listing, then measures, in the same run:

* ``triage-tui list --json`` (a subprocess, output to /dev/null; wall time and peak RSS) versus the
  runbook's loop: one ``UID FETCH <uid> RFC822.HEADER`` per message, each parsed as the runbook
  does (``Mail.read_from_string`` ~ Python's ``email`` parser);
* ``triage-tui mark-seen --all --yes`` on half of the mailbox versus one ``UID FETCH <uid> RFC822``
  per message (what the runbook does to mark a message seen);
* ``triage-tui expunge --yes`` versus the runbook's plain ``EXPUNGE``.

The per-message loop is linear in N (one round trip per message), so unless ``--full-baseline``
is given it is timed on a sample of messages from the same mailbox and scaled to N; the sample
size is printed. ``--rtt-ms`` puts a latency-adding loopback proxy (tests/proxy.py) between the
client and Dovecot for both methods, as a WAN would.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import imapclient  # noqa: E402

from tests.mailgen import addr, message  # noqa: E402
from tests.proxy import LatencyProxy  # noqa: E402
from tests.servers import PASSWORD, Dovecot, start_dovecot  # noqa: E402

CLI = [str(ROOT / ".venv" / "bin" / "triage-tui")] if (ROOT / ".venv/bin/triage-tui").exists() else \
    [sys.executable, "-m", "triage_tui"]

SENDERS = ["Alice <alice@example.org>", "noreply@ci.example.com", "MAILER-DAEMON@mx.example.net",
           "Bob Builder <bob@builders.example>", "alerts@monitoring.example.io"]
SUBJECTS = ["Re: Pipeline failed for main", "Error fetching data from FOO", "Undelivered Mail Returned to Sender",
            "New issue: login broken", "Automatic reply: out of office", "Re: [group/project] MR !42"]


def realistic(i: int, ts: float) -> bytes:
    rnd = random.Random(i)
    key = rnd.choice([f"group-project-{rnd.randint(1, 900)}-glimt-{rnd.getrandbits(40):x}-issue",
                      f"{rnd.getrandbits(128):032x}",
                      f"grp-sub-{rnd.randint(1, 900)}-glimt-{rnd.getrandbits(40):x}-issue-{rnd.randint(1, 400)}"])
    received = [
        ("Received", f"from mx{n}.example.net (mx{n}.example.net [192.0.2.{n}]) by mx.google.example with "
                     f"ESMTPS id {rnd.getrandbits(64):x} for <{addr(key)}>; "
                     f"{email.utils.formatdate(ts - 5 * (3 - n))}")
        for n in range(3)
    ]
    extra = [*received, ("Authentication-Results", "mx.google.example; spf=pass smtp.mailfrom=example.org; "
                                                   "dkim=pass header.d=example.org"),
             ("References", f"<reply-{rnd.getrandbits(128):032x}@gitlab.example.com>")]
    if i % 5 == 1:
        extra.append(("Auto-Submitted", "auto-replied"))
    return message(subject=f"{rnd.choice(SUBJECTS)} #{i}", from_=rnd.choice(SENDERS), key=key, date=ts,
                   extra=extra, body="Hello,\r\n" + "Some text of the message body.\r\n" * 30)


def seed(server: Dovecot, n: int) -> str:
    user = server.new_user("bench")
    now = time.time()
    t = time.perf_counter()
    server.seed(user, ((realistic(i, now - (n - i) * 30), now - (n - i) * 30, "") for i in range(n)))
    print(f"  seeded {n} messages in {time.perf_counter() - t:.1f} s")
    return user


def run_cli(args: list[str], env: dict[str, str]) -> tuple[float, int, int]:
    """(seconds, peak RSS in MiB, exit code) of one CLI invocation."""
    t = time.perf_counter()
    with open(os.devnull, "wb") as devnull:
        proc = subprocess.Popen([*CLI, *args], env=env, stdout=devnull, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"CLI {args} failed ({code}): {proc.stderr.read().decode() if proc.stderr else ''}")
    return elapsed, usage.ru_maxrss // 1024, code


def runbook_client(port: int, user: str) -> imapclient.IMAPClient:
    c = imapclient.IMAPClient("127.0.0.1", port=port, ssl=False)
    c.login(user, PASSWORD)
    c.select_folder("INBOX")
    return c


def runbook_list(port: int, user: str, sample: list[int]) -> float:
    """The runbook's review loop: one RFC822.HEADER fetch per message, parsed like Mail.read_from_string."""
    c = runbook_client(port, user)
    c.search("UNSEEN")
    t = time.perf_counter()
    for uid in sample:
        raw = c.fetch([uid], ["RFC822.HEADER"])[uid][b"RFC822.HEADER"]
        h = email.message_from_bytes(raw, policy=email.policy.default)
        _ = f"@{h['date']} from {h['from']} to {h['to']}. Subject: {h['subject']}"
    elapsed = time.perf_counter() - t
    c.logout()
    return elapsed


def runbook_mark_seen(port: int, user: str, sample: list[int]) -> float:
    """The runbook's way to mark seen: fetch the whole message (RFC822), one per message."""
    c = runbook_client(port, user)
    t = time.perf_counter()
    for uid in sample:
        c.fetch([uid], ["RFC822"])
    elapsed = time.perf_counter() - t
    c.logout()
    return elapsed


def runbook_expunge(port: int, user: str) -> float:
    c = runbook_client(port, user)
    t = time.perf_counter()
    c.expunge()
    elapsed = time.perf_counter() - t
    c.logout()
    return elapsed


def mark_deleted(port: int, user: str, uids: list[int]) -> None:
    from triage_tui.domain import uidset

    c = runbook_client(port, user)
    for text, _ in uidset.split(uids, max_bytes=8000, max_count=5000):
        c.add_flags(text, [b"\\Deleted"], silent=True)
    c.logout()


def bench_size(server: Dovecot, n: int, rtt_ms: float, sample_n: int, full: bool) -> dict[str, float]:
    print(f"\n== {n} messages, RTT {rtt_ms:.0f} ms ==")
    user = seed(server, n)
    proxy = LatencyProxy(server.imap_port, rtt=rtt_ms / 1000, record=False).start()
    port = proxy.port
    env = {**os.environ, "TRIAGE_IMAP_HOST": "127.0.0.1", "TRIAGE_IMAP_PORT": str(port),
           "TRIAGE_IMAP_SECURITY": "none", "TRIAGE_IMAP_USER": user, "TRIAGE_IMAP_PASSWORD": PASSWORD,
           "TRIAGE_STATE_DIR": str(server.base / "state-bench")}
    env.pop("TRIAGE_ADDRESS", None)
    env["TRIAGE_ADDRESS"] = "incoming+%{key}@incoming.gitlab.example.com"
    out: dict[str, float] = {}
    cold, _, _ = run_cli(["list", "--json"], env)
    print(f"  first listing (cold Dovecot cache): {cold:.2f} s")
    ours, rss, _ = run_cli(["list", "--json"], env)
    k = n if full else min(sample_n, n)
    sample = sorted(random.Random(1).sample(range(1, n + 1), k))
    base = runbook_list(port, user, sample) * n / k
    out.update(list_ours=ours, list_rss=rss, list_runbook=base)
    print(f"  list --json      ours {ours:8.2f} s  (peak RSS {rss} MiB)   runbook per-message {base:8.2f} s"
          f"{'' if full else f' (timed on {k}, scaled)'}   speed-up x{base / ours:.0f}")

    half = n // 2
    env_seen = env
    ours, _, _ = run_cli(["--chunk", "1000", "mark-seen", "--uids", f"1:{half}", "--yes"], env_seen)
    rest = list(range(half + 1, n + 1))
    k = len(rest) if full else min(sample_n, len(rest))
    sample = sorted(random.Random(2).sample(rest, k))
    base = runbook_mark_seen(port, user, sample) * half / k
    out.update(seen_ours=ours, seen_runbook=base)
    print(f"  mark-seen {half:6d} ours {ours:8.2f} s   runbook per-message {base:8.2f} s"
          f"{'' if full else f' (timed on {k}, scaled)'}   speed-up x{base / ours:.0f}")

    quarter = n // 4
    mark_deleted(server.imap_port, user, list(range(1, quarter + 1)))
    ours, _, _ = run_cli(["expunge", "--yes"], env)
    mark_deleted(server.imap_port, user, list(range(quarter + 1, 2 * quarter + 1)))
    base = runbook_expunge(port, user)
    out.update(expunge_ours=ours, expunge_runbook=base)
    print(f"  expunge {quarter:6d}   ours {ours:8.2f} s (UID EXPUNGE of exactly the set)   "
          f"runbook plain EXPUNGE {base:8.2f} s (removes every \\Deleted message)")
    proxy.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--rtt-ms", type=float, nargs="+", default=[0.0])
    ap.add_argument("--sample", type=int, default=2000, help="messages timed for the per-message loop")
    ap.add_argument("--full-baseline", action="store_true", help="time the per-message loop on every message")
    a = ap.parse_args()
    server = start_dovecot(tls=False)
    try:
        for rtt in a.rtt_ms:
            for n in a.sizes:
                sample = a.sample if rtt == 0 else max(50, int(a.sample / 10))
                bench_size(server, n, rtt, sample, a.full_baseline)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
