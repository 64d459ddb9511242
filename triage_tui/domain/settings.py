"""What the domain's analysis depends on, as pure data: imported by :mod:`.analysis` (building a
message) and :mod:`.classify` (its verdicts), which therefore never import each other's way back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta


@dataclass(frozen=True)
class AnalysisConfig:
    """What classification depends on. Built from settings; pure data."""

    address: str | None = None  # incoming address template, e.g. incoming+%{key}@example.com
    mailbox_kind: str = "incoming"  # or "service_desk": every key goes to the service desk handler
    stale_after: timedelta = timedelta(days=2)
    bot_sender_patterns: tuple[str, ...] = ()  # operator-configured regexes (case-insensitive)
    bot_subject_patterns: tuple[str, ...] = ()
    suspicious_patterns: tuple[str, ...] = ()
    project_names: dict[int, str] = field(default_factory=dict)
    gitlab_host: str | None = None  # GitLab only accepts reply-<key>@<this host> in References
