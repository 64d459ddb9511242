"""Sample messages and reference material for the domain tests (no servers needed)."""

from __future__ import annotations

from pathlib import Path

CORPUS = Path(__file__).resolve().parent


def load(name: str) -> bytes:
    """A sample message, with CRLF line ends as on the wire."""
    return (CORPUS / name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
