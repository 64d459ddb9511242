"""demo: play an incident on an embedded mailbox and Redis, with no server to install.

Starts, in this process and on free loopback ports, an IMAP server (pymap, in memory) holding a
realistic backlog (:mod:`triage_tui.demo.backlog`) and a Redis (fakeredis) holding mail_room's
arbitration keys, then opens the TUI through the production path: the same argument parser,
settings resolution, :class:`~triage_tui.context.Context`, services and ``tui.run`` an operator
uses against a real mailbox. Only the destination differs.

``--print-env`` instead prints the ``TRIAGE_*`` lines that point the CLI subcommands at the demo
from another shell, and keeps the servers up until Ctrl-C (the README's CLI walkthrough, and the
end-to-end test). Nothing is written outside a temporary directory (removed on exit) except the
normal audit journal.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from triage_tui.errors import UsageError

NAME = "demo"
HELP = "play a realistic incident on an embedded mailbox and Redis (nothing to install or configure)"
DESCRIPTION = (
    "Start an embedded IMAP server and Redis on loopback, loaded with a realistic mail_room incident "
    "(about 1,800 messages across projects: stale mail, a bot burst, bounces, the seen trap, held Redis "
    "keys...), and open the full-screen UI on them. A mail_room stand-in is down at start and can be "
    "started from the UI. Global options such as --no-mouse go before `demo`."
)

#: Environment variables the demo keeps from the caller's shell: where the journal goes and UI
#: taste. Every other TRIAGE_* variable (a real host, a password file, an OAuth2 command...) is
#: dropped for the demo's settings resolution, so the demo can never reach a real mailbox.
KEEP_ENV = ("TRIAGE_STATE_DIR", "TRIAGE_THEME", "TRIAGE_KEYMAP", "TRIAGE_VIEW")
PASSWORD_ENV = "TRIAGE_DEMO_IMAP_PASSWORD"
GRAPH_SECRET_ENV = "TRIAGE_DEMO_GRAPH_SECRET"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from triage_tui.demo.backlog import DEFAULT_SEED, DEFAULT_SIZE, MAX_SIZE, MIN_SIZE
    from triage_tui.domain.numbers import int_arg

    # dest names differ from the global options': argparse lets a subparser's defaults overwrite
    # what the main parser already set (e.g. a global --read-only)
    p.add_argument("--read-only", dest="demo_read_only", action="store_true",
                   help="review mode: every change is refused (same as the global --read-only)")
    p.add_argument("--size", dest="demo_size", type=int_arg(MIN_SIZE, MAX_SIZE), default=DEFAULT_SIZE, metavar="N",
                   help=f"messages in the backlog ({MIN_SIZE}-{MAX_SIZE}, default {DEFAULT_SIZE}; "
                   "loading takes about 1 s per 1,000)")
    p.add_argument("--seed", dest="demo_seed", type=int_arg(0, 2**63 - 1), default=DEFAULT_SEED, metavar="N",
                   help="another seed gives another (equally realistic) backlog")
    p.add_argument("--keep-running-consumer", dest="demo_consumer_running", action="store_true",
                   help="start the mail_room stand-in at once and keep it running (default: down, as in "
                   "the story, until started from the UI)")
    p.add_argument("--graph", dest="demo_graph", action="store_true",
                   help="serve the backlog through a Microsoft Graph-compatible test server instead of IMAP "
                   "(the --inbox graph path; its mail_room stand-in polls Graph as mail_room's microsoft_graph "
                   "inbox does)")
    p.add_argument("--print-env", dest="demo_print_env", action="store_true",
                   help="do not open the UI: print TRIAGE_* lines for using the CLI against the demo from "
                   "another shell, and serve until Ctrl-C")


def _scrub_environment() -> None:
    """Drop the caller's TRIAGE_* settings (see :data:`KEEP_ENV`) from this process."""
    for name in [k for k in os.environ if k.startswith("TRIAGE_")]:
        if name not in KEEP_ENV:
            del os.environ[name]


def _caller_read_only(args: argparse.Namespace, ctx: Any) -> bool:
    if getattr(args, "demo_read_only", False) or getattr(args, "read_only", None):
        return True
    try:
        return bool(ctx.read_only)  # TRIAGE_READ_ONLY or the config file
    except Exception:  # noqa: BLE001 - a broken personal config must not stop the demo
        return False


def tui_arguments(servers: Any, *, read_only: bool, no_mouse: bool, debug: bool,
                  config_file: Path, build_parser: Callable[[], argparse.ArgumentParser]) -> argparse.Namespace:
    """The arguments an operator would type to reach the demo, parsed by the real parser (the
    entry point's ``build_parser``, passed down in ``args._build_parser``)."""
    from triage_tui.demo.backlog import ADDRESS_TEMPLATE
    from triage_tui.demo.server import DEMO_MAILBOX, DEMO_USER, HOST, KEY_PREFIX

    if getattr(servers, "graph", None) is not None:
        env = servers.env()
        argv = ["--config", str(config_file), "--inbox", "graph", "--graph-endpoint", env["TRIAGE_GRAPH_ENDPOINT"],
                "--azure-ad-endpoint", env["TRIAGE_AZURE_AD_ENDPOINT"], "--graph-tenant-id",
                env["TRIAGE_GRAPH_TENANT_ID"], "--graph-client-id", env["TRIAGE_GRAPH_CLIENT_ID"],
                "--graph-mailbox", env["TRIAGE_GRAPH_MAILBOX"], "--graph-secret-env", GRAPH_SECRET_ENV]
    else:
        argv = ["--config", str(config_file), "--host", HOST, "--port", str(servers.imap.port), "--security",
                "none", "--user", DEMO_USER, "--password-env", PASSWORD_ENV, "--mailbox", DEMO_MAILBOX]
    argv += ["--address", ADDRESS_TEMPLATE, "--redis-url", servers.redis_url, "--key-prefix", KEY_PREFIX]
    if read_only:
        argv.append("--read-only")
    if no_mouse:
        argv.append("--no-mouse")
    if debug:
        argv.append("--debug")
    argv.append("tui")
    return build_parser().parse_args(argv)


def _start(args: argparse.Namespace, ctx: Any) -> Any:
    from triage_tui.demo.backlog import MAX_SIZE, MIN_SIZE
    from triage_tui.demo.server import check_dependencies, start_demo

    size = args.demo_size
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise UsageError(f"--size must be between {MIN_SIZE} and {MAX_SIZE} (got {size})")
    check_dependencies()
    ctx.note(f"triage-tui demo: building a {size:,}-message incident and starting the embedded servers…")
    if getattr(args, "demo_graph", False):
        from triage_tui.demo.graphdemo import start_graph_demo

        demo = start_graph_demo(size, seed=args.demo_seed)
        atexit.register(demo.stop)
        if args.demo_consumer_running and demo.consumer is not None:
            demo.consumer.start()
        return demo
    servers = start_demo(size, seed=args.demo_seed)
    atexit.register(servers.stop)  # also on paths that skip our finally (an exception in Textual's exit)
    if args.demo_consumer_running:
        servers.consumer.start()
    return servers


def run(args: argparse.Namespace, ctx: Any) -> int:
    if args.demo_print_env:
        return _print_env(args, ctx)
    if not sys.stdout.isatty() or not sys.stdin.isatty():
        raise UsageError("the demo UI needs a terminal; for scripts use `triage-tui demo --print-env` and the "
                         "CLI subcommands")
    read_only = _caller_read_only(args, ctx)
    no_mouse = bool(getattr(args, "no_mouse", None))
    debug = bool(getattr(args, "debug", False))
    servers = _start(args, ctx)
    previous = _exit_on_hangup()
    try:
        from triage_tui.commands import tui
        from triage_tui.context import Context

        config_file = servers.tmpdir / "config.toml"
        config_file.write_text("# the demo's settings come from flags only\n", encoding="utf-8")
        _scrub_environment()
        if getattr(servers, "graph", None) is not None:
            os.environ[GRAPH_SECRET_ENV] = servers.env()["TRIAGE_GRAPH_CLIENT_SECRET"]
        else:
            os.environ[PASSWORD_ENV] = servers.env()["TRIAGE_IMAP_PASSWORD"]
        os.environ["TRIAGE_DEMO"] = "1"
        os.environ["TRIAGE_CACHE"] = "false"  # a throwaway server on a random port: nothing worth caching
        tui_args = tui_arguments(servers, read_only=read_only, no_mouse=no_mouse, debug=debug,
                                 config_file=config_file, build_parser=args._build_parser)
        tui_args.demo = True  # the pulse bar says DEMO
        tui_args.demo_consumer = servers.consumer  # start()/stop()/running/delivered/status for the UI
        tui_args.demo_story = servers.backlog.story
        tui_ctx = Context(tui_args, stdout=ctx.out, stdin=ctx.stdin)
        try:
            locks = tui_ctx.lock_service()
            if locks is not None and hasattr(locks, "state_path"):
                locks.state_path = servers.tmpdir / "redis-locks.json"  # demo state stays in the temp dir
            return int(tui.run(tui_args, tui_ctx) or 0)
        finally:
            tui_ctx.close()
    finally:
        servers.stop()
        atexit.unregister(servers.stop)
        _restore(previous)


def _exit_on_hangup() -> dict[int, Any]:
    """An SSH drop (SIGHUP) or a kill (SIGTERM) ends the demo through its ``finally``: the servers
    stop and the temporary directory goes, instead of the default abrupt death."""
    def leave(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, leave)
    return previous


def _restore(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def _print_env(args: argparse.Namespace, ctx: Any) -> int:
    servers = _start(args, ctx)
    stop = threading.Event()
    toggle = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if signum == getattr(signal, "SIGUSR1", None):
            toggle.set()
        else:
            stop.set()

    previous = {}
    for name in ("SIGTERM", "SIGHUP", "SIGUSR1"):
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, on_signal)
    try:
        env = servers.env()
        if _caller_read_only(args, ctx):
            env["TRIAGE_READ_ONLY"] = "1"
        env_file = servers.tmpdir / "env.sh"
        lines = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
        env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        b = servers.backlog
        views = b.view_counts()
        out = ctx.out
        where = env["TRIAGE_GRAPH_ENDPOINT"] + " (Microsoft Graph test server)" if "TRIAGE_GRAPH_ENDPOINT" in env \
            else f"{env['TRIAGE_IMAP_HOST']}:{env['TRIAGE_IMAP_PORT']}"
        out.write(f"# triage-tui demo: {len(b):,} messages ({views['unseen']:,} unseen, {views['seen-stuck']} seen "
                  f"but not deleted, {views['deleted']} deleted) on {where}, Redis {env['TRIAGE_REDIS_URL']} "
                  f"({len(b.locks)} keys held); started in {servers.started_in:.1f} s\n")
        out.write(f"# in another shell: . {shlex.quote(str(env_file))}   (or paste these lines)\n")
        out.write("\n".join(lines) + "\n")
        if servers.consumer is None:
            out.write("# no mail_room stand-in in this demo. Ctrl-C stops the demo.\n")
        else:
            state = "running" if servers.consumer.running else "down"
            out.write(f"# mail_room (the demo consumer) is {state}: `kill -USR1 {os.getpid()}` starts or stops it. "
                      "Ctrl-C stops the demo.\n")
        out.flush()
        while not stop.is_set():
            try:
                stop.wait(0.5)
            except KeyboardInterrupt:
                break
            if toggle.is_set() and servers.consumer is None:
                toggle.clear()
                ctx.note("triage-tui demo: no mail_room stand-in in this demo")
            if toggle.is_set():
                toggle.clear()
                if servers.consumer.running:
                    servers.consumer.stop()
                else:
                    servers.consumer.start()
                ctx.note(f"triage-tui demo: {servers.consumer.status}")
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        _restore(previous)
        servers.stop()
        atexit.unregister(servers.stop)
        ctx.note("triage-tui demo: stopped")


__all__ = ["add_arguments", "run", "tui_arguments"]
