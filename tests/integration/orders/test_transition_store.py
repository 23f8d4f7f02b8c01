"""The saga's batch store sends raw multi-statement packets on pooled connections: every way out
of a batch must leave the connection outside a transaction and the rows unlocked."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiomysql
import msgspec
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from order_service.adapters.rows import first_transition_row, order_row
from order_service.adapters.transition_store import MySqlTransitionStore
from order_service.container import build_engine
from order_service.domain.fulfilment import PAYMENT_PENDING, StockLevel, payment_record
from order_service.domain.lifecycle import TimelineEntry
from order_service.domain.order import Order, OrderStatus
from order_service.ports import BatchWrites, OutboxEvent
from order_service.services import LockTimeoutError
from order_service.settings import OrderSettings

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    settings = dataclasses.replace(OrderSettings.from_env(), db_lock_wait_timeout=1)
    engine = build_engine(settings)
    yield engine
    await engine.dispose()


def _order(product_id: str) -> Order:
    return Order(
        order_id=uuid.uuid4(),
        customer_id=f"cust-store-{uuid.uuid4().hex[:8]}",
        product_id=product_id,
        quantity=1,
        total_amount=Decimal("12.50"),
        currency="USD",
        status=OrderStatus.CREATED,
        created_at=NOW,
        updated_at=NOW,
        order_version=1,
    )


def _event(order: Order, event_type: str = "OrderCreated") -> OutboxEvent:
    return OutboxEvent(
        event_id=uuid.uuid4(),
        aggregate_id=order.order_id,
        event_type=event_type,
        routing_key="order.created",
        payload=b"{}",
        occurred_at=NOW,
        exchange=f"test-{uuid.uuid4().hex[:8]}",
        headers={},
    )


async def _store_new(engine: AsyncEngine, *orders: Order) -> None:
    async with engine.begin() as conn:
        for order in orders:
            await conn.execute(text(_insert("orders", order_row(order))), order_row(order))
            row = first_transition_row(order, _event(order))
            await conn.execute(text(_insert("order_transitions", row)), row)


def _insert(table: str, row: dict[str, object]) -> str:
    return f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join(':' + c for c in row)})"


async def _in_transaction(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        async with driver.cursor() as cursor:
            await cursor.execute("SELECT @@in_transaction")
            (value,) = await cursor.fetchone()
        return int(value)


async def _other_connection() -> aiomysql.Connection:
    url = OrderSettings.from_env().database_url
    parsed = make_url(url)
    return await aiomysql.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 3306,
        user=parsed.username,
        password=parsed.password or "",
        db=parsed.database,
        autocommit=False,
    )


async def _lockable(order: Order) -> bool:
    """Whether another connection can lock the order's row without waiting."""
    conn = await _other_connection()
    try:
        async with conn.cursor() as cursor:
            await cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")
            try:
                await cursor.execute(
                    "SELECT id FROM orders WHERE id = %s FOR UPDATE", (str(order.order_id),)
                )
            except Exception:
                return False
        await conn.rollback()
        return True
    finally:
        conn.close()


async def test_a_batch_that_waits_too_long_for_a_row_lock_raises_and_leaves_no_transaction(
    engine: AsyncEngine,
):
    held, free = _order("prod-store-a"), _order("prod-store-b")
    await _store_new(engine, held, free)
    holder = await _other_connection()
    try:
        async with holder.cursor() as cursor:
            await cursor.execute(
                "SELECT id FROM orders WHERE id = %s FOR UPDATE", (str(held.order_id),)
            )
        assert not await _lockable(held), "the holder did not take the lock: no fault happened"
        with pytest.raises(LockTimeoutError):
            async with MySqlTransitionStore(engine).lock([held.order_id, free.order_id], set()):
                pytest.fail("the batch was locked although one of its rows was held")
    finally:
        await holder.rollback()
        holder.close()
    assert await _in_transaction(engine) == 0
    assert await _lockable(free), "the batch kept a lock after it failed"


async def test_leaving_a_locked_batch_without_commit_rolls_it_back_and_releases_its_locks(
    engine: AsyncEngine,
):
    order = _order("prod-store-c")
    await _store_new(engine, order)
    store = MySqlTransitionStore(engine)
    with pytest.raises(RuntimeError):
        async with store.lock([order.order_id], {order.product_id}) as locked:
            assert order.order_id in locked.orders
            assert not await _lockable(order), "the batch did not lock its order"
            raise RuntimeError("the saga failed while the batch was locked")
    assert await _in_transaction(engine) == 0
    assert await _lockable(order)


async def test_a_committed_batch_is_what_the_next_batch_reads(engine: AsyncEngine):
    order = _order(f"prod-store-{uuid.uuid4().hex[:8]}")
    await _store_new(engine, order)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO stock (product_id, available, reserved, updated_at) "
                "VALUES (:p, 5, 0, :t)"
            ),
            {"p": order.product_id, "t": NOW.replace(tzinfo=None)},
        )
    store = MySqlTransitionStore(engine)
    await store.add_intents([payment_record(order, PAYMENT_PENDING, NOW)])
    orders, payments = await store.read([order.order_id])
    assert orders[order.order_id] == order
    assert payments[order.order_id].status == PAYMENT_PENDING

    paid = msgspec.structs.replace(order, status=OrderStatus.PAID, order_version=2, updated_at=NOW)
    entry = TimelineEntry(
        status=OrderStatus.PAID,
        previous_status=OrderStatus.CREATED,
        version=2,
        at=NOW,
        event_id=uuid.uuid4(),
        event_type="OrderPaid",
    )
    async with store.lock([order.order_id], {order.product_id}) as locked:
        assert locked.levels[order.product_id] == StockLevel(order.product_id, 5, 0)
        assert [e.status for e in locked.timelines[order.order_id]] == [OrderStatus.CREATED]
        await locked.commit(
            BatchWrites(
                answers=[payment_record(order, "charged", NOW, payment_id="pay-1")],
                states=[paid],
                transitions=[(order.order_id, entry)],
                events=[_event(order, "OrderPaid")],
                levels=[StockLevel(order.product_id, 4, 1)],
                now=NOW,
            )
        )
    assert await _in_transaction(engine) == 0
    async with store.lock([order.order_id], {order.product_id}) as again:
        assert again.orders[order.order_id] == paid
        assert again.payments[order.order_id].status == "charged"
        assert again.payments[order.order_id].payment_id == "pay-1"
        assert again.levels[order.product_id] == StockLevel(order.product_id, 4, 1)
        assert [e.status for e in again.timelines[order.order_id]] == [
            OrderStatus.CREATED,
            OrderStatus.PAID,
        ]
    # A recorded answer is not overwritten by a later one (only a pending row takes it).
    async with store.lock([order.order_id], set()) as third:
        await third.commit(
            BatchWrites(
                now=NOW, answers=[payment_record(order, "declined", NOW, decline_reason="late")]
            )
        )
    _, payments = await store.read([order.order_id])
    assert payments[order.order_id].status == "charged"
    # A payment keeps its first refund: a second refund id (a retried step) is not recorded.
    for refund_id in ("refund-1", "refund-2"):
        async with store.lock([order.order_id], set()) as locked:
            await locked.commit(BatchWrites(now=NOW, refunds=[(order.order_id, refund_id)]))
    _, payments = await store.read([order.order_id])
    assert payments[order.order_id].status == "refunded"
    assert payments[order.order_id].refund_id == "refund-1"
