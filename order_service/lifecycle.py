"""Lifecycle use cases after creation: the fulfilment saga, scheduled starts, cancellation.

Every transition commits the order (``UPDATE ... WHERE version = ?``), its timeline row and its
outbox event in one transaction, then refreshes the cache. Gateway calls are never made while a
transaction waits on them, except a cancellation's refund, which holds the order's row lock so
that a paid order is refunded only if it really ends up cancelled (docs/lifecycle.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

from common.observability import get_logger
from order_service.changes import change_records
from order_service.domain.lifecycle import (
    TRANSITIONS,
    IllegalTransitionError,
    OrderHistory,
    TimelineEntry,
    transition,
)
from order_service.domain.order import Order, OrderStatus
from order_service.payment_steps import PaymentSteps
from order_service.ports import (
    OrderCache,
    OutboxEvent,
    PaymentGateway,
    UnitOfWork,
)

__all__ = [
    "ConcurrencyConflictError",
    "LifecycleService",
    "OrderNotFoundError",
]

log = get_logger(__name__)

PRODUCER = "order-service"
S = OrderStatus
Render = Callable[[Order, Sequence[TimelineEntry]], bytes]


class OrderNotFoundError(Exception):
    """No order with this id."""


class ConcurrencyConflictError(Exception):
    """Another update changed the order first (its version moved on)."""


class LifecycleService:
    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        cache: OrderCache,
        gateway: PaymentGateway,
        *,
        render: Render,
        clock: Callable[[], datetime],
        exchange: str = "orders",
        on_committed: Callable[[Sequence[OutboxEvent]], None] = lambda events: None,
        max_conflicts: int = 8,
    ) -> None:
        self._uow_factory = uow_factory
        self._cache = cache
        self._gateway = gateway
        self._render = render
        self._clock = clock
        self._exchange = exchange
        self._on_committed = on_committed
        self._max_conflicts = max_conflicts
        self._payments = PaymentSteps(uow_factory, gateway, clock)

    # -- commands --------------------------------------------------------------------------
    async def cancel(self, order_id: uuid.UUID, *, correlation_id: str) -> OrderHistory:
        """Cancel a scheduled, created or paid order (a paid one is refunded first).

        Raises OrderNotFoundError, or IllegalTransitionError when it can no longer be cancelled.
        """
        for _ in range(self._max_conflicts):
            try:
                async with self._uow_factory() as uow:
                    # The row lock orders us against the saga: a paid order cannot become
                    # confirmed while we refund it, and we see a payment that just committed.
                    order = await uow.orders.get(order_id, for_update=True)
                    if order is None:
                        raise OrderNotFoundError(order_id)
                    if S.CANCELLED not in TRANSITIONS[order.status]:
                        raise IllegalTransitionError(order.order_id, order.status, S.CANCELLED)
                    payment_id = refund_id = None
                    if order.status is S.PAID:
                        payment_id, refund_id = await self._payments.refund_within(uow, order)
                    cancelled, event = await self._write(
                        uow,
                        order,
                        S.CANCELLED,
                        correlation_id=correlation_id,
                        reason="cancelled_by_customer",
                        payment_id=payment_id,
                        refund_id=refund_id,
                    )
                    await uow.commit()
            except ConcurrencyConflictError:
                continue
            await self._committed(cancelled, event)
            return cancelled
        raise ConcurrencyConflictError(order_id)

    async def fulfil(self, order_id: uuid.UUID, *, correlation_id: str) -> str:
        """Take a created order through payment and stock as far as it goes; safe to repeat.

        Returns what happened (a metric label). Raises on transient trouble (the consumer
        retries the message) and ConcurrencyConflictError if the order keeps changing under us.
        """
        for _ in range(self._max_conflicts):
            order = await self._load(order_id)
            if order is None:
                return "missing"
            try:
                if order.status is S.CREATED:
                    payment = await self._payments.charge(order)
                    if payment.status == "declined":
                        await self._transition(
                            order,
                            S.PAYMENT_FAILED,
                            correlation_id=correlation_id,
                            reason=payment.decline_reason,
                        )
                        return "payment_failed"
                    await self._transition(
                        order, S.PAID, correlation_id=correlation_id, payment_id=payment.payment_id
                    )
                    continue  # on to the stock reservation
                if order.status is S.PAID:
                    if await self._confirm(order, correlation_id=correlation_id):
                        return "confirmed"
                    payment_id, refund_id = await self._payments.refund(order)
                    await self._transition(
                        order,
                        S.REJECTED,
                        correlation_id=correlation_id,
                        reason="out_of_stock",
                        payment_id=payment_id,
                        refund_id=refund_id,
                    )
                    return "rejected"
                if order.status is S.CANCELLED:
                    # Cancelled while our charge was in flight: learn the gateway's answer
                    # (by its key) if it was never recorded, and give the money back.
                    if await self._payments.charge_in_flight(order):
                        await self._payments.charge(order)
                    await self._payments.refund(order)
                    return "cancelled"
                return (
                    "duplicate"
                    if order.status in (S.CONFIRMED, S.PAYMENT_FAILED, S.REJECTED)
                    else "not_due"
                )
            except ConcurrencyConflictError:
                log.info("order_changed_under_fulfilment", order_id=str(order_id))
                continue
        raise ConcurrencyConflictError(order_id)

    async def start_scheduled(self, order_id: uuid.UUID, *, correlation_id: str) -> str:
        """scheduled -> created (OrderCreated, which fulfilment picks up); a no-op otherwise."""
        for _ in range(self._max_conflicts):
            order = await self._load(order_id)
            if order is None:
                return "missing"
            if order.status is not S.SCHEDULED:
                return "cancelled" if order.status is S.CANCELLED else "duplicate"
            try:
                await self._transition(order, S.CREATED, correlation_id=correlation_id)
            except ConcurrencyConflictError:
                continue
            return "started"
        raise ConcurrencyConflictError(order_id)

    async def still_scheduled(self, order_id: uuid.UUID) -> bool:
        order = await self._load(order_id)
        return order is not None and order.status is S.SCHEDULED

    # -- steps -----------------------------------------------------------------------------
    async def _load(self, order_id: uuid.UUID) -> Order | None:
        async with self._uow_factory() as uow:
            return await uow.orders.get(order_id)

    async def _confirm(self, order: Order, *, correlation_id: str) -> bool:
        """Reserve stock and confirm in one transaction; False (nothing written) if sold out."""
        async with self._uow_factory() as uow:
            confirmed, event = await self._write(
                uow, order, S.CONFIRMED, correlation_id=correlation_id
            )
            if not await uow.stock.reserve(order.product_id, order.quantity, self._clock()):
                return False  # leaving without commit rolls the confirmation back
            await uow.commit()
        await self._committed(confirmed, event)
        return True

    async def _transition(
        self,
        order: Order,
        target: OrderStatus,
        *,
        correlation_id: str,
        reason: str | None = None,
        payment_id: str | None = None,
        refund_id: str | None = None,
    ) -> Order:
        async with self._uow_factory() as uow:
            changed, event = await self._write(
                uow,
                order,
                target,
                correlation_id=correlation_id,
                reason=reason,
                payment_id=payment_id,
                refund_id=refund_id,
            )
            await uow.commit()
        await self._committed(changed, event)
        return changed.order

    async def _write(
        self,
        uow: UnitOfWork,
        order: Order,
        target: OrderStatus,
        *,
        correlation_id: str,
        reason: str | None = None,
        payment_id: str | None = None,
        refund_id: str | None = None,
    ) -> tuple[OrderHistory, OutboxEvent]:
        """Order update (version-checked), timeline row and outbox row; the caller commits."""
        change = transition(
            order,
            target,
            self._clock(),
            reason=reason,
            payment_id=payment_id,
            refund_id=refund_id,
        )
        after = change.after
        if not await uow.orders.update(after, expected_version=order.order_version):
            raise ConcurrencyConflictError(order.order_id)
        event, entry = change_records(
            change, correlation_id=correlation_id, exchange=self._exchange, reason=reason
        )
        await uow.orders.add_transition(order.order_id, entry)
        await uow.outbox.add(event)
        timeline = await uow.orders.timeline(order.order_id)
        return OrderHistory(after, timeline), event

    async def _committed(self, changed: OrderHistory, event: OutboxEvent) -> None:
        self._on_committed([event])
        order = changed.order
        # A plain SET after the commit: a reader that loaded the old row fills with NX and so
        # never overwrites this (adapters/cache.py).
        await self._cache.put(order.order_id, self._render(order, changed.timeline))
        log.info("order_transitioned", order_id=str(order.order_id), status=order.status.value)
