"""The trace of the request that created an order travels with its outbox row, through the
relay's publish and the consumer, into the events the saga emits in turn (in-memory exporter)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from common import tracing
from common.events import decode_envelope, decode_event_data
from common.messaging import tracing as messaging_tracing
from common.messaging.consumer import Delivery
from common.messaging.publisher import OutgoingMessage, PublishResult
from order_service.adapters.payments import SimulatedPaymentGateway
from order_service.api.schemas import render_order
from order_service.domain.lifecycle import OrderHistory
from order_service.domain.order import NewOrder
from order_service.fulfilment import FulfilmentHandler
from order_service.lifecycle import LifecycleService
from order_service.ports import OutboxEvent
from order_service.saga import FulfilmentSaga
from order_service.services import OrderService
from tests.unit.orders.fakes import (
    FakeCache,
    FakeStore,
    FakeTransitionStore,
    FakeUnitOfWork,
    FakeWriter,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
QUEUE = "orders.fulfilment"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.install(None)


class CapturingPublisher:
    """Confirms everything and keeps what it was given (the relay's view of the broker)."""

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []

    async def publish_many(
        self, messages: Sequence[OutgoingMessage], timeout: float = 10.0
    ) -> list[PublishResult]:
        self.sent.extend(messages)
        return [PublishResult(m.message_id, ok=True) for m in messages]


@dataclass
class ReceivedMessage:
    """What a consumer reads of an AMQP message."""

    body: bytes
    headers: dict[str, Any]
    message_id: str
    routing_key: str
    exchange: str = "orders"
    type: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def trace_id(traceparent: object) -> str:
    return str(traceparent).split("-")[1]


def span_id(traceparent: object) -> str:
    return str(traceparent).split("-")[2]


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


def make_system(store: FakeStore) -> tuple[OrderService, FulfilmentHandler]:
    cache = FakeCache()
    gateway = SimulatedPaymentGateway()
    clock = lambda: NOW + timedelta(seconds=1)  # noqa: E731
    orders = OrderService(
        lambda: FakeUnitOfWork(store),
        cache,
        FakeWriter(store),
        render=render_order,
        clock=lambda: NOW,
        idempotency_ttl=timedelta(hours=1),
        schedule_horizon=timedelta(days=30),
    )
    transitions = FakeTransitionStore(store)
    lifecycle = LifecycleService(transitions, cache, gateway, render=render_order, clock=clock)
    saga = FulfilmentSaga(
        transitions,
        cache,
        gateway,
        lifecycle,
        render=render_order,
        clock=clock,
    )
    return orders, FulfilmentHandler(saga)


async def post_order(orders: OrderService, name: str) -> tuple[str, uuid.UUID]:
    """An order created inside a request span; its trace id and the order id."""
    with tracing.tracer().start_as_current_span(name, kind=SpanKind.SERVER) as request:
        result = await orders.create_order(
            NewOrder("c-1", "p-1", 1, Decimal("10.00"), "USD"), correlation_id=name
        )
    assert isinstance(result, OrderHistory)
    return f"{request.get_span_context().trace_id:032x}", result.order.order_id


async def relay(events: Sequence[OutboxEvent]) -> list[OutgoingMessage]:
    publisher = CapturingPublisher()
    messages = [
        OutgoingMessage(
            body=e.payload,
            routing_key=e.routing_key,
            message_id=str(e.event_id),
            event_type=e.event_type,
            timestamp=e.occurred_at,
            headers=e.headers,
        )
        for e in events
    ]
    await messaging_tracing.publish_many(
        publisher,  # type: ignore[arg-type]
        messages,
        destination="orders",
        timeout=1.0,
    )
    return publisher.sent


def received(message: OutgoingMessage) -> Delivery:
    envelope = decode_envelope(message.body)
    raw: Any = ReceivedMessage(
        message.body, dict(message.headers), message.message_id, message.routing_key
    )
    return Delivery(message=raw, attempt=1, envelope=envelope, event=decode_event_data(envelope))


async def test_the_outbox_row_carries_the_trace_of_the_request_that_created_the_order(spans):
    store = FakeStore()
    orders, _ = make_system(store)
    request_trace, _ = await post_order(orders, "POST /orders")
    assert trace_id(store.outbox[0].headers["traceparent"]) == request_trace


async def test_the_relay_publishes_in_the_request_trace_and_hands_its_own_span_downstream(spans):
    store = FakeStore()
    orders, _ = make_system(store)
    request_trace, _ = await post_order(orders, "POST /orders")
    stored = store.outbox[0].headers["traceparent"]
    (sent,) = await relay(store.outbox)
    (publish,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.PRODUCER]
    assert hex_trace(publish) == request_trace
    assert publish.parent is not None and f"{publish.parent.span_id:016x}" == span_id(stored)
    assert publish.attributes is not None
    assert publish.attributes["messaging.system"] == "rabbitmq"
    assert publish.attributes["messaging.message.id"] == sent.message_id
    # The consumer's parent is the publish, in the same trace.
    assert trace_id(sent.headers["traceparent"]) == request_trace
    assert span_id(sent.headers["traceparent"]) == f"{publish.context.span_id:016x}"


async def test_each_order_of_a_consumed_batch_keeps_its_own_trace_down_to_the_saga_events(spans):
    store = FakeStore()
    orders, fulfilment = make_system(store)
    first_trace, first = await post_order(orders, "POST /orders 1")
    second_trace, second = await post_order(orders, "POST /orders 2")
    published = await relay(list(store.outbox))
    store.outbox.clear()

    outcomes = await messaging_tracing.handle_batch(
        fulfilment, [received(m) for m in published], QUEUE
    )

    assert [type(o).__name__ for o in outcomes] == ["Ack", "Ack"]
    emitted: dict[uuid.UUID, list[str]] = {e.aggregate_id: [] for e in store.outbox}
    for event in store.outbox:
        emitted[event.aggregate_id].append(trace_id(event.headers["traceparent"]))
    assert set(emitted) == {first, second}
    assert all(len(traces) >= 2 for traces in emitted.values())  # paid and confirmed at least
    assert set(emitted[first]) == {first_trace}
    assert set(emitted[second]) == {second_trace}

    finished = spans.get_finished_spans()
    consumer = [s for s in finished if s.kind == SpanKind.CONSUMER and s.links and s.parent]
    publishes = {s.context.span_id: s for s in finished if s.kind == SpanKind.PRODUCER}
    assert len(consumer) == 2
    for span in consumer:
        assert span.parent is not None and span.parent.span_id in publishes
        assert hex_trace(span) == hex_trace(publishes[span.parent.span_id])
        assert span.attributes is not None and span.attributes["messaging.outcome"] == "ack"
    charges = [s for s in finished if s.name == "payment charge"]
    assert {(s.attributes or {})["order.id"]: hex_trace(s) for s in charges} == {
        str(first): first_trace,
        str(second): second_trace,
    }


async def test_with_tracing_off_every_event_gets_a_fresh_trace_and_publishes_untouched():
    store = FakeStore()
    orders, _ = make_system(store)
    for _ in range(2):
        await orders.create_order(
            NewOrder("c-1", "p-1", 1, Decimal("10.00"), "USD"), correlation_id="r"
        )
    parents = [e.headers["traceparent"] for e in store.outbox]
    assert len({trace_id(p) for p in parents}) == 2
    sent = await relay(store.outbox)
    assert [m.headers["traceparent"] for m in sent] == parents
