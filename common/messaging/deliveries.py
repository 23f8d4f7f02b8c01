"""What a consumer hands its handler and what it counts: deliveries, handler protocols, the
headers a message carries through the retry tiers, and the consumer's metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aio_pika.abc import AbstractIncomingMessage
from prometheus_client import Counter, Histogram

from common.events import (
    ContractError,
    Envelope,
    EventData,
    UnknownEventType,
    decode_envelope,
    decode_event_data,
)
from common.messaging.outcomes import (
    Ack,
    DependencyUnavailableError,
    Outcome,
    Park,
    Retry,
    Unavailable,
)
from common.observability import Metrics

__all__ = [
    "ATTEMPT_HEADER",
    "LAST_ERROR_HEADER",
    "ORIGINAL_ROUTING_KEY_HEADER",
    "OUTAGE_HEADER",
    "PARKED_AT_HEADER",
    "PARK_REASON_HEADER",
    "SOURCE_QUEUE_HEADER",
    "BatchHandler",
    "ConsumerMetrics",
    "Delivery",
    "MessageHandler",
    "PerMessage",
    "attempt_of",
    "decode_delivery",
    "int_header",
]

ATTEMPT_HEADER = "x-attempt"
PARK_REASON_HEADER = "x-park-reason"
LAST_ERROR_HEADER = "x-last-error"
PARKED_AT_HEADER = "x-parked-at"
SOURCE_QUEUE_HEADER = "x-source-queue"
ORIGINAL_ROUTING_KEY_HEADER = "x-original-routing-key"
# How many times in a row this message waited out a dependency outage (picks the next delay).
OUTAGE_HEADER = "x-outage"
# An outage defers through the tiers up to this delay, then stays there.
OUTAGE_MAX_DELAY = 60.0


@dataclass
class Delivery:
    """One received message, decoded as far as the contract allows."""

    message: AbstractIncomingMessage
    attempt: int
    envelope: Envelope
    event: EventData
    received_at: float = field(default_factory=time.monotonic)

    @property
    def headers(self) -> dict[str, Any]:
        return dict(self.message.headers or {})


class BatchHandler(Protocol):
    async def handle_batch(self, deliveries: Sequence[Delivery]) -> Sequence[Outcome]: ...


class MessageHandler(Protocol):
    async def handle(self, delivery: Delivery) -> Outcome: ...


class PerMessage:
    """Adapts a one-message handler to the batch interface, running the batch concurrently."""

    def __init__(self, handler: MessageHandler) -> None:
        self._handler = handler

    async def handle_batch(self, deliveries: Sequence[Delivery]) -> Sequence[Outcome]:
        async def one(delivery: Delivery) -> Outcome:
            try:
                return await self._handler.handle(delivery)
            except ContractError as exc:
                return Park("invalid_payload", str(exc))
            except DependencyUnavailableError as exc:
                return Unavailable("dependency_unavailable", repr(exc))
            except Exception as exc:
                return Retry("handler_error", repr(exc))

        return await asyncio.gather(*(one(d) for d in deliveries))


class ConsumerMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.consumed: Counter = metrics.counter(
            "events_consumed_total",
            "Events taken off the work queue, by event type and outcome "
            "(applied, duplicate, ignored, retried, parked, deferred, ...)",
            ("event_type", "outcome"),
        )
        self.retried: Counter = metrics.counter(
            "events_retried_total", "Events republished to a retry tier", ("tier",)
        )
        self.parked: Counter = metrics.counter(
            "events_parked_total", "Events moved to the parking lot (DLQ)", ("reason",)
        )
        self.unavailable: Counter = metrics.counter(
            "events_deferred_unavailable_total",
            "Events deferred to a delay tier because a dependency was down (no attempt spent)",
            ("reason",),
        )
        self.republish_failures: Counter = metrics.counter(
            "events_republish_failures_total",
            "Retry, parking-lot or deferred copies the broker did not confirm (the original is "
            "kept unacked and the copy republished with backoff)",
        )
        self.handle_seconds: Histogram = metrics.histogram(
            "event_handle_seconds", "Time to handle one batch of events", ("handler",)
        )
        self.batch_size: Histogram = metrics.histogram(
            "event_batch_size",
            "Events per handled batch",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
        )


def int_header(value: Any, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def attempt_of(message: AbstractIncomingMessage) -> int:
    return int_header((message.headers or {}).get(ATTEMPT_HEADER), default=1)


def decode_delivery(message: AbstractIncomingMessage) -> Delivery | Outcome:
    """The delivery, decoded as far as the contract allows, or what to do with a message that
    cannot be: park what is malformed, ack (ignore) an event type this code does not know."""
    attempt = attempt_of(message)
    if message.content_type not in (None, "", "application/json"):
        return Park("invalid_content_type", f"content_type={message.content_type!r}")
    try:
        envelope = decode_envelope(message.body)
        event = decode_event_data(envelope)
    except UnknownEventType:
        return Ack("ignored")
    except ContractError as exc:
        return Park("invalid_payload", str(exc)[:500])
    return Delivery(message=message, attempt=attempt, envelope=envelope, event=event)
