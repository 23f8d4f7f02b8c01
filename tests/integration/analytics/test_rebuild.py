"""rebuild recomputes the aggregates from the facts and reports what it corrected."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import insert, update

from analytics_service.adapters.database import build_engine
from analytics_service.adapters.fact_rows import FACT_COLUMNS, fact_values
from analytics_service.adapters.rebuilder import MySqlAggregateRebuilder
from analytics_service.adapters.tables import order_facts, product_totals
from analytics_service.aggregation import ORDER_STATES, OrderFact, aggregate
from analytics_service.rebuild import rebuild
from common.testing import unique_name
from common.utc import naive_utc
from tests.integration.analytics.conftest import order_event
from tests.support.analytics_db import ANALYTICS_DB_URL, PORT, fresh_analytics_database

pytestmark = pytest.mark.integration


async def test_rebuild_gives_the_same_aggregates_and_corrects_a_damaged_row(
    start_consumer, publisher, db, settings
):
    product = unique_name("prod")
    events = [order_event(product_id=product, amount=a) for a in ("4.40", "5.60")]
    await start_consumer()
    await publisher.publish(events)
    await db.wait_for_facts([e.data.order_id for e in events])
    applied = await db.totals("product_totals", "product_id", [product])
    assert applied == {product: (2, Decimal("10.00"), 2)}

    first = await rebuild(settings)
    assert not [d for d in first if product in d.key]
    assert await db.totals("product_totals", "product_id", [product]) == applied

    async with db.engine.begin() as conn:
        await conn.execute(
            update(product_totals)
            .where(product_totals.c.product_id == product)
            .values(revenue=Decimal("999.00"), order_count=7)
        )
    corrected = await rebuild(settings)

    mine = [d for d in corrected if product in d.key]
    assert len(mine) == 1 and mine[0].kind == "product"
    assert mine[0].actual is not None and mine[0].actual.order_count == 7
    assert await db.totals("product_totals", "product_id", [product]) == applied


async def test_mysql_adds_the_facts_up_as_the_domain_does() -> None:
    """The rebuild's sums come from SQL written after aggregation's rules: every state (and a
    status the lifecycle does not know, with and without a trailing space), several hours,
    currencies, products, customers and amount scales, against aggregate() in Python."""
    base = datetime(2026, 3, 1, 9, 59, 59, tzinfo=UTC)
    statuses = [*ORDER_STATES, "PENDING", "confirmed ", "Confirmed"]
    facts = [
        OrderFact(
            order_id=uuid.uuid4(),
            event_id=uuid.uuid4(),
            customer_id=f"cust-{i % 7}",
            product_id=f"prod-{i % 5}",
            quantity=1 + i % 4,
            total_amount=Decimal(f"{10 + i}.{i % 10}") if i % 3 else Decimal(f"{i}.1234"),
            currency=("USD", "EUR", "JPY")[i % 3],
            status=statuses[i % len(statuses)],
            created_at=base + timedelta(minutes=17 * i),
            occurred_at=base + timedelta(minutes=17 * i),
            status_changed_at=base + timedelta(minutes=17 * i + 41 * (i % 4)),
        )
        for i in range(120)
    ]
    async with fresh_analytics_database() as name:
        engine = build_engine(
            ANALYTICS_DB_URL.format(port=PORT, database=name), pool_size=1, connect_timeout=5
        )
        try:
            now = naive_utc(datetime.now(UTC))
            async with engine.begin() as conn:
                await conn.execute(
                    insert(order_facts),
                    [dict(zip(FACT_COLUMNS, fact_values(f, now), strict=True)) for f in facts],
                )
            async with engine.begin() as conn:
                summed = await MySqlAggregateRebuilder.locked_sums(conn)
        finally:
            await engine.dispose()
    expected = aggregate(facts)
    for kind, rows in expected.kinds():
        assert summed.get(kind) == rows, kind
    assert summed == expected


async def test_a_rebuild_while_events_are_applied_corrects_nothing_and_loses_nothing(
    start_consumer, publisher, db, settings
):
    """The facts are summed under a shared lock, so no batch commits between the sums and the
    read of the aggregates: a rebuild racing the consumer never 'corrects' a row the batch had
    just brought up to date (which would drop that batch's orders from the totals)."""
    product = unique_name("prod")
    events = [order_event(product_id=product, amount=f"{1 + i % 9}.25") for i in range(400)]
    await start_consumer()
    done = asyncio.Event()

    async def publish() -> None:
        for start in range(0, len(events), 10):
            await publisher.publish(events[start : start + 10])
            await asyncio.sleep(0.005)
        done.set()

    sender = asyncio.create_task(publish())
    rebuilds, touched = 0, []
    while not done.is_set() or rebuilds < 3:
        touched += [d for d in await rebuild(settings) if product in d.key]
        rebuilds += 1
    await sender
    await db.wait_for_facts([e.data.order_id for e in events])
    touched += [d for d in await rebuild(settings) if product in d.key]

    assert rebuilds >= 3
    assert touched == []
    total = sum((e.data.total_amount for e in events), Decimal(0))
    assert await db.totals("product_totals", "product_id", [product]) == {
        product: (len(events), total, len(events))
    }
