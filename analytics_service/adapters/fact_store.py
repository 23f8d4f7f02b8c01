"""The write side on MySQL (AnalyticsStore, InboxPruner): a batch of facts through the inbox
into order_facts and the aggregates, in two round trips of multi-statement text."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from analytics_service.adapters.database import driver_connection, translated
from analytics_service.adapters.fact_rows import (
    FACT_COLUMNS,
    StoredFact,
    fact_of,
    fact_row,
    fact_values,
    key_values,
)
from analytics_service.adapters.tables import AGGREGATE_TABLES
from analytics_service.aggregation import AggregateKind, Aggregates, Change, OrderFact, delta, fold
from analytics_service.ports import StoreUnavailableError
from common.sql_text import SqlText, fast_escape
from common.utc import naive_utc

__all__ = ["MySqlAnalyticsStore"]

# Every batch updates its currency row, so it is locked last: held for one statement and the
# commit rather than the whole batch. One fixed order for all writers avoids lock cycles.
_WRITE_ORDER: tuple[AggregateKind, ...] = (
    "product",
    "customer",
    "hourly",
    "recognised",
    "status",
    "currency",
)
_PRUNE_INBOX = text(
    "DELETE FROM inbox WHERE received_at < :before AND consumer = :consumer"
    " ORDER BY received_at LIMIT :limit"
)


async def _run(driver: Any, sql: str) -> list[list[tuple[Any, ...]]]:
    """Sends multi-statement text in one round trip and reads every result (an error in any
    statement surfaces here, and the statements after it did not run)."""
    async with driver.cursor() as cursor:
        await cursor.execute(sql)
        results = [list(await cursor.fetchall())]
        while await cursor.nextset():
            results.append(list(await cursor.fetchall()))
    return results


def _aggregate_upserts(sql: SqlText, deltas: Aggregates, now: datetime) -> list[str]:
    """INSERT ... ON DUPLICATE KEY UPDATE x = x + delta: concurrent consumers add to the same
    row without a read-modify-write, so no update is lost. Tables in one fixed order for every
    writer, so locks never form a cycle."""
    statements = []
    for kind in _WRITE_ORDER:
        rows = deltas.get(kind)
        if not rows:
            continue
        table, key_columns = AGGREGATE_TABLES[kind]
        columns = [*key_columns, "order_count", "revenue", "quantity"]
        greatest = ["updated_at"] if kind == "currency" else []
        values = []
        for key, totals in rows.items():
            keys = key_values(kind, key)
            row = [keys[c] for c in key_columns]
            row += [totals.order_count, totals.revenue, totals.quantity]
            if greatest:
                row.append(now)
            values.append(row)
        statements.append(
            sql.upsert(
                table.name,
                [*columns, *greatest],
                values,
                add=("order_count", "revenue", "quantity"),
                greatest=greatest,
            )
        )
    return statements


class MySqlAnalyticsStore:
    """Implements AnalyticsStore and InboxPruner."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def apply(
        self, consumer: str, facts: Sequence[OrderFact], applied_at: datetime
    ) -> list[Change]:
        try:
            return await self._apply_once(consumer, facts, applied_at)
        except StoreUnavailableError:
            # The consumer's pool does not ping on checkout, so after a database restart the
            # first use of each pooled connection fails: drop them all and rerun once at once.
            # A rerun of a batch that did commit finds its events in the inbox (a new token),
            # so it counts nothing twice. If the database is really down this fails again.
            await self._engine.dispose()
            return await self._apply_once(consumer, facts, applied_at)

    async def _apply_once(
        self, consumer: str, facts: Sequence[OrderFact], applied_at: datetime
    ) -> list[Change]:
        unique: dict[uuid.UUID, OrderFact] = {}
        for fact in facts:
            unique.setdefault(fact.event_id, fact)
        if not unique:
            return []
        now = naive_utc(applied_at)
        token = uuid.uuid4().hex
        by_order: dict[uuid.UUID, list[OrderFact]] = defaultdict(list)
        for fact in unique.values():
            by_order[fact.order_id].append(fact)
        order_ids = sorted(by_order, key=str)
        # What an order first seen here is recorded as: the first of its highest version.
        newest = {o: max(by_order[o], key=lambda f: f.order_version) for o in order_ids}
        async with driver_connection(self._engine) as (driver, row_alias):
            sql = SqlText(fast_escape(driver.escape, driver.escape_string), row_alias=row_alias)
            # Round trip 1. Inbox first: a concurrent transaction inserting the same event makes
            # this wait for it, then skip the row, so an event is counted by exactly one
            # transaction. Then the facts of orders seen for the first time are inserted and
            # those already recorded locked (a no-op update takes an exclusive lock; INSERT
            # IGNORE would take a shared one, and two batches upgrading shared locks on one
            # order deadlock), in order-id order, and read back under that lock.
            results = await _run(
                driver,
                ";".join(
                    [
                        sql.insert_ignore(
                            "inbox",
                            ("consumer", "event_id", "batch_token", "received_at"),
                            ((consumer, str(e), token, now) for e in sorted(unique)),
                        ),
                        "SELECT event_id FROM inbox WHERE consumer = "
                        f"{sql.escape(consumer)} AND batch_token = {sql.escape(token)} "
                        f"AND event_id IN {sql.row(str(e) for e in unique)}",
                        sql.upsert(
                            "order_facts",
                            FACT_COLUMNS,
                            (fact_values(newest[o], now) for o in order_ids),
                            lock_only="order_id",
                        ),
                        f"SELECT {', '.join(FACT_COLUMNS)} FROM order_facts "
                        f"WHERE order_id IN {sql.row(str(o) for o in order_ids)} FOR UPDATE",
                    ]
                ),
            )
            new_events = {uuid.UUID(row[0]) for row in results[1]}
            stored = {row[0]: StoredFact(*row) for row in results[3]}

            def recorded(order_id: uuid.UUID) -> OrderFact | None:
                row = stored[str(order_id)]
                # A row carrying this batch's event id and time was inserted just now: the
                # order had no state before. The time matters once the inbox is pruned: an old
                # event can pass it again and meet the row it wrote long ago, which is a
                # duplicate, not new.
                inserted = row.event_id == str(newest[order_id].event_id) and row.applied_at == now
                return None if inserted else fact_of(row)

            changes, moved = fold(by_order, new_events, recorded)
            # Round trip 2: the new states, the aggregate deltas and the commit.
            statements = [
                "UPDATE order_facts SET "
                + ", ".join(
                    f"{c} = {sql.escape(v)}"
                    for c, v in fact_row(moved[o], now, inserting=False).items()
                )
                + f" WHERE order_id = {sql.escape(str(o))}"
                for o in sorted(moved, key=str)
            ]
            effective = [c for c in changes if c.effective]
            if effective:
                statements.extend(_aggregate_upserts(sql, delta(effective), now))
            statements.append("COMMIT")
            await _run(driver, ";".join(statements))
        return changes

    async def prune_inbox(self, consumer: str, before: datetime, limit: int) -> int:
        """Deletes up to ``limit`` of the consumer's oldest inbox rows received before
        ``before``; one short statement on the received_at index, so its locks are brief."""
        async with translated(self._engine, begin=True) as conn:
            result = await conn.execute(
                _PRUNE_INBOX,
                {"consumer": consumer, "before": naive_utc(before), "limit": limit},
            )
        return int(result.rowcount)
