"""Request and response bodies (msgspec), which also drive the OpenAPI schema."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import msgspec

from common.http import FieldError, MalformedRequestError
from order_service.domain.lifecycle import TimelineEntry
from order_service.domain.order import MAX_ID_LENGTH, MAX_QUANTITY, NewOrder, Order
from order_service.domain.validation import validate_new_order

__all__ = [
    "CreateOrderRequest",
    "OrderListResponse",
    "OrderResponse",
    "TimelineItem",
    "decode_new_order",
    "render_order",
    "request_fingerprint",
]

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]


class CreateOrderRequest(msgspec.Struct, forbid_unknown_fields=True):
    customer_id: Id
    product_id: Id
    quantity: Annotated[int, msgspec.Meta(gt=0, le=MAX_QUANTITY)]
    total_amount: Annotated[
        Decimal,
        msgspec.Meta(description="Exact decimal, as a JSON string or number; never a float."),
    ]
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")] = "USD"
    scheduled_time: (
        Annotated[
            datetime,
            msgspec.Meta(
                tz=True,
                description="RFC 3339 start time with an offset: the order is stored as "
                "scheduled and starts then (future, within the scheduling horizon).",
            ),
        ]
        | None
    ) = None


class TimelineItem(msgspec.Struct, omit_defaults=True):
    status: str
    previous_status: str | None
    at: datetime
    event_id: str
    event_type: str
    version: int
    reason: str | None = None


class OrderResponse(msgspec.Struct, omit_defaults=True):
    id: str
    customer_id: str
    product_id: str
    quantity: int
    total_amount: Decimal
    currency: str
    status: str
    created_at: datetime
    updated_at: datetime
    version: int
    scheduled_time: datetime | None = None
    # Every state the order entered, oldest first (GET /orders/{id} and POST; not in lists).
    timeline: list[TimelineItem] | None = None


class OrderListResponse(msgspec.Struct):
    items: list[OrderResponse]
    next_cursor: str | None


_encoder = msgspec.json.Encoder(decimal_format="string")
# float_hook keeps JSON numbers exact: 0.1 becomes Decimal("0.1"), never a binary float.
_lenient_decoder = msgspec.json.Decoder(float_hook=Decimal)


def to_response(order: Order, timeline: Sequence[TimelineEntry] | None = None) -> OrderResponse:
    return OrderResponse(
        id=str(order.id),
        customer_id=order.customer_id,
        product_id=order.product_id,
        quantity=order.quantity,
        total_amount=order.total_amount,
        currency=order.currency,
        status=order.status.value,
        created_at=order.created_at,
        updated_at=order.updated_at,
        version=order.version,
        scheduled_time=order.scheduled_time,
        timeline=None if timeline is None else [_item(e) for e in timeline],
    )


def _item(entry: TimelineEntry) -> TimelineItem:
    return TimelineItem(
        status=entry.status.value,
        previous_status=entry.previous_status.value if entry.previous_status else None,
        at=entry.at,
        event_id=str(entry.event_id),
        event_type=entry.event_type,
        version=entry.version,
        reason=entry.reason,
    )


def render_order(order: Order, timeline: Sequence[TimelineEntry] | None = None) -> bytes:
    return _encoder.encode(to_response(order, timeline))


def render(value: Any) -> bytes:
    return _encoder.encode(value)


def decode_new_order(raw: bytes) -> tuple[NewOrder | None, list[FieldError]]:
    """The order a body asks for, or every field error in it; MalformedRequestError (400) when
    it is not a JSON object."""
    try:
        parsed = _lenient_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise MalformedRequestError(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise MalformedRequestError("the body must be a JSON object")
    return validate_new_order(parsed)


def request_fingerprint(new: NewOrder) -> str:
    """Same order, same fingerprint, however the JSON was spelled (key order, 0.1 vs "0.10")."""
    parts = [
        new.customer_id,
        new.product_id,
        str(new.quantity),
        str(new.total_amount),
        new.currency,
    ]
    if new.scheduled_time is not None:  # appended only when set: older hashes stay valid
        parts.append(new.scheduled_time.astimezone(UTC).isoformat())
    canonical = "\x1f".join(parts)
    return hashlib.sha256(canonical.encode()).hexdigest()
