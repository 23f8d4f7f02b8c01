"""Every change of an existing order, in multi-statement packets: the saga's batches (four
round trips each) and the one-order path's transitions (cancellation, scheduled start, refunds:
a locking read and a write-and-commit). New orders are written by the group commit
(``group_commit.py``); both build their rows with ``rows.py``.

Through SQLAlchemy a saga batch took fourteen round trips (three reads and a commit for the
intents, then four locking reads, five writes, a read-back and the commit); at the rates the
system runs, batches are small and those fixed costs were most of the saga's CPU. Every packet
ends in COMMIT or ROLLBACK, or the connection is invalidated: the pool does not roll back on
return (``build_engine``), so no connection may go back inside a transaction.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from common import tracing
from common.mysql.engine import pooled
from common.observability import get_logger
from common.sql_text import SqlText
from common.utc import naive_utc
from order_service.adapters.packets import CommitOutcomeUnknownError, Packets
from order_service.adapters.rows import (
    entry_from_mapping,
    order_from_mapping,
    order_row,
    outbox_row,
    payment_from_mapping,
    payment_row,
    transition_row,
)
from order_service.adapters.tables import order_transitions, orders, payments
from order_service.domain.fulfilment import PaymentRecord, StockLevel
from order_service.domain.lifecycle import TimelineEntry
from order_service.domain.order import Order
from order_service.ports import BatchWrites, TransitionOutcomeUnknownError
from order_service.unit_of_work import translate_db_error

__all__ = ["MySqlTransitionStore"]

log = get_logger(__name__)

_ORDER_COLUMNS = ", ".join(c.name for c in orders.c)
_PAYMENT_COLUMNS = ", ".join(c.name for c in payments.c)
_TRANSITION_COLUMNS = ", ".join(c.name for c in order_transitions.c)
# Only a pending intent takes the gateway's answer; status is assigned last because MySQL
# evaluates the assignments left to right, each seeing the ones before it.
_TAKE_ANSWER = ", ".join(
    f"{c} = IF(status = 'pending', VALUES({c}), {c})"
    for c in ("payment_id", "decline_reason", "charged_at", "status")
)


# Raw packets bypass SQLAlchemy's transaction events (common/tracing_setup.py): one span per
# use of a connection (a read, the intents, the locked batch and its commit) instead.
_DB = {"db.system.name": "mysql", "db.namespace": "order_db"}


@dataclass
class _MySqlLockedBatch:
    packets: Packets
    orders: dict[uuid.UUID, Order]
    payments: dict[uuid.UUID, PaymentRecord]
    levels: dict[str, StockLevel]
    timelines: dict[uuid.UUID, list[TimelineEntry]]
    finished: bool = field(default=False)

    async def commit(self, writes: BatchWrites) -> None:
        self.finished = True
        # Every transition writes an event, whose outbox row witnesses a lost commit; writes
        # without one (a payment answer, a refund id) are safe to send again.
        witness = writes.events[0] if writes.events else None
        try:
            await self.packets.commit(
                _write_statements(self.packets.sql, writes),
                witness=witness.event_id if witness is not None else None,
            )
        except CommitOutcomeUnknownError:
            assert witness is not None
            raise TransitionOutcomeUnknownError(witness.aggregate_id) from None


class MySqlTransitionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @asynccontextmanager
    async def _packets(self) -> AsyncIterator[Packets]:
        async with contextlib.AsyncExitStack() as stack:
            try:
                conn = await stack.enter_async_context(pooled(self._engine))
            except Exception as exc:
                raise translate_db_error(exc) or exc from exc
            raw = await conn.get_raw_connection()
            with tracing.span("transaction order_db", kind=tracing.SpanKind.CLIENT, attributes=_DB):
                yield Packets(conn, raw.driver_connection)

    async def read(
        self, order_ids: Sequence[uuid.UUID]
    ) -> tuple[dict[uuid.UUID, Order], dict[uuid.UUID, PaymentRecord]]:
        async with self._packets() as packets:
            ids = packets.sql.values([[str(i)] for i in order_ids])
            found, paid = await packets.run(
                [
                    f"SELECT {_ORDER_COLUMNS} FROM orders WHERE id IN ({ids})",
                    f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE order_id IN ({ids})",
                    "COMMIT",
                ]
            )
        return _by_id(found), _payments_by_id(paid)

    async def add_intents(self, records: Sequence[PaymentRecord]) -> None:
        if not records:
            return
        async with self._packets() as packets:
            rows = [payment_row(r) for r in records]
            columns = list(rows[0])
            statement = packets.sql.insert_ignore(
                "payments", columns, ([row[c] for c in columns] for row in rows)
            )
            await packets.run([statement, "COMMIT"])

    @asynccontextmanager
    async def lock(
        self, order_ids: Sequence[uuid.UUID], product_ids: Collection[str]
    ) -> AsyncIterator[_MySqlLockedBatch]:
        async with self._packets() as packets:
            # Sorted, so two batches lock their rows in one order and never deadlock each other.
            ids = packets.sql.values([[i] for i in sorted(str(i) for i in order_ids)])
            statements = [
                "START TRANSACTION",
                f"SELECT {_ORDER_COLUMNS} FROM orders WHERE id IN ({ids}) ORDER BY id FOR UPDATE",
                f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE order_id IN ({ids})",
                f"SELECT {_TRANSITION_COLUMNS} FROM order_transitions WHERE order_id IN ({ids}) "
                "ORDER BY order_id, version",
            ]
            if product_ids:
                products = packets.sql.values([[p] for p in sorted(product_ids)])
                statements.append(
                    "SELECT product_id, available, reserved FROM stock "
                    f"WHERE product_id IN ({products}) ORDER BY product_id FOR UPDATE"
                )
            found, paid, entries, *stock = await packets.run(statements)
            timelines: dict[uuid.UUID, list[TimelineEntry]] = {}
            for row in entries:
                timelines.setdefault(uuid.UUID(row["order_id"]), []).append(entry_from_mapping(row))
            batch = _MySqlLockedBatch(
                packets,
                _by_id(found),
                _payments_by_id(paid),
                {
                    r["product_id"]: StockLevel(
                        r["product_id"], int(r["available"]), int(r["reserved"])
                    )
                    for r in (stock[0] if stock else [])
                },
                timelines,
            )
            try:
                yield batch
            finally:
                if not batch.finished:
                    await packets.rollback()


def _by_id(rows: list[dict[str, Any]]) -> dict[uuid.UUID, Order]:
    found = (order_from_mapping(r) for r in rows)
    return {o.order_id: o for o in found}


def _payments_by_id(rows: list[dict[str, Any]]) -> dict[uuid.UUID, PaymentRecord]:
    found = (payment_from_mapping(r) for r in rows)
    return {p.order_id: p for p in found}


def _rows(records: Sequence[Mapping[str, object]]) -> tuple[list[str], list[list[object]]]:
    columns = list(records[0])
    return columns, [[r[c] for c in columns] for r in records]


def _write_statements(sql: SqlText, writes: BatchWrites) -> list[str]:
    statements = []
    if writes.answers:
        columns, values = _rows([payment_row(r) for r in writes.answers])
        statements.append(
            f"INSERT INTO payments ({', '.join(columns)}) VALUES {sql.values(values)} "
            f"ON DUPLICATE KEY UPDATE {_TAKE_ANSWER}"
        )
    if writes.states:
        columns, values = _rows([order_row(o) for o in writes.states])
        statements.append(
            sql.upsert("orders", columns, values, replace=("status", "version", "updated_at"))
        )
    if writes.transitions:
        columns, values = _rows([transition_row(i, e) for i, e in writes.transitions])
        statements.append(sql.insert("order_transitions", columns, values))
    if writes.events:
        columns, values = _rows([outbox_row(e) for e in writes.events])
        statements.append(sql.insert("outbox", columns, values))
    if writes.refunds:
        now = naive_utc(writes.now)
        # One statement per refund (a cancellation or rejection refunds one order at a time).
        statements += [
            "UPDATE payments SET status = 'refunded', "
            f"refund_id = {sql.escape(refund_id)}, refunded_at = {sql.escape(now)} "
            f"WHERE order_id = {sql.escape(str(order_id))} AND refund_id IS NULL"
            for order_id, refund_id in writes.refunds
        ]
    if writes.levels:
        now = naive_utc(writes.now)
        statements.append(
            sql.upsert(
                "stock",
                ("product_id", "available", "reserved", "updated_at"),
                [(lv.product_id, lv.available, lv.reserved, now) for lv in writes.levels],
                replace=("available", "reserved", "updated_at"),
            )
        )
    return statements
