"""The rebuild on MySQL (AggregateRebuilder): every aggregate recomputed from the facts."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import and_, delete, select
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from analytics_service.adapters.database import translated
from analytics_service.adapters.fact_rows import fact_of, key_values, row_key
from analytics_service.adapters.tables import AGGREGATE_TABLES, order_facts
from analytics_service.aggregation import Aggregates, Difference, OrderFact, Totals, aggregate, diff
from common.utc import naive_utc

__all__ = ["MySqlAggregateRebuilder"]


class MySqlAggregateRebuilder:
    """Implements AggregateRebuilder."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def rebuild(self) -> list[Difference]:
        """Recomputes every aggregate from the facts and corrects the rows that differ.

        The facts are read with a shared lock, which holds back new facts (and so aggregate
        updates) until the corrections commit: the result is exact even with consumers running.
        """
        async with translated(self._engine, begin=True) as conn:
            expected = aggregate(await self._locked_facts(conn))
            actual = await self._locked_aggregates(conn)
            differences = diff(expected, actual)
            await self._correct(conn, differences)
        return differences

    async def _locked_facts(self, conn: AsyncConnection) -> list[OrderFact]:
        result = await conn.stream(select(order_facts).with_for_update(read=True))
        return [fact_of(r) async for r in result]

    async def _locked_aggregates(self, conn: AsyncConnection) -> Aggregates:
        stored = Aggregates()
        for kind, (table, _) in AGGREGATE_TABLES.items():
            rows = await conn.execute(select(table).with_for_update())
            target = stored.get(kind)
            for r in rows:
                target[row_key(kind, r)] = Totals(
                    int(r.order_count), Decimal(r.revenue), int(r.quantity)
                )
        return stored

    async def _correct(self, conn: AsyncConnection, differences: list[Difference]) -> None:
        now = naive_utc(datetime.now(UTC))
        for d in differences:
            table, columns = AGGREGATE_TABLES[d.kind]
            keys = key_values(d.kind, d.key)
            if d.expected is None:
                await conn.execute(
                    delete(table).where(and_(*(table.c[c] == keys[c] for c in columns)))
                )
                continue
            value = {
                **keys,
                "order_count": d.expected.order_count,
                "revenue": d.expected.revenue,
                "quantity": d.expected.quantity,
            }
            if d.kind == "currency":
                value["updated_at"] = now
            stmt = insert(table).values(value)
            await conn.execute(
                stmt.on_duplicate_key_update(
                    {k: stmt.inserted[k] for k in value if k not in columns}
                )
            )
