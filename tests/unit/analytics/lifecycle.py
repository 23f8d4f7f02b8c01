"""Builders of order lifecycle event sequences, shared by the unit and integration tests."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from common.events import (
    EventData,
    OrderCancelledV1,
    OrderConfirmedV1,
    OrderCreatedV1,
    OrderPaidV1,
    OrderPaymentFailedV1,
    OrderRejectedV1,
    OrderScheduledV1,
    OrderTransitionV1,
    OutgoingEnvelope,
    new_envelope,
)

# Paths through the lifecycle, as the order service can take them.
PATHS: dict[str, tuple[type[EventData], ...]] = {
    "created": (OrderCreatedV1,),
    "paid": (OrderCreatedV1, OrderPaidV1),
    "confirmed": (OrderCreatedV1, OrderPaidV1, OrderConfirmedV1),
    "payment_failed": (OrderCreatedV1, OrderPaymentFailedV1),
    "rejected": (OrderCreatedV1, OrderPaidV1, OrderRejectedV1),
    "cancelled_unpaid": (OrderCreatedV1, OrderCancelledV1),
    "cancelled_paid": (OrderCreatedV1, OrderPaidV1, OrderCancelledV1),
    "scheduled": (OrderScheduledV1,),
    "scheduled_cancelled": (OrderScheduledV1, OrderCancelledV1),
    "scheduled_confirmed": (
        OrderScheduledV1,
        OrderCreatedV1,
        OrderPaidV1,
        OrderConfirmedV1,
    ),
}
FINAL_STATE = {name: path[-1].routing_key.removeprefix("order.") for name, path in PATHS.items()}


@dataclass(frozen=True)
class Order:
    order_id: uuid.UUID
    path: str
    customer_id: str
    product_id: str
    currency: str
    amount: Decimal
    quantity: int
    created_at: datetime
    events: tuple[OutgoingEnvelope, ...]

    @property
    def final_state(self) -> str:
        return FINAL_STATE[self.path]

    @property
    def confirmed_at(self) -> datetime | None:
        last = self.events[-1].data
        if isinstance(last, OrderConfirmedV1):
            return last.changed_at
        return None


def lifecycle(
    path: str,
    *,
    customer_id: str,
    product_id: str,
    currency: str,
    amount: str,
    quantity: int = 1,
    created_at: datetime | None = None,
) -> Order:
    """Every event of one order along ``path``, versions 1, 2, ... and one minute apart; a
    scheduled order is due two hours after ``created_at`` and moves on from then."""
    order_id = uuid.uuid4()
    created = created_at or datetime.now(UTC).replace(microsecond=0)
    scheduled = path.startswith("scheduled")
    scheduled_time = created + timedelta(hours=2) if scheduled else None
    previous: str | None = None
    events = []
    for version, cls in enumerate(PATHS[path], start=1):
        status = cls.routing_key.removeprefix("order.")
        # A scheduled order moves on from OrderScheduled when it is due.
        start = scheduled_time if scheduled_time is not None and version > 1 else created
        at = start + timedelta(minutes=version - 1)
        common: dict[str, Any] = {
            "order_id": order_id,
            "customer_id": customer_id,
            "product_id": product_id,
            "quantity": quantity,
            "total_amount": Decimal(amount),
            "currency": currency,
            "status": status,
            "created_at": created,
            "order_version": version,
            "scheduled_time": scheduled_time,
        }
        data: EventData
        if cls is OrderCreatedV1:
            data = OrderCreatedV1(**common)
        else:
            assert issubclass(cls, OrderTransitionV1)
            paid = previous in ("paid",) or status in ("paid", "confirmed")
            data = cls(
                **common,
                previous_status=previous,
                changed_at=at,
                payment_id=f"pay_{order_id.hex[:8]}" if paid else None,
                refund_id=(
                    f"ref_{order_id.hex[:8]}"
                    if previous == "paid" and status in ("rejected", "cancelled")
                    else None
                ),
                reason="test" if status in ("rejected", "cancelled", "payment_failed") else None,
            )
        events.append(
            new_envelope(data, producer="tests", correlation_id=f"corr-{order_id}", occurred_at=at)
        )
        previous = status
    return Order(
        order_id,
        path,
        customer_id,
        product_id,
        currency,
        Decimal(amount),
        quantity,
        created,
        tuple(events),
    )


def shuffled_with_duplicates(
    orders: list[Order], rng: random.Random, duplicate_share: float = 0.3
) -> list[OutgoingEnvelope]:
    """All events of all orders in a random order (so later versions often come first), with
    a share of them delivered twice."""
    events = [e for o in orders for e in o.events]
    events += [e for e in events if rng.random() < duplicate_share]
    rng.shuffle(events)
    return events
