"""MySQL repositories on SQLAlchemy Core (the ORM unit of work costs ~5x on the write path)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, insert, literal_column, or_, select, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from common.utc import aware_utc, naive_utc
from order_service.adapters.tables import (
    idempotency_keys,
    order_transitions,
    orders,
    outbox,
    payments,
    stock,
)
from order_service.domain.currency import minor_units
from order_service.domain.fulfilment import StockLevel
from order_service.domain.lifecycle import TimelineEntry
from order_service.domain.order import Order, OrderStatus
from order_service.pagination import decode_cursor, encode_cursor
from order_service.ports import IdempotencyRecord, OrderPage, OutboxEvent, PaymentRecord

__all__ = [
    "MySqlIdempotencyRepository",
    "MySqlOrderRepository",
    "MySqlOutboxRepository",
    "MySqlPaymentRepository",
    "MySqlStockRepository",
    # Re-exported from common.utc for the relay, the outbox CLI and the group commit.
    "aware_utc",
    "entry_from_mapping",
    "first_transition_row",
    "idempotency_row",
    "naive_utc",
    "order_from_mapping",
    "order_row",
    "outbox_row",
    "payment_from_mapping",
    "payment_row",
    "transition_row",
]


def _order_from_row(row: Row[tuple[object, ...]]) -> Order:
    return order_from_mapping(row._mapping)


def order_from_mapping(m: Mapping[Any, Any]) -> Order:
    """An order from a row of ``orders``, read through SQLAlchemy or the raw driver."""
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
        scheduled_time=aware_utc(m["scheduled_time"]) if m["scheduled_time"] else None,
    )


_INSERT_ORDER = insert(orders)
_INSERT_OUTBOX = insert(outbox)
_order_upsert = mysql_insert(orders)
_UPSERT_ORDER_STATE = _order_upsert.on_duplicate_key_update(
    status=_order_upsert.inserted.status,
    version=_order_upsert.inserted.version,
    updated_at=_order_upsert.inserted.updated_at,
)
_payment_upsert = mysql_insert(payments)
# Only a pending intent takes the gateway's answer; status is assigned last because MySQL
# evaluates the assignments left to right, each seeing the ones before it.
_SAVE_PAYMENT_ANSWER = _payment_upsert.on_duplicate_key_update(
    [
        ("payment_id", literal_column("IF(status = 'pending', VALUES(payment_id), payment_id)")),
        (
            "decline_reason",
            literal_column("IF(status = 'pending', VALUES(decline_reason), decline_reason)"),
        ),
        ("charged_at", literal_column("IF(status = 'pending', VALUES(charged_at), charged_at)")),
        ("status", literal_column("IF(status = 'pending', VALUES(status), status)")),
    ]
)
_stock_upsert = mysql_insert(stock)
_SAVE_STOCK = _stock_upsert.on_duplicate_key_update(
    available=_stock_upsert.inserted.available,
    reserved=_stock_upsert.inserted.reserved,
    updated_at=_stock_upsert.inserted.updated_at,
)


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
        "scheduled_time": naive_utc(order.scheduled_time) if order.scheduled_time else None,
    }


def idempotency_row(record: IdempotencyRecord, now: datetime) -> dict[str, object]:
    return {
        "idem_key": record.key,
        "request_hash": record.request_hash,
        "status_code": record.status_code,
        "response_body": record.response_body,
        "resource_id": record.resource_id,
        "created_at": naive_utc(now),
        "expires_at": naive_utc(record.expires_at),
    }


def transition_row(order_id: uuid.UUID, entry: TimelineEntry) -> dict[str, object]:
    return {
        "order_id": str(order_id),
        "version": entry.version,
        "from_status": entry.previous_status.value if entry.previous_status else None,
        "to_status": entry.status.value,
        "event_id": str(entry.event_id),
        "event_type": entry.event_type,
        "reason": entry.reason,
        "occurred_at": naive_utc(entry.at),
    }


def first_transition_row(order: Order, event: OutboxEvent) -> dict[str, object]:
    """The timeline's first entry for a new order, written in the same insert batch."""
    return transition_row(
        order.id,
        TimelineEntry(
            status=order.status,
            previous_status=None,
            version=order.version,
            at=order.created_at,
            event_id=event.event_id,
            event_type=event.event_type,
        ),
    )


def _entry_from_row(row: Row[tuple[object, ...]]) -> TimelineEntry:
    return entry_from_mapping(row._mapping)


def entry_from_mapping(m: Mapping[Any, Any]) -> TimelineEntry:
    return TimelineEntry(
        status=OrderStatus(str(m["to_status"])),
        previous_status=OrderStatus(str(m["from_status"])) if m["from_status"] else None,
        version=int(m["version"]),
        at=aware_utc(m["occurred_at"]),
        event_id=uuid.UUID(str(m["event_id"])),
        event_type=str(m["event_type"]),
        reason=str(m["reason"]) if m["reason"] is not None else None,
    )


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


def _payment_from_row(row: Row[tuple[object, ...]]) -> PaymentRecord:
    return payment_from_mapping(row._mapping)


def payment_from_mapping(m: Mapping[Any, Any]) -> PaymentRecord:
    return PaymentRecord(
        order_id=uuid.UUID(str(m["order_id"])),
        status=str(m["status"]),
        payment_id=m["payment_id"],
        amount=Decimal(m["amount"]),
        currency=str(m["currency"]),
        decline_reason=m["decline_reason"],
        refund_id=m["refund_id"],
        charged_at=aware_utc(m["charged_at"]),
    )


def payment_row(record: PaymentRecord) -> dict[str, object]:
    return {
        "order_id": str(record.order_id),
        "status": record.status,
        "payment_id": record.payment_id,
        "amount": record.amount,
        "currency": record.currency,
        "decline_reason": record.decline_reason,
        "refund_id": record.refund_id,
        "charged_at": naive_utc(record.charged_at),
    }


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
            .where(orders.c.id == str(order.id), orders.c.version == expected_version)
            .values(
                status=order.status.value,
                version=order.version,
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
        return {o.id: o for o in found}

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
            next_cursor = encode_cursor(page[-1].created_at, page[-1].id)
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


class MySqlStockRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def reserve(self, product_id: str, quantity: int, now: datetime) -> bool:
        taken = await self._conn.execute(
            update(stock)
            .where(stock.c.product_id == product_id, stock.c.available >= quantity)
            .values(
                available=stock.c.available - quantity,
                reserved=stock.c.reserved + quantity,
                updated_at=naive_utc(now),
            )
        )
        if taken.rowcount == 1:
            return True
        managed = await self._conn.execute(
            select(stock.c.product_id).where(stock.c.product_id == product_id)
        )
        return managed.first() is None

    async def levels(self, product_ids: Collection[str]) -> dict[str, StockLevel]:
        """The levels of the stock-managed products among ``product_ids``, locked."""
        if not product_ids:
            return {}
        rows = await self._conn.execute(
            select(stock.c.product_id, stock.c.available, stock.c.reserved)
            .where(stock.c.product_id.in_(sorted(product_ids)))
            .order_by(stock.c.product_id)
            .with_for_update()
        )
        return {
            r.product_id: StockLevel(str(r.product_id), int(r.available), int(r.reserved))
            for r in rows
        }

    async def save_levels(self, levels: Sequence[StockLevel], now: datetime) -> None:
        if levels:
            await self._conn.execute(
                _SAVE_STOCK,
                [
                    {
                        "product_id": lv.product_id,
                        "available": lv.available,
                        "reserved": lv.reserved,
                        "updated_at": naive_utc(now),
                    }
                    for lv in levels
                ],
            )


class MySqlPaymentRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get(self, order_id: uuid.UUID) -> PaymentRecord | None:
        row = (
            await self._conn.execute(select(payments).where(payments.c.order_id == str(order_id)))
        ).first()
        return _payment_from_row(row) if row is not None else None

    async def get_many(self, order_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, PaymentRecord]:
        if not order_ids:
            return {}
        rows = await self._conn.execute(
            select(payments).where(payments.c.order_id.in_([str(i) for i in order_ids]))
        )
        found = (_payment_from_row(r) for r in rows)
        return {p.order_id: p for p in found}

    async def add_intents(self, records: Sequence[PaymentRecord]) -> None:
        """Record, before the gateway is called, that a charge is about to be made (pending);
        an order that already has a payment row keeps it."""
        if records:
            await self._conn.execute(
                insert(payments).prefix_with("IGNORE"), [payment_row(r) for r in records]
            )

    async def save_answers(self, records: Sequence[PaymentRecord]) -> None:
        """The gateway's answers, each taken only by a row still pending (or a new one)."""
        if records:
            await self._conn.execute(_SAVE_PAYMENT_ANSWER, [payment_row(r) for r in records])

    async def add(self, record: PaymentRecord) -> PaymentRecord:
        await self._conn.execute(insert(payments).prefix_with("IGNORE"), payment_row(record))
        stored = await self.get(record.order_id)
        assert stored is not None
        return stored

    async def record_refund(self, order_id: uuid.UUID, refund_id: str, now: datetime) -> None:
        await self._conn.execute(
            update(payments)
            .where(payments.c.order_id == str(order_id), payments.c.refund_id.is_(None))
            .values(status="refunded", refund_id=refund_id, refunded_at=naive_utc(now))
        )
