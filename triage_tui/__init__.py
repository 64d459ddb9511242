"""triage-tui: triage GitLab's incoming-email IMAP mailbox during a mail_room incident."""

__version__ = "0.1.0"
