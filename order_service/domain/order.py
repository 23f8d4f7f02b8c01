"""The Order aggregate and the rules for a new one."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

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


@dataclass(frozen=True)
class NewOrder:
    """A validated request for an order; amounts are already quantized to the currency."""

    customer_id: str
    product_id: str
    quantity: int
    total_amount: Decimal
    currency: str
    # Set for an order that starts later: stored as ``scheduled`` until then.
    scheduled_time: datetime | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class Order:
    id: uuid.UUID
    customer_id: str
    product_id: str
    quantity: int
    total_amount: Decimal
    currency: str
    status: OrderStatus
    created_at: datetime
    updated_at: datetime
    version: int = 1
    scheduled_time: datetime | None = None

    @classmethod
    def create(cls, new: NewOrder, *, order_id: uuid.UUID, now: datetime) -> Order:
        """A new order: ``created``, or ``scheduled`` when it has a scheduled time."""
        return cls(
            id=order_id,
            customer_id=new.customer_id,
            product_id=new.product_id,
            quantity=new.quantity,
            total_amount=new.total_amount,
            currency=new.currency,
            status=OrderStatus.SCHEDULED if new.scheduled_time else OrderStatus.CREATED,
            created_at=now,
            updated_at=now,
            scheduled_time=new.scheduled_time,
        )

    def with_status(self, status: OrderStatus, now: datetime) -> Order:
        return replace(self, status=status, updated_at=now, version=self.version + 1)
