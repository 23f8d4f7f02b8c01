"""Request and response bodies (msgspec), which also drive the OpenAPI schema."""

from __future__ import annotations

import hashlib
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import msgspec

from common.http import FieldError, MalformedRequestError
from order_service.domain.order import MAX_ID_LENGTH, MAX_QUANTITY, NewOrder, Order
from order_service.domain.validation import validate_new_order

__all__ = [
    "CreateOrderRequest",
    "OrderListResponse",
    "OrderResponse",
    "render_order",
    "request_fingerprint",
    "validate_body",
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


class OrderResponse(msgspec.Struct):
    id: str
    customer_id: str
    product_id: str
    quantity: int
    total_amount: Decimal
    currency: str
    status: str
    created_at: datetime
    updated_at: datetime


class OrderListResponse(msgspec.Struct):
    items: list[OrderResponse]
    next_cursor: str | None


_encoder = msgspec.json.Encoder(decimal_format="string")
# float_hook keeps JSON numbers exact: 0.1 becomes Decimal("0.1"), never a binary float.
_lenient_decoder = msgspec.json.Decoder(float_hook=Decimal)


def to_response(order: Order) -> OrderResponse:
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
    )


def render_order(order: Order) -> bytes:
    return _encoder.encode(to_response(order))


def render(value: Any) -> bytes:
    return _encoder.encode(value)


def validate_body(raw: bytes) -> list[FieldError]:
    """Every field error of a body Litestar's strict decoding rejected (it stops at the first)."""
    try:
        parsed = _lenient_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise MalformedRequestError(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise MalformedRequestError("the body must be a JSON object")
    _, errors = validate_new_order(parsed)
    return errors


def from_request(data: CreateOrderRequest) -> tuple[NewOrder | None, list[FieldError]]:
    return validate_new_order(msgspec.structs.asdict(data))


def request_fingerprint(new: NewOrder) -> str:
    """Same order, same fingerprint, however the JSON was spelled (key order, 0.1 vs "0.10")."""
    canonical = "\x1f".join(
        (new.customer_id, new.product_id, str(new.quantity), str(new.total_amount), new.currency)
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
