"""Pruning the analytics inbox on MariaDB: past the retention only, and never a double count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from analytics_service.adapters.fact_store import MySqlAnalyticsStore
from analytics_service.event_facts import fact_from_event
from analytics_service.pruner import InboxPruneMetrics, InboxPruning
from common.events import decode_envelope, decode_event_data, encode_envelope
from common.observability import Metrics
from common.testing import unique_name, wait_until
from tests.integration.analytics.conftest import consumed, order_event

pytestmark = pytest.mark.integration


def _fact(**kwargs):
    envelope = decode_envelope(encode_envelope(order_event(**kwargs)))
    return fact_from_event(envelope, decode_event_data(envelope))


async def _inbox(db, consumer: str) -> set[str]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT event_id FROM inbox WHERE consumer = :c"), {"c": consumer}
        )
        return {r[0] for r in rows}


async def test_inbox_rows_past_the_retention_are_pruned_in_bounded_statements(db):
    consumer, now = unique_name("analytics"), datetime.now(UTC)
    store = MySqlAnalyticsStore(db.engine)
    old = [_fact() for _ in range(5)]
    recent = [_fact() for _ in range(2)]
    await store.apply(consumer, old, now - timedelta(days=8))
    await store.apply(consumer, recent, now - timedelta(days=6))
    metrics = Metrics("t")
    pruning = InboxPruning(
        store,
        InboxPruneMetrics(metrics),
        consumer=consumer,
        retention=timedelta(days=7),
        interval=60,
        batch=2,
        max_batches=10,
        clock=lambda: now,
    )

    assert await pruning.run_once() == 5

    assert await _inbox(db, consumer) == {str(f.event_id) for f in recent}
    assert metrics.registry.get_sample_value("t_inbox_pruned_rows_total") == 5


async def test_an_event_redelivered_after_its_inbox_row_was_pruned_is_not_counted_again(
    start_consumer, publisher, db
):
    consumer_name = unique_name("analytics")
    consumer = await start_consumer(consumer_name=consumer_name)
    product = unique_name("prod")
    event = order_event(product_id=product, amount="4.00")
    await publisher.publish([event])
    await db.wait_for_facts([event.data.order_id])
    store = MySqlAnalyticsStore(db.engine)
    assert await store.prune_inbox(consumer_name, datetime.now(UTC) + timedelta(days=1), 100) == 1

    await publisher.publish([event])

    async def settled() -> bool:
        return consumed(consumer, "applied") + consumed(consumer, "duplicate") == 2

    await wait_until(settled, timeout=10, message="the redelivered copy settled")
    assert consumed(consumer, "duplicate") == 1
    assert await db.totals("product_totals", "product_id", [product]) == {
        product: (1, Decimal("4.00"), 1)
    }
