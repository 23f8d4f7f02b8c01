"""The event contract: every event on the broker, its envelope and its wire format.

Changes are additive within a version; a breaking change is a new ``event_version``.
Golden fixtures in tests/contract/fixtures pin the wire format of every version listed here.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

import msgspec

from common.utc import utc_now

__all__ = [
    "EVENT_TYPES",
    "ContractError",
    "Envelope",
    "EventData",
    "OrderCancelledV1",
    "OrderConfirmedV1",
    "OrderCreatedV1",
    "OrderPaidV1",
    "OrderPaymentFailedV1",
    "OrderRejectedV1",
    "OrderScheduledV1",
    "OrderSnapshotV1",
    "OrderTransitionV1",
    "OutgoingEnvelope",
    "UnknownEventType",
    "decode_envelope",
    "decode_event_data",
    "encode_envelope",
    "new_envelope",
    "routing_key_for",
]


class ContractError(ValueError):
    """A message can never be applied: not JSON, missing fields, wrong types, unknown version."""


class UnknownEventType(ContractError):
    """An event type this build does not know; consumers ack and count it instead of parking."""


class EventData(msgspec.Struct, kw_only=True):
    """Base of every event payload; subclasses set ``event_type``, ``event_version`` and
    ``routing_key``."""

    event_type: ClassVar[str]
    event_version: ClassVar[int]
    routing_key: ClassVar[str]


class OrderSnapshotV1(EventData, kw_only=True):
    """The order as every order event carries it, flat in ``data`` (struct inheritance adds no
    nesting). The order service's domain ``Order`` uses the same field names, so producing an
    event copies fields by name.

    A field added within v1 defaults to ``UNSET`` (``T | UnsetType | None = UNSET``): a message
    that lacks it decodes, and re-encodes without it, so the golden fixtures stay as they are;
    the producer leaves it out while the order has no value for it.
    """

    order_id: uuid.UUID
    customer_id: str
    product_id: str
    quantity: int
    total_amount: Decimal
    currency: str
    status: str
    created_at: datetime
    # Added within v1 (consumers must accept their absence): the aggregate version lets a
    # consumer tell a stale event from a newer one, and scheduled_time marks an order that was
    # scheduled before it became created.
    order_version: int = 1
    scheduled_time: datetime | None = None


class OrderCreatedV1(OrderSnapshotV1, kw_only=True, omit_defaults=True):
    event_type: ClassVar[str] = "OrderCreated"
    event_version: ClassVar[int] = 1
    routing_key: ClassVar[str] = "order.created"


class OrderTransitionV1(OrderSnapshotV1, kw_only=True):
    """Every lifecycle event after creation carries the whole order, so a consumer never needs
    another service's database to act on it (DESIGN.md §1)."""

    order_version: int  # required here: a transition always names the version it made
    previous_status: str | None
    changed_at: datetime
    reason: str | None = None
    payment_id: str | None = None
    refund_id: str | None = None


class OrderScheduledV1(OrderTransitionV1, kw_only=True):
    event_type: ClassVar[str] = "OrderScheduled"
    event_version: ClassVar[int] = 1
    routing_key: ClassVar[str] = "order.scheduled"


class OrderPaidV1(OrderTransitionV1, kw_only=True):
    event_type: ClassVar[str] = "OrderPaid"
    event_version: ClassVar[int] = 1
    routing_key: ClassVar[str] = "order.paid"


class OrderConfirmedV1(OrderTransitionV1, kw_only=True):
    event_type: ClassVar[str] = "OrderConfirmed"
    event_version: ClassVar[int] = 1
    routing_key: ClassVar[str] = "order.confirmed"


class OrderPaymentFailedV1(OrderTransitionV1, kw_only=True):
    event_type: ClassVar[str] = "OrderPaymentFailed"
    event_version: ClassVar[int] = 1
    routing_key: ClassVar[str] = "order.payment_failed"


class OrderRejectedV1(OrderTransitionV1, kw_only=True):
    event_type: ClassVar[str] = "OrderRejected"
    event_version: ClassVar[int] = 1
    routing_key: ClassVar[str] = "order.rejected"


class OrderCancelledV1(OrderTransitionV1, kw_only=True):
    event_type: ClassVar[str] = "OrderCancelled"
    event_version: ClassVar[int] = 1
    routing_key: ClassVar[str] = "order.cancelled"


EVENT_TYPES: dict[tuple[str, int], type[EventData]] = {
    (cls.event_type, cls.event_version): cls
    for cls in (
        OrderCreatedV1,
        OrderScheduledV1,
        OrderPaidV1,
        OrderConfirmedV1,
        OrderPaymentFailedV1,
        OrderRejectedV1,
        OrderCancelledV1,
    )
}
_ROUTING_KEYS: dict[str, str] = {cls.event_type: cls.routing_key for cls in EVENT_TYPES.values()}


class Envelope(msgspec.Struct, kw_only=True):
    """What every message body is. ``data`` stays raw until the consumer picks its type."""

    event_id: uuid.UUID
    event_type: str
    event_version: int
    occurred_at: datetime
    producer: str
    correlation_id: str
    data: msgspec.Raw


class OutgoingEnvelope(msgspec.Struct, kw_only=True):
    event_id: uuid.UUID
    event_type: str
    event_version: int
    occurred_at: datetime
    producer: str
    correlation_id: str
    data: EventData


_encoder = msgspec.json.Encoder(decimal_format="string")
_envelope_decoder = msgspec.json.Decoder(Envelope)
_data_decoders: dict[type[EventData], msgspec.json.Decoder[Any]] = {
    cls: msgspec.json.Decoder(cls) for cls in EVENT_TYPES.values()
}


def routing_key_for(event_type: str) -> str:
    try:
        return _ROUTING_KEYS[event_type]
    except KeyError as exc:
        raise UnknownEventType(f"unknown event type {event_type!r}") from exc


def new_envelope(
    data: EventData,
    *,
    producer: str,
    correlation_id: str,
    event_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
) -> OutgoingEnvelope:
    return OutgoingEnvelope(
        event_id=event_id or uuid.uuid4(),
        event_type=data.event_type,
        event_version=data.event_version,
        occurred_at=occurred_at or utc_now(),
        producer=producer,
        correlation_id=correlation_id,
        data=data,
    )


def encode_envelope(envelope: OutgoingEnvelope) -> bytes:
    return _encoder.encode(envelope)


def decode_envelope(body: bytes) -> Envelope:
    try:
        envelope = _envelope_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise ContractError(f"invalid envelope: {exc}") from exc
    if envelope.occurred_at.tzinfo is None:
        raise ContractError("invalid envelope: occurred_at has no timezone")
    return envelope


def decode_event_data(envelope: Envelope) -> EventData:
    """Decode ``data`` for the envelope's type and version.

    Raises UnknownEventType for a type this build has never heard of, and ContractError for a
    known type whose version is unknown or whose fields are invalid.
    """
    cls = EVENT_TYPES.get((envelope.event_type, envelope.event_version))
    if cls is None:
        if envelope.event_type in _ROUTING_KEYS:
            raise ContractError(
                f"unsupported version {envelope.event_version} of {envelope.event_type}"
            )
        raise UnknownEventType(f"unknown event type {envelope.event_type!r}")
    try:
        data: EventData = _data_decoders[cls].decode(envelope.data)
    except msgspec.DecodeError as exc:
        raise ContractError(f"invalid {envelope.event_type} data: {exc}") from exc
    _validate(data)
    return data


def _validate(data: EventData) -> None:
    if isinstance(data, OrderSnapshotV1):
        name = data.event_type
        if data.quantity <= 0:
            raise ContractError(f"invalid {name} data: quantity must be positive")
        if data.total_amount <= 0 or not data.total_amount.is_finite():
            raise ContractError(f"invalid {name} data: total_amount must be positive")
        stamps = [data.created_at, data.scheduled_time]
        if isinstance(data, OrderTransitionV1):
            stamps.append(data.changed_at)
        if any(s is not None and s.tzinfo is None for s in stamps):
            raise ContractError(f"invalid {name} data: a timestamp has no timezone")
