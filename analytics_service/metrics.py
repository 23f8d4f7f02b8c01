"""The analytics service's own metrics (the consumer runner's come from common)."""

from __future__ import annotations

from common.observability import Metrics

__all__ = ["SERVICE", "ApiMetrics", "ApplyMetrics"]

SERVICE = "analytics_service"


class ApplyMetrics:
    """What the consumer applied. Revenue is a float here only because Prometheus counters are;
    the exact figures live in analytics_db."""

    def __init__(self, metrics: Metrics) -> None:
        self.apply_seconds = metrics.histogram(
            "batch_apply_seconds", "Time to apply one batch in its database transaction"
        )
        self.end_to_end_seconds = metrics.histogram(
            "event_end_to_end_seconds",
            "Applied time minus the event's occurred_at, per applied event",
            buckets=(
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1.0,
                2.5,
                5.0,
                10.0,
                30.0,
                60.0,
                300.0,
                1800.0,
            ),
        )
        self.lag_seconds = metrics.gauge(
            "consumer_lag_seconds",
            "Now minus occurred_at of the last applied event, taken when it was applied",
        )
        self.last_applied_timestamp = metrics.gauge(
            "last_applied_event_timestamp_seconds", "occurred_at of the last applied event"
        )
        self.orders_applied = metrics.counter(
            "orders_applied_total",
            "Orders added to the booked totals (created, paid or confirmed)",
            ("currency",),
        )
        self.revenue = metrics.counter(
            "revenue_total",
            "Booked revenue added to the aggregates, by currency (gross: reversals are counted "
            "in revenue_reversed_total)",
            ("currency",),
        )
        self.recognised = metrics.counter(
            "revenue_recognised_total",
            "Revenue recognised: orders confirmed, by currency",
            ("currency",),
        )
        self.reversed = metrics.counter(
            "revenue_reversed_total",
            "Booked revenue taken back because the order ended cancelled, rejected or "
            "payment_failed, by currency and that status",
            ("currency", "status"),
        )
        self.transitions = metrics.counter(
            "order_transitions_total",
            "Orders analytics moved into a lifecycle state, by that state",
            ("status",),
        )
        self.conflicts = metrics.counter(
            "apply_conflicts_total", "Batches rolled back by a deadlock or lock wait and rerun"
        )
        self.cache_invalidations = metrics.counter(
            "cache_invalidations_total",
            "Summary cache invalidations after a commit, by result",
            ("result",),
        )


class ApiMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.cache_requests = metrics.counter(
            "cache_requests_total",
            "Summary cache lookups by result: hit, miss, error (Redis failed), bypassed (Redis "
            "recently failed), stale (last known summary served while MySQL was down)",
            ("result",),
        )
        self.db_unavailable = metrics.counter(
            "db_unavailable_total", "Requests answered 503 because MySQL was unavailable"
        )
