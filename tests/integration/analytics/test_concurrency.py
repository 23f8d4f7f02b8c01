"""Two consumer processes on one queue keep the totals exact (no lost updates)."""

from __future__ import annotations

import random
from collections import defaultdict
from decimal import Decimal

import pytest
from sqlalchemy import select

from analytics_service.adapters.tables import currency_totals
from common.testing import unique_name, wait_until
from tests.integration.analytics.conftest import consumed, order_event

pytestmark = pytest.mark.integration

EVENTS = 3000
DUPLICATES = 300


async def _currency_row(db, currency: str) -> tuple[int, Decimal]:
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(
                select(currency_totals.c.order_count, currency_totals.c.revenue).where(
                    currency_totals.c.currency == currency
                )
            )
        ).first()
    return (int(row[0]), Decimal(row[1])) if row else (0, Decimal(0))


async def test_two_consumers_on_one_queue_give_exact_totals(start_consumer, publisher, db):
    rng = random.Random(7)
    products = [unique_name("prod") for _ in range(15)]
    customers = [unique_name("cust") for _ in range(10)]
    events = [
        order_event(
            product_id=rng.choice(products),
            customer_id=rng.choice(customers),
            amount=f"{rng.randint(1, 99999) / 100:.2f}",
            quantity=rng.randint(1, 5),
            currency="SEK",
        )
        for _ in range(EVENTS)
    ]
    expected_products: dict[str, tuple[int, Decimal, int]] = defaultdict(lambda: (0, Decimal(0), 0))
    for e in events:
        n, r, q = expected_products[e.data.product_id]
        expected_products[e.data.product_id] = (n + 1, r + e.data.total_amount, q + e.data.quantity)
    expected_customers: dict[str, tuple[int, Decimal, int]] = defaultdict(
        lambda: (0, Decimal(0), 0)
    )
    for e in events:
        n, r, q = expected_customers[e.data.customer_id]
        expected_customers[e.data.customer_id] = (
            n + 1,
            r + e.data.total_amount,
            q + e.data.quantity,
        )
    before = await _currency_row(db, "SEK")

    first = await start_consumer(batch_size=100, workers=2)
    second = await start_consumer(batch_size=100, workers=2)
    stream = events + rng.sample(events, DUPLICATES)  # redelivered copies, spread across both
    rng.shuffle(stream)
    for at in range(0, len(stream), 500):
        await publisher.publish(stream[at : at + 500])

    await db.wait_for_facts([e.data.order_id for e in events], timeout=60)

    assert await db.totals("product_totals", "product_id", products) == expected_products
    assert await db.totals("customer_totals", "customer_id", customers) == expected_customers
    count, revenue = await _currency_row(db, "SEK")
    assert (count - before[0], revenue - before[1]) == (
        EVENTS,
        sum((e.data.total_amount for e in events), Decimal(0)),
    )

    async def all_settled() -> bool:
        return consumed(first, "applied") + consumed(second, "applied") == EVENTS and (
            consumed(first, "duplicate") + consumed(second, "duplicate") == DUPLICATES
        )

    await wait_until(all_settled, timeout=20, message="every copy acked once")
    assert consumed(first, "applied") > 0 and consumed(second, "applied") > 0
