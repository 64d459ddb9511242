"""Where the watch looks for GitLab's Sidekiq queues: mail_room's own ``:delivery_options:`` (queue,
namespace) when it delivers through Sidekiq, overridden by --sidekiq-queue / --sidekiq-namespace."""

from __future__ import annotations

from tests.unit.test_config_unit import CORPUS, args
from triage_tui.config import resolve
from triage_tui.services.sidekiq import DEFAULT_QUEUES, queue_names


def test_mail_room_sidekiq_delivery_options_are_imported_and_flags_override() -> None:
    s = resolve(args("--mail-room-config", str(CORPUS / "mail_room.yml")), {})
    assert s["redis.sidekiq_queues"] == ["default"] and not s["redis.sidekiq_namespace"]
    s = resolve(args("--mail-room-config", str(CORPUS / "mail_room.yml"), "--sidekiq-queue", "email_receiver",
                     "--sidekiq-queue", "mailers", "--sidekiq-namespace", "resque:gitlab:"), {})
    assert s["redis.sidekiq_queues"] == ["email_receiver", "mailers"]
    assert s["redis.sidekiq_namespace"] == "resque:gitlab:"
    s = resolve(args("--mail-room-config", str(CORPUS / "mail_room_webhook.yml")), {})
    assert s["redis.sidekiq_queues"] is None  # webhook delivery: no queue named, the defaults apply
    assert queue_names(s["redis.sidekiq_queues"]) == DEFAULT_QUEUES
    assert queue_names([" a ", "", "a", "b"]) == ("a", "b")
