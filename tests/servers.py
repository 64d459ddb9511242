"""Real Dovecot and Redis servers for tests and benchmarks.

Each server runs on free loopback ports in its own temporary directory, with its own config,
and is stopped (process group killed) at the end. Nothing here is a fake: these are the Debian
``dovecot-imapd`` and ``redis-server`` binaries. If a binary is missing we raise: a test never
skips because a server is absent (``.ci/run`` installs them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

MAIL_UID = 65534  # nobody: Dovecot refuses to own mail as root
MAIL_GID = 65534  # nogroup
PASSWORD = "s3cret-test-pass"
#: One user whose password is not ASCII (passwd-file, compared as UTF-8 bytes): the UTF-8 login path.
UTF8_USER = "utf8user"
UTF8_PASSWORD = "pässwörd-€-Пароль"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early ({proc.returncode}): {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port}: {log.read_text(errors='replace')[-2000:]}")


def _require(binary: str) -> str:
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if not path:
        raise RuntimeError(f"{binary} is not installed: run `bash .ci/run` (it installs dovecot-imapd and redis-server)")
    return path


def _base_tmp(prefix: str) -> Path:
    # Dovecot's mail user (nobody) must traverse every parent: stay out of 0700 pytest dirs.
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    base.chmod(0o755)
    return base


def make_tls_material(directory: Path, cn: str = "localhost") -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost. Returns (ca, cert, key)."""
    openssl = _require("openssl")
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run = lambda *a: subprocess.run([openssl, *a], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=triage-tui test CA",
        "-keyout", str(ca_key), "-out", str(ca_crt))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", str(key), "-out", str(csr))
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
        "-days", "2", "-extfile", str(ext), "-out", str(crt))
    for p in (key, crt, ca_crt):
        p.chmod(0o644)
    return ca_crt, crt, key


DOVECOT_CONF = """\
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
info_log_path = {base}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = {ssl}
{ssl_files}
disable_plaintext_auth = no
# no 2 s wait before a failed login's answer (a test server; the client's handling is the same)
auth_failure_delay = 0
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = 1
mail_max_userip_connections = 200
imap_max_line_length = {max_line}
default_login_user = dovenull
default_internal_user = dovecot
mail_fsync = never
maildir_very_dirty_syncs = no
passdb {{
  driver = static
  args = password={password}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {base}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={base}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = {imaps_ssl}
  }}
  process_min_avail = 1
}}
service anvil {{
  chroot =
  # no growing delay after failed logins from 127.0.0.1 (the tests' wrong passwords cost 5 s each)
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
protocol imap {{
  mail_max_userip_connections = 200
}}
"""


@dataclass
class Dovecot:
    """A running Dovecot. Any user name logs in with :data:`PASSWORD`; each gets its own maildir."""

    base: Path
    imap_port: int
    imaps_port: int
    ca_file: Path | None
    proc: subprocess.Popen[bytes]
    password: str = PASSWORD
    _counter: int = field(default=0)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def new_user(self, prefix: str = "u") -> str:
        self._counter += 1
        return f"{prefix}{self._counter}x{os.getpid()}"

    def maildir(self, user: str) -> Path:
        return self.base / "home" / user / "Maildir"

    def seed(self, user: str, messages: Iterable[tuple[bytes, float, str]], folder: str = "") -> int:
        """Write messages straight into a maildir (fast: ~10k/s). Each item: (raw, internal_ts, flags)
        where flags uses maildir letters (``S`` seen, ``T`` deleted). UIDs follow the order given.
        Must be called before the first login of ``user`` (or on a fresh folder)."""
        root = self.maildir(user)
        box = root if not folder else root / f".{folder}"
        for sub in ("cur", "new", "tmp"):
            (box / sub).mkdir(parents=True, exist_ok=True)
        n = 0
        for i, (raw, ts, flags) in enumerate(messages):
            name = box / "cur" / f"{1_000_000_000 + i}.M{i:08d}P{os.getpid()}.seed:2,{''.join(sorted(flags))}"
            name.write_bytes(raw)
            os.utime(name, (ts, ts))
            n += 1
        for dirpath, _dirnames, filenames in os.walk(self.base / "home" / user):
            os.chown(dirpath, MAIL_UID, MAIL_GID)
            for f in filenames:
                os.chown(os.path.join(dirpath, f), MAIL_UID, MAIL_GID)
        for p in (self.base / "home", self.base / "home" / user):
            os.chown(p, MAIL_UID, MAIL_GID)
        return n

    def log(self) -> str:
        return (self.base / "dovecot.log").read_text(errors="replace")

    def doveadm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([_require("doveadm"), "-c", str(self.base / "dovecot.conf"), *args],
                              capture_output=True, text=True, check=False)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        shutil.rmtree(self.base, ignore_errors=True)


def start_dovecot(*, tls: bool = True, max_line_length: int = 65536, starttls_offered: bool = True) -> Dovecot:
    """Start Dovecot with a plaintext/STARTTLS listener and an implicit-TLS listener.

    ``starttls_offered=False`` runs without TLS at all (no STARTTLS capability) to test refusal.
    """
    binary = _require("dovecot")
    base = _base_tmp("triage-dovecot-")
    for sub in ("run", "state", "home"):
        (base / sub).mkdir()
    (base / "home").chmod(0o755)
    ca = None
    ssl_files = ""
    use_tls = tls and starttls_offered
    if use_tls:
        ca, crt, key = make_tls_material(base)
        ssl_files = f"ssl_cert = <{crt}\nssl_key = <{key}\nssl_min_protocol = TLSv1.2"
    imap_port, imaps_port = free_port(), free_port()
    conf = base / "dovecot.conf"
    conf.write_text(DOVECOT_CONF.format(
        base=base, ssl="yes" if use_tls else "no", ssl_files=ssl_files, uid=MAIL_UID, gid=MAIL_GID,
        password=PASSWORD, imap_port=imap_port, imaps_port=imaps_port if use_tls else 0,
        imaps_ssl="yes" if use_tls else "no", max_line=max_line_length))
    (base / "passwd").write_text(f"{UTF8_USER}:{{PLAIN}}{UTF8_PASSWORD}::::::\n", encoding="utf-8")
    (base / "passwd").chmod(0o644)
    (base / "dovecot.log").touch()
    proc = subprocess.Popen([binary, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=open(base / "stderr.log", "wb"), start_new_session=True)  # noqa: SIM115
    try:
        _wait_port(imap_port, proc, base / "dovecot.log")
        if use_tls:
            _wait_port(imaps_port, proc, base / "dovecot.log")
    except Exception as e:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise RuntimeError((base / "stderr.log").read_text(errors="replace")
                           + (base / "dovecot.log").read_text()) from e
    return Dovecot(base=base, imap_port=imap_port, imaps_port=imaps_port, ca_file=ca, proc=proc)


@dataclass
class Redis:
    base: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        shutil.rmtree(self.base, ignore_errors=True)


def start_redis(port: int | None = None) -> Redis:
    binary = _require("redis-server")
    base = _base_tmp("triage-redis-")
    port = port or free_port()
    log = base / "redis.log"
    log.touch()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(base), "--save", "",
         "--appendonly", "no", "--logfile", str(log), "--daemonize", "no", "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_port(port, proc, log)
    return Redis(base=base, port=port, proc=proc)


@contextlib.contextmanager
def dovecot(**kw: object) -> Iterator[Dovecot]:
    server = start_dovecot(**kw)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def redis_server() -> Iterator[Redis]:
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()
