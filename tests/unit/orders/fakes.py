"""In-memory fakes for every port of the order service (cosmicpython FakeUnitOfWork)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from order_service.domain.fulfilment import PAYMENT_PENDING, StockLevel
from order_service.domain.lifecycle import TimelineEntry
from order_service.domain.order import Order
from order_service.ports import (
    BatchWrites,
    IdempotencyRecord,
    OrderPage,
    OutboxEvent,
    PaymentRecord,
)
from order_service.services import DuplicateKeyError


class FakeStore:
    def __init__(self) -> None:
        self.orders: dict[uuid.UUID, Order] = {}
        self.outbox: list[OutboxEvent] = []
        self.keys: dict[str, IdempotencyRecord] = {}
        self.timelines: dict[uuid.UUID, list[TimelineEntry]] = {}
        self.stock: dict[str, int] = {}
        self.payments: dict[uuid.UUID, PaymentRecord] = {}
        self.fail_commit = False


class FakeOrders:
    def __init__(self, store: FakeStore, pending: dict) -> None:
        self.store, self.pending = store, pending

    async def add(self, order: Order) -> None:
        self.pending.setdefault("orders", []).append(order)

    async def get(self, order_id: uuid.UUID, *, for_update: bool = False) -> Order | None:
        return self.store.orders.get(order_id)

    async def update(self, order: Order, *, expected_version: int) -> bool:
        """Version-checked against the committed store and earlier updates in this unit."""
        pending = {o.order_id: o for o, _ in self.pending.get("updates", [])}
        current = pending.get(order.order_id) or self.store.orders.get(order.order_id)
        if current is None or current.order_version != expected_version:
            return False
        self.pending.setdefault("updates", []).append((order, expected_version))
        return True

    async def add_transition(self, order_id: uuid.UUID, entry: TimelineEntry) -> None:
        self.pending.setdefault("transitions", []).append((order_id, entry))

    async def get_many(self, order_ids, *, for_update: bool = False) -> dict[uuid.UUID, Order]:
        return {i: self.store.orders[i] for i in order_ids if i in self.store.orders}

    async def save_states(self, changed) -> None:
        for order in changed:
            current = self.store.orders[order.order_id]
            self.pending.setdefault("updates", []).append((order, current.order_version))

    async def add_transitions(self, entries) -> None:
        self.pending.setdefault("transitions", []).extend(entries)

    async def timelines(self, order_ids) -> dict[uuid.UUID, list[TimelineEntry]]:
        return {i: await self.timeline(i) for i in order_ids}

    async def timeline(self, order_id: uuid.UUID) -> list[TimelineEntry]:
        pending = [e for oid, e in self.pending.get("transitions", []) if oid == order_id]
        return [*self.store.timelines.get(order_id, []), *pending]

    async def list(self, *, customer_id, status, limit, cursor) -> OrderPage:
        orders = sorted(self.store.orders.values(), key=lambda o: o.created_at, reverse=True)
        return OrderPage(
            [
                o
                for o in orders
                if customer_id in (None, o.customer_id) and status in (None, o.status.value)
            ][:limit],
            None,
        )


class FakeStock:
    def __init__(self, store: FakeStore, pending: dict) -> None:
        self.store, self.pending = store, pending

    async def reserve(self, product_id: str, quantity: int, now: datetime) -> bool:
        if product_id not in self.store.stock:
            return True
        taken = sum(q for p, q in self.pending.get("stock", []) if p == product_id)
        if self.store.stock[product_id] - taken < quantity:
            return False
        self.pending.setdefault("stock", []).append((product_id, quantity))
        return True

    async def levels(self, product_ids) -> dict[str, StockLevel]:
        return {
            p: StockLevel(p, self.store.stock[p], 0) for p in product_ids if p in self.store.stock
        }

    async def save_levels(self, levels, now: datetime) -> None:
        for level in levels:
            taken = self.store.stock[level.product_id] - level.available
            self.pending.setdefault("stock", []).append((level.product_id, taken))


class FakePayments:
    def __init__(self, store: FakeStore, pending: dict) -> None:
        self.store, self.pending = store, pending

    async def get(self, order_id: uuid.UUID) -> PaymentRecord | None:
        return self.store.payments.get(order_id)

    async def add(self, record: PaymentRecord) -> PaymentRecord:
        self.pending.setdefault("payments", []).append(record)
        return self.store.payments.get(record.order_id, record)

    async def record_refund(self, order_id: uuid.UUID, refund_id: str, now: datetime) -> None:
        self.pending.setdefault("refunds", []).append((order_id, refund_id))

    async def get_many(self, order_ids) -> dict[uuid.UUID, PaymentRecord]:
        return {i: self.store.payments[i] for i in order_ids if i in self.store.payments}

    async def add_intents(self, records) -> None:
        self.pending.setdefault("payments", []).extend(records)

    async def save_answers(self, records) -> None:
        self.pending.setdefault("answers", []).extend(records)


class FakeOutbox:
    def __init__(self, pending: dict) -> None:
        self.pending = pending

    async def add(self, event: OutboxEvent) -> None:
        self.pending.setdefault("outbox", []).append(event)

    async def add_many(self, events) -> None:
        self.pending.setdefault("outbox", []).extend(events)


class FakeIdempotency:
    def __init__(self, store: FakeStore, pending: dict) -> None:
        self.store, self.pending = store, pending

    async def get(self, key: str) -> IdempotencyRecord | None:
        return self.store.keys.get(key)


class FakeUnitOfWork:
    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.pending: dict = {}
        self.orders = FakeOrders(store, self.pending)
        self.outbox = FakeOutbox(self.pending)
        self.idempotency = FakeIdempotency(store, self.pending)
        self.stock = FakeStock(store, self.pending)
        self.payments = FakePayments(store, self.pending)
        self.committed = False

    async def __aenter__(self) -> FakeUnitOfWork:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.pending.clear()

    async def commit(self) -> None:
        if self.store.fail_commit:
            raise ConnectionError("database went away")
        for order in self.pending.get("orders", []):
            self.store.orders[order.order_id] = order
        self.store.outbox.extend(self.pending.get("outbox", []))
        for record in self.pending.get("keys", []):
            self.store.keys[record.key] = record
        for order, expected in self.pending.get("updates", []):
            stored = self.store.orders[order.order_id]
            if stored.order_version != expected:  # lost the race meanwhile
                raise AssertionError("an optimistic update was committed over a newer version")
            self.store.orders[order.order_id] = order
        for order_id, entry in self.pending.get("transitions", []):
            self.store.timelines.setdefault(order_id, []).append(entry)
        for product_id, quantity in self.pending.get("stock", []):
            self.store.stock[product_id] -= quantity
        for record in self.pending.get("payments", []):
            self.store.payments.setdefault(record.order_id, record)
        for record in self.pending.get("answers", []):
            known = self.store.payments.get(record.order_id)
            if known is None or known.status == PAYMENT_PENDING:
                self.store.payments[record.order_id] = record
        for order_id, refund_id in self.pending.get("refunds", []):
            payment = self.store.payments[order_id]
            if payment.refund_id is None:
                self.store.payments[order_id] = dataclasses.replace(
                    payment, status="refunded", refund_id=refund_id
                )
        self.committed = True

    async def rollback(self) -> None:
        self.pending.clear()


@dataclasses.dataclass
class FakeLockedBatch:
    uow: FakeUnitOfWork
    orders: dict
    payments: dict
    levels: dict
    timelines: dict

    async def commit(self, writes: BatchWrites) -> None:
        await self.uow.payments.save_answers(writes.answers)
        await self.uow.orders.save_states(writes.states)
        await self.uow.orders.add_transitions(writes.transitions)
        await self.uow.outbox.add_many(writes.events)
        await self.uow.stock.save_levels(writes.levels, writes.now)
        await self.uow.commit()


class FakeFulfilmentStore:
    """The saga's batch store over a fake unit of work (the MySQL one sends packets)."""

    def __init__(self, uow_factory: Callable[[], FakeUnitOfWork]) -> None:
        self._uow_factory = uow_factory

    async def read(self, order_ids) -> tuple[dict, dict]:
        async with self._uow_factory() as uow:
            return await uow.orders.get_many(order_ids), await uow.payments.get_many(order_ids)

    async def add_intents(self, records) -> None:
        if records:
            async with self._uow_factory() as uow:
                await uow.payments.add_intents(records)
                await uow.commit()

    @asynccontextmanager
    async def lock(self, order_ids, product_ids) -> AsyncIterator[FakeLockedBatch]:
        async with self._uow_factory() as uow:
            yield FakeLockedBatch(
                uow,
                await uow.orders.get_many(order_ids, for_update=True),
                await uow.payments.get_many(order_ids),
                await uow.stock.levels(product_ids),
                await uow.orders.timelines(order_ids),
            )


class FakeCache:
    def __init__(self, down: bool = False) -> None:
        self.data: dict[uuid.UUID, bytes] = {}
        self.down = down
        self.gets = 0

    async def get(self, order_id: uuid.UUID) -> bytes | None:
        self.gets += 1
        return None if self.down else self.data.get(order_id)

    async def fill(self, order_id: uuid.UUID, body: bytes) -> None:
        if not self.down:
            self.data.setdefault(order_id, body)

    async def put(self, order_id: uuid.UUID, body: bytes) -> None:
        if not self.down:
            self.data[order_id] = body

    async def put_many(self, bodies) -> None:
        for order_id, body in bodies.items():
            await self.put(order_id, body)

    async def ping(self) -> bool:
        return not self.down

    async def invalidate(self, order_id: uuid.UUID) -> None:
        self.data.pop(order_id, None)


class FakeWriter:
    """Commits straight into the store, as the group-commit writer does for one order."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store

    async def write(
        self,
        order: Order,
        event: OutboxEvent,
        *,
        key: IdempotencyRecord | None = None,
        replaces_expired_key: bool = False,
    ) -> None:
        if self.store.fail_commit:
            raise ConnectionError("database went away")
        if key is not None:
            known = self.store.keys.get(key.key)
            if known is not None and not (
                replaces_expired_key and known.expires_at <= order.created_at
            ):
                raise DuplicateKeyError(key.key)
            self.store.keys[key.key] = key
        self.store.orders[order.order_id] = order
        self.store.outbox.append(event)
        self.store.timelines[order.order_id] = [
            TimelineEntry(
                status=order.status,
                previous_status=None,
                version=order.order_version,
                at=order.created_at,
                event_id=event.event_id,
                event_type=event.event_type,
            )
        ]
