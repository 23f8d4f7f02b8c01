"""Golden fixtures pin the wire format of every event version consumers must accept."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from common.events import (
    EVENT_TYPES,
    ContractError,
    OrderCreatedV1,
    UnknownEventType,
    decode_envelope,
    decode_event_data,
    encode_envelope,
    new_envelope,
)

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_every_event_version_has_a_golden_fixture():
    names = {p.name for p in FIXTURES.glob("*.json")}
    for event_type, version in EVENT_TYPES:
        assert f"{event_type}.v{version}.json" in names


def test_order_created_v1_fixture_decodes_to_exact_values():
    envelope = decode_envelope(fixture("OrderCreated.v1.json"))
    data = decode_event_data(envelope)
    assert isinstance(data, OrderCreatedV1)
    assert envelope.event_id == uuid.UUID("6f1c2a0e-8a43-4d1b-9a57-3c2f5e7d9b10")
    assert envelope.occurred_at == datetime(2026, 11, 21, 16, 0, 0, 123456, tzinfo=UTC)
    assert data.total_amount == Decimal("29.97")
    assert data.quantity == 3


def test_encoding_order_created_v1_reproduces_the_fixture_byte_for_byte_as_json():
    golden = json.loads(fixture("OrderCreated.v1.json"))
    when = datetime(2026, 11, 21, 16, 0, 0, 123456, tzinfo=UTC)
    data = OrderCreatedV1(
        order_id=uuid.UUID(golden["data"]["order_id"]),
        customer_id="cust-42",
        product_id="prod-7",
        quantity=3,
        total_amount=Decimal("29.97"),
        currency="USD",
        status="created",
        created_at=when,
    )
    envelope = new_envelope(
        data,
        producer="order-service",
        correlation_id="req-0001",
        event_id=uuid.UUID(golden["event_id"]),
        occurred_at=when,
    )
    assert json.loads(encode_envelope(envelope)) == golden


def test_money_is_a_string_on_the_wire_never_a_float():
    body = json.loads(fixture("OrderCreated.v1.json"))
    assert isinstance(body["data"]["total_amount"], str)


def test_additive_fields_are_accepted_within_a_version():
    body = json.loads(fixture("OrderCreated.v1.json"))
    body["data"]["loyalty_tier"] = "gold"
    body["trace_note"] = "new envelope field"
    data = decode_event_data(decode_envelope(json.dumps(body).encode()))
    assert isinstance(data, OrderCreatedV1)


def test_unknown_event_type_is_reported_as_unknown_not_invalid():
    body = json.loads(fixture("OrderCreated.v1.json"))
    body["event_type"] = "OrderTeleported"
    with pytest.raises(UnknownEventType):
        decode_event_data(decode_envelope(json.dumps(body).encode()))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.update(event_version=99),
        lambda b: b["data"].update(quantity=0),
        lambda b: b["data"].update(total_amount="-1"),
        lambda b: b["data"].update(total_amount="abc"),
        lambda b: b["data"].pop("order_id"),
        lambda b: b.pop("event_id"),
        lambda b: b.update(occurred_at="2026-11-21T16:00:00"),
    ],
)
def test_invalid_events_raise_contract_errors(mutate):
    body = json.loads(fixture("OrderCreated.v1.json"))
    mutate(body)
    with pytest.raises(ContractError):
        decode_event_data(decode_envelope(json.dumps(body).encode()))


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b'{"event_id": 1}', b"\xff" * 10])
def test_garbage_bodies_raise_contract_errors(raw):
    with pytest.raises(ContractError):
        decode_envelope(raw)


@pytest.mark.parametrize(
    "name", sorted(f"{t}.v{v}.json" for t, v in EVENT_TYPES), ids=lambda n: n.split(".")[0]
)
def test_every_fixture_decodes_and_reencodes_to_itself(name):
    golden = json.loads(fixture(name))
    envelope = decode_envelope(fixture(name))
    data = decode_event_data(envelope)
    assert (data.event_type, data.event_version) == (golden["event_type"], golden["event_version"])
    again = new_envelope(
        data,
        producer=envelope.producer,
        correlation_id=envelope.correlation_id,
        event_id=envelope.event_id,
        occurred_at=envelope.occurred_at,
    )
    assert json.loads(encode_envelope(again)) == golden


def test_routing_keys_are_order_dot_snake_case_event_names():
    keys = {cls.routing_key for cls in EVENT_TYPES.values()}
    assert keys == {
        "order.created",
        "order.scheduled",
        "order.paid",
        "order.confirmed",
        "order.payment_failed",
        "order.rejected",
        "order.cancelled",
    }
