"""Orders POSTed to the real order service (in-process, on the test topology) reach analytics,
and every read model matches them exactly."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import delete, select, update

from analytics_service.adapters.tables import (
    AGGREGATE_TABLES,
    order_facts,
)
from analytics_service.aggregation import OrderFact, aggregate, bucket_floor
from common.testing import unique_name, wait_until

pytestmark = pytest.mark.integration

# A currency the other analytics tests do not use and amounts far above theirs, so this test's
# products lead the currency's top list; the rows are retracted at the end to keep it so.
CURRENCY = "CHF"


@pytest.fixture
async def orders(cleanup_topology) -> AsyncIterator[AsyncTestClient[Any]]:
    from order_service.app import create_app as create_order_app
    from order_service.migrate import upgrade_to_head
    from order_service.settings import OrderSettings

    settings = dataclasses.replace(
        OrderSettings.from_env(), topology=cleanup_topology, relay_poll_interval=0.1
    )
    # This test is about OrderCreated; lifecycle events landing after the retraction below
    # would re-create facts (tests/integration/analytics/test_lifecycle.py covers them).
    if hasattr(settings, "fulfilment_enabled"):
        settings = dataclasses.replace(settings, fulfilment_enabled=False)
    await asyncio.to_thread(upgrade_to_head, settings.database_url)
    async with AsyncTestClient(app=create_order_app(settings, configure_logs=False)) as client:
        yield client


def _orders_in(summary: dict[str, Any]) -> int:
    return next((c["total_orders"] for c in summary["by_currency"] if c["currency"] == CURRENCY), 0)


async def _facts(db, order_ids: list[str]) -> list[OrderFact]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(select(order_facts).where(order_facts.c.order_id.in_(order_ids)))
        return [
            OrderFact(
                order_id=uuid.UUID(r.order_id),
                event_id=uuid.UUID(r.event_id),
                customer_id=r.customer_id,
                product_id=r.product_id,
                quantity=r.quantity,
                total_amount=Decimal(r.total_amount),
                currency=r.currency,
                status=r.status,
                created_at=r.created_at.replace(tzinfo=UTC),
                occurred_at=r.occurred_at.replace(tzinfo=UTC),
                order_version=r.order_version,
                status_changed_at=r.status_changed_at.replace(tzinfo=UTC),
            )
            for r in rows
        ]


async def _retract(db, facts: list[OrderFact]) -> None:
    """Takes this test's orders back out of the shared aggregates."""
    async with db.engine.begin() as conn:
        for kind, rows in aggregate(facts).kinds():
            table, columns = AGGREGATE_TABLES[kind]
            for key, totals in rows.items():
                values = dict(zip(columns, key, strict=True))
                if "bucket_start" in values:
                    values["bucket_start"] = values["bucket_start"].replace(tzinfo=None)
                where = [table.c[c] == v for c, v in values.items()]
                await conn.execute(
                    update(table)
                    .where(*where)
                    .values(
                        order_count=table.c.order_count - totals.order_count,
                        revenue=table.c.revenue - totals.revenue,
                        quantity=table.c.quantity - totals.quantity,
                    )
                )
                await conn.execute(delete(table).where(*where, table.c.order_count <= 0))
        await conn.execute(
            delete(order_facts).where(order_facts.c.order_id.in_([str(f.order_id) for f in facts]))
        )


async def test_orders_posted_to_the_order_service_match_every_analytics_view_exactly(
    orders, start_consumer, api, db
):
    await start_consumer()
    products = [unique_name("prod") for _ in range(3)]
    customers = [unique_name("cust") for _ in range(2)]
    plan = [  # (product, customer, quantity, amount)
        (0, 0, 1, "1000001.10"),
        (1, 0, 2, "2000000.05"),
        (2, 1, 1, "1500000.00"),
        (1, 1, 3, "999999.99"),
        (0, 1, 1, "0.01"),
    ]
    summary_before = (await api.get("/analytics/summary")).json()
    hour = bucket_floor(datetime.now(UTC))
    window = {
        "from": hour.isoformat(),
        "to": (hour + timedelta(hours=1)).isoformat(),
        "granularity": "hour",
        "currency": CURRENCY,
    }
    bucket_before = (await api.get("/analytics/revenue", params=window)).json()["buckets"][0]

    order_ids: list[str] = []
    for p, c, qty, amount in plan:
        created = await orders.post(
            "/orders",
            json={
                "customer_id": customers[c],
                "product_id": products[p],
                "quantity": qty,
                "total_amount": amount,
                "currency": CURRENCY,
            },
        )
        assert created.status_code == 201, created.text
        order_ids.append(created.json()["id"])
    assert bucket_floor(datetime.now(UTC)) == hour, "crossed an hour boundary; rerun"

    try:
        await db.wait_for_facts([uuid.UUID(i) for i in order_ids], timeout=30)
        amounts = [Decimal(a) for *_, a in plan]
        total = sum(amounts, Decimal(0))

        async def summary_updated() -> dict | None:
            body = (await api.get("/analytics/summary")).json()
            was = Decimal(summary_before["total_revenue"].get(CURRENCY, "0"))
            return (
                body if Decimal(body["total_revenue"].get(CURRENCY, "0")) == was + total else None
            )

        summary = await wait_until(summary_updated, timeout=5, message="summary with the orders")
        assert summary is not None
        assert _orders_in(summary) == _orders_in(summary_before) + len(plan)

        bucket = (await api.get("/analytics/revenue", params=window)).json()["buckets"][0]
        assert bucket["order_count"] == bucket_before["order_count"] + len(plan)
        assert Decimal(bucket["revenue"][CURRENCY]) == (
            Decimal(bucket_before["revenue"].get(CURRENCY, "0")) + total
        )

        expected: dict[str, dict[str, Decimal]] = {
            "product": defaultdict(Decimal),
            "customer": defaultdict(Decimal),
        }
        for (p, c, _, _), value in zip(plan, amounts, strict=True):
            expected["product"][products[p]] += value
            expected["customer"][customers[c]] += value
        for kind, path in (("product", "top-products"), ("customer", "top-customers")):
            response = await api.get(
                f"/analytics/{path}", params={"limit": "100", "currency": CURRENCY}
            )
            ranked = [(i[f"{kind}_id"], Decimal(i["revenue"])) for i in response.json()["items"]]
            want = sorted(expected[kind].items(), key=lambda kv: (-kv[1], kv[0]))
            assert ranked[: len(want)] == want

        audit = (await api.post("/analytics/audit", json={"order_ids": order_ids})).json()
        assert audit["missing"] == []
        assert sorted((o["order_id"], o["total_amount"]) for o in audit["orders"]) == sorted(
            zip(order_ids, [a for *_, a in plan], strict=True)
        )
    finally:
        await _retract(db, await _facts(db, order_ids))
