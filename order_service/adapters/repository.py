"""MySQL repositories on SQLAlchemy Core (the ORM unit of work costs ~5x on the write path)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from order_service.adapters.tables import idempotency_keys, orders, outbox
from order_service.domain.currency import minor_units
from order_service.domain.order import Order, OrderStatus
from order_service.pagination import decode_cursor, encode_cursor
from order_service.ports import IdempotencyRecord, OrderPage, OutboxEvent

__all__ = [
    "MySqlIdempotencyRepository",
    "MySqlOrderRepository",
    "MySqlOutboxRepository",
    "naive_utc",
    "order_row",
    "outbox_row",
]


def naive_utc(value: datetime) -> datetime:
    """MySQL DATETIME has no zone; we store UTC."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def aware_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _order_from_row(row: Row[tuple[object, ...]]) -> Order:
    m = row._mapping
    currency = str(m["currency"])
    places = minor_units(currency)
    amount = Decimal(m["total_amount"])
    if places is not None:
        amount = amount.quantize(Decimal(1).scaleb(-places))
    return Order(
        id=uuid.UUID(str(m["id"])),
        customer_id=str(m["customer_id"]),
        product_id=str(m["product_id"]),
        quantity=int(m["quantity"]),
        total_amount=amount,
        currency=currency,
        status=OrderStatus(str(m["status"])),
        created_at=aware_utc(m["created_at"]),
        updated_at=aware_utc(m["updated_at"]),
        version=int(m["version"]),
    )


_INSERT_ORDER = insert(orders)
_INSERT_OUTBOX = insert(outbox)
_INSERT_IDEMPOTENCY = insert(idempotency_keys)


def order_row(order: Order) -> dict[str, object]:
    return {
        "id": str(order.id),
        "customer_id": order.customer_id,
        "product_id": order.product_id,
        "quantity": order.quantity,
        "total_amount": order.total_amount,
        "currency": order.currency,
        "status": order.status.value,
        "version": order.version,
        "created_at": naive_utc(order.created_at),
        "updated_at": naive_utc(order.updated_at),
    }


def outbox_row(event: OutboxEvent) -> dict[str, object]:
    return {
        "event_id": str(event.event_id),
        "aggregate_id": str(event.aggregate_id),
        "event_type": event.event_type,
        "exchange": event.exchange,
        "routing_key": event.routing_key,
        "payload": event.payload,
        "headers": json.dumps(event.headers),
        "occurred_at": naive_utc(event.occurred_at),
    }


class MySqlOrderRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, order: Order) -> None:
        await self._conn.execute(_INSERT_ORDER, order_row(order))

    async def get(self, order_id: uuid.UUID) -> Order | None:
        result = await self._conn.execute(select(orders).where(orders.c.id == str(order_id)))
        row = result.first()
        return _order_from_row(row) if row is not None else None

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
            next_cursor = encode_cursor(page[-1].created_at, page[-1].id)
        return OrderPage(page, next_cursor)


class MySqlOutboxRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, event: OutboxEvent) -> None:
        await self._conn.execute(_INSERT_OUTBOX, outbox_row(event))


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

    async def add(self, record: IdempotencyRecord) -> None:
        now = datetime.now(UTC)
        await self._conn.execute(
            _INSERT_IDEMPOTENCY,
            {
                "idem_key": record.key,
                "request_hash": record.request_hash,
                "status_code": record.status_code,
                "response_body": record.response_body,
                "resource_id": record.resource_id,
                "created_at": naive_utc(now),
                "expires_at": naive_utc(record.expires_at),
            },
        )

    async def delete_expired(self, key: str, now: datetime) -> None:
        await self._conn.execute(
            delete(idempotency_keys).where(
                idempotency_keys.c.idem_key == key,
                idempotency_keys.c.expires_at <= naive_utc(now),
            )
        )
