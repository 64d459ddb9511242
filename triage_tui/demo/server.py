"""The demo's embedded servers: an IMAP server (pymap, in-memory) and a Redis (fakeredis), both
in this process, on free loopback ports, holding the backlog of :mod:`triage_tui.demo.backlog`.

Why in-process servers rather than a mock: the demo must exercise the production connection code
(:class:`~triage_tui.services.imap.ImapSession`, the lock service's redis-py client), so the
newcomer sees what an operator sees, over real sockets, without root, Dovecot or redis-server.

- IMAP: pymap's dict backend, served from an asyncio loop in a daemon thread. The mailbox is
  filled before the socket accepts anyone (appends with the message's INTERNALDATE and flags),
  so the first EXAMINE already sees the whole backlog. pymap's UIDs start at 101; the UIDs it
  assigned are kept in :attr:`DemoServers.uids`, in backlog order.
- Redis: fakeredis's ``TcpFakeServer`` (speaks RESP over TCP, Lua via lupa), holding mail_room's
  arbitration keys as the backlog describes them: ``SET ... EX`` keys with a TTL, INCR-style
  counters > 1, a few counters that never got a TTL, and keys of UIDs that no longer exist.
- A temporary directory holds what the demo writes besides the normal audit journal (the lock
  service's release state, the environment file of ``--print-env``, the servers' own logs, which
  must stay off the terminal the TUI draws on); it is removed by :meth:`DemoServers.stop`.

Loading is pymap's cost (its MIME parsing, ~650 messages/s, ~1.4k/s with the header cache
below): the default backlog of 1,800 messages starts in ~1.8 s on an idle 2-core machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import threading
import time
from argparse import Namespace
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from triage_tui.demo.backlog import ADDRESS_TEMPLATE, DEFAULT_SEED, DEFAULT_SIZE, Backlog, build_backlog
from triage_tui.errors import ConfigError, ConnectionFailed
from triage_tui.services.imap import ConnectionSettings, Secret

log = logging.getLogger("triage_tui.demo")

#: The demo mailbox's login. Not a secret: a fixed credential of a throwaway server that listens
#: on loopback only and holds generated mail. Kept here, and only here.
DEMO_USER = "operator"
DEMO_PASSWORD = "demo-not-a-secret"
DEMO_MAILBOX = "INBOX"
KEY_PREFIX = "mail_room:gitlab:"
HOST = "127.0.0.1"
START_TIMEOUT = 60.0

_MISSING_HINT = ("the demo needs pymap and fakeredis with Lua: "
                 "`pip install 'pymap>=0.36.7,<0.37' 'fakeredis[lua]>=2.40,<3'`")


def check_dependencies() -> None:
    """Fail early, in one line, when the demo's extra packages are missing."""
    missing = []
    for mod in ("pymap", "fakeredis", "lupa"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise ConfigError(f"{', '.join(missing)} not installed: {_MISSING_HINT}")


# --- IMAP ----------------------------------------------------------------------------------------

_CACHED_HEADERS = frozenset({"content-type", "content-transfer-encoding", "content-disposition"})


class _CachingRegistry:
    """pymap parses every MIME part's Content-Type with the stdlib ``HeaderRegistry`` (~0.5 ms
    each: half of the load time). Header objects are immutable, so equal values can share one."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self._cache: dict[tuple[str, str], Any] = {}

    def __call__(self, name: str, value: str) -> Any:
        if name.lower() not in _CACHED_HEADERS:
            return self.registry(name, value)
        k = (name, value)
        hit = self._cache.get(k)
        if hit is None:
            hit = self._cache[k] = self.registry(name, value)
        return hit


@contextlib.contextmanager
def _cached_mime_headers() -> Iterator[None]:
    """Cache MIME header parsing while the backlog loads (only then: pymap is otherwise untouched)."""
    from pymap.mime.parsed import ParsedHeaders  # noqa: PLC0415

    original = ParsedHeaders._registry
    ParsedHeaders._registry = _CachingRegistry(original)  # type: ignore[assignment]
    try:
        yield
    finally:
        ParsedHeaders._registry = original



class _CoalescingWriter:
    """Hands pymap's output to the socket one whole response at a time.

    pymap writes each response in several small ``write()`` calls and drains after each
    response; asyncio sends every call at once, so a line often reaches the client split across
    TCP segments. imapclient's ``idle_check`` then misreads the tail as a line of its own
    (upstream issue #519) and the watcher has to reconnect after every burst of changes. Joining
    the writes until ``drain()`` gives whole lines (and ~40x fewer send calls on a big FETCH)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._buffer = bytearray()

    def write(self, data: bytes) -> None:
        self._buffer += data

    def writelines(self, lines: Iterable[bytes]) -> None:
        for line in lines:
            self._buffer += line

    def _flush(self) -> None:
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            self._writer.write(data)

    async def drain(self) -> None:
        self._flush()
        await self._writer.drain()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._flush()
        self._writer.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


class _ServerLog:
    """Keeps an embedded server's log lines off the terminal (the TUI owns it): the server's own
    loggers, and asyncio's records from its threads (e.g. "socket.send() raised exception" when a
    client hangs up mid-response), go to a file in the demo's temporary directory, or nowhere."""

    def __init__(self, path: Path | None, loggers: tuple[str, ...], thread_prefix: str | None = None) -> None:
        self.path = path
        self.loggers = loggers
        self.thread_prefix = thread_prefix
        self.handler: logging.Handler = (logging.FileHandler(path, encoding="utf-8", delay=True) if path
                                         else logging.NullHandler())
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s"))
        self._propagate: dict[str, bool] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if self.thread_prefix and (record.threadName or "").startswith(self.thread_prefix):
            self.handler.handle(record)
            return False
        return True

    def install(self) -> None:
        if self.thread_prefix:
            logging.getLogger("asyncio").addFilter(self.filter)
        for name in self.loggers:
            lg = logging.getLogger(name)
            self._propagate[name] = lg.propagate
            lg.propagate = False
            lg.addHandler(self.handler)

    def remove(self) -> None:
        logging.getLogger("asyncio").removeFilter(self.filter)
        for name, propagate in self._propagate.items():
            lg = logging.getLogger(name)
            lg.removeHandler(self.handler)
            lg.propagate = propagate
        self._propagate.clear()
        self.handler.close()


class EmbeddedImap:
    """pymap's in-memory backend, served from its own asyncio loop in a daemon thread."""

    def __init__(self, items: Iterable[tuple[bytes, float, Iterable[str]]], *, user: str = DEMO_USER,
                 password: str = DEMO_PASSWORD, host: str = HOST, log_path: Path | None = None) -> None:
        self._items = list(items)
        self._log = _ServerLog(log_path, ("pymap",), thread_prefix="demo-imap")
        self.user = user
        self._password = password
        self.host = host
        self.port = 0
        self.uids: list[int] = []
        self.uidvalidity = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-imap-cpu")
        self.load_seconds = 0.0

    def start(self, timeout: float = START_TIMEOUT) -> EmbeddedImap:
        self._log.install()
        self._thread = threading.Thread(target=self._run, name="demo-imap", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise ConnectionFailed(f"the demo IMAP server did not start within {timeout:.0f} s")
        if self._error is not None:
            self.stop()
            raise ConnectionFailed(f"the demo IMAP server failed to start: {self._error}") from self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as e:  # noqa: BLE001 - reported to start() through _error
            self._error = e
            self._ready.set()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self) -> None:
        # imported here: pymap is a demo-only dependency
        from proxyprotocol.reader import ProxyProtocolReader  # noqa: PLC0415
        from pymap.backend.dict import Config, DictBackend, Login  # noqa: PLC0415
        from pymap.backend.dict.filter import FilterSet  # noqa: PLC0415
        from pymap.backend.dict.mailbox import MailboxSet  # noqa: PLC0415
        from pymap.concurrent import Subsystem  # noqa: PLC0415
        from pymap.imap import IMAPServer  # noqa: PLC0415
        from pymap.parsing.message import AppendMessage  # noqa: PLC0415
        from pymap.parsing.specials.flag import Flag  # noqa: PLC0415

        class DemoConfig(Config):
            @property
            def greeting(self) -> bytes:
                # pymap's default calls socket.getfqdn(), which can hang for seconds without DNS
                return b"triage-tui demo IMAP server (pymap) ready"

        args = Namespace(host=self.host, port=0, debug=False, cert=None, key=None, tls=False, passlib_cfg=None,
                         proxy_protocol=None, inherited_sockets=None, demo_data=False, demo_user=self.user,
                         demo_password=self._password)
        config = DemoConfig.from_args(args, invalid_user_sleep=0.5, reject_dnsbl=False,
                                      cpu_subsystem=Subsystem.for_threading(self._executor))
        config.apply_context()
        login = Login(config)
        await DictBackend._add_demo_user(config, login)

        t0 = time.perf_counter()
        mailbox_set, filter_set = MailboxSet(), FilterSet()
        inbox = await mailbox_set.get_mailbox(DEMO_MAILBOX)
        flag_cache: dict[str, Any] = {}
        with _cached_mime_headers():
            for raw, ts, flags in self._items:
                flag_set = frozenset(flag_cache.setdefault(f, Flag(f.encode("ascii"))) for f in flags)
                msg = await inbox.append(AppendMessage(raw, datetime.fromtimestamp(ts, UTC), flag_set))
                self.uids.append(msg.uid)
        self.uidvalidity = inbox.uid_validity
        config.set_cache[self.user] = (mailbox_set, filter_set)
        self._items = []  # pymap holds the parsed copies now
        self.load_seconds = time.perf_counter() - t0

        imap_server = IMAPServer(login, config)
        callback = ProxyProtocolReader(config.proxy_protocol).get_callback(imap_server)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await callback(reader, _CoalescingWriter(writer))  # type: ignore[arg-type]

        server = await asyncio.start_server(serve, host=self.host, port=0)
        self.port = server.sockets[0].getsockname()[1]
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            # end every open connection (clients get BYE), then the listener
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._log.remove()


# --- Redis -----------------------------------------------------------------------------------------


def _keep_open_on_errors(handler_class: Any) -> Any:
    """fakeredis 2.40's TCP handler closes the connection after any error reply (it sends the
    error from its ``except`` branch, then leaves its loop). Error replies are ordinary Redis
    traffic: redis-py's scripts run EVALSHA first and expect ``NOSCRIPT`` on the same connection
    before SCRIPT LOAD, so the lock service intermittently saw "Connection closed by server".
    Returning the error as the reply keeps the connection open, as a real Redis does."""
    import redis  # noqa: PLC0415

    class Handler(handler_class):  # type: ignore[valid-type, misc]
        def setup(self) -> None:
            super().setup()
            client = self.current_client
            read = client.read_response

            def read_response(*args: Any, **kwargs: Any) -> Any:
                try:
                    return read(*args, **kwargs)
                except redis.exceptions.ResponseError as e:
                    return e  # encoded as an error reply by the handler, connection kept

            client.read_response = read_response

    return Handler


class EmbeddedRedis:
    """fakeredis speaking RESP on a loopback port (slower than redis-server, plenty for the demo)."""

    def __init__(self, host: str = HOST, log_path: Path | None = None) -> None:
        from fakeredis import TcpFakeServer  # noqa: PLC0415 - demo-only dependency

        self._log = _ServerLog(log_path, ("fakeredis",))
        self._log.install()
        self.server = TcpFakeServer((host, 0), server_type="redis")
        self.server.RequestHandlerClass = _keep_open_on_errors(self.server.RequestHandlerClass)
        address = self.server.server_address
        self.host, self.port = str(address[0]), int(address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="demo-redis", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def client(self) -> Any:
        import redis  # noqa: PLC0415

        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=10)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.server.shutdown()
        with contextlib.suppress(Exception):
            self.server.server_close()
        self._thread.join(5)
        self._log.remove()


# --- the demo consumer -------------------------------------------------------------------------------


class DemoConsumer:
    """mail_room for the demo, "down" at start (the story: the on-call stopped it everywhere).

    A small controller over :class:`~triage_tui.services.consumer.MailRoomConsumer` (mail_room
    0.10's protocol: SET NX EX 600, UID FETCH RFC822, LPUSH to Sidekiq, \\Deleted, no expunge) so
    the UI can offer "start mail_room" and show what it ingested. Restartable."""

    def __init__(self, settings: ConnectionSettings, redis_url: str, *, key_prefix: str = KEY_PREFIX,
                 poll_interval: float = 2.0) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.key_prefix = key_prefix
        self.poll_interval = poll_interval
        self._consumer: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        if self._consumer is None:
            import redis  # noqa: PLC0415

            from triage_tui.services.consumer import ConsumerOptions, MailRoomConsumer  # noqa: PLC0415

            client = redis.Redis.from_url(self.redis_url, decode_responses=True, socket_timeout=10)
            self._consumer = MailRoomConsumer(self.settings, client, ConsumerOptions(
                key_prefix=self.key_prefix, poll_interval=self.poll_interval, name="demo"))
        return self._consumer

    @property
    def running(self) -> bool:
        c = self._consumer
        t = getattr(c, "_thread", None) if c is not None else None
        return bool(t is not None and t.is_alive())

    @property
    def delivered(self) -> int:
        """Messages handed to GitLab (Sidekiq) since the demo started."""
        return len(self._consumer.stats.delivered) if self._consumer is not None else 0

    @property
    def blocked(self) -> int:
        """Claims lost to a held key, summed over polls (a key held for 10 polls counts 10)."""
        return self._consumer.stats.lost if self._consumer is not None else 0

    @property
    def last_error(self) -> str | None:
        return self._consumer.stats.last_error if self._consumer is not None else None

    @property
    def status(self) -> str:
        """One line for a status bar: ``mail_room: down`` / ``mail_room: running, 812 delivered``."""
        if not self.running:
            return f"mail_room: down{f', {self.delivered} delivered' if self.delivered else ''}"
        err = f", error: {self.last_error}" if self.last_error else ""
        return f"mail_room: running, {self.delivered} delivered{err}"

    def start(self) -> None:
        with self._lock:
            self._get().start()

    def stop(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.stop()

    def cycle(self) -> list[Any]:
        """One poll, synchronously (tests, or a "step" key): the UIDs (Graph ids) delivered."""
        with self._lock:
            return list(self._get().cycle())

    def close(self) -> None:
        self.stop()
        c = self._consumer
        if c is not None:
            with contextlib.suppress(Exception):
                c.redis.close()


# --- all together -------------------------------------------------------------------------------------


@dataclass
class DemoServers:
    """The running demo: where its servers listen, what they hold, and how to stop them."""

    backlog: Backlog
    imap: EmbeddedImap
    redis: EmbeddedRedis
    tmpdir: Path
    consumer: DemoConsumer
    started_in: float = 0.0
    lock_uids: dict[str, list[int]] = field(default_factory=dict)
    _stopped: bool = False

    # -- where things are -------------------------------------------------------------------------

    @property
    def uids(self) -> list[int]:
        return self.imap.uids

    @property
    def uidvalidity(self) -> int:
        return self.imap.uidvalidity

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def uid(self, index: int) -> int:
        return self.imap.uids[index]

    def connection_settings(self) -> ConnectionSettings:
        """The production settings type, pointed at the demo (plaintext is allowed: loopback)."""
        return ConnectionSettings(host=HOST, port=self.imap.port, security="none", user=DEMO_USER,
                                  password=Secret(DEMO_PASSWORD), mailbox=DEMO_MAILBOX, timeout=30.0)

    def env(self) -> dict[str, str]:
        """The ``TRIAGE_*`` variables that point the CLI at the demo from another shell."""
        return {
            "TRIAGE_IMAP_HOST": HOST,
            "TRIAGE_IMAP_PORT": str(self.imap.port),
            "TRIAGE_IMAP_SECURITY": "none",
            "TRIAGE_IMAP_USER": DEMO_USER,
            "TRIAGE_IMAP_PASSWORD": DEMO_PASSWORD,
            "TRIAGE_IMAP_MAILBOX": DEMO_MAILBOX,
            "TRIAGE_ADDRESS": ADDRESS_TEMPLATE,
            "TRIAGE_REDIS_URL": self.redis.url,
            "TRIAGE_KEY_PREFIX": KEY_PREFIX,
            "TRIAGE_DEMO": "1",
        }

    def redis_client(self) -> Any:
        return self.redis.client()

    # -- lifecycle ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the consumer and both servers, remove the temporary directory. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            self.consumer.close()
        with contextlib.suppress(Exception):
            self.imap.stop()
        with contextlib.suppress(Exception):
            self.redis.stop()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self) -> DemoServers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _hold_locks(servers: DemoServers) -> dict[str, list[int]]:
    """Write the backlog's arbitration keys the way mail_room would have left them."""
    first = min(servers.uids) if servers.uids else 101
    return plant_locks(servers.redis_client(), servers.backlog.locks,
                       lambda lk: servers.uid(lk.index) if lk.index is not None else max(1, first - lk.gone_below))


def plant_locks(client: Any, locks: Any, ident: Any) -> dict[str, list[Any]]:
    """Write ``locks`` (the backlog's lock plans) as mail_room's ``delivered:<id>`` keys, each
    id from ``ident(lock)`` (a UID over IMAP, a Graph id over Graph), in one pipeline; closes
    ``client``. Returns the ids by the kind of key left (set, incr, incr-no-ttl, gone)."""
    held: dict[str, list[Any]] = {}
    try:
        pipe = client.pipeline(transaction=False)
        for lk in locks:
            ref = ident(lk)
            key = f"{KEY_PREFIX}delivered:{ref}"
            if lk.style == "set":
                pipe.set(key, str(lk.value), ex=lk.ttl)
            else:
                pipe.incrby(key, lk.value)
                if lk.ttl is not None:
                    pipe.expire(key, lk.ttl)
            label = "gone" if lk.index is None else ("incr-no-ttl" if lk.style == "incr" and lk.ttl is None
                                                    else lk.style)
            held.setdefault(label, []).append(ref)
        pipe.execute()
    finally:
        client.close()
    return held


def start_demo(size: int = DEFAULT_SIZE, *, seed: int = DEFAULT_SEED, now: datetime | None = None,
               backlog: Backlog | None = None, poll_interval: float = 2.0) -> DemoServers:
    """Build the backlog, start both servers, hold the keys. The caller must :meth:`~DemoServers.stop`."""
    check_dependencies()
    t0 = time.perf_counter()
    tmpdir = Path(tempfile.mkdtemp(prefix="triage-demo-"))
    imap: EmbeddedImap | None = None
    redis_srv: EmbeddedRedis | None = None
    try:
        backlog = backlog or build_backlog(size, seed=seed, now=now)
        redis_srv = EmbeddedRedis(log_path=tmpdir / "redis.log")
        imap = EmbeddedImap(backlog.items(), log_path=tmpdir / "imap.log").start()
        settings = ConnectionSettings(host=HOST, port=imap.port, security="none", user=DEMO_USER,
                                      password=Secret(DEMO_PASSWORD), mailbox=DEMO_MAILBOX)
        servers = DemoServers(backlog=backlog, imap=imap, redis=redis_srv, tmpdir=tmpdir,
                              consumer=DemoConsumer(settings, redis_srv.url, poll_interval=poll_interval))
        servers.lock_uids = _hold_locks(servers)
    except BaseException:
        if imap is not None:
            imap.stop()
        if redis_srv is not None:
            redis_srv.stop()
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    servers.started_in = time.perf_counter() - t0
    log.info("demo started in %.2f s (%d messages, IMAP load %.2f s)", servers.started_in, len(backlog),
             imap.load_seconds)
    return servers


__all__ = ["DEMO_MAILBOX", "DEMO_PASSWORD", "DEMO_USER", "KEY_PREFIX", "DemoConsumer", "DemoServers",
           "EmbeddedImap", "EmbeddedRedis", "check_dependencies", "start_demo"]
