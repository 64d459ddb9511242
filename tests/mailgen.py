"""Build test messages (bytes) in the shapes GitLab's incoming mailbox really sees."""

from __future__ import annotations

import email.utils
import time

ADDRESS = "incoming+%{key}@incoming.gitlab.example.com"


def addr(key: str) -> str:
    return ADDRESS.replace("%{key}", key)


def message(
    *,
    subject: str = "Hello",
    from_: str = "Alice Example <alice@example.org>",
    to: str | None = None,
    key: str | None = "group-project-42-glimt-abc123def-issue",
    date: float | str | None = None,
    extra: dict[str, str] | list[tuple[str, str]] | None = None,
    body: str = "Body text.\r\n",
    message_id: str | None = None,
    raw_headers: bytes = b"",
) -> bytes:
    if to is None:
        to = addr(key) if key else "someone@elsewhere.example"
    if date is None:
        date = time.time()
    date_s = date if isinstance(date, str) else email.utils.formatdate(date, localtime=False)
    mid = message_id or email.utils.make_msgid(domain="example.org")
    headers: list[tuple[str, str]] = [
        ("From", from_), ("To", to), ("Subject", subject), ("Date", date_s), ("Message-ID", mid),
        ("MIME-Version", "1.0"), ("Content-Type", "text/plain; charset=utf-8"),
    ]
    if extra:
        items = list(extra.items()) if isinstance(extra, dict) else list(extra)
        headers.extend(items)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers).encode("utf-8")
    return head + raw_headers + b"\r\n" + body.encode("utf-8")


def backlog(n: int, *, now: float | None = None, seen_every: int = 0, deleted_every: int = 0,
            step: float = 60.0) -> list[tuple[bytes, float, str]]:
    """``n`` messages, oldest first, one every ``step`` seconds up to ``now``."""
    now = now or time.time()
    out = []
    for i in range(n):
        ts = now - (n - i) * step
        flags = ""
        if seen_every and i % seen_every == 0:
            flags += "S"
        if deleted_every and i % deleted_every == 0:
            flags += "T"
        out.append((message(subject=f"Message {i}", date=ts, key=f"grp-proj-{i % 7 + 1}-glimt-tok{i}-issue"), ts, flags))
    return out
