"""The header preview: open it, read the header with BODY.PEEK in a worker, show the analysis,
and hand the raw header to $PAGER."""

from __future__ import annotations

import os
import shlex
import subprocess

from textual.app import SuspendNotSupported

from triage_tui.domain.text import inert
from triage_tui.tui import messages as M
from triage_tui.tui.columns import human_age
from triage_tui.tui.controllers import run_thread
from triage_tui.tui.controllers.host import Host
from triage_tui.tui.screens.preview import PreviewScreen


class PreviewController:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.screen: PreviewScreen | None = None

    def open(self, uid: int) -> None:
        h = self.host
        screen = PreviewScreen(uid, h.model.messages.get(uid))
        self.screen = screen

        def closed(_: None) -> None:
            self.screen = None

        h.push_screen(screen, closed)
        run_thread(h, self._peek_worker, uid, name="_peek_worker", group="peek", exclusive=True)

    def _peek_worker(self, uid: int) -> None:
        h = self.host
        svc = h.service
        with h._io_lock:
            peek = svc.peek(uid)
        now = h.clock()
        msg = h.model.messages.get(uid)
        flags = " ".join(f for f in peek.flags if f != "\\Recent") or "(none)"  # \\Recent is per session
        lines: list[str] = [
            f"UID {peek.uid} · UIDVALIDITY {peek.uidvalidity} · flags {flags} · "
            f"{peek.size:,} bytes",
            f"INTERNALDATE {peek.internaldate.isoformat() if peek.internaldate else '?'} · in the mailbox for "
            f"{human_age((now - peek.internaldate).total_seconds(), False) if peek.internaldate else '?'}",
        ]
        try:
            from triage_tui.domain.hops import analyze_header

            analysis = analyze_header(peek.header, peek.internaldate, now, svc.analysis, size=peek.size)
            lines += analysis.render_text()
        except ImportError:  # pragma: no cover - until the header analysis lands
            lines.append("(header analysis not available in this build)")
        if msg is not None and (msg.lock is not None or msg.lock_ttl is not None):
            lines.append(f"mail_room lock: value {msg.lock!r}, TTL {msg.lock_ttl}s")
        header = peek.header.decode("utf-8", "replace") if isinstance(peek.header, bytes) else str(peek.header)
        message_id = None
        for line in header.splitlines():
            if line.lower().startswith("message-id:"):
                message_id = line.split(":", 1)[1].strip()
                break
        h.post_message(M.PeekReady(uid, lines, header, message_id))

    def peek_ready(self, msg: M.PeekReady) -> None:
        if self.screen is not None and self.screen.uid == msg.uid:
            self.screen.show_result(msg.lines, msg.header, msg.message_id)

    def open_in_pager(self, text: str) -> None:
        h = self.host
        pager = os.environ.get("PAGER") or "less"
        safe = inert(text, multiline=True).removesuffix("\n") + "\n"  # lines end at LF only
        try:
            with h.suspend():
                subprocess.run(shlex.split(pager), input=safe.encode("utf-8"), check=False)
        except SuspendNotSupported:
            h.notify("cannot open $PAGER here (no terminal to hand over)", severity="warning", markup=False)
        except OSError as e:
            h.notify(f"cannot run $PAGER ({pager}): {e}", severity="error", markup=False)
