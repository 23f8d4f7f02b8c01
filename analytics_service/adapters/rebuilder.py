"""The rebuild on MySQL (AggregateRebuilder): every aggregate recomputed from the facts."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, literal_column, select
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from analytics_service.adapters.database import translated
from analytics_service.adapters.fact_rows import key_values, row_key
from analytics_service.adapters.tables import AGGREGATE_TABLES, order_facts
from analytics_service.aggregation import (
    BOOKED_STATES,
    ORDER_STATES,
    RECOGNISED_STATES,
    AggregateKind,
    Aggregates,
    Difference,
    Key,
    Totals,
    diff,
)
from common.utc import naive_utc

__all__ = ["MySqlAggregateRebuilder"]


def _in(expression: str, values: frozenset[str] | tuple[str, ...]) -> str:
    # The states are the domain's own identifiers (no quote can occur in them).
    return f"{expression} IN ({', '.join(repr(v) for v in sorted(values))})"


# aggregation.facts.state_of in SQL: a status the lifecycle does not know (the producer's text
# of an OrderCreated, before the lifecycle existed) is "created". BINARY: byte for byte, as
# Python compares (the column's collation would ignore trailing spaces).
_STATE: ColumnElement[Any] = literal_column(
    f"CASE WHEN {_in('BINARY status', ORDER_STATES)} THEN status ELSE 'created' END"
)
_BOOKED: ColumnElement[Any] = literal_column(_in(f"({_STATE})", BOOKED_STATES))
_RECOGNISED: ColumnElement[Any] = literal_column(_in(f"({_STATE})", RECOGNISED_STATES))


def _hour(column: Any) -> ColumnElement[Any]:
    """aggregation.bucket_floor of a stored (naive UTC) time, as text MySQL and Python agree on."""
    return func.date_format(column, "%Y-%m-%d %H:00:00")


_f = order_facts.c
# aggregation.totals._contributions in SQL: per kind, which facts count and their key, in the
# key order of Aggregates. tests/integration/analytics/test_rebuild.py holds the two equal.
_SUMS: dict[AggregateKind, tuple[ColumnElement[Any] | None, tuple[ColumnElement[Any], ...]]] = {
    "status": (None, (_f.currency, _STATE)),
    "currency": (_BOOKED, (_f.currency,)),
    "hourly": (_BOOKED, (_hour(_f.created_at), _f.currency)),
    "product": (_BOOKED, (_f.product_id, _f.currency)),
    "customer": (_BOOKED, (_f.customer_id, _f.currency)),
    "recognised": (_RECOGNISED, (_hour(_f.status_changed_at), _f.currency)),
}
_HOURLY_KINDS = frozenset({"hourly", "recognised"})


def _key(kind: AggregateKind, values: tuple[Any, ...]) -> Key:
    if kind in _HOURLY_KINDS:
        return (datetime.fromisoformat(values[0]).replace(tzinfo=UTC), *values[1:])
    return values


class MySqlAggregateRebuilder:
    """Implements AggregateRebuilder."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def rebuild(self) -> list[Difference]:
        """Recomputes every aggregate from the facts and corrects the rows that differ.

        The facts are read with a shared lock, which holds back new facts (and so aggregate
        updates) until the corrections commit: the result is exact even with consumers running.
        MySQL adds the facts up (aggregation.aggregate's rules in SQL), so the lock is held for
        a few scans of the table, not for loading every fact into this process.
        """
        async with translated(self._engine, begin=True) as conn:
            expected = await self.locked_sums(conn)
            actual = await self._locked_aggregates(conn)
            differences = diff(expected, actual)
            await self._correct(conn, differences)
        return differences

    @staticmethod
    async def locked_sums(conn: AsyncConnection) -> Aggregates:
        """What the facts add up to (aggregation.aggregate), summed by MySQL under a shared
        lock on every fact."""
        sums = Aggregates()
        for kind, (counted, key) in _SUMS.items():
            query = (
                select(*key, func.count(), func.sum(_f.total_amount), func.sum(_f.quantity))
                .group_by(*key)
                .with_for_update(read=True)
            )
            if counted is not None:
                query = query.where(counted)
            target = sums.get(kind)
            for *values, count, revenue, quantity in await conn.execute(query):
                target[_key(kind, tuple(values))] = Totals(
                    int(count), Decimal(revenue), int(quantity)
                )
        return Aggregates(**{kind: dict(sorted(rows.items())) for kind, rows in sums.kinds()})

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
