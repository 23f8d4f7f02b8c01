"""One order shape: the events, the row, the response and the request body are the domain
Order's (and NewOrder's) fields by name, so a new field needs no mapper edit."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec

from common.events import OrderSnapshotV1
from order_service.adapters.rows import order_from_mapping, order_row
from order_service.adapters.tables import orders
from order_service.api.schemas import CreateOrderRequest, render_order, request_fingerprint
from order_service.domain.lifecycle import transition
from order_service.domain.order import NewOrder, Order, OrderStatus
from order_service.domain.validation import ALLOWED_FIELDS
from order_service.order_events import first_event, transition_event

NOW = datetime(2026, 11, 29, 15, 36, 58, 672225, tzinfo=UTC)
# API and column names that predate the contract's.
OLDER_NAMES = {"order_id": "id", "order_version": "version"}


def scheduled_order() -> Order:
    new = NewOrder("c-1", "p-1", 3, Decimal("29.97"), "EUR", scheduled_time=NOW + timedelta(1))
    return Order.create(new, order_id=uuid.uuid4(), now=NOW)


def test_every_field_of_the_contract_snapshot_is_a_field_of_the_domain_order():
    assert set(OrderSnapshotV1.__struct_fields__) <= set(Order.__struct_fields__)


def test_every_order_event_carries_each_snapshot_field_as_the_order_holds_it():
    order = scheduled_order()
    started = transition(order, OrderStatus.CREATED, NOW)
    paid = transition(started.after, OrderStatus.PAID, NOW, payment_id="pay-1")
    for event, source in (
        (first_event(order), order),
        (transition_event(started), started.after),
        (transition_event(paid), paid.after),
    ):
        for name in OrderSnapshotV1.__struct_fields__:
            carried = getattr(event, name)
            # A field added within v1 is left out (UNSET) while the order has no value for it.
            carried = None if carried is msgspec.UNSET else carried
            assert carried == getattr(source, name), name


def test_the_row_has_a_column_for_every_field_and_reads_back_the_same_order():
    order = scheduled_order()
    row = order_row(order)
    assert set(row) == {column.name for column in orders.c}
    assert order_from_mapping(row) == order


def test_an_amount_read_back_has_the_places_of_its_currency():
    row = order_row(scheduled_order()) | {"currency": "JPY", "total_amount": Decimal("1000.0000")}
    assert str(order_from_mapping(row).total_amount) == "1000"


def test_the_response_shows_every_field_of_the_order_under_the_api_names():
    order = scheduled_order()
    body = json.loads(render_order(order))
    # A field at its default (None) is left out, as scheduled_time always was.
    shown = [name for name in Order.__struct_fields__ if getattr(order, name) is not None]
    assert set(body) == {OLDER_NAMES.get(name, name) for name in shown}
    assert "scheduled_time" in body
    assert body["id"] == str(order.order_id) and body["version"] == 1
    unscheduled = msgspec.structs.replace(order, scheduled_time=None)
    assert "scheduled_time" not in json.loads(render_order(unscheduled))


def test_the_request_schema_and_the_validator_accept_exactly_the_fields_of_a_new_order():
    assert set(CreateOrderRequest.__struct_fields__) == set(NewOrder.__struct_fields__)
    assert set(NewOrder.__struct_fields__) == ALLOWED_FIELDS


def test_request_fingerprints_stay_what_they_were_so_live_keys_still_replay():
    plain = NewOrder("c", "p", 2, Decimal("10.50"), "USD")
    scheduled = NewOrder("c", "p", 2, Decimal("10.50"), "USD", scheduled_time=NOW)
    # Computed by the hand-written fingerprint this replaced.
    assert request_fingerprint(plain) == (
        "f783c54c3316010ce7864c80a5690aa45821344062af4741610ce6bf76af1c6c"
    )
    assert request_fingerprint(scheduled) == (
        "be7a899f9ee7bc8c6000de86016fc9976b00a11d4b5246fbd5859f9aabbbb3d8"
    )
