"""What one change of an order commits beside the row: its outbox event and timeline entry."""

from __future__ import annotations

from common.events import encode_envelope, new_envelope
from common.tracing import trace_headers
from order_service.domain.lifecycle import TimelineEntry, Transition
from order_service.ports import OutboxEvent

__all__ = ["PRODUCER", "change_records"]

PRODUCER = "order-service"


def change_records(
    change: Transition, *, correlation_id: str, exchange: str, reason: str | None = None
) -> tuple[OutboxEvent, TimelineEntry]:
    after = change.after
    envelope = new_envelope(
        change.event, producer=PRODUCER, correlation_id=correlation_id, occurred_at=after.updated_at
    )
    entry = TimelineEntry(
        status=after.status,
        previous_status=change.before.status,
        version=after.version,
        at=after.updated_at,
        event_id=envelope.event_id,
        event_type=envelope.event_type,
        reason=reason,
    )
    event = OutboxEvent(
        event_id=envelope.event_id,
        aggregate_id=after.id,
        event_type=envelope.event_type,
        exchange=exchange,
        routing_key=change.event.routing_key,
        payload=encode_envelope(envelope),
        # The trace of the event or request that caused this change (the saga's batch names
        # each order's OrderCreated), so one order's events share one trace.
        headers={"correlation_id": correlation_id, **trace_headers(after.id)},
        occurred_at=after.updated_at,
    )
    return event, entry
