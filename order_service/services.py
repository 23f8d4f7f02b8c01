"""Use cases of the order service's request path: create an order (through the group-commit writer)
and read orders (one unit of work per read)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from order_service.changes import creation_records
from order_service.domain.lifecycle import OrderHistory, TimelineEntry
from order_service.domain.order import NewOrder, Order, new_order_id
from order_service.domain.scheduling import UnacceptableStartTimeError, schedule_error
from order_service.lifecycle import OrderNotFoundError
from order_service.ports import (
    IdempotencyRecord,
    NewOrderWriter,
    OrderCache,
    OrderPage,
    OutboxEvent,
    UnitOfWork,
)

__all__ = [
    "CreateOrderResult",
    "DuplicateKeyError",
    "IdempotencyKeyInFlightError",
    "IdempotencyKeyReusedError",
    "OrderService",
    "StoredResponse",
]

PRODUCER = "order-service"


class DuplicateKeyError(Exception):
    """An insert hit a unique key that another transaction committed."""


class LockTimeoutError(Exception):
    """Waiting for another transaction's lock took too long."""


class IdempotencyKeyReusedError(Exception):
    """The key was already used with a different request body."""


class IdempotencyKeyInFlightError(Exception):
    """A request with this key is still being processed."""


@dataclass(frozen=True)
class StoredResponse:
    """The response recorded with an Idempotency-Key by the request that first used it, in the
    transaction that created its order: what a repeat of that request is answered with."""

    status_code: int
    body: bytes
    order_id: str


# A new order (with its first timeline entry), or the stored answer to the same request.
CreateOrderResult = OrderHistory | StoredResponse
# The encoded response for an order: recorded with an Idempotency-Key and held by the cache.
Render = Callable[[Order, Sequence[TimelineEntry]], bytes]


class OrderService:
    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        cache: OrderCache,
        writer: NewOrderWriter,
        *,
        render: Render,
        clock: Callable[[], datetime],
        idempotency_ttl: timedelta,
        schedule_horizon: timedelta,
        exchange: str = "orders",
        on_committed: Callable[[Sequence[OutboxEvent]], None] = lambda events: None,
        id_factory: Callable[[], uuid.UUID] = new_order_id,
    ) -> None:
        self._uow_factory = uow_factory
        self._cache = cache
        self._writer = writer
        self._render = render
        self._clock = clock
        self._idempotency_ttl = idempotency_ttl
        self._schedule_horizon = schedule_horizon
        self._on_committed = on_committed
        self._exchange = exchange
        self._new_id = id_factory

    async def create_order(
        self,
        new: NewOrder,
        *,
        correlation_id: str,
        idempotency_key: str | None = None,
        request_hash: str = "",
    ) -> CreateOrderResult:
        """Raises UnacceptableStartTimeError, IdempotencyKeyReusedError or
        IdempotencyKeyInFlightError; a replay returns the stored response as it was recorded."""
        if new.scheduled_time is not None:
            reason = schedule_error(new.scheduled_time, self._clock(), self._schedule_horizon)
            if reason is not None:
                raise UnacceptableStartTimeError(reason)
        expired_key = False
        if idempotency_key is not None:
            replay, expired_key = await self._replay(idempotency_key, request_hash)
            if replay is not None:
                return replay

        now = self._clock()
        order = Order.create(new, order_id=self._new_id(), now=now)
        event, entry = creation_records(
            order, correlation_id=correlation_id, exchange=self._exchange
        )
        if idempotency_key is None:
            await self._writer.write(order, event)
        else:
            body = self._render(order, (entry,))
            replay = await self._create_with_key(
                order, event, body, idempotency_key, request_hash, expired_key
            )
            if replay is not None:
                return replay
        self._on_committed([event])
        # No cache write here: nothing is cached for a brand-new id, and skipping the Redis round
        # trip keeps the hot write path short; the first GET fills the entry.
        return OrderHistory(order, (entry,))

    async def _create_with_key(
        self,
        order: Order,
        event: OutboxEvent,
        body: bytes,
        key: str,
        request_hash: str,
        expired_key: bool,
    ) -> StoredResponse | None:
        """One transaction for order, event and key; returns a replay if another request won."""
        try:
            await self._writer.write(
                order,
                event,
                key=IdempotencyRecord(
                    key=key,
                    request_hash=request_hash,
                    status_code=201,
                    response_body=body,
                    resource_id=str(order.order_id),
                    expires_at=order.created_at + self._idempotency_ttl,
                ),
                replaces_expired_key=expired_key,
            )
        except DuplicateKeyError:
            replay, _ = await self._replay(key, request_hash)
            if replay is None:  # the winner's row expired in between: vanishingly rare
                raise IdempotencyKeyInFlightError(key) from None
            return replay
        except LockTimeoutError:
            raise IdempotencyKeyInFlightError(key) from None
        return None

    async def _replay(self, key: str, request_hash: str) -> tuple[StoredResponse | None, bool]:
        """The stored response for the key, and whether an expired record must be replaced."""
        async with self._uow_factory() as uow:
            record = await uow.idempotency.get(key)
        if record is None:
            return None, False
        if record.expires_at <= self._clock():
            return None, True
        if record.request_hash != request_hash:
            raise IdempotencyKeyReusedError(key)
        return StoredResponse(record.status_code, record.response_body, record.resource_id), False

    async def get_order(self, order_id: uuid.UUID, *, cache_checked: bool = False) -> bytes:
        """The order's encoded response, not the Order: the cache holds the encoded body on
        purpose (a hit is answered without decoding or encoding anything), so a miss renders
        what it fills. Cache-aside: Redis first (unless the caller already missed), MySQL on a
        miss (or when Redis is down), then fill. Raises OrderNotFoundError."""
        if not cache_checked:
            cached = await self._cache.get(order_id)
            if cached is not None:
                return cached
        async with self._uow_factory() as uow:
            order = await uow.orders.get(order_id)
            timeline = await uow.orders.timeline(order_id) if order is not None else []
        if order is None:
            raise OrderNotFoundError(order_id)
        body = self._render(order, timeline)
        await self._cache.fill(order_id, body)
        return body

    async def list_orders(
        self, *, customer_id: str | None, status: str | None, limit: int, cursor: str | None
    ) -> OrderPage:
        async with self._uow_factory() as uow:
            return await uow.orders.list(
                customer_id=customer_id, status=status, limit=limit, cursor=cursor
            )
