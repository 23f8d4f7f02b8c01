"""The stock and payment tables: reservations and levels, charges and refunds."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import insert, literal_column, select, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from common.utc import naive_utc
from order_service.adapters.rows import payment_from_mapping, payment_row
from order_service.adapters.tables import payments, stock
from order_service.domain.fulfilment import PaymentRecord, StockLevel

__all__ = ["MySqlPaymentRepository", "MySqlStockRepository"]

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


def _payment_from_row(row: Row[tuple[object, ...]]) -> PaymentRecord:
    return payment_from_mapping(row._mapping)


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
