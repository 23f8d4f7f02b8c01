"""MySQL repositories on SQLAlchemy Core (the ORM unit of work costs ~5x on the write path):
orders with their timelines, the outbox and the idempotency keys."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from common.utc import aware_utc, naive_utc
from order_service.adapters.rows import (
    entry_from_mapping,
    order_from_mapping,
    order_row,
    outbox_row,
    transition_row,
)
from order_service.adapters.stock_payments import MySqlPaymentRepository, MySqlStockRepository
from order_service.adapters.tables import idempotency_keys, order_transitions, orders, outbox
from order_service.domain.lifecycle import TimelineEntry
from order_service.domain.order import Order
from order_service.pagination import decode_cursor, encode_cursor
from order_service.ports import IdempotencyRecord, OrderPage, OutboxEvent

__all__ = [
    "MySqlIdempotencyRepository",
    "MySqlOrderRepository",
    "MySqlOutboxRepository",
    "MySqlPaymentRepository",
    "MySqlStockRepository",
]


def _order_from_row(row: Row[tuple[object, ...]]) -> Order:
    return order_from_mapping(row._mapping)


def _entry_from_row(row: Row[tuple[object, ...]]) -> TimelineEntry:
    return entry_from_mapping(row._mapping)


_INSERT_ORDER = insert(orders)
_INSERT_OUTBOX = insert(outbox)
_order_upsert = mysql_insert(orders)
_UPSERT_ORDER_STATE = _order_upsert.on_duplicate_key_update(
    status=_order_upsert.inserted.status,
    version=_order_upsert.inserted.version,
    updated_at=_order_upsert.inserted.updated_at,
)


class MySqlOrderRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, order: Order) -> None:
        await self._conn.execute(_INSERT_ORDER, order_row(order))

    async def get(self, order_id: uuid.UUID, *, for_update: bool = False) -> Order | None:
        query = select(orders).where(orders.c.id == str(order_id))
        if for_update:
            query = query.with_for_update()
        row = (await self._conn.execute(query)).first()
        return _order_from_row(row) if row is not None else None

    async def update(self, order: Order, *, expected_version: int) -> bool:
        result = await self._conn.execute(
            update(orders)
            .where(orders.c.id == str(order.order_id), orders.c.version == expected_version)
            .values(
                status=order.status.value,
                version=order.order_version,
                updated_at=naive_utc(order.updated_at),
            )
        )
        return result.rowcount == 1

    async def add_transition(self, order_id: uuid.UUID, entry: TimelineEntry) -> None:
        await self._conn.execute(insert(order_transitions), transition_row(order_id, entry))

    async def get_many(
        self, order_ids: Collection[uuid.UUID], *, for_update: bool = False
    ) -> dict[uuid.UUID, Order]:
        if not order_ids:
            return {}
        # Sorted, so two batches lock their rows in one order and never deadlock each other.
        query = select(orders).where(orders.c.id.in_(sorted(str(i) for i in order_ids)))
        if for_update:
            query = query.order_by(orders.c.id).with_for_update()
        found = (_order_from_row(r) for r in await self._conn.execute(query))
        return {o.order_id: o for o in found}

    async def save_states(self, changed: Sequence[Order]) -> None:
        """Write status, version and time of orders whose rows this transaction has locked."""
        if changed:
            await self._conn.execute(_UPSERT_ORDER_STATE, [order_row(o) for o in changed])

    async def add_transitions(self, entries: Sequence[tuple[uuid.UUID, TimelineEntry]]) -> None:
        if entries:
            await self._conn.execute(
                insert(order_transitions), [transition_row(oid, e) for oid, e in entries]
            )

    async def timelines(
        self, order_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, list[TimelineEntry]]:
        result: dict[uuid.UUID, list[TimelineEntry]] = {i: [] for i in order_ids}
        if not order_ids:
            return result
        rows = await self._conn.execute(
            select(order_transitions)
            .where(order_transitions.c.order_id.in_([str(i) for i in order_ids]))
            .order_by(order_transitions.c.order_id, order_transitions.c.version)
        )
        for row in rows:
            result[uuid.UUID(str(row.order_id))].append(_entry_from_row(row))
        return result

    async def timeline(self, order_id: uuid.UUID) -> list[TimelineEntry]:
        rows = await self._conn.execute(
            select(order_transitions)
            .where(order_transitions.c.order_id == str(order_id))
            .order_by(order_transitions.c.version)
        )
        return [_entry_from_row(r) for r in rows]

    async def list(
        self, *, customer_id: str | None, status: str | None, limit: int, cursor: str | None
    ) -> OrderPage:
        query = select(orders)
        if customer_id is not None:
            query = query.where(orders.c.customer_id == customer_id)
        if status is not None:
            query = query.where(orders.c.status == status)
        if cursor is not None:
            created_at, last_id = decode_cursor(cursor)
            stamp = naive_utc(created_at)
            query = query.where(
                or_(
                    orders.c.created_at < stamp,
                    and_(orders.c.created_at == stamp, orders.c.id < str(last_id)),
                )
            )
        query = query.order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(limit + 1)
        rows = (await self._conn.execute(query)).all()
        page = [_order_from_row(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit and page:
            next_cursor = encode_cursor(page[-1].created_at, page[-1].order_id)
        return OrderPage(page, next_cursor)


class MySqlOutboxRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, event: OutboxEvent) -> None:
        await self._conn.execute(_INSERT_OUTBOX, outbox_row(event))

    async def add_many(self, events: Sequence[OutboxEvent]) -> None:
        if events:
            await self._conn.execute(_INSERT_OUTBOX, [outbox_row(e) for e in events])


class MySqlIdempotencyRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get(self, key: str) -> IdempotencyRecord | None:
        row = (
            await self._conn.execute(
                select(idempotency_keys).where(idempotency_keys.c.idem_key == key)
            )
        ).first()
        if row is None:
            return None
        m = row._mapping
        return IdempotencyRecord(
            key=str(m["idem_key"]),
            request_hash=str(m["request_hash"]),
            status_code=int(m["status_code"]),
            response_body=bytes(m["response_body"]),
            resource_id=str(m["resource_id"]),
            expires_at=aware_utc(m["expires_at"]),
        )
