"""MySQL reads of the request path on SQLAlchemy Core: an order with its timeline, a page of
orders, an idempotency key's stored answer. Every write is a multi-statement packet elsewhere
(group_commit.py for new orders, transition_store.py for every later change)."""

from __future__ import annotations

import uuid

from sqlalchemy import and_, or_, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from common.utc import aware_utc, naive_utc
from order_service.adapters.rows import entry_from_mapping, order_from_mapping
from order_service.adapters.tables import idempotency_keys, order_transitions, orders
from order_service.domain.lifecycle import TimelineEntry
from order_service.domain.order import Order
from order_service.pagination import decode_cursor, encode_cursor
from order_service.ports import IdempotencyRecord, OrderPage

__all__ = ["MySqlIdempotencyRepository", "MySqlOrderRepository"]


def _order_from_row(row: Row[tuple[object, ...]]) -> Order:
    return order_from_mapping(row._mapping)


def _entry_from_row(row: Row[tuple[object, ...]]) -> TimelineEntry:
    return entry_from_mapping(row._mapping)


class MySqlOrderRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get(self, order_id: uuid.UUID) -> Order | None:
        row = (await self._conn.execute(select(orders).where(orders.c.id == str(order_id)))).first()
        return _order_from_row(row) if row is not None else None

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
