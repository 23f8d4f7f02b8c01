"""Shared helpers for the lifecycle integration tests (real MariaDB, Redis, RabbitMQ)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import delete, insert, select

from common.testing import unique_name, wait_until
from order_service.adapters.tables import outbox, payments, stock
from order_service.container import Container

FINAL = {"confirmed", "payment_failed", "rejected", "cancelled"}


def order_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "customer_id": unique_name("cust"),
        "product_id": "prod-1",
        "quantity": 1,
        "total_amount": "19.98",
        "currency": "USD",
    }
    body.update(overrides)
    return body


async def place(client: httpx.AsyncClient, **overrides: object) -> dict[str, Any]:
    response = await client.post("/orders", json=order_body(**overrides))
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order


async def wait_status(
    client: httpx.AsyncClient, order_id: str, statuses: set[str], timeout: float = 15.0
) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        body: dict[str, Any] = (await client.get(f"/orders/{order_id}")).json()
        return body if body["status"] in statuses else None

    result = await wait_until(reached, timeout=timeout, message=f"order {order_id} in {statuses}")
    assert result is not None
    return result


async def stock_product(container: Container, available: int) -> str:
    """A product of this test only, with ``available`` units."""
    product = unique_name("prod-test")
    async with container.engine.begin() as conn:
        await conn.execute(
            insert(stock),
            {
                "product_id": product,
                "available": available,
                "reserved": 0,
                "updated_at": datetime.now(UTC).replace(tzinfo=None),
            },
        )
    return product


async def drop_product(container: Container, product: str) -> None:
    async with container.engine.begin() as conn:
        await conn.execute(delete(stock).where(stock.c.product_id == product))


async def payment_row(container: Container, order_id: str) -> dict[str, Any] | None:
    async with container.engine.connect() as conn:
        row = (await conn.execute(select(payments).where(payments.c.order_id == order_id))).first()
    return dict(row._mapping) if row is not None else None


async def event_types(container: Container, order_id: str) -> list[str]:
    async with container.engine.connect() as conn:
        rows = await conn.execute(
            select(outbox.c.event_type)
            .where(outbox.c.aggregate_id == order_id)
            .order_by(outbox.c.id)
        )
        return [r.event_type for r in rows]


async def outbox_payload(container: Container, order_id: str, event_type: str) -> tuple[str, bytes]:
    async with container.engine.connect() as conn:
        row = (
            await conn.execute(
                select(outbox.c.event_id, outbox.c.payload).where(
                    outbox.c.aggregate_id == order_id, outbox.c.event_type == event_type
                )
            )
        ).one()
    return str(row.event_id), bytes(row.payload)


def created_events_settled(container: Container) -> int:
    """How many OrderCreated deliveries fulfilment has finished with (acked for good)."""
    total = 0.0
    for metric in container.registry_metrics.registry.collect():
        for sample in metric.samples:
            labels = sample.labels
            if (
                sample.name == "order_service_events_consumed_total"
                and labels.get("event_type") == "OrderCreated"
                and labels.get("outcome") not in ("retried", "deferred")
            ):
                total += sample.value
    return int(total)
