"""Customer-visible order transitions: one message each, of its own kind, sent at once."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from common.events import (
    OrderCancelledV1,
    OrderConfirmedV1,
    OrderPaidV1,
    OrderPaymentFailedV1,
    OrderRejectedV1,
    OrderScheduledV1,
    OrderTransitionV1,
    encode_envelope,
    new_envelope,
)
from common.messaging.outcomes import Ack
from common.observability import Metrics
from notification_worker.handlers import NotificationHandler
from notification_worker.metrics import NotificationMetrics
from notification_worker.planning import Planner
from notification_worker.templates import render
from tests.unit.notifications.conftest import NOW, delivery
from tests.unit.notifications.fakes import FakeChannel, FakeSentStore


def transition_body(
    cls: type[OrderTransitionV1], order_id: uuid.UUID | None = None, **extra: Any
) -> bytes:
    event = cls(
        order_id=order_id or uuid.uuid4(),
        customer_id="cust-1",
        product_id="prod-1",
        quantity=2,
        total_amount=Decimal("19.98"),
        currency="USD",
        status=cls.routing_key.removeprefix("order."),
        previous_status="paid",
        order_version=3,
        changed_at=NOW,
        created_at=NOW - timedelta(minutes=1),
        **extra,
    )
    return encode_envelope(
        new_envelope(event, producer="test", correlation_id="corr-1", occurred_at=NOW)
    )


def _planner(max_ahead: float = 3600.0) -> Planner:
    return Planner(reminder_minutes=10, max_ahead_seconds=max_ahead)


def _plan(body: bytes, max_ahead: float = 3600.0):
    d = delivery(body)
    return _planner(max_ahead).plan(d.envelope, d.event, NOW)


@pytest.mark.parametrize(
    ("cls", "kind"),
    [
        (OrderConfirmedV1, "confirmed"),
        (OrderPaymentFailedV1, "payment_failed"),
        (OrderRejectedV1, "rejected"),
        (OrderCancelledV1, "cancelled"),
    ],
)
def test_each_customer_visible_transition_plans_one_immediate_notification_of_its_kind(cls, kind):
    [only] = _plan(transition_body(cls))
    assert (only.kind, only.due, only.primary) == (kind, None, True)
    assert only.audit_field("log") == f"log:{kind}"


@pytest.mark.parametrize("cls", [OrderPaidV1, OrderScheduledV1])
def test_paid_and_scheduled_send_nothing(cls):
    assert _plan(transition_body(cls)) == []


def test_a_cancelled_scheduled_order_is_told_at_once_even_beyond_the_schedule_horizon():
    far = NOW + timedelta(days=30)
    [only] = _plan(transition_body(OrderCancelledV1, scheduled_time=far), max_ahead=60)
    assert only.due is None


def test_rejection_and_cancellation_texts_name_the_reason_and_the_refund():
    body = transition_body(OrderRejectedV1, reason="out_of_stock", refund_id="ref_42")
    [n] = _plan(body)
    for channel in ("log", "smtp"):
        text = render(n.event_type, n.kind, channel, n.fields).text
        assert "out of stock" in text and "ref_42" in text and "None" not in text
    [c] = _plan(transition_body(OrderCancelledV1))
    text = render(c.event_type, c.kind, "log", c.fields).text
    assert "no reason given" in text and "refund" not in text and "None" not in text


async def test_a_redelivered_transition_sends_once_per_channel_and_counts_apart_from_created():
    log, hook = FakeChannel("log"), FakeChannel("webhook")
    store = FakeSentStore()
    handler = NotificationHandler(
        _planner(),
        [log, hook],
        store,
        NotificationMetrics(Metrics("nw_lifecycle")),
        tiers=(1.0, 10.0),
        claim_seconds=5,
        channel_concurrency=4,
        clock=lambda: NOW,
    )
    order_id = uuid.uuid4()
    confirmed = transition_body(OrderConfirmedV1, order_id=order_id)
    cancelled = transition_body(OrderCancelledV1, order_id=order_id)
    assert await handler.handle(delivery(confirmed)) == Ack("sent")
    assert await handler.handle(delivery(confirmed)) == Ack("duplicate")
    assert await handler.handle(delivery(cancelled)) == Ack("sent")
    assert len(log.sent) == 2 and len(hook.sent) == 2
    assert store.audits == {
        str(order_id): {
            "log:confirmed": 1,
            "webhook:confirmed": 1,
            "log:cancelled": 1,
            "webhook:cancelled": 1,
        }
    }
