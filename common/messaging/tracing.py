"""Producer and consumer spans with the messaging semantic conventions, and the trace context
carried in the AMQP ``traceparent`` header from the outbox row to every consumer.

Written here rather than taken from opentelemetry-instrumentation-aio-pika: that one injects the
*current* context into every publish (the relay's loop, not the request that caused the event,
so it would overwrite the stored ``traceparent``) and wraps the consume callback, which here only
puts the message in the runner's inbox; the handling happens later, in batches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, StatusCode, set_span_in_context

from common import tracing
from common.messaging.outcomes import Ack, Defer, Outcome
from common.messaging.publisher import ConfirmingPublisher, OutgoingMessage, PublishResult

if TYPE_CHECKING:
    from common.messaging.consumer import BatchHandler, Delivery

__all__ = ["handle_batch", "publish_many"]

SYSTEM = {"messaging.system": "rabbitmq"}


async def publish_many(
    publisher: ConfirmingPublisher,
    messages: Sequence[OutgoingMessage],
    *,
    destination: str,
    timeout: float,
) -> list[PublishResult]:
    """``publisher.publish_many`` with one PRODUCER span per message, a child of the context its
    headers carry (the outbox row's), ended at the confirm; the message then carries the span's
    own context, so its consumers are children of the publish."""
    if not tracing.enabled() or not messages:
        return await publisher.publish_many(messages, timeout=timeout)
    tracer = tracing.tracer()
    spans = []
    traced = []
    for message in messages:
        exchange = destination if message.exchange is None else message.exchange
        span = tracer.start_span(
            f"publish {exchange}",
            context=tracing.extract(message.headers),
            kind=SpanKind.PRODUCER,
            attributes={
                **SYSTEM,
                "messaging.operation.type": "send",
                "messaging.operation.name": "publish",
                "messaging.destination.name": exchange,
                "messaging.rabbitmq.destination.routing_key": message.routing_key,
                "messaging.message.id": message.message_id,
                "messaging.message.conversation_id": str(message.headers.get("correlation_id", "")),
                "event.type": message.event_type,
            },
        )
        headers = dict(message.headers)
        tracing.inject(headers, set_span_in_context(span))
        spans.append(span)
        traced.append(dataclasses.replace(message, headers=headers))
    try:
        results = await publisher.publish_many(traced, timeout=timeout)
    except BaseException as exc:
        for span in spans:
            span.record_exception(exc)
            span.set_status(StatusCode.ERROR, type(exc).__name__)
            span.end()
        raise
    for span, result in zip(spans, results, strict=True):
        if not result.ok:
            span.set_status(StatusCode.ERROR, result.error or "not confirmed")
        span.end()
    return results


def _item_attributes(delivery: Delivery) -> dict[str, Any]:
    message = delivery.message
    attributes = {
        "messaging.destination.name": message.exchange or "",
        "messaging.rabbitmq.destination.routing_key": message.routing_key or "",
        "messaging.message.id": message.message_id or "",
        "messaging.message.conversation_id": delivery.envelope.correlation_id,
        "event.type": delivery.envelope.event_type,
        "messaging.rabbitmq.attempt": delivery.attempt,
    }
    order_id = getattr(delivery.event, "order_id", None)
    if order_id is not None:
        attributes["order.id"] = str(order_id)
    return attributes


async def handle_batch(
    handler: BatchHandler, deliveries: Sequence[Delivery], queue: str
) -> Sequence[Outcome]:
    """The handler's batch under one CONSUMER span per event, each in the trace of the event's
    publish (common/tracing.py ``batch_spans``); the handler finds each event's span by its
    event id or order id (``tracing.span``, ``tracing.trace_headers``), so what it emits or sends
    for an event stays in that event's trace. Each span ends with the event's outcome."""
    with tracing.batch_spans(
        f"process {queue}",
        [d.message.headers for d in deliveries],
        kind=SpanKind.CONSUMER,
        attributes={
            **SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.subscription.name": queue,
        },
        item_attributes=[_item_attributes(d) for d in deliveries],
        size_attribute="messaging.batch.message_count",
    ) as spans:
        contexts: dict[str, Context] = {}
        for delivery, span in zip(deliveries, spans, strict=True):
            context = set_span_in_context(span)
            contexts[str(delivery.envelope.event_id)] = context
            order_id = getattr(delivery.event, "order_id", None)
            if order_id is not None:
                contexts[str(order_id)] = context
        with tracing.parents(contexts):
            outcomes = await handler.handle_batch(deliveries)
        for span, outcome in zip(spans, outcomes, strict=False):
            span.set_attribute("messaging.outcome", type(outcome).__name__.lower())
            if isinstance(outcome, Ack):
                span.set_attribute("messaging.outcome.label", outcome.label)
            elif not isinstance(outcome, Defer):
                span.set_status(StatusCode.ERROR, getattr(outcome, "reason", ""))
        return outcomes
