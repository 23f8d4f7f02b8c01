"""The wire events an order's changes commit with: the domain's states mapped to the contract.

Kept out of the domain so the domain never depends on the wire format (pyproject import
contracts)."""

from __future__ import annotations

from typing import Any

import msgspec

from common.events import (
    EventData,
    OrderCancelledV1,
    OrderConfirmedV1,
    OrderCreatedV1,
    OrderPaidV1,
    OrderPaymentFailedV1,
    OrderRejectedV1,
    OrderScheduledV1,
    OrderSnapshotV1,
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


# The order's share of every event: the contract's snapshot fields, copied from the domain
# Order by name (a field added to both needs nothing here).
_SNAPSHOT = OrderSnapshotV1.__struct_fields__
# Fields added within v1 (default UNSET) are left out while the order has no value for them, so
# the events of an order without them stay what they were on the wire.
_ADDED = tuple(
    f.name for f in msgspec.structs.fields(OrderSnapshotV1) if f.default is msgspec.UNSET
)


def _snapshot(order: Order) -> dict[str, Any]:
    values = {name: getattr(order, name) for name in _SNAPSHOT}
    for name in _ADDED:
        if values[name] is None:
            values[name] = msgspec.UNSET
    return values


def created_event(order: Order) -> OrderCreatedV1:
    return OrderCreatedV1(**_snapshot(order))


def _transition_event(
    order: Order,
    previous: OrderStatus | None,
    *,
    reason: str | None = None,
    payment_id: str | None = None,
    refund_id: str | None = None,
) -> OrderTransitionV1:
    return _EVENTS[order.status](
        **_snapshot(order),
        previous_status=previous,
        changed_at=order.updated_at,
        reason=reason,
        payment_id=payment_id,
        refund_id=refund_id,
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
