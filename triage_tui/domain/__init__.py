"""Pure domain code: no IO, no Textual. Message model, header parsing, UID sets, GitLab semantics."""
