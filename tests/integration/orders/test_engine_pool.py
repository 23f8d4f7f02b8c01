"""The order engine skips the pool's ROLLBACK on check-in: no connection may come back from
the pool with a transaction still open (it would hold locks and see old data)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text

from order_service.container import build_engine
from order_service.settings import OrderSettings
from order_service.unit_of_work import SqlUnitOfWork


async def _in_transaction(engine) -> int:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        async with raw.driver_connection.cursor() as cursor:
            await cursor.execute("SELECT @@in_transaction")
            (value,) = await cursor.fetchone()
        await conn.rollback()
        return int(value)


async def test_connections_return_to_the_pool_without_an_open_transaction():
    engine = build_engine(OrderSettings.from_env())
    try:
        # A read left without commit, a committed unit of work, a rolled-back one.
        async with engine.connect() as conn:
            await conn.execute(text("SELECT COUNT(*) FROM orders"))
        assert await _in_transaction(engine) == 0
        async with SqlUnitOfWork(engine) as uow:
            await uow.orders.get(uuid.uuid4())
            await uow.commit()
        assert await _in_transaction(engine) == 0
        async with SqlUnitOfWork(engine):
            pass
        assert await _in_transaction(engine) == 0
        # The check itself can fail: a raw transaction SQLAlchemy does not know about is seen.
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            async with driver.cursor() as cursor:
                await cursor.execute("START TRANSACTION")
        assert await _in_transaction(engine) == 1
    finally:
        await engine.dispose()
