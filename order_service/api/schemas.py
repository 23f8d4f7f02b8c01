"""Request and response bodies (msgspec), which also drive the OpenAPI schema."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from common.http import FieldError, MalformedRequestError
from order_service.domain.lifecycle import TimelineEntry
from order_service.domain.order import CurrencyCode, NewOrder, Order
from order_service.domain.validation import DEFAULT_CURRENCY, validate_new_order

__all__ = [
    "CreateOrderRequest",
    "OrderListResponse",
    "OrderResponse",
    "TimelineItem",
    "decode_new_order",
    "render_order",
    "request_fingerprint",
]


class CreateOrderRequest(NewOrder, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The POST /orders body as the OpenAPI document shows it: NewOrder's fields, with the
    currency clients may leave out (the body is decoded by NewOrderBody, not by this struct)."""

    currency: CurrencyCode = DEFAULT_CURRENCY


class TimelineItem(msgspec.Struct, omit_defaults=True):
    status: str
    previous_status: str | None
    at: datetime
    event_id: str
    event_type: str
    version: int
    reason: str | None = None


class OrderResponse(Order, frozen=True, kw_only=True, omit_defaults=True):
    """The order as the API shows it: every field of the domain ``Order`` (a new one appears
    here by itself), under the API's older names for the id and the version."""

    order_id: uuid.UUID = msgspec.field(name="id")
    order_version: int = msgspec.field(name="version")
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
        **msgspec.structs.asdict(order),
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


# Fields after these are appended as name=value only when set, so the hashes of requests
# without them (stored with live keys) stay what they were.
_FINGERPRINTED = ("customer_id", "product_id", "quantity", "total_amount", "currency")
_OPTIONAL = tuple(n for n in NewOrder.__struct_fields__ if n not in _FINGERPRINTED)


def request_fingerprint(new: NewOrder) -> str:
    """Same order, same fingerprint, however the JSON was spelled (key order, 0.1 vs "0.10")."""
    parts = [str(getattr(new, name)) for name in _FINGERPRINTED]
    for name in _OPTIONAL:
        value = getattr(new, name)
        if value is None:
            continue
        if isinstance(value, datetime):
            value = value.astimezone(UTC).isoformat()
        # scheduled_time went in bare before this rule: kept so, its hashes stay valid.
        parts.append(value if name == "scheduled_time" else f"{name}={value}")
    canonical = "\x1f".join(parts)
    return hashlib.sha256(canonical.encode()).hexdigest()
