"""The worker's own metrics; retries by tier and parked messages come from the consumer runner
(``notification_worker_events_retried_total`` / ``_events_parked_total``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from common.observability import Metrics

__all__ = ["PREFIX", "NotificationMetrics"]

PREFIX = "notification_worker"


class NotificationMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.sent: Counter = metrics.counter(
            "sent_total", "Notifications a channel accepted", ("channel",)
        )
        self.failed: Counter = metrics.counter(
            "failed_total",
            "Sends that failed, by channel and kind (transient, permanent)",
            ("channel", "kind"),
        )
        self.skipped_duplicate: Counter = metrics.counter(
            "skipped_duplicate_total",
            "Sends skipped because a record shows this notification already went out",
            ("channel",),
        )
        self.send_seconds: Histogram = metrics.histogram(
            "send_seconds", "Time one channel took to send one notification", ("channel",)
        )
        self.scheduled_pending: Gauge = metrics.gauge(
            "scheduled_pending", "Scheduled notifications held in the delay tiers, not yet sent"
        )
