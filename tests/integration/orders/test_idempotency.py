"""Idempotency-Key on POST /orders, as in the IETF httpapi draft (DESIGN.md §5)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import bindparam, text

from common.testing import unique_name

pytestmark = pytest.mark.integration


def body(customer: str, amount: str = "12.50") -> dict[str, object]:
    return {"customer_id": customer, "product_id": "p", "quantity": 1, "total_amount": amount}


async def count_orders(container, customer: str) -> int:
    async with container.engine.connect() as conn:
        return (
            await conn.execute(
                text("SELECT COUNT(*) FROM orders WHERE customer_id = :c"), {"c": customer}
            )
        ).scalar_one()


async def count_events(container, customer: str) -> int:
    async with container.engine.connect() as conn:
        return (
            await conn.execute(
                text(
                    "SELECT COUNT(*) FROM outbox o JOIN orders r ON r.id = o.aggregate_id "
                    "WHERE r.customer_id = :c"
                ),
                {"c": customer},
            )
        ).scalar_one()


async def test_same_key_and_body_replays_the_first_response(order_client):
    customer, key = unique_name("idem"), str(uuid.uuid4())
    async with order_client() as (client, container):
        first = await client.post("/orders", json=body(customer), headers={"Idempotency-Key": key})
        # Same order spelled differently: number instead of string, other key order.
        second = await client.post(
            "/orders",
            content=b'{"total_amount": 12.5, "quantity": 1, "product_id": "p", "customer_id": "'
            + customer.encode()
            + b'"}',
            headers={"Idempotency-Key": key, "content-type": "application/json"},
        )
        assert first.status_code == second.status_code == 201
        assert first.content == second.content
        assert first.headers["location"] == second.headers["location"]
        assert second.headers["idempotent-replayed"] == "true"
        assert await count_orders(container, customer) == 1
        assert await count_events(container, customer) == 1


async def test_same_key_with_a_different_body_is_422(order_client):
    customer, key = unique_name("idem"), str(uuid.uuid4())
    async with order_client() as (client, container):
        first = await client.post("/orders", json=body(customer), headers={"Idempotency-Key": key})
        assert first.status_code == 201
        other = await client.post(
            "/orders", json=body(customer, "99.00"), headers={"Idempotency-Key": key}
        )
        assert other.status_code == 422
        assert other.headers["content-type"].startswith("application/problem+json")
        assert await count_orders(container, customer) == 1


async def test_concurrent_requests_with_one_key_create_one_order(order_client):
    customer, key = unique_name("idem"), str(uuid.uuid4())
    async with order_client() as (client, container):
        responses = await asyncio.gather(
            *(
                client.post("/orders", json=body(customer), headers={"Idempotency-Key": key})
                for _ in range(8)
            )
        )
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) <= {201, 409}, statuses
        created = {r.content for r in responses if r.status_code == 201}
        assert len(created) == 1  # every 201 is the same order
        assert await count_orders(container, customer) == 1
        assert await count_events(container, customer) == 1


async def test_expired_key_is_forgotten(order_client):
    customer, key = unique_name("idem"), str(uuid.uuid4())
    async with order_client() as (client, container):
        first = await client.post("/orders", json=body(customer), headers={"Idempotency-Key": key})
        async with container.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE idempotency_keys SET expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND"
                    " WHERE idem_key = :k"
                ),
                {"k": key},
            )
        second = await client.post("/orders", json=body(customer), headers={"Idempotency-Key": key})
        assert second.status_code == 201
        assert second.json()["id"] != first.json()["id"]
        assert await count_orders(container, customer) == 2


async def test_requests_without_a_key_are_independent(order_client):
    customer = unique_name("idem")
    async with order_client() as (client, container):
        for _ in range(2):
            assert (await client.post("/orders", json=body(customer))).status_code == 201
        assert await count_orders(container, customer) == 2


async def test_with_api_keys_an_idempotency_key_is_scoped_to_the_caller(order_client):
    """Issue 13 security: the same Idempotency-Key from two API keys is two requests; it never
    replays (or refuses with 422) another caller's order."""
    customer, key = unique_name("idem-scope"), str(uuid.uuid4())
    alice = {"Idempotency-Key": key, "X-API-Key": "key-alice"}
    bob = {"Idempotency-Key": key, "Authorization": "Bearer key-bob"}
    async with order_client(api_keys=("key-alice", "key-bob")) as (client, container):
        first = await client.post("/orders", json=body(customer), headers=alice)
        other = await client.post("/orders", json=body(customer), headers=bob)
        different = await client.post("/orders", json=body(customer, "99.00"), headers=bob)
        again = await client.post("/orders", json=body(customer), headers=alice)
        assert (first.status_code, other.status_code) == (201, 201)
        assert other.json()["id"] != first.json()["id"]
        assert "idempotent-replayed" not in other.headers
        # Bob's key is Bob's: his own second use with another body is his 422.
        assert different.status_code == 422
        assert again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json()["id"] == first.json()["id"]
        assert await count_orders(container, customer) == 2
        async with container.engine.connect() as conn:
            stored = (
                await conn.execute(
                    text("SELECT idem_key FROM idempotency_keys WHERE resource_id IN (:a, :b)"),
                    {"a": first.json()["id"], "b": other.json()["id"]},
                )
            ).scalars()
            assert all(key not in k and "key-alice" not in k for k in stored)


async def test_keyed_and_unkeyed_orders_share_a_group_commit_and_a_taken_key_fails_alone(
    order_client,
):
    """Keyed creates take the same write path as unkeyed ones: a batch carrying a key that is
    already taken replays that request and commits every other order of the batch."""
    customer, taken = unique_name("idem-mix"), str(uuid.uuid4())
    async with order_client() as (client, container):
        first = await client.post(
            "/orders", json=body(customer), headers={"Idempotency-Key": taken}
        )
        assert first.status_code == 201
        keys = [str(uuid.uuid4()) for _ in range(6)]
        responses = await asyncio.gather(
            client.post("/orders", json=body(customer), headers={"Idempotency-Key": taken}),
            *(
                client.post("/orders", json=body(customer), headers={"Idempotency-Key": k})
                for k in keys
            ),
            *(client.post("/orders", json=body(customer)) for _ in range(6)),
        )
        replay, *rest = responses
        assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
        assert replay.content == first.content
        assert [r.status_code for r in rest] == [201] * 12
        assert await count_orders(container, customer) == 13
        assert await count_events(container, customer) == 13
        async with container.engine.connect() as conn:
            stored = (
                await conn.execute(
                    text(
                        "SELECT COUNT(*) FROM idempotency_keys WHERE idem_key IN :keys"
                    ).bindparams(bindparam("keys", expanding=True)),
                    {"keys": keys},
                )
            ).scalar_one()
        assert stored == 6
