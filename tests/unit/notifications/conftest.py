"""Builders for unit tests: events as the consumer runner hands them over."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import msgspec

from common.events import (
    OrderCreatedV1,
    decode_envelope,
    decode_event_data,
    encode_envelope,
    new_envelope,
)
from common.messaging.consumer import Delivery

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def order_body(occurred_at: datetime = NOW, **data_extra: Any) -> bytes:
    event = OrderCreatedV1(
        order_id=uuid.uuid4(),
        customer_id="cust-1",
        product_id="prod-1",
        quantity=2,
        total_amount=Decimal("19.98"),
        currency="USD",
        status="created",
        created_at=occurred_at,
    )
    body = encode_envelope(
        new_envelope(event, producer="test", correlation_id="corr-1", occurred_at=occurred_at)
    )
    if data_extra:
        raw = msgspec.json.decode(body)
        raw["data"].update(data_extra)
        body = msgspec.json.encode(raw)
    return body


def delivery(body: bytes, headers: dict[str, Any] | None = None, attempt: int = 1) -> Delivery:
    envelope = decode_envelope(body)
    message = SimpleNamespace(headers=headers or {})
    return Delivery(
        message=message,  # type: ignore[arg-type]
        attempt=attempt,
        envelope=envelope,
        event=decode_event_data(envelope),
    )
