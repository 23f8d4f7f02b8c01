"""Order lifecycle notifications against real RabbitMQ and Redis: one message per
customer-visible transition and channel, even when every event is delivered twice."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest

from common.events import encode_envelope
from common.testing import unique_name, wait_until
from tests.integration.notifications.conftest import (
    audit_of,
    metric,
    publish,
    webhook_settings,
)
from tests.unit.analytics.lifecycle import PATHS, lifecycle

pytestmark = pytest.mark.integration

# The notification kind of each event type's own message; the others send nothing.
KINDS = {
    "OrderCreated": "created",
    "OrderConfirmed": "confirmed",
    "OrderPaymentFailed": "payment_failed",
    "OrderRejected": "rejected",
    "OrderCancelled": "cancelled",
}
OUTCOMES = ("sent", "duplicate", "no_template")


def _consumed(worker) -> float:
    return sum(
        metric(worker, "events_consumed_total", {"event_type": t, "outcome": o})
        for t in (*KINDS, "OrderPaid", "OrderScheduled")
        for o in OUTCOMES
    )


async def test_each_customer_visible_transition_sends_once_per_channel_when_redelivered(
    start_worker, receiver, amqp, cleanup_topology
):
    worker = await start_worker(channels=("log", "webhook"), webhook=webhook_settings(receiver))
    customer = unique_name("cust")
    # Created three hours ago, so scheduled orders are already due (their OrderCreated and
    # later events carry a scheduled_time in the past, as the order service emits them).
    created = datetime.now(UTC) - timedelta(hours=3)
    orders = [
        lifecycle(
            path,
            customer_id=customer,
            product_id="prod-1",
            currency="USD",
            amount="9.99",
            created_at=created,
        )
        for path in PATHS
    ]
    events = [e for o in orders for e in o.events] * 2
    random.Random(6).shuffle(events)
    for envelope in events:
        await publish(amqp, cleanup_topology, encode_envelope(envelope))

    async def all_acked() -> bool:
        return _consumed(worker) == len(events)

    await wait_until(all_acked, timeout=30, interval=0.1, message="every delivery acked")
    for order in orders:
        expected: dict[str, int] = {}
        for envelope in order.events:
            kind = KINDS.get(envelope.event_type)
            if kind is None:
                continue
            for channel in ("log", "webhook"):
                expected[channel if kind == "created" else f"{channel}:{kind}"] = 1
        assert await audit_of(worker, str(order.order_id)) == expected, order.path

    sends = sum(1 for o in orders for e in o.events if e.event_type in KINDS)
    await wait_until(
        lambda: asyncio.sleep(0, len(receiver.successes()) == sends),
        timeout=5,
        message="every webhook answered",
    )
    delivered = [(r.json()["event_id"], r.json()["data"]["status"]) for r in receiver.successes()]
    assert len(set(delivered)) == len(delivered) == sends
    assert "paid" not in {status for _, status in delivered}
    assert metric(worker, "sent_total", {"channel": "log"}) == sends
