"""Malformed AMQP messages of every kind, and how to read what the consumers parked."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika

from common.messaging.consumer import ATTEMPT_HEADER, PARK_REASON_HEADER, SOURCE_QUEUE_HEADER
from common.messaging.topology import ConsumerQueue

__all__ = [
    "PoisonMessage",
    "consumer_queues",
    "parked_messages",
    "poison_messages",
    "publish_poison",
]

HUGE_BODY_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class PoisonMessage:
    kind: str
    body: bytes
    content_type: str | None = "application/json"
    headers: dict[str, Any] = field(default_factory=dict)
    message_id: str = field(default_factory=lambda: f"poison-{uuid.uuid4()}")


def consumer_queues(system: Any) -> list[ConsumerQueue]:
    """The analytics and notification queues of a RunningSystem (each sees every order.*)."""
    topology = system.topology.topology()
    names = (system.topology.analytics_queue, system.topology.notifications_queue)
    return [topology.queue(name) for name in names]


def _event(**overrides: Any) -> dict[str, Any]:
    data = {
        "order_id": str(uuid.uuid4()),
        "customer_id": "cust-poison",
        "product_id": "prod-poison",
        "quantity": 1,
        "total_amount": "1.00",
        "currency": "USD",
        "status": "created",
        "created_at": datetime.now(UTC).isoformat(),
    }
    envelope: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": "OrderCreated",
        "event_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "producer": "fault-test",
        "correlation_id": "fault-test",
        "data": data,
    }
    for key, value in overrides.items():
        if key.startswith("data."):
            data[key[5:]] = value
        elif value is _DROP:
            envelope.pop(key)
        else:
            envelope[key] = value
    return envelope


_DROP = object()


def _without_data_field(name: str) -> dict[str, Any]:
    envelope = _event()
    envelope["data"].pop(name)
    return envelope


def poison_messages() -> list[PoisonMessage]:
    """One message per kind of malformation; every one of them can never be applied."""

    def js(value: Any) -> bytes:
        return json.dumps(value).encode()

    return [
        PoisonMessage("not_json", b"this is not json {"),
        PoisonMessage("empty_body", b""),
        PoisonMessage("json_array", js([1, 2, 3])),
        PoisonMessage("json_scalar", js("OrderCreated")),
        PoisonMessage("invalid_utf8", b'{"event_id": "\xff\xfe"}'),
        PoisonMessage("missing_envelope_fields", js({"event_type": "OrderCreated"})),
        PoisonMessage("missing_event_id", js(_event(event_id=_DROP))),
        PoisonMessage("missing_data", js(_event(data=_DROP))),
        PoisonMessage("event_id_not_uuid", js(_event(event_id=12345))),
        PoisonMessage("version_is_text", js(_event(event_version="one"))),
        PoisonMessage("unsupported_version", js(_event(event_version=999))),
        PoisonMessage("naive_occurred_at", js(_event(occurred_at="2024-01-01T00:00:00"))),
        PoisonMessage("quantity_is_text", js(_event(**{"data.quantity": "many"}))),
        PoisonMessage("negative_quantity", js(_event(**{"data.quantity": -3}))),
        PoisonMessage("amount_not_a_number", js(_event(**{"data.total_amount": "ten"}))),
        PoisonMessage("zero_amount", js(_event(**{"data.total_amount": "0"}))),
        PoisonMessage("order_id_not_uuid", js(_event(**{"data.order_id": "not-a-uuid"}))),
        PoisonMessage("data_missing_amount", js(_without_data_field("total_amount"))),
        PoisonMessage("data_is_a_list", js(_event(data=[1, 2]))),
        PoisonMessage(
            "huge_body", b'{"padding": "' + b"x" * HUGE_BODY_BYTES + b'"}', headers={"h": "v"}
        ),
        PoisonMessage("wrong_content_type", js(_event()), content_type="text/plain"),
        PoisonMessage("xml_content_type", b"<order/>", content_type="application/xml"),
    ]


async def publish_poison(
    channel: aio_pika.abc.AbstractChannel, exchange: str, messages: list[PoisonMessage]
) -> None:
    """Published to the orders exchange as ``order.created``, so every consumer gets each one."""
    target = await channel.get_exchange(exchange, ensure=False)
    for msg in messages:
        await target.publish(
            aio_pika.Message(
                msg.body,
                content_type=msg.content_type,
                message_id=msg.message_id,
                type="OrderCreated",
                headers={**msg.headers, "x-poison-kind": msg.kind},
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key="order.created",
            mandatory=True,
        )


async def parked_messages(
    channel: aio_pika.abc.AbstractChannel, dlq: str
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Every message in a parking lot (taken off it: the topology is private to the test)."""
    queue = await channel.get_queue(dlq, ensure=False)
    found = []
    while (message := await queue.get(no_ack=True, fail=False, timeout=5)) is not None:
        found.append(message)
    return found


def park_summary(messages: list[aio_pika.abc.AbstractIncomingMessage]) -> dict[str, dict[str, Any]]:
    """poison kind -> the park headers the consumer wrote."""
    out = {}
    for m in messages:
        headers = m.headers or {}
        kind = str(headers.get("x-poison-kind", m.message_id))
        out[kind] = {
            "reason": headers.get(PARK_REASON_HEADER),
            "attempt": headers.get(ATTEMPT_HEADER),
            "source": headers.get(SOURCE_QUEUE_HEADER),
            "error": str(headers.get("x-last-error", ""))[:120],
        }
    return out
