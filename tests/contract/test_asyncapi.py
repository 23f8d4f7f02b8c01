"""The AsyncAPI document (common/asyncapi.py, docs/asyncapi.json) agrees with the event contract
and the topology, and the order service serves it. Validation against the official AsyncAPI 3.0
JSON Schema is in tests/deploy/test_asyncapi_schema.py (it needs the npm package)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import msgspec
import pytest

from common.asyncapi import (
    ASYNCAPI_PATH,
    build_asyncapi,
    message_key,
    render,
    schema_ref,
    topic_matches,
)
from common.events import EVENT_TYPES, Envelope
from common.messaging.topology import TopologySettings
from order_service.app import create_app
from order_service.settings import OrderSettings

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
COMMITTED = ROOT / "docs" / "asyncapi.json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_asyncapi()


def _payload_validator(document: dict[str, Any], key: str) -> jsonschema.Draft7Validator:
    root = {"$ref": f"#/components/messages/{key}/payload", "components": document["components"]}
    return jsonschema.Draft7Validator(root)


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_the_committed_asyncapi_document_is_the_one_generated_from_the_contract() -> None:
    assert COMMITTED.read_text() == render(build_asyncapi()), (
        "docs/asyncapi.json is stale: run `make asyncapi` and commit it"
    )


def test_every_event_type_and_version_has_a_message_whose_data_is_its_msgspec_schema(
    document: dict[str, Any],
) -> None:
    messages = document["components"]["messages"]
    schemas = document["components"]["schemas"]
    assert set(messages) == {message_key(cls) for cls in EVENT_TYPES.values()}
    for (event_type, version), cls in EVENT_TYPES.items():
        message = messages[f"{event_type}.v{version}"]
        assert message["name"] == event_type
        assert message["bindings"]["amqp"]["messageType"] == event_type
        payload = message["payload"]
        assert payload["properties"]["event_type"] == {"const": event_type}
        assert payload["properties"]["event_version"] == {"const": version}
        assert payload["properties"]["data"] == {"$ref": schema_ref(cls.__name__)}
        _, expected = msgspec.json.schema_components([cls], ref_template=schema_ref("{name}"))
        assert schemas[cls.__name__] == expected[cls.__name__]
    _, envelope = msgspec.json.schema_components([Envelope], ref_template=schema_ref("{name}"))
    assert schemas["Envelope"] == envelope["Envelope"]


def test_every_routing_key_is_a_channel_of_the_exchange_carrying_its_events(
    document: dict[str, Any],
) -> None:
    for cls in EVENT_TYPES.values():
        channel = document["channels"][cls.routing_key]
        assert channel["address"] == cls.routing_key
        assert message_key(cls) in channel["messages"]
        exchange = channel["bindings"]["amqp"]["exchange"]
        assert (exchange["name"], exchange["type"]) == ("orders", "topic")
        publish = document["operations"][f"publish.{cls.routing_key}"]
        assert publish["action"] == "send"
        assert publish["channel"] == {"$ref": f"#/channels/{cls.routing_key}"}


def test_every_consuming_queue_is_a_channel_receiving_what_its_bindings_route(
    document: dict[str, Any],
) -> None:
    topology = TopologySettings().topology()
    expected = {
        "analytics.orders": {message_key(c) for c in EVENT_TYPES.values()},
        "notifications.orders": {
            message_key(c)
            for c in EVENT_TYPES.values()
            if c.event_type not in ("OrderPaid", "OrderScheduled")
        },
        "orders.fulfilment": {"OrderCreated.v1"},
        "orders.scheduler": {"OrderScheduled.v1"},
    }
    assert {q.name for q in topology.queues} == set(expected)
    for queue in topology.queues:
        channel = document["channels"][queue.name]
        assert channel["bindings"]["amqp"]["queue"]["name"] == queue.name
        assert set(channel["messages"]) == expected[queue.name]
        assert channel["x-bindings"] == list(queue.bindings)
        assert channel["x-dead-letter-queue"] == queue.dlq
        receive = document["operations"][f"consume.{queue.name}"]
        assert receive["action"] == "receive"
        assert {m["$ref"].rsplit("/", 1)[1] for m in receive["messages"]} == expected[queue.name]


def test_every_reference_in_the_document_resolves(document: dict[str, Any]) -> None:
    refs = _refs(document)
    assert len(refs) > 20
    for ref in refs:
        _resolve(document, ref)
    # An operation's messages must be the channel's own (AsyncAPI 3.0).
    for name, operation in document["operations"].items():
        channel_ref = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), name


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_every_golden_fixture_is_valid_against_its_message_payload(
    document: dict[str, Any], fixture: str
) -> None:
    body = json.loads((FIXTURES / fixture).read_text())
    key = f"{body['event_type']}.v{body['event_version']}"
    _payload_validator(document, key).validate(body)


def test_a_body_of_another_event_type_or_missing_a_field_is_invalid_for_a_message(
    document: dict[str, Any],
) -> None:
    body = json.loads((FIXTURES / "OrderCreated.v1.json").read_text())
    validator = _payload_validator(document, "OrderPaid.v1")
    assert not validator.is_valid(body)
    created = _payload_validator(document, "OrderCreated.v1")
    assert created.is_valid(body)
    del body["data"]["order_id"]
    assert not created.is_valid(body)


def test_topic_bindings_match_routing_keys_as_rabbitmq_does() -> None:
    assert topic_matches("order.#", "order.created")
    assert topic_matches("order.#", "order")
    assert topic_matches("#", "order.payment_failed")
    assert topic_matches("order.*", "order.paid")
    assert not topic_matches("order.*", "order.paid.late")
    assert topic_matches("order.created", "order.created")
    assert not topic_matches("order.created", "order.scheduled")
    assert not topic_matches("orders.#", "order.created")


async def test_the_order_service_serves_its_configured_asyncapi_next_to_openapi() -> None:
    settings = OrderSettings.from_env(
        {"ORDERFLOW_ENV": "local", "ORDER_RELAY_ENABLED": "false", "ORDERS_EXCHANGE": "orders-test"}
    )
    app: Any = create_app(settings, configure_logs=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get(ASYNCAPI_PATH)
        openapi = (await client.get("/schema/openapi.json")).json()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    served = response.json()
    assert served == build_asyncapi(settings.topology.topology())
    assert served["channels"]["order.created"]["bindings"]["amqp"]["exchange"]["name"] == (
        "orders-test"
    )
    assert "orders-test.fulfilment" in served["channels"]
    assert ASYNCAPI_PATH not in openapi["paths"]
