"""Rows of the order database and the domain values they hold, both ways: one mapping for
SQLAlchemy rows and the raw driver's (multi-statement packets) alike."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

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


# to_builtins keeps these for the driver, which writes them exactly.
_KEPT = (datetime, Decimal)


def _holds(annotation: object, kind: type) -> bool:
    return annotation is kind or kind in getattr(annotation, "__args__", ())


# The columns predate the event contract's names, which the domain uses.
_COLUMN_OF = {"order_id": "id", "order_version": "version"}
_FIELD_OF = {column: name for name, column in _COLUMN_OF.items()}
_ORDER_FIELDS = msgspec.structs.fields(Order)
# DATETIME columns hold naive UTC; the domain holds aware datetimes.
_TIMES = tuple(f.name for f in _ORDER_FIELDS if _holds(f.type, datetime))
_COLUMNS = tuple(_COLUMN_OF.get(f.name, f.name) for f in _ORDER_FIELDS)


def order_from_mapping(m: Mapping[Any, Any]) -> Order:
    """An order from a row of ``orders``, read through SQLAlchemy or the raw driver."""
    values = {_FIELD_OF.get(column, column): m[column] for column in _COLUMNS}
    for name in _TIMES:
        if values[name] is not None:
            values[name] = aware_utc(values[name])
    places = minor_units(str(values["currency"]))
    amount = Decimal(values["total_amount"])
    if places is not None:
        amount = amount.quantize(Decimal(1).scaleb(-places))
    values["total_amount"] = amount
    return msgspec.convert(values, Order)


def order_row(order: Order) -> dict[str, object]:
    """The row of ``orders`` for an order: every field of it, under its column's name."""
    row: dict[str, object] = msgspec.to_builtins(order, builtin_types=_KEPT)
    for name in _TIMES:
        value = row[name]
        if isinstance(value, datetime):
            row[name] = naive_utc(value)
    for name, column in _COLUMN_OF.items():
        row[column] = row.pop(name)
    return row


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
        order.order_id,
        TimelineEntry(
            status=order.status,
            previous_status=None,
            version=order.order_version,
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
