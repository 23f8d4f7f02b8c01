"""Reads analytics' facts and stored aggregates from its database in ONE consistent snapshot.

The consumer updates a fact and the aggregates in one transaction, so within one snapshot the
stored totals must equal a recount of the facts exactly, even while events are still being
applied: a double-applied event (an inbox that let a duplicate through) shows as a difference.
The audit reads the database directly because no API lists every fact; it only reads.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import aiomysql
from sqlalchemy.engine import make_url

from loadtool.recount import Fact, Kind, Tally, Totals, hour_key

__all__ = ["AnalyticsSnapshot", "read_snapshot"]

# kind -> (table, key columns); mirrors analytics_db's schema (its migrations), not its code.
TABLES: dict[Kind, tuple[str, tuple[str, ...]]] = {
    "currency": ("currency_totals", ("currency",)),
    "hourly": ("revenue_hourly", ("bucket_start", "currency")),
    "product": ("product_totals", ("product_id", "currency")),
    "customer": ("customer_totals", ("customer_id", "currency")),
    "recognised": ("revenue_recognised_hourly", ("bucket_start", "currency")),
    "status": ("status_totals", ("currency", "status")),
}


class AnalyticsSnapshot:
    def __init__(self, facts: dict[str, Fact], stored: Totals) -> None:
        self.facts = facts
        self.stored = stored


def _key_part(value: Any) -> str:
    return hour_key(value) if isinstance(value, datetime) else str(value)


async def read_snapshot(database_url: str, timeout: float = 10.0) -> AnalyticsSnapshot:
    url = make_url(database_url)
    conn = await aiomysql.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username or "",
        password=url.password or "",
        db=url.database or "",
        connect_timeout=timeout,
        autocommit=False,
    )
    try:
        async with conn.cursor() as cur:
            await cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            await cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            await cur.execute(
                "SELECT order_id, customer_id, product_id, quantity, total_amount, currency,"
                " status, created_at, status_changed_at FROM order_facts"
            )
            facts = {
                str(r[0]): Fact(
                    order_id=str(r[0]),
                    customer_id=str(r[1]),
                    product_id=str(r[2]),
                    quantity=int(r[3]),
                    total_amount=Decimal(r[4]),
                    currency=str(r[5]),
                    status=str(r[6]),
                    created_at=r[7],
                    status_changed_at=r[8],
                )
                for r in await cur.fetchall()
            }
            stored = Totals()
            for kind, (table, keys) in TABLES.items():
                await cur.execute(
                    f"SELECT {', '.join(keys)}, order_count, revenue, quantity FROM {table}"
                )
                n = len(keys)
                for row in await cur.fetchall():
                    key = tuple(_key_part(v) for v in row[:n])
                    stored[kind][key] = Tally(int(row[n]), Decimal(row[n + 1]), int(row[n + 2]))
            await cur.execute("COMMIT")
    finally:
        conn.close()
    return AnalyticsSnapshot(facts, stored)
