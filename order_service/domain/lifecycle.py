"""The order state machine: which transitions are legal (the events they emit: order_events.py).

scheduled -> created | cancelled
created   -> paid | payment_failed | cancelled
paid      -> confirmed | rejected | cancelled
confirmed, payment_failed, rejected, cancelled: final
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec

from order_service.domain.order import Order, OrderStatus

__all__ = [
    "CANCELLABLE",
    "FINAL",
    "TRANSITIONS",
    "IllegalTransitionError",
    "OrderHistory",
    "TimelineEntry",
    "Transition",
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
class OrderHistory:
    """An order and every state it entered, oldest first: what a use case hands back for the
    caller to show."""

    order: Order
    timeline: Sequence[TimelineEntry]


@dataclass(frozen=True)
class Transition:
    """A legal state change: the order before and after it, and what the event that announces
    it says beyond the order (order_service/order_events.py builds that event)."""

    before: Order
    after: Order
    reason: str | None = None
    payment_id: str | None = None
    refund_id: str | None = None


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
        raise IllegalTransitionError(order.order_id, order.status, target)
    # Time never runs backwards on one order, even if clocks of two processes disagree.
    changed_at = max(now, order.updated_at)
    after = msgspec.structs.replace(
        order, status=target, updated_at=changed_at, order_version=order.order_version + 1
    )
    return Transition(order, after, reason=reason, payment_id=payment_id, refund_id=refund_id)
