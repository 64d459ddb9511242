"""Blocking IO, no Textual: IMAP sessions, Redis, the audit journal, and the one service layer
that owns every mutation."""
