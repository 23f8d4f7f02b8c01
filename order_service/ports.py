"""The ports the service layer talks to; adapters implement them, fakes stand in for tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from order_service.domain.order import Order

__all__ = [
    "IdempotencyRecord",
    "IdempotencyRepository",
    "NewOrderWriter",
    "OrderCache",
    "OrderPage",
    "OrderRepository",
    "OutboxEvent",
    "OutboxRepository",
    "UnitOfWork",
]


@dataclass(frozen=True)
class OutboxEvent:
    event_id: uuid.UUID
    aggregate_id: uuid.UUID
    event_type: str
    exchange: str
    routing_key: str
    payload: bytes
    headers: dict[str, str]
    occurred_at: datetime


@dataclass(frozen=True)
class IdempotencyRecord:
    key: str
    request_hash: str
    status_code: int
    response_body: bytes
    resource_id: str
    expires_at: datetime


@dataclass(frozen=True)
class OrderPage:
    orders: list[Order]
    next_cursor: str | None


class OrderRepository(Protocol):
    async def add(self, order: Order) -> None: ...
    async def get(self, order_id: uuid.UUID) -> Order | None: ...
    async def list(
        self, *, customer_id: str | None, status: str | None, limit: int, cursor: str | None
    ) -> OrderPage: ...


class OutboxRepository(Protocol):
    async def add(self, event: OutboxEvent) -> None: ...


class IdempotencyRepository(Protocol):
    async def get(self, key: str) -> IdempotencyRecord | None: ...
    async def add(self, record: IdempotencyRecord) -> None:
        """Raises DuplicateKeyError if the key exists (possibly after waiting for the
        transaction that holds it)."""

    async def delete_expired(self, key: str, now: datetime) -> None: ...


class UnitOfWork(Protocol):
    @property
    def orders(self) -> OrderRepository: ...
    @property
    def outbox(self) -> OutboxRepository: ...
    @property
    def idempotency(self) -> IdempotencyRepository: ...

    async def __aenter__(self) -> UnitOfWork: ...
    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None: ...
    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...


class NewOrderWriter(Protocol):
    async def write(self, order: Order, event: OutboxEvent) -> None:
        """Commit a new order with its outbox event (one transaction, possibly shared)."""


class OrderCache(Protocol):
    async def get(self, order_id: uuid.UUID) -> bytes | None: ...
    async def fill(self, order_id: uuid.UUID, body: bytes) -> None:
        """Store after a miss, never over a newer value written meanwhile."""

    async def put(self, order_id: uuid.UUID, body: bytes) -> None:
        """Store after a write to the order."""

    async def ping(self) -> bool: ...
