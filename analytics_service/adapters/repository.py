"""The MySQL store on SQLAlchemy Core: applies fact batches, answers queries, rebuilds."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import Table, and_, delete, func, select, text
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from analytics_service.adapters.database import (
    aware_utc,
    driver_connection,
    naive_utc,
    translated,
)
from analytics_service.adapters.tables import (
    AGGREGATE_TABLES,
    currency_totals,
    customer_totals,
    order_facts,
    product_totals,
    revenue_hourly,
    revenue_recognised_hourly,
    status_totals,
)
from analytics_service.aggregation import (
    AggregateKind,
    Aggregates,
    Change,
    Difference,
    Key,
    OrderFact,
    Totals,
    aggregate,
    delta,
    diff,
    state_of,
    supersedes,
)
from analytics_service.ports import (
    AuditedOrder,
    RankedEntry,
    RevenueRow,
    StoreUnavailableError,
    SummaryRows,
)
from common.sql_text import SqlText, fast_escape

__all__ = ["MySqlAnalyticsStore"]

_AUDIT_CHUNK = 1000
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
_TOP_TABLES: dict[str, tuple[Table, str]] = {
    "product": (product_totals, "product_id"),
    "customer": (customer_totals, "customer_id"),
}


def _scale(amount: Decimal) -> int:
    exponent = amount.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


_FACT_STATE_COLUMNS = (
    "event_id",
    "customer_id",
    "product_id",
    "quantity",
    "total_amount",
    "amount_scale",
    "currency",
    "status",
    "order_version",
    "status_changed_at",
)
# order_facts in the order _StoredFact reads them back and _fact_values writes them.
_FACT_COLUMNS = (
    "order_id",
    *_FACT_STATE_COLUMNS,
    "created_at",
    "occurred_at",
    "applied_at",
)
_PRUNE_INBOX = text(
    "DELETE FROM inbox WHERE received_at < :before AND consumer = :consumer"
    " ORDER BY received_at LIMIT :limit"
)


class _StoredFact(NamedTuple):
    """An order_facts row as the driver returns it, in _FACT_COLUMNS order."""

    order_id: str
    event_id: str
    customer_id: str
    product_id: str
    quantity: int
    total_amount: Decimal
    amount_scale: int
    currency: str
    status: str
    order_version: int
    status_changed_at: datetime
    created_at: datetime
    occurred_at: datetime
    applied_at: datetime


async def _run(driver: Any, sql: str) -> list[list[tuple[Any, ...]]]:
    """Sends multi-statement text in one round trip and reads every result (an error in any
    statement surfaces here, and the statements after it did not run)."""
    async with driver.cursor() as cursor:
        await cursor.execute(sql)
        results = [list(await cursor.fetchall())]
        while await cursor.nextset():
            results.append(list(await cursor.fetchall()))
    return results


def _fold(
    by_order: dict[uuid.UUID, list[OrderFact]],
    newest: dict[uuid.UUID, OrderFact],
    new_events: set[uuid.UUID],
    stored: dict[str, _StoredFact],
    now: datetime,
) -> tuple[list[Change], list[tuple[str, dict[str, Any]]]]:
    """Moves each order to the newest state among its recorded fact and its events new to the
    inbox; an event whose order already has that version or a newer one changes nothing.
    Returns the changes and the (order id, new state columns) to write."""
    changes: list[Change] = []
    updates: list[tuple[str, dict[str, Any]]] = []
    for order_id, order_facts_ in by_order.items():
        new = [f for f in order_facts_ if f.event_id in new_events]
        if not new:
            continue
        row = stored[str(order_id)]
        # A row carrying this batch's event id and time was inserted just now: the order had
        # no state before. The time matters once the inbox is pruned: an old event can pass it
        # again and meet the row it wrote long ago, which is a duplicate, not new.
        inserted = row.event_id == str(newest[order_id].event_id) and row.applied_at == now
        current = None if inserted else _fact_of(row)
        recorded = current
        for fact in sorted(new, key=lambda f: f.order_version):
            if supersedes(fact, current):
                changes.append(Change(fact, current))
                current = fact
            else:
                changes.append(Change(fact, current, effective=False))
        if current is not None and current is not recorded and not inserted:
            updates.append((str(order_id), _fact_row(current, now, inserting=False)))
    return changes, sorted(updates, key=lambda u: u[0])


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
            keys = _key_values(kind, key)
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


def _key_values(kind: AggregateKind, key: Key) -> dict[str, Any]:
    _, columns = AGGREGATE_TABLES[kind]
    values = dict(zip(columns, key, strict=True))
    if "bucket_start" in values:
        values["bucket_start"] = naive_utc(values["bucket_start"])
    return values


def _row_key(kind: AggregateKind, row: Any) -> Key:
    _, columns = AGGREGATE_TABLES[kind]
    key = tuple(row._mapping[c] for c in columns)
    if columns[0] == "bucket_start":
        key = (aware_utc(key[0]), *key[1:])
    return key


def _fact_row(fact: OrderFact, now: datetime, *, inserting: bool) -> dict[str, Any]:
    """Column values of a fact; occurred_at / applied_at are set once, when the order is first
    recorded, so the audit's latency stays that of the first event analytics applied."""
    row: dict[str, Any] = {
        "event_id": str(fact.event_id),
        "customer_id": fact.customer_id,
        "product_id": fact.product_id,
        "quantity": fact.quantity,
        "total_amount": fact.total_amount,
        "amount_scale": _scale(fact.total_amount),
        "currency": fact.currency,
        "status": fact.status,
        "order_version": fact.order_version,
        "status_changed_at": naive_utc(fact.changed_at),
    }
    if inserting:
        row.update(
            order_id=str(fact.order_id),
            created_at=naive_utc(fact.created_at),
            occurred_at=naive_utc(fact.occurred_at),
            applied_at=now,
        )
    return row


def _fact_values(fact: OrderFact, now: datetime) -> tuple[Any, ...]:
    """_fact_row(inserting=True) in _FACT_COLUMNS order, built directly: it runs for every
    order of every batch."""
    return (
        str(fact.order_id),
        str(fact.event_id),
        fact.customer_id,
        fact.product_id,
        fact.quantity,
        fact.total_amount,
        _scale(fact.total_amount),
        fact.currency,
        fact.status,
        fact.order_version,
        naive_utc(fact.changed_at),
        naive_utc(fact.created_at),
        naive_utc(fact.occurred_at),
        now,
    )


def _fact_of(r: Any) -> OrderFact:
    """From a SQLAlchemy row or a _StoredFact: both name their columns."""
    return OrderFact(
        order_id=uuid.UUID(r.order_id),
        event_id=uuid.UUID(r.event_id),
        customer_id=r.customer_id,
        product_id=r.product_id,
        quantity=int(r.quantity),
        total_amount=Decimal(r.total_amount),
        currency=r.currency,
        status=r.status,
        created_at=aware_utc(r.created_at),
        occurred_at=aware_utc(r.occurred_at),
        order_version=int(r.order_version),
        status_changed_at=aware_utc(r.status_changed_at),
    )


class MySqlAnalyticsStore:
    """Implements AnalyticsStore, AnalyticsReader and AggregateRebuilder on one engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # -- applying events ---------------------------------------------------------------------

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
                            _FACT_COLUMNS,
                            (_fact_values(newest[o], now) for o in order_ids),
                            lock_only="order_id",
                        ),
                        f"SELECT {', '.join(_FACT_COLUMNS)} FROM order_facts "
                        f"WHERE order_id IN {sql.row(str(o) for o in order_ids)} FOR UPDATE",
                    ]
                ),
            )
            new_events = {uuid.UUID(row[0]) for row in results[1]}
            stored = {row[0]: _StoredFact(*row) for row in results[3]}
            changes, updates = _fold(by_order, newest, new_events, stored, now)
            # Round trip 2: the new states, the aggregate deltas and the commit.
            statements = [
                "UPDATE order_facts SET "
                + ", ".join(f"{c} = {sql.escape(v)}" for c, v in values.items())
                + f" WHERE order_id = {sql.escape(order_id)}"
                for order_id, values in updates
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

    # -- queries -----------------------------------------------------------------------------

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

    # -- rebuild -----------------------------------------------------------------------------

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
        return [_fact_of(r) async for r in result]

    async def _locked_aggregates(self, conn: AsyncConnection) -> Aggregates:
        stored = Aggregates()
        for kind, (table, _) in AGGREGATE_TABLES.items():
            rows = await conn.execute(select(table).with_for_update())
            target = stored.get(kind)
            for r in rows:
                target[_row_key(kind, r)] = Totals(
                    int(r.order_count), Decimal(r.revenue), int(r.quantity)
                )
        return stored

    async def _correct(self, conn: AsyncConnection, differences: list[Difference]) -> None:
        now = naive_utc(datetime.now(UTC))
        for d in differences:
            table, columns = AGGREGATE_TABLES[d.kind]
            keys = _key_values(d.kind, d.key)
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
