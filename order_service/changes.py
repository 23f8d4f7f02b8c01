"""What one change of an order commits beside the row: its outbox event and timeline entry."""

from __future__ import annotations

from common.events import EventData, encode_envelope, new_envelope
from common.tracing import trace_headers
from order_service.domain.lifecycle import TimelineEntry, Transition
from order_service.domain.order import Order, OrderStatus
from order_service.order_events import first_event, transition_event
from order_service.ports import OutboxEvent

__all__ = ["PRODUCER", "change_records", "creation_records"]

PRODUCER = "order-service"


def change_records(
    change: Transition, *, correlation_id: str, exchange: str, reason: str | None = None
) -> tuple[OutboxEvent, TimelineEntry]:
    return _records(
        change.after,
        change.before.status,
        transition_event(change),
        correlation_id=correlation_id,
        exchange=exchange,
        reason=reason,
    )


def creation_records(
    order: Order, *, correlation_id: str, exchange: str
) -> tuple[OutboxEvent, TimelineEntry]:
    """A new order's first event (OrderCreated, or OrderScheduled) and timeline entry."""
    return _records(
        order, None, first_event(order), correlation_id=correlation_id, exchange=exchange
    )


def _records(
    after: Order,
    previous: OrderStatus | None,
    data: EventData,
    *,
    correlation_id: str,
    exchange: str,
    reason: str | None = None,
) -> tuple[OutboxEvent, TimelineEntry]:
    envelope = new_envelope(
        data, producer=PRODUCER, correlation_id=correlation_id, occurred_at=after.updated_at
    )
    entry = TimelineEntry(
        status=after.status,
        previous_status=previous,
        version=after.order_version,
        at=after.updated_at,
        event_id=envelope.event_id,
        event_type=envelope.event_type,
        reason=reason,
    )
    event = OutboxEvent(
        event_id=envelope.event_id,
        aggregate_id=after.order_id,
        event_type=envelope.event_type,
        exchange=exchange,
        routing_key=data.routing_key,
        payload=encode_envelope(envelope),
        # The trace of the event or request that caused this change (the saga's batch names
        # each order's OrderCreated), so one order's events share one trace.
        headers={"correlation_id": correlation_id, **trace_headers(after.order_id)},
        occurred_at=after.updated_at,
    )
    return event, entry
