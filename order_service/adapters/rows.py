"""Rows of the order database and the domain values they hold, both ways: one mapping for
SQLAlchemy rows and the raw driver's (multi-statement packets) alike."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from common.utc import aware_utc, naive_utc
from order_service.domain.currency import minor_units
from order_service.domain.fulfilment import PaymentRecord
from order_service.domain.lifecycle import TimelineEntry
from order_service.domain.order import Order, OrderStatus
from order_service.ports import IdempotencyRecord, OutboxEvent

__all__ = [
    "entry_from_mapping",
    "first_transition_row",
    "idempotency_row",
    "order_from_mapping",
    "order_row",
    "outbox_row",
    "payment_from_mapping",
    "payment_row",
    "transition_row",
]


def order_from_mapping(m: Mapping[Any, Any]) -> Order:
    """An order from a row of ``orders``, read through SQLAlchemy or the raw driver."""
    currency = str(m["currency"])
    places = minor_units(currency)
    amount = Decimal(m["total_amount"])
    if places is not None:
        amount = amount.quantize(Decimal(1).scaleb(-places))
    return Order(
        id=uuid.UUID(str(m["id"])),
        customer_id=str(m["customer_id"]),
        product_id=str(m["product_id"]),
        quantity=int(m["quantity"]),
        total_amount=amount,
        currency=currency,
        status=OrderStatus(str(m["status"])),
        created_at=aware_utc(m["created_at"]),
        updated_at=aware_utc(m["updated_at"]),
        version=int(m["version"]),
        scheduled_time=aware_utc(m["scheduled_time"]) if m["scheduled_time"] else None,
    )


def order_row(order: Order) -> dict[str, object]:
    return {
        "id": str(order.id),
        "customer_id": order.customer_id,
        "product_id": order.product_id,
        "quantity": order.quantity,
        "total_amount": order.total_amount,
        "currency": order.currency,
        "status": order.status.value,
        "version": order.version,
        "created_at": naive_utc(order.created_at),
        "updated_at": naive_utc(order.updated_at),
        "scheduled_time": naive_utc(order.scheduled_time) if order.scheduled_time else None,
    }


def idempotency_row(record: IdempotencyRecord, now: datetime) -> dict[str, object]:
    return {
        "idem_key": record.key,
        "request_hash": record.request_hash,
        "status_code": record.status_code,
        "response_body": record.response_body,
        "resource_id": record.resource_id,
        "created_at": naive_utc(now),
        "expires_at": naive_utc(record.expires_at),
    }


def transition_row(order_id: uuid.UUID, entry: TimelineEntry) -> dict[str, object]:
    return {
        "order_id": str(order_id),
        "version": entry.version,
        "from_status": entry.previous_status.value if entry.previous_status else None,
        "to_status": entry.status.value,
        "event_id": str(entry.event_id),
        "event_type": entry.event_type,
        "reason": entry.reason,
        "occurred_at": naive_utc(entry.at),
    }


def first_transition_row(order: Order, event: OutboxEvent) -> dict[str, object]:
    """The timeline's first entry for a new order, written in the same insert batch."""
    return transition_row(
        order.id,
        TimelineEntry(
            status=order.status,
            previous_status=None,
            version=order.version,
            at=order.created_at,
            event_id=event.event_id,
            event_type=event.event_type,
        ),
    )


def entry_from_mapping(m: Mapping[Any, Any]) -> TimelineEntry:
    return TimelineEntry(
        status=OrderStatus(str(m["to_status"])),
        previous_status=OrderStatus(str(m["from_status"])) if m["from_status"] else None,
        version=int(m["version"]),
        at=aware_utc(m["occurred_at"]),
        event_id=uuid.UUID(str(m["event_id"])),
        event_type=str(m["event_type"]),
        reason=str(m["reason"]) if m["reason"] is not None else None,
    )


def outbox_row(event: OutboxEvent) -> dict[str, object]:
    return {
        "event_id": str(event.event_id),
        "aggregate_id": str(event.aggregate_id),
        "event_type": event.event_type,
        "exchange": event.exchange,
        "routing_key": event.routing_key,
        "payload": event.payload,
        "headers": json.dumps(event.headers),
        "occurred_at": naive_utc(event.occurred_at),
    }


def payment_from_mapping(m: Mapping[Any, Any]) -> PaymentRecord:
    return PaymentRecord(
        order_id=uuid.UUID(str(m["order_id"])),
        status=str(m["status"]),
        payment_id=m["payment_id"],
        amount=Decimal(m["amount"]),
        currency=str(m["currency"]),
        decline_reason=m["decline_reason"],
        refund_id=m["refund_id"],
        charged_at=aware_utc(m["charged_at"]),
    )


def payment_row(record: PaymentRecord) -> dict[str, object]:
    return {
        "order_id": str(record.order_id),
        "status": record.status,
        "payment_id": record.payment_id,
        "amount": record.amount,
        "currency": record.currency,
        "decline_reason": record.decline_reason,
        "refund_id": record.refund_id,
        "charged_at": naive_utc(record.charged_at),
    }
