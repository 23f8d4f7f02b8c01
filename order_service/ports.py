"""The ports the service layer talks to; adapters implement them, fakes stand in for tests."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from common.messaging.outcomes import DependencyUnavailableError
from order_service.domain.fulfilment import PaymentRecord, StockLevel
from order_service.domain.lifecycle import TimelineEntry
from order_service.domain.order import Order

__all__ = [
    "BatchWrites",
    "ChargeResult",
    "IdempotencyRecord",
    "IdempotencyRepository",
    "LockedBatch",
    "NewOrderWriter",
    "OrderCache",
    "OrderPage",
    "OrderRepository",
    "OutboxEvent",
    "PaymentGateway",
    "PaymentGatewayError",
    "PaymentGatewayUnavailableError",
    "PaymentRecord",
    "RefundResult",
    "TransitionOutcomeUnknownError",
    "TransitionStore",
    "UnitOfWork",
    "WriteOutcomeUnknownError",
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
    """Reads of the request path. Writes go through the NewOrderWriter (new orders) and the
    TransitionStore (every later change), never through here."""

    async def get(self, order_id: uuid.UUID) -> Order | None: ...
    async def timeline(self, order_id: uuid.UUID) -> list[TimelineEntry]:
        """Oldest first."""

    async def list(
        self, *, customer_id: str | None, status: str | None, limit: int, cursor: str | None
    ) -> OrderPage: ...


@dataclass(frozen=True)
class ChargeResult:
    approved: bool
    payment_id: str | None
    decline_reason: str | None = None


@dataclass(frozen=True)
class RefundResult:
    refund_id: str


class WriteOutcomeUnknownError(Exception):
    """The order's commit could be neither confirmed nor ruled out in time; it may exist."""

    def __init__(self, order_id: uuid.UUID) -> None:
        super().__init__(f"the outcome of writing order {order_id} is not known yet")
        self.order_id = order_id


class TransitionOutcomeUnknownError(DependencyUnavailableError):
    """A change of the order was sent with its COMMIT, the connection broke before the answer,
    and the database could not be asked whether it committed: GET the order to find out. A
    consumer treats it as an outage (the redelivery finds the order as it stands)."""

    def __init__(self, order_id: uuid.UUID) -> None:
        super().__init__(f"the outcome of changing order {order_id} is not known yet")
        self.order_id = order_id


class PaymentGatewayError(Exception):
    """The gateway failed this call; it may be retried with the same key."""


class PaymentGatewayUnavailableError(PaymentGatewayError):
    """The gateway could not be reached or is overloaded (connection refused, timeout, 503):
    an outage of a dependency, which delays the order without spending its attempts."""


class PaymentGateway(Protocol):
    """A payment provider. Both calls carry an idempotency key (the order id), so a retried
    call returns the first answer instead of charging or refunding again."""

    async def charge(
        self, *, idempotency_key: str, amount: Decimal, currency: str
    ) -> ChargeResult: ...

    async def refund(
        self, *, idempotency_key: str, payment_id: str, amount: Decimal, currency: str
    ) -> RefundResult: ...


class IdempotencyRepository(Protocol):
    """Reads stored answers; a key is written with its order (NewOrderWriter)."""

    async def get(self, key: str) -> IdempotencyRecord | None: ...


class UnitOfWork(Protocol):
    """One connection for the request path's reads (an order with its timeline)."""

    @property
    def orders(self) -> OrderRepository: ...
    @property
    def idempotency(self) -> IdempotencyRepository: ...

    async def __aenter__(self) -> UnitOfWork: ...
    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None: ...
    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...


@dataclass(frozen=True)
class BatchWrites:
    """What one transaction of transitions commits (a saga batch, or one order's change), as
    multi-row writes."""

    now: datetime
    states: Sequence[Order] = ()
    transitions: Sequence[tuple[uuid.UUID, TimelineEntry]] = ()
    events: Sequence[OutboxEvent] = ()
    answers: Sequence[PaymentRecord] = ()
    levels: Sequence[StockLevel] = ()
    # (order id, the gateway's refund id): a payment takes its first refund only.
    refunds: Sequence[tuple[uuid.UUID, str]] = ()


class LockedBatch(Protocol):
    """Orders and stock rows, locked, with what the transaction read."""

    @property
    def orders(self) -> Mapping[uuid.UUID, Order]: ...
    @property
    def payments(self) -> Mapping[uuid.UUID, PaymentRecord]: ...
    @property
    def levels(self) -> Mapping[str, StockLevel]: ...
    @property
    def timelines(self) -> Mapping[uuid.UUID, Sequence[TimelineEntry]]: ...

    async def commit(self, writes: BatchWrites) -> None:
        """Commit the writes. When the connection breaks after the COMMIT was sent, the store
        finds out (by the first event's id) before it answers: it returns if the writes are in,
        raises DatabaseUnavailableError if they are not, TransitionOutcomeUnknownError if the
        database cannot be asked (DESIGN.md §4 rule 6)."""


class TransitionStore(Protocol):
    """Where every change of an existing order commits: the saga's batches and the one-order
    path alike (cancellation, scheduled start, refunds), each transaction in as few round trips
    as it can be. New orders commit through the NewOrderWriter; both write the same rows."""

    async def read(
        self, order_ids: Sequence[uuid.UUID]
    ) -> tuple[dict[uuid.UUID, Order], dict[uuid.UUID, PaymentRecord]]:
        """The orders and their payment records, unlocked."""

    async def add_intents(self, records: Sequence[PaymentRecord]) -> None:
        """Commit pending payment records; an order that has a payment row keeps it."""

    def lock(
        self, order_ids: Sequence[uuid.UUID], product_ids: Collection[str]
    ) -> AbstractAsyncContextManager[LockedBatch]:
        """Lock the orders, then the stock rows (both sorted); leaving without commit rolls
        back. Raises LockTimeoutError on a lock wait timeout or deadlock."""


class NewOrderWriter(Protocol):
    async def write(
        self,
        order: Order,
        event: OutboxEvent,
        *,
        key: IdempotencyRecord | None = None,
        replaces_expired_key: bool = False,
    ) -> None:
        """Commit a new order with its outbox event and first timeline entry, and its
        Idempotency-Key record when it has one (one transaction, possibly shared).

        Raises DuplicateKeyError when the key is taken (the caller replays the stored answer),
        LockTimeoutError when its first request holds it too long.
        """


class OrderCache(Protocol):
    async def get(self, order_id: uuid.UUID) -> bytes | None: ...
    async def fill(self, order_id: uuid.UUID, body: bytes) -> None:
        """Store after a miss, never over a newer value written meanwhile."""

    async def put(self, order_id: uuid.UUID, body: bytes) -> None:
        """Store after a write to the order."""

    async def put_many(self, bodies: Mapping[uuid.UUID, bytes]) -> None:
        """Store after writes to several orders (one round trip)."""

    async def ping(self) -> bool: ...
