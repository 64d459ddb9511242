"""A loopback TCP proxy that records client→server bytes and can add latency or cut streams.

Used to prove what goes over the wire (no ``BODY[`` without PEEK, no ``RFC822`` fetch), to
measure behaviour at a WAN-like round-trip time (each direction delayed by ``rtt/2`` while
keeping throughput), and to kill connections mid-operation.
"""

from __future__ import annotations

import contextlib
import heapq
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_TAGGED = re.compile(rb"\r\n[A-Za-z0-9]+ (?:OK|NO|BAD)\b[^\r\n]*(?=\r\n)")


@dataclass
class _Turns:
    """Per connection: commands sent and not yet answered by a tagged line."""

    outstanding: int = 0
    tail: bytes = b""


@dataclass
class LatencyProxy:
    target_port: int
    rtt: float = 0.0
    target_host: str = "127.0.0.1"
    record: bool = True
    sent: bytearray = field(default_factory=bytearray)  # client -> server
    port: int = 0
    _sock: socket.socket | None = None
    _threads: list[threading.Thread] = field(default_factory=list)
    _conns: list[socket.socket] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    connections: int = 0
    #: cut every connection once the client has sent this many lines containing ``cut_pattern``
    cut_pattern: bytes | None = None
    cut_after: int = 0
    cuts: int = 0
    _seen: int = 0
    #: answer the first ``throttle_times`` commands containing ``throttle_pattern`` with Office 365's
    #: throttling NO instead of forwarding them
    throttle_pattern: bytes | None = None
    throttle_times: int = 0
    throttled: int = 0
    #: rewrite what the server sends (no latency only): a server that lies, or says more than asked
    server_says: Callable[[bytes], bytes] | None = None
    #: rewrite what the client sends before the server sees it (no latency only): a server that
    #: answers another question than the one asked (one that ignores a SEARCH key, say)
    client_says: Callable[[bytes], bytes] | None = None
    #: round trips: connection setups plus the commands a client sent while it had nothing in
    #: flight (it had waited for every earlier answer); ``lines_sent`` counts command lines
    round_trips: int = 0
    lines_sent: int = 0

    def start(self) -> LatencyProxy:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection((self.target_host, self.target_port))
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns += [client, upstream]
                self.connections += 1
                self.round_trips += 1  # connect + greeting
            turns = _Turns()
            for src, dst, rec in ((client, upstream, True), (upstream, client, False)):
                th = threading.Thread(target=self._pump, args=(src, dst, rec, turns), daemon=True)
                th.start()
                self._threads.append(th)

    def _count(self, turns: _Turns, data: bytes, rec: bool) -> None:
        with self._lock:
            if rec:
                lines = data.count(b"\r\n")
                if lines and turns.outstanding <= 0:
                    self.round_trips += 1
                turns.outstanding += lines
                self.lines_sent += lines
            else:
                text = turns.tail + data
                turns.outstanding = max(0, turns.outstanding - len(_TAGGED.findall(text)))
                cut = text.rfind(b"\r\n")
                turns.tail = text[cut:][-200:] if cut >= 0 else b""

    def _pump(self, src: socket.socket, dst: socket.socket, rec: bool, turns: _Turns | None = None) -> None:
        turns = turns or _Turns()
        delay = self.rtt / 2
        if delay <= 0:
            while True:
                try:
                    data = src.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                self._count(turns, data, rec)
                if rec and self.record:
                    with self._lock:
                        self.sent += data
                if rec and self.throttle_pattern is not None:
                    data = self._throttle(data, src)
                if not rec and self.server_says is not None:
                    data = self.server_says(data)
                if rec and self.client_says is not None:
                    data = self.client_says(data)
                try:
                    dst.sendall(data)
                except OSError:
                    break
                if rec and self._should_cut(data):
                    time.sleep(0.05)  # let the server start on it: the answer is what gets lost
                    self.cut()
                    break
            self._close_pair(src, dst)
            return
        # delayed: a reader fills a time-ordered queue, a writer sends when due
        queue: list[tuple[float, int, bytes | None]] = []
        cond = threading.Condition()
        seq = 0

        def writer() -> None:
            while True:
                with cond:
                    while not queue:
                        cond.wait()
                    due, _, data = queue[0]
                    now = time.monotonic()
                    if due > now:
                        cond.wait(due - now)
                        continue
                    heapq.heappop(queue)
                if data is None:
                    break
                try:
                    dst.sendall(data)
                except OSError:
                    break
            self._close_pair(src, dst)

        w = threading.Thread(target=writer, daemon=True)
        w.start()
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if data:
                self._count(turns, data, rec)
            if data and rec and self.record:
                with self._lock:
                    self.sent += data
            with cond:
                seq += 1
                heapq.heappush(queue, (time.monotonic() + delay, seq, data or None))
                cond.notify()
            if not data:
                break

    def _throttle(self, data: bytes, client: socket.socket) -> bytes:
        out = []
        for line in data.split(b"\r\n"):
            if self.throttle_pattern and self.throttle_pattern in line and self.throttled < self.throttle_times:
                self.throttled += 1
                tag = line.split(b" ", 1)[0]
                client.sendall(tag + b" NO Request is throttled. Suggested Backoff Time: 40 milliseconds\r\n")
                continue
            out.append(line)
        return b"\r\n".join(out)

    def _should_cut(self, data: bytes) -> bool:
        if self.cut_pattern is None:
            return False
        with self._lock:
            self._seen += data.count(self.cut_pattern)
            if self._seen >= self.cut_after:
                self.cut_pattern = None  # once
                self.cuts += 1
                return True
        return False

    @staticmethod
    def _close_pair(a: socket.socket, b: socket.socket) -> None:
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def cut(self) -> None:
        """Kill every open connection (both directions) at once."""
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def stop(self) -> None:
        self._stop.set()
        self.cut()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()

    def commands(self) -> list[bytes]:
        """Client lines (tag + command), credentials included: tests only look, never print."""
        return [line for line in bytes(self.sent).split(b"\r\n") if line]

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
