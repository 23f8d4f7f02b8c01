"""An order as analytics records it, its lifecycle states, and the fold of new versions."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

__all__ = [
    "AMOUNT_SCALE",
    "BOOKED_STATES",
    "MAX_AMOUNT",
    "MAX_ID_LENGTH",
    "MAX_QUANTITY",
    "ORDER_STATES",
    "RECOGNISED_STATES",
    "REVERSED_STATES",
    "STATE_OF_EVENT",
    "Change",
    "InvalidFactError",
    "OrderFact",
    "fold",
    "state_of",
    "supersedes",
]

# The lifecycle state each event puts its order in; the fact stores this, not the producer's
# free-text ``status``, so the rules never depend on its spelling.
STATE_OF_EVENT: dict[str, str] = {
    "OrderScheduled": "scheduled",
    "OrderCreated": "created",
    "OrderPaid": "paid",
    "OrderConfirmed": "confirmed",
    "OrderPaymentFailed": "payment_failed",
    "OrderRejected": "rejected",
    "OrderCancelled": "cancelled",
}
ORDER_STATES: tuple[str, ...] = tuple(STATE_OF_EVENT.values())
BOOKED_STATES = frozenset({"created", "paid", "confirmed"})
RECOGNISED_STATES = frozenset({"confirmed"})
# Booked revenue leaves the totals when an order ends in one of these.
REVERSED_STATES = frozenset({"payment_failed", "rejected", "cancelled"})

# What the analytics tables can hold; anything outside is parked rather than failing a batch.
MAX_ID_LENGTH = 64
MAX_STATUS_LENGTH = 32
MAX_QUANTITY = 2**31 - 1
MAX_AMOUNT = Decimal("99999999999999")
AMOUNT_SCALE = 4


class InvalidFactError(ValueError):
    """The event is well-formed by the contract but cannot be stored as a fact."""


@dataclass(frozen=True)
class OrderFact:
    """One order as analytics records it; every aggregate is a sum over these."""

    order_id: uuid.UUID
    event_id: uuid.UUID
    customer_id: str
    product_id: str
    quantity: int
    total_amount: Decimal
    currency: str
    status: str
    created_at: datetime
    occurred_at: datetime
    order_version: int = 1
    # When the order entered ``status``; recognised revenue is bucketed by it.
    status_changed_at: datetime | None = None

    @property
    def state(self) -> str:
        return state_of(self.status)

    @property
    def changed_at(self) -> datetime:
        return self.status_changed_at or self.created_at

    @property
    def booked(self) -> bool:
        return self.state in BOOKED_STATES

    @property
    def recognised(self) -> bool:
        return self.state in RECOGNISED_STATES


def state_of(status: str) -> str:
    """The lifecycle state of a stored status; facts written before the lifecycle existed hold
    the producer's text of an OrderCreated (e.g. "PENDING"), which means created."""
    return status if status in STATE_OF_EVENT.values() else "created"


@dataclass(frozen=True)
class Change:
    """One new event applied to its order: ``before`` is the recorded state it met (None: the
    first event seen for the order). ``effective`` is False when the order already had this or
    a newer version, so the event changed nothing."""

    after: OrderFact
    before: OrderFact | None
    effective: bool = True


def supersedes(incoming: OrderFact, current: OrderFact | None) -> bool:
    return current is None or incoming.order_version > current.order_version


def fold(
    by_order: Mapping[uuid.UUID, Sequence[OrderFact]],
    new_events: set[uuid.UUID],
    recorded: Callable[[uuid.UUID], OrderFact | None],
) -> tuple[list[Change], dict[uuid.UUID, OrderFact]]:
    """Moves each order to the newest state among its recorded fact (``recorded``: None when
    the order had none) and its events new to the inbox; an event whose order already has that
    version or a newer one changes nothing. Returns the changes and, per order that had a
    recorded state, the newer state it moved to."""
    changes: list[Change] = []
    moved: dict[uuid.UUID, OrderFact] = {}
    for order_id, facts in by_order.items():
        new = [f for f in facts if f.event_id in new_events]
        if not new:
            continue
        current = before = recorded(order_id)
        for fact in sorted(new, key=lambda f: f.order_version):
            if supersedes(fact, current):
                changes.append(Change(fact, current))
                current = fact
            else:
                changes.append(Change(fact, current, effective=False))
        if current is not None and before is not None and current is not before:
            moved[order_id] = current
    return changes, moved
