"""The wire events an order's changes commit with: the domain's states mapped to the contract.

Kept out of the domain so the domain never depends on the wire format (pyproject import
contracts)."""

from __future__ import annotations

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
)
from order_service.domain.lifecycle import Transition
from order_service.domain.order import Order, OrderStatus

__all__ = ["created_event", "first_event", "transition_event"]

S = OrderStatus
_EVENTS: dict[OrderStatus, type[OrderTransitionV1]] = {
    S.SCHEDULED: OrderScheduledV1,
    S.PAID: OrderPaidV1,
    S.CONFIRMED: OrderConfirmedV1,
    S.PAYMENT_FAILED: OrderPaymentFailedV1,
    S.REJECTED: OrderRejectedV1,
    S.CANCELLED: OrderCancelledV1,
}


def created_event(order: Order) -> OrderCreatedV1:
    return OrderCreatedV1(
        order_id=order.id,
        customer_id=order.customer_id,
        product_id=order.product_id,
        quantity=order.quantity,
        total_amount=order.total_amount,
        currency=order.currency,
        status=order.status.value,
        created_at=order.created_at,
        order_version=order.version,
        scheduled_time=order.scheduled_time,
    )


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
    return created_event(order)


def transition_event(change: Transition) -> EventData:
    """The event a legal state change commits with."""
    if change.after.status is S.CREATED:
        return created_event(change.after)
    return _transition_event(
        change.after,
        change.before.status,
        reason=change.reason,
        payment_id=change.payment_id,
        refund_id=change.refund_id,
    )
