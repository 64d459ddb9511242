"""Lock benchmark against a real redis-server: pipelined reads and batched releases beside one round
trip per key (what a hand-written loop over ``redis-cli TTL``/``GET``/``DEL`` does).

    .venv/bin/python bench/bench_locks.py [--keys 100000] [--rtt-ms 0] [--sample 5000]

Seeds N ``mail_room:gitlab:delivered:<uid>`` keys (value 1, EX 600), then times:

* ``LockService.annotate`` of N messages (TIME + MGET + one PTTL per key, one round trip per 5000
  keys) versus one ``PTTL`` round trip per key and one ``GET`` + ``TTL`` pair per key;
* ``LockService.scan`` (SCAN MATCH COUNT 10000, then the pipelined read);
* the release script on N keys (atomic batches of 1000, each key checked before it is touched)
  versus one ``DEL`` per key.

With ``--rtt-ms`` a latency-adding loopback proxy (tests/proxy.py) sits in front of Redis for
every method, as a network would; the per-key loops are then timed on ``--sample`` keys and
scaled to N (the sample size is printed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from tests.proxy import LatencyProxy  # noqa: E402
from tests.servers import start_redis  # noqa: E402
from triage_tui.domain.model import Message  # noqa: E402
from triage_tui.services.journal import AuditJournal  # noqa: E402
from triage_tui.services.locks import LockService, RedisSettings, ReleasePlan, ReleaseTarget  # noqa: E402

PREFIX = "mail_room:gitlab:"


def seed(client: redis.Redis, n: int) -> None:
    pipe = client.pipeline(transaction=False)
    for uid in range(1, n + 1):
        pipe.set(f"{PREFIX}delivered:{uid}", "1", ex=600)
        if uid % 10_000 == 0:
            pipe.execute()
    pipe.execute()


def timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def per_key(client: redis.Redis, uids: list[int], what: str) -> float:
    t0 = time.perf_counter()
    for uid in uids:
        k = f"{PREFIX}delivered:{uid}"
        if what == "pttl":
            client.pttl(k)
        elif what == "get+ttl":
            client.get(k)
            client.ttl(k)
        else:
            client.delete(k)
    return time.perf_counter() - t0


class _NoMailbox:
    """release() re-checks UNSEEN on the IMAP server; here every UID is UNSEEN by construction."""

    def __init__(self, n: int) -> None:
        from triage_tui.services.imap import ConnectionSettings  # noqa: PLC0415

        self.n = n
        self.settings = ConnectionSettings(host="bench", user="bench")

    def search(self, view: Any) -> tuple[int, list[int]]:
        return 1, list(range(1, self.n + 1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--rtt-ms", type=float, default=0.0)
    ap.add_argument("--sample", type=int, default=5000, help="per-key loops: keys timed when --rtt-ms > 0")
    args = ap.parse_args()
    n = args.keys
    server = start_redis()
    proxy = None
    state = Path(tempfile.mkdtemp(prefix="triage-bench-locks-"))
    try:
        direct = server.client()
        port = server.port
        if args.rtt_ms:
            proxy = LatencyProxy(target_port=server.port, rtt=args.rtt_ms / 1000, record=False).start()
            port = proxy.port
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis(host="127.0.0.1", port=port)
        t, _ = timed(lambda: seed(direct, n))
        print(f"seeded {n} keys in {t:.2f} s (redis-server {direct.info()['redis_version']}, "
              f"RTT {'loopback' if not args.rtt_ms else f'+{args.rtt_ms:g} ms'})")
        ls = LockService(RedisSettings(url=url, key_prefix=PREFIX), read_only=False,
                         journal=AuditJournal(state / "audit.jsonl"))
        ls.check()
        messages = [Message(uid=u, uidvalidity=1) for u in range(1, n + 1)]
        t_ann, locked = timed(lambda: ls.annotate(messages))
        assert locked == n
        print(f"annotate (1 script call per 5000 keys):{t_ann:7.3f} s   {n / t_ann:>10,.0f} keys/s")
        t_scan, found = timed(lambda: ls.scan())
        assert len(found) == n
        print(f"scan (SCAN COUNT 10000 + batched read):{t_scan:7.3f} s")
        uids = list(range(1, n + 1))
        sample = uids if not args.rtt_ms else uids[: min(args.sample, n)]
        scale = n / len(sample)
        t_pttl = per_key(client, sample, "pttl") * scale
        t_gt = per_key(client, sample, "get+ttl") * scale
        note = "" if scale == 1 else f"   (timed on {len(sample)} keys, scaled)"
        print(f"one PTTL round trip per key:            {t_pttl:7.3f} s   {t_pttl / t_ann:6.1f}x slower{note}")
        print(f"GET + TTL round trips per key:          {t_gt:7.3f} s   {t_gt / t_ann:6.1f}x slower{note}")
        # release: the guarded, journaled, checked script versus blind DELs
        now_ms = ls.server_time_ms()
        targets = [ReleaseTarget(uid=u, key=f"{PREFIX}delivered:{u}", value="1", pttl_ms=600_000,
                                 expires_at_ms=now_ms + 600_000, counter=False, new_ttl_ms=0) for u in uids]
        plan = ReleasePlan(uidvalidity=1, prefix=PREFIX, redis=url, mode="ttl", ttl_s=0, waves=1,
                           wave_interval_s=0, selected=n, targets=targets, unlocked=[], not_unseen=[],
                           measured_at_ms=now_ms)
        t_rel, result = timed(lambda: ls.release(plan, _NoMailbox(n)))  # type: ignore[arg-type]
        assert len(result.changed) == n, (len(result.changed), result.skipped, result.error)
        print(f"release {n} keys (script, journaled):  {t_rel:7.3f} s")
        seed(direct, len(sample))
        t_del = per_key(client, sample, "del") * scale
        print(f"one DEL round trip per key (unchecked): {t_del:7.3f} s{note}")
        ls.close()
        client.close()
    finally:
        if proxy is not None:
            proxy.stop()
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
