"""In-memory fakes for every port of the order service (cosmicpython FakeUnitOfWork)."""

from __future__ import annotations

import uuid
from datetime import datetime

from order_service.domain.order import Order
from order_service.ports import IdempotencyRecord, OrderPage, OutboxEvent
from order_service.services import DuplicateKeyError


class FakeStore:
    def __init__(self) -> None:
        self.orders: dict[uuid.UUID, Order] = {}
        self.outbox: list[OutboxEvent] = []
        self.keys: dict[str, IdempotencyRecord] = {}
        self.fail_commit = False


class FakeOrders:
    def __init__(self, store: FakeStore, pending: dict) -> None:
        self.store, self.pending = store, pending

    async def add(self, order: Order) -> None:
        self.pending.setdefault("orders", []).append(order)

    async def get(self, order_id: uuid.UUID) -> Order | None:
        return self.store.orders.get(order_id)

    async def list(self, *, customer_id, status, limit, cursor) -> OrderPage:
        orders = sorted(self.store.orders.values(), key=lambda o: o.created_at, reverse=True)
        return OrderPage([o for o in orders if customer_id in (None, o.customer_id)][:limit], None)


class FakeOutbox:
    def __init__(self, pending: dict) -> None:
        self.pending = pending

    async def add(self, event: OutboxEvent) -> None:
        self.pending.setdefault("outbox", []).append(event)


class FakeIdempotency:
    def __init__(self, store: FakeStore, pending: dict) -> None:
        self.store, self.pending = store, pending

    async def get(self, key: str) -> IdempotencyRecord | None:
        return self.store.keys.get(key)

    async def add(self, record: IdempotencyRecord) -> None:
        if record.key in self.store.keys:
            raise DuplicateKeyError(record.key)
        self.pending.setdefault("keys", []).append(record)

    async def delete_expired(self, key: str, now: datetime) -> None:
        record = self.store.keys.get(key)
        if record is not None and record.expires_at <= now:
            del self.store.keys[key]


class FakeUnitOfWork:
    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.pending: dict = {}
        self.orders = FakeOrders(store, self.pending)
        self.outbox = FakeOutbox(self.pending)
        self.idempotency = FakeIdempotency(store, self.pending)
        self.committed = False

    async def __aenter__(self) -> FakeUnitOfWork:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.pending.clear()

    async def commit(self) -> None:
        if self.store.fail_commit:
            raise ConnectionError("database went away")
        for order in self.pending.get("orders", []):
            self.store.orders[order.id] = order
        self.store.outbox.extend(self.pending.get("outbox", []))
        for record in self.pending.get("keys", []):
            self.store.keys[record.key] = record
        self.committed = True

    async def rollback(self) -> None:
        self.pending.clear()


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

    async def ping(self) -> bool:
        return not self.down


class FakeWriter:
    """Commits straight into the store, as the group-commit writer does for one order."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store

    async def write(self, order: Order, event: OutboxEvent) -> None:
        if self.store.fail_commit:
            raise ConnectionError("database went away")
        self.store.orders[order.id] = order
        self.store.outbox.append(event)
