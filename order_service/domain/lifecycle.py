"""The order state machine: which transitions are legal and which event each one emits.

scheduled -> created | cancelled
created   -> paid | payment_failed | cancelled
paid      -> confirmed | rejected | cancelled
confirmed, payment_failed, rejected, cancelled: final
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from common.events import (
    EventData,
    OrderCancelledV1,
    OrderConfirmedV1,
    OrderPaidV1,
    OrderPaymentFailedV1,
    OrderRejectedV1,
    OrderScheduledV1,
    OrderTransitionV1,
)
from order_service.domain.order import Order, OrderStatus

__all__ = [
    "CANCELLABLE",
    "FINAL",
    "TRANSITIONS",
    "IllegalTransitionError",
    "TimelineEntry",
    "Transition",
    "first_event",
    "transition",
]

S = OrderStatus
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.SCHEDULED: frozenset({S.CREATED, S.CANCELLED}),
    S.CREATED: frozenset({S.PAID, S.PAYMENT_FAILED, S.CANCELLED}),
    S.PAID: frozenset({S.CONFIRMED, S.REJECTED, S.CANCELLED}),
    S.CONFIRMED: frozenset(),
    S.PAYMENT_FAILED: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
}
FINAL = frozenset(s for s, targets in TRANSITIONS.items() if not targets)
CANCELLABLE = frozenset(s for s, targets in TRANSITIONS.items() if S.CANCELLED in targets)

_EVENTS: dict[OrderStatus, type[OrderTransitionV1]] = {
    S.SCHEDULED: OrderScheduledV1,
    S.PAID: OrderPaidV1,
    S.CONFIRMED: OrderConfirmedV1,
    S.PAYMENT_FAILED: OrderPaymentFailedV1,
    S.REJECTED: OrderRejectedV1,
    S.CANCELLED: OrderCancelledV1,
}


class IllegalTransitionError(Exception):
    """The order's current state does not allow the requested one (a 409, never an overwrite)."""

    def __init__(self, order_id: uuid.UUID, current: OrderStatus, target: OrderStatus) -> None:
        super().__init__(f"order {order_id} is {current.value}; it cannot become {target.value}")
        self.order_id = order_id
        self.current = current
        self.target = target


@dataclass(frozen=True)
class TimelineEntry:
    """One row of an order's history: the state it entered, when, and the event that said so."""

    status: OrderStatus
    previous_status: OrderStatus | None
    version: int
    at: datetime
    event_id: uuid.UUID
    event_type: str
    reason: str | None = None


@dataclass(frozen=True)
class Transition:
    """A legal state change: the order after it and the event it commits with."""

    before: Order
    after: Order
    event: EventData


def _transition_event(
    order: Order,
    previous: OrderStatus | None,
    *,
    reason: str | None = None,
    payment_id: str | None = None,
    refund_id: str | None = None,
) -> OrderTransitionV1:
    cls = _EVENTS[order.status]
    return cls(
        order_id=order.id,
        customer_id=order.customer_id,
        product_id=order.product_id,
        quantity=order.quantity,
        total_amount=order.total_amount,
        currency=order.currency,
        status=order.status.value,
        previous_status=previous.value if previous is not None else None,
        order_version=order.version,
        changed_at=order.updated_at,
        created_at=order.created_at,
        reason=reason,
        payment_id=payment_id,
        refund_id=refund_id,
        scheduled_time=order.scheduled_time,
    )


def first_event(order: Order) -> EventData:
    """The event a new order commits with: OrderCreated, or OrderScheduled for a later start."""
    if order.status is S.SCHEDULED:
        return _transition_event(order, None)
    return order.created_event()


def transition(
    order: Order,
    target: OrderStatus,
    now: datetime,
    *,
    reason: str | None = None,
    payment_id: str | None = None,
    refund_id: str | None = None,
) -> Transition:
    """Raises IllegalTransitionError unless ``target`` is reachable from the current state."""
    if target not in TRANSITIONS[order.status]:
        raise IllegalTransitionError(order.id, order.status, target)
    # Time never runs backwards on one order, even if clocks of two processes disagree.
    changed_at = max(now, order.updated_at)
    after = replace(order, status=target, updated_at=changed_at, version=order.version + 1)
    event: EventData
    if target is S.CREATED:
        event = after.created_event()
    else:
        event = _transition_event(
            after, order.status, reason=reason, payment_id=payment_id, refund_id=refund_id
        )
    return Transition(order, after, event)
