"""rebuild recomputes the aggregates from the facts and reports what it corrected."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import update

from analytics_service.adapters.tables import product_totals
from analytics_service.rebuild import rebuild
from common.testing import unique_name
from tests.integration.analytics.conftest import order_event

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
