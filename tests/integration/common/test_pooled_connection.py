"""common.mysql.engine.pooled: a checkout gives its connection back in the same event-loop turn,
and what its body left open is still rolled back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from common.mysql.engine import pooled
from common.testing import unique_name
from order_service.container import build_engine
from order_service.settings import OrderSettings

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    engine = build_engine(OrderSettings.from_env())
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def table(engine: AsyncEngine) -> AsyncIterator[str]:
    name = unique_name("pooled").replace("-", "_")
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE TABLE {name} (id INT PRIMARY KEY)"))
    try:
        yield name
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE {name}"))


class LoopTurns:
    """Counts event-loop iterations: a callback that schedules itself for the next one."""

    def __init__(self) -> None:
        self.count = 0
        self._handle: asyncio.Handle | None = None

    def __enter__(self) -> LoopTurns:
        self._handle = asyncio.get_running_loop().call_soon(self._tick)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._handle is not None
        self._handle.cancel()

    def _tick(self) -> None:
        self.count += 1
        self._handle = asyncio.get_running_loop().call_soon(self._tick)


async def _rows(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT COUNT(*) FROM {table}"))).scalar_one())


async def test_a_checkout_and_return_take_no_loop_turn(engine: AsyncEngine):
    async with pooled(engine) as conn:  # the pool's first connection: a real connect
        await conn.execute(text("SELECT 1"))
        await conn.commit()
    with LoopTurns() as turns:
        async with pooled(engine):
            pass
    # SQLAlchemy's own context closes in a task of its own: a turn of waiting behind every
    # other callback of a busy loop, on each request of a group-commit batch.
    assert turns.count == 0
    with LoopTurns() as turns:
        async with engine.connect():
            pass
    assert turns.count >= 1  # the baseline this saves, seen here


async def test_a_transaction_left_open_is_rolled_back_on_return(engine: AsyncEngine, table: str):
    async with pooled(engine) as conn:
        await conn.execute(text(f"INSERT INTO {table} VALUES (1)"))
        assert conn.in_transaction()
    assert await _rows(engine, table) == 0
    async with pooled(engine) as conn:  # the same pooled connection, outside a transaction
        assert (await conn.execute(text("SELECT @@in_transaction"))).scalar_one() == 0


async def test_a_failing_body_rolls_back_and_the_pool_stays_usable(engine: AsyncEngine, table: str):
    with pytest.raises(RuntimeError):
        async with pooled(engine) as conn, conn.begin():
            await conn.execute(text(f"INSERT INTO {table} VALUES (1)"))
            raise RuntimeError("the body failed")
    assert await _rows(engine, table) == 0
    async with pooled(engine) as conn, conn.begin():
        await conn.execute(text(f"INSERT INTO {table} VALUES (2)"))
    assert await _rows(engine, table) == 1
