"""Marking outbox rows sent rewrites them in place: redo counted where it lands, in MariaDB.

A NULL ``published_at`` took no bytes in the row, so each mark grew a ~1 KB row, which InnoDB
could not rewrite in place: ~5 KB of redo log per marked row on the old schema, against ~0.2 KB
now (migration 0005).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from common.observability import Metrics
from common.testing import unique_name
from loadtool.mariadb_counters import read_counters
from loadtool.mysql_admin import MySqlAdmin
from order_service.adapters.outbox_store import OutboxMetrics, OutboxStore
from order_service.adapters.rows import outbox_row
from order_service.adapters.tables import UNPUBLISHED, outbox
from order_service.container import build_engine
from order_service.ports import OutboxEvent
from order_service.settings import OrderSettings

pytestmark = pytest.mark.integration

ROWS = 200
# Per marked row. In place it is ~0.2 KB; grown rows cost ~5 KB each.
REDO_BUDGET_PER_ROW = 1_000


@pytest.fixture
async def engine(order_settings: OrderSettings) -> AsyncIterator[AsyncEngine]:
    engine = build_engine(order_settings)
    yield engine
    await engine.dispose()


def _event(exchange: str) -> OutboxEvent:
    """About the size of a real OrderCreated row: a ~600-byte payload, ~110 bytes of headers."""
    event_id = uuid.uuid4()
    body = {"event_id": str(event_id), "order": {"note": "x" * 520}}
    return OutboxEvent(
        event_id=event_id,
        aggregate_id=uuid.uuid4(),
        event_type="OrderCreated",
        exchange=exchange,
        routing_key="order.created",
        payload=json.dumps(body).encode(),
        headers={"correlation_id": "marks-test", "traceparent": "00-" + "a" * 32 + "-" + "b" * 16},
        occurred_at=datetime.now(UTC),
    )


async def _redo_bytes() -> int:
    """The server's redo log written so far, read as the bench reads it."""
    counters = await read_counters(MySqlAdmin.from_env())
    assert counters is not None, "MariaDB's counters could not be read"
    return counters["Innodb_os_log_written"]


async def test_marking_outbox_rows_sent_rewrites_them_in_place(engine: AsyncEngine) -> None:
    exchange = unique_name("marks")
    events = [_event(exchange) for _ in range(ROWS)]
    async with engine.begin() as conn:
        await conn.execute(insert(outbox), [outbox_row(e) for e in events])
    store = OutboxStore(
        engine,
        OutboxMetrics(Metrics(unique_name("marks_metrics"))),
        exchange=exchange,
        batch_size=ROWS,
        recovery_grace=5.0,
        max_attempts=5,
        retry_base_seconds=1.0,
        retry_max_seconds=10.0,
    )
    ids = [str(e.event_id) for e in events]
    try:
        before = await _redo_bytes()
        async with engine.begin() as conn:
            await store.mark_sent(conn, outbox.c.event_id.in_(ids))
        redo = await _redo_bytes() - before

        async with engine.connect() as conn:
            marks = (
                await conn.execute(
                    select(outbox.c.published_at).where(outbox.c.exchange == exchange)
                )
            ).scalars()
            unsent = [m for m in marks if m == UNPUBLISHED]
        assert unsent == []  # every row was marked: the redo below is the marks' own
        assert redo < ROWS * REDO_BUDGET_PER_ROW, f"{redo / ROWS:.0f} bytes of redo per marked row"
    finally:
        async with engine.begin() as conn:
            await conn.execute(outbox.delete().where(outbox.c.exchange == exchange))
