"""The embedded demo: a realistic incident mailbox, an embedded Redis and a mail_room stand-in.

``triage-tui demo`` builds the backlog (:mod:`.backlog`), serves it from an in-process IMAP
server with an in-process Redis holding mail_room's arbitration keys (:mod:`.server`), and opens
the same TUI through the same connection code as production. Nothing here is imported by the
production path: pymap and fakeredis are needed only for the demo.
"""

from __future__ import annotations

from triage_tui.demo.backlog import ADDRESS_TEMPLATE, STORY, Backlog, DemoMessage, LockSpec, build_backlog

__all__ = ["ADDRESS_TEMPLATE", "STORY", "Backlog", "DemoMessage", "LockSpec", "build_backlog"]
