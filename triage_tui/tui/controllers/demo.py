"""The demo's mail_room stand-in (``triage-tui demo``): ``M`` starts or stops it, a re-ingest
starts it, and its status line ticks in the pulse bar."""

from __future__ import annotations

from triage_tui.tui import messages as M
from triage_tui.tui.controllers import run_thread
from triage_tui.tui.controllers.host import Host


class DemoController:
    def __init__(self, host: Host) -> None:
        self.host = host

    def toggle(self) -> None:
        h = self.host
        c = h.demo_consumer
        if c is None:
            h.status("there is no mail_room to start here: this is not the demo", "warn")
            return
        start = not c.running
        h.status("demo: starting mail_room…" if start else "demo: stopping mail_room…")
        self.consumer_worker(start, "started" if start else "stopped")

    def consumer_worker(self, start: bool, why: str) -> None:
        run_thread(self.host, self._consumer_worker, start, why, name="_demo_consumer_worker", group="demo")

    def _consumer_worker(self, start: bool, why: str) -> None:
        h = self.host
        c = h.demo_consumer
        if start:
            c.start()
        else:
            c.stop()
        h.post_message(M.DemoConsumerChanged(c.running, why))

    def changed(self, msg: M.DemoConsumerChanged) -> None:
        h = self.host
        self.tick()
        if msg.running:
            interval = getattr(h.demo_consumer, "poll_interval", None)
            every = f" every {interval:g} s" if interval else ""
            h.status(f"demo: mail_room {msg.note}: it polls{every}, claims each UNSEEN message's key in Redis, "
                     "fetches it and flags it \\Deleted (M stops it)", "ok")
        else:
            h.status(f"demo: mail_room {msg.note} (M starts it again)", "warn")

    def tick(self) -> None:
        """The demo's mail_room status line (in-memory counters: cheap enough for a 1 s timer)."""
        h = self.host
        c = h.demo_consumer
        if c is None:
            return
        s = h.pulse_state
        try:
            running = bool(c.running)
            s.consumer, s.consumer_running = str(c.status) + ("" if running else " · M starts it"), running
        except Exception as e:  # noqa: BLE001 - a status line must never break the UI
            s.consumer, s.consumer_running = f"mail_room: ? ({type(e).__name__})", False
        h._pulse()

    def reingest_note(self) -> str | None:
        c = self.host.demo_consumer
        if c is None:
            return None
        if c.running:
            return f"demo: {c.status}: it picks the messages up as soon as their keys are free."
        return ("demo: mail_room (the stand-in) is down, as in the story. It starts by itself once you confirm, "
                "like the runbook's last step (M starts or stops it any time).")
