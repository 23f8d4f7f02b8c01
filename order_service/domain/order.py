"""The Order aggregate and the rules for a new one."""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

import msgspec

__all__ = [
    "MAX_AMOUNT",
    "MAX_ID_LENGTH",
    "MAX_QUANTITY",
    "NewOrder",
    "Order",
    "OrderStatus",
    "new_order_id",
]

MAX_ID_LENGTH = 64
MAX_QUANTITY = 1_000_000
# DECIMAL(14, 4) in MySQL: ten integer digits.
MAX_AMOUNT = Decimal("9999999999")


class OrderStatus(StrEnum):
    SCHEDULED = "scheduled"
    CREATED = "created"
    PAID = "paid"
    CONFIRMED = "confirmed"
    PAYMENT_FAILED = "payment_failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


def new_order_id() -> uuid.UUID:
    """A UUIDv7: time-ordered, so InnoDB appends to the primary key instead of splitting pages,
    and the newest-first listing walks the index in order."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
Quantity = Annotated[int, msgspec.Meta(gt=0, le=MAX_QUANTITY)]
Amount = Annotated[
    Decimal, msgspec.Meta(description="Exact decimal, as a JSON string or number; never a float.")
]
CurrencyCode = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")]
StartTime = Annotated[
    datetime,
    msgspec.Meta(
        tz=True,
        description="RFC 3339 start time with an offset: the order is stored as scheduled and "
        "starts then (future, within the scheduling horizon).",
    ),
]


class NewOrder(msgspec.Struct, frozen=True):
    """A validated request for an order; amounts are already quantized to the currency.

    The one declaration of what a client sends: the request schema derives from it and
    ``validate_new_order`` checks every field it does not check by hand against these types.
    """

    customer_id: Id
    product_id: Id
    quantity: Quantity
    total_amount: Amount
    currency: CurrencyCode
    # Set for an order that starts later: stored as ``scheduled`` until then.
    scheduled_time: StartTime | None = None


class Order(msgspec.Struct, frozen=True, kw_only=True):
    """An order: what was asked (``NewOrder``'s fields) and what the service made of it.

    Field names are the event contract's (common.events.OrderSnapshotV1), so the events, the
    response and the row are copies by name; only defaulted fields may be optional here (the
    response omits a field at its default).
    """

    order_id: uuid.UUID
    customer_id: str
    product_id: str
    quantity: int
    total_amount: Decimal
    currency: str
    status: OrderStatus
    created_at: datetime
    updated_at: datetime
    order_version: int
    scheduled_time: datetime | None = None

    @classmethod
    def create(cls, new: NewOrder, *, order_id: uuid.UUID, now: datetime) -> Order:
        """A new order: ``created``, or ``scheduled`` when it has a scheduled time."""
        return cls(
            **msgspec.structs.asdict(new),
            order_id=order_id,
            status=OrderStatus.SCHEDULED if new.scheduled_time else OrderStatus.CREATED,
            created_at=now,
            updated_at=now,
            order_version=1,
        )
