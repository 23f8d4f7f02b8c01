"""The read side on MySQL (AnalyticsReader): summary, revenue buckets, top lists, audit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from analytics_service.adapters.database import translated
from analytics_service.adapters.tables import (
    currency_totals,
    customer_totals,
    order_facts,
    product_totals,
    revenue_hourly,
    revenue_recognised_hourly,
    status_totals,
)
from analytics_service.aggregation import Totals, state_of
from analytics_service.ports import AuditedOrder, RankedEntry, RevenueRow, SummaryRows
from common.utc import aware_utc, naive_utc

__all__ = ["MySqlAnalyticsReader"]

_AUDIT_CHUNK = 1000
_TOP_TABLES: dict[str, tuple[Table, str]] = {
    "product": (product_totals, "product_id"),
    "customer": (customer_totals, "customer_id"),
}


class MySqlAnalyticsReader:
    """Implements AnalyticsReader."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def summary(self) -> SummaryRows:
        async with translated(self._engine, begin=False) as conn:
            rows = (await conn.execute(select(currency_totals))).all()
            states = (await conn.execute(select(status_totals))).all()
        totals = {
            r.currency: Totals(int(r.order_count), Decimal(r.revenue), int(r.quantity))
            for r in rows
        }
        by_status = {
            (r.currency, r.status): Totals(int(r.order_count), Decimal(r.revenue), int(r.quantity))
            for r in states
        }
        last = max((r.updated_at for r in rows), default=None)
        return SummaryRows(totals, aware_utc(last) if last is not None else None, by_status)

    async def revenue(
        self, start: datetime, end: datetime, granularity: str, currency: str | None
    ) -> list[RevenueRow]:
        """Booked revenue by the hour the order was created, recognised revenue by the hour it
        was confirmed; one row per (bucket, currency) with both."""
        booked = await self._buckets(revenue_hourly, start, end, granularity, currency)
        recognised = await self._buckets(
            revenue_recognised_hourly, start, end, granularity, currency
        )
        keys = sorted(set(booked) | set(recognised))
        zero = (0, Decimal(0))
        return [
            RevenueRow(
                key[0],
                key[1],
                booked.get(key, zero)[0],
                booked.get(key, zero)[1],
                recognised.get(key, zero)[0],
                recognised.get(key, zero)[1],
            )
            for key in keys
        ]

    async def _buckets(
        self,
        table: Table,
        start: datetime,
        end: datetime,
        granularity: str,
        currency: str | None,
    ) -> dict[tuple[datetime, str], tuple[int, Decimal]]:
        bucket: Any = table.c.bucket_start
        if granularity == "day":
            bucket = func.timestamp(func.date(table.c.bucket_start))
        bucket = bucket.label("bucket")
        conditions = [
            table.c.bucket_start >= naive_utc(start),
            table.c.bucket_start < naive_utc(end),
        ]
        if currency is not None:
            conditions.append(table.c.currency == currency)
        stmt = (
            select(
                bucket,
                table.c.currency,
                func.sum(table.c.order_count).label("order_count"),
                func.sum(table.c.revenue).label("revenue"),
            )
            .where(and_(*conditions))
            .group_by(bucket, table.c.currency)
        )
        async with translated(self._engine, begin=False) as conn:
            rows = (await conn.execute(stmt)).all()
        return {
            (aware_utc(r.bucket), r.currency): (int(r.order_count), Decimal(r.revenue))
            for r in rows
        }

    async def top(self, kind: str, limit: int, currency: str | None) -> list[RankedEntry]:
        table, id_column = _TOP_TABLES[kind]
        # Rows every order left (all cancelled, say) stay behind at zero; they rank nothing.
        stmt = (
            select(table)
            .where(table.c.order_count > 0)
            .order_by(table.c.revenue.desc(), table.c[id_column])
            .limit(limit)
        )
        if currency is not None:
            stmt = stmt.where(table.c.currency == currency)
        async with translated(self._engine, begin=False) as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            RankedEntry(
                id=r._mapping[id_column],
                currency=r.currency,
                order_count=int(r.order_count),
                revenue=Decimal(r.revenue),
                quantity=int(r.quantity),
            )
            for r in rows
        ]

    async def audit(self, order_ids: Sequence[uuid.UUID]) -> list[AuditedOrder]:
        ids = sorted({str(i) for i in order_ids})
        found: list[AuditedOrder] = []
        async with translated(self._engine, begin=False) as conn:
            for at in range(0, len(ids), _AUDIT_CHUNK):
                rows = await conn.execute(
                    select(
                        order_facts.c.order_id,
                        order_facts.c.total_amount,
                        order_facts.c.amount_scale,
                        order_facts.c.currency,
                        order_facts.c.occurred_at,
                        order_facts.c.applied_at,
                        order_facts.c.status,
                    ).where(order_facts.c.order_id.in_(ids[at : at + _AUDIT_CHUNK]))
                )
                found.extend(
                    AuditedOrder(
                        order_id=uuid.UUID(r.order_id),
                        total_amount=Decimal(r.total_amount).quantize(
                            Decimal(1).scaleb(-int(r.amount_scale))
                        ),
                        currency=r.currency,
                        occurred_at=aware_utc(r.occurred_at),
                        applied_at=aware_utc(r.applied_at),
                        status=state_of(r.status),
                    )
                    for r in rows
                )
        return found
