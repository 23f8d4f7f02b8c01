"""In-memory fakes for every port of the order service."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager

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
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    async def get(self, order_id: uuid.UUID) -> Order | None:
        return self.store.orders.get(order_id)

    async def timeline(self, order_id: uuid.UUID) -> list[TimelineEntry]:
        return list(self.store.timelines.get(order_id, []))

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


class FakeIdempotency:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    async def get(self, key: str) -> IdempotencyRecord | None:
        return self.store.keys.get(key)


class FakeUnitOfWork:
    """The request path's reads (writes go through FakeWriter and FakeTransitionStore)."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.orders = FakeOrders(store)
        self.idempotency = FakeIdempotency(store)

    async def __aenter__(self) -> FakeUnitOfWork:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def commit(self) -> None:
        pass

    async def rollback(self) -> None:
        pass


@dataclasses.dataclass
class FakeLockedBatch:
    store: FakeTransitionStore
    orders: dict
    payments: dict
    levels: dict
    timelines: dict

    async def commit(self, writes: BatchWrites) -> None:
        await self.store.commit(self, writes)


class FakeTransitionStore:
    """Every change of an existing order, committed into the FakeStore. Rows are locked as in
    MySQL (an asyncio lock per order and product, taken sorted), so a gateway call made while
    a row is locked keeps the others out, as it does there."""

    def __init__(self, store: FakeStore, *, failing_commits: Collection[int] = ()) -> None:
        self.store = store
        self.commits = 0
        # The numbers (1-based) of the commits that fail as if the database went away.
        self.failing_commits = set(failing_commits)
        self._locks: dict[object, asyncio.Lock] = {}

    async def read(self, order_ids) -> tuple[dict, dict]:
        return self._orders(order_ids), self._payments(order_ids)

    async def add_intents(self, records) -> None:
        if records:
            self._count_commit()
            for record in records:
                self.store.payments.setdefault(record.order_id, record)

    @asynccontextmanager
    async def lock(self, order_ids, product_ids) -> AsyncIterator[FakeLockedBatch]:
        keys = [*sorted(set(order_ids), key=str), *sorted(set(product_ids))]
        async with contextlib.AsyncExitStack() as held:
            for key in keys:
                await held.enter_async_context(self._locks.setdefault(key, asyncio.Lock()))
            yield FakeLockedBatch(
                self,
                self._orders(order_ids),
                self._payments(order_ids),
                {
                    p: StockLevel(p, self.store.stock[p], 0)
                    for p in product_ids
                    if p in self.store.stock
                },
                {i: list(self.store.timelines.get(i, [])) for i in order_ids},
            )

    async def commit(self, locked: FakeLockedBatch, writes: BatchWrites) -> None:
        self._count_commit()
        store = self.store
        for record in writes.answers:
            known = store.payments.get(record.order_id)
            if known is None or known.status == PAYMENT_PENDING:
                store.payments[record.order_id] = record
        for order in writes.states:
            if order.order_version <= store.orders[order.order_id].order_version:
                raise AssertionError("a state was committed over a newer version")
            store.orders[order.order_id] = order
        for order_id, entry in writes.transitions:
            store.timelines.setdefault(order_id, []).append(entry)
        store.outbox.extend(writes.events)
        for level in writes.levels:
            store.stock[level.product_id] = level.available
        for order_id, refund_id in writes.refunds:
            payment = store.payments[order_id]
            if payment.refund_id is None:
                store.payments[order_id] = dataclasses.replace(
                    payment, status="refunded", refund_id=refund_id
                )

    def _count_commit(self) -> None:
        self.commits += 1
        if self.store.fail_commit or self.commits in self.failing_commits:
            raise ConnectionError("database went away")

    def _orders(self, order_ids) -> dict[uuid.UUID, Order]:
        return {i: self.store.orders[i] for i in order_ids if i in self.store.orders}

    def _payments(self, order_ids) -> dict[uuid.UUID, PaymentRecord]:
        return {i: self.store.payments[i] for i in order_ids if i in self.store.payments}


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
