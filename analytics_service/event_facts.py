"""An order event off the wire as the fact analytics records: the contract's fields checked
against what the analytics tables can hold, the producer's status replaced by the event's state."""

from __future__ import annotations

import re
from datetime import UTC

from analytics_service.aggregation import (
    AMOUNT_SCALE,
    MAX_AMOUNT,
    MAX_ID_LENGTH,
    MAX_QUANTITY,
    STATE_OF_EVENT,
    InvalidFactError,
    OrderFact,
)
from common.events import Envelope, EventData, OrderSnapshotV1, OrderTransitionV1

__all__ = ["fact_from_event"]

_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


def fact_from_event(envelope: Envelope, event: EventData) -> OrderFact:
    if not isinstance(event, OrderSnapshotV1):
        raise InvalidFactError(f"{envelope.event_type} v{envelope.event_version} has no fact")
    state = STATE_OF_EVENT.get(event.event_type)
    if state is None:  # pragma: no cover - every contract type with order data is listed
        raise InvalidFactError(f"{event.event_type} has no lifecycle state")
    problems = []
    for name, value in (("customer_id", event.customer_id), ("product_id", event.product_id)):
        if not value or len(value) > MAX_ID_LENGTH:
            problems.append(f"{name} must be 1-{MAX_ID_LENGTH} characters")
    if not _CURRENCY_RE.match(event.currency):
        problems.append("currency must be three upper-case letters")
    if event.order_version < 1 or event.order_version > MAX_QUANTITY:
        problems.append(f"order_version must be 1-{MAX_QUANTITY}")
    if event.quantity > MAX_QUANTITY:
        problems.append(f"quantity must be at most {MAX_QUANTITY}")
    if event.total_amount > MAX_AMOUNT:
        problems.append(f"total_amount must be at most {MAX_AMOUNT}")
    exponent = event.total_amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > AMOUNT_SCALE:
        problems.append(f"total_amount must have at most {AMOUNT_SCALE} decimal places")
    if problems:
        raise InvalidFactError("; ".join(problems))
    return OrderFact(
        order_id=event.order_id,
        event_id=envelope.event_id,
        customer_id=event.customer_id,
        product_id=event.product_id,
        quantity=event.quantity,
        total_amount=event.total_amount,
        currency=event.currency,
        status=state,
        created_at=event.created_at.astimezone(UTC),
        occurred_at=envelope.occurred_at.astimezone(UTC),
        order_version=event.order_version,
        status_changed_at=(
            event.changed_at if isinstance(event, OrderTransitionV1) else envelope.occurred_at
        ).astimezone(UTC),
    )
