"""The Graph client's pure parts: ``Retry-After`` parsing (absurd values included), the request
budget, and which links it follows (no server needed: nothing here opens a socket)."""

from __future__ import annotations

from collections import Counter

import pytest

from triage_tui.errors import ConfigError
from triage_tui.services.graph import GraphClient, GraphError, GraphSettings, RequestStats, _retry_after
from triage_tui.services.imap import Secret


@pytest.mark.parametrize("value, want", [
    ("5", 5.0), (" 7 ", 7.0), ("0.25", 0.25), ("0", 0.0), ("-3", 0.0), ("nan", None), ("inf", 1e12),
    ("1e400", 1e12), ("soon", None), ("", None), (None, None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ("Wed, 21 Oct 2015 07:28:00", None), ("\x00", None), ("9" * 400, 1e12),
])
def test_retry_after(value: str | None, want: float | None) -> None:
    assert _retry_after(value) == want


def test_budget_counts_requests_inside_batches_not_the_batch() -> None:
    s = RequestStats(http=Counter({"GET": 3, "POST": 2}), subrequests=Counter({"PATCH": 40}), batches=2, token=5)
    assert s.budget == 43 and s.as_dict()["budget"] == 43


def client(**kw: object) -> GraphClient:
    return GraphClient(GraphSettings("t", "c", Secret("client-secret-value"), "box@example.com",
                                     graph_endpoint="https://graph.example.com", **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("link", [
    "https://evil.example.com/v1.0/users/x/messages",
    "http://graph.example.com/v1.0/users/x/messages",       # downgraded scheme
    "https://graph.example.com:444/v1.0/users/x/messages",  # other port
    "https://graph.example.com/beta/users/x/messages",      # outside /v1.0
    "https://graph.example.com@evil.example.com/v1.0/x",    # userinfo trick
])
def test_links_off_the_graph_endpoint_are_refused(link: str) -> None:
    with pytest.raises((GraphError, ConfigError)):
        client().url(link)


def test_paths_and_params_are_quoted() -> None:
    c = client()
    assert c.url("/users/a@b/messages", {"$filter": "isRead eq false", "$top": 5}) == \
        "https://graph.example.com/v1.0/users/a@b/messages?$filter=isRead%20eq%20false&$top=5"
    assert c.message_path("AAMk+/=?#x") == "/users/box@example.com/messages/AAMk%2B%2F%3D%3F%23x"
    assert "client-secret-value" not in repr(c) + repr(c.settings)
